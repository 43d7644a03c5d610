-- When people are not at work: recorded absences (whole UK local days), the working hours of
-- an assignment, and each organisation's policy for a login outside them.
ALTER TABLE assignments ADD COLUMN working_hours TEXT;

CREATE TABLE absences (
    id BIGSERIAL PRIMARY KEY,
    person TEXT NOT NULL REFERENCES people (uuid),
    kind TEXT NOT NULL,
    first_day TEXT NOT NULL,
    last_day TEXT NOT NULL,
    recorded_by TEXT NOT NULL REFERENCES people (uuid),
    recorded_at BIGINT NOT NULL,
    cancelled_at BIGINT
);
CREATE INDEX absences_of_person ON absences (person, last_day);

CREATE TABLE absence_policies (
    org TEXT PRIMARY KEY REFERENCES organisations (ods_code),
    policy TEXT NOT NULL,
    set_by TEXT NOT NULL REFERENCES people (uuid),
    set_at BIGINT NOT NULL
);
