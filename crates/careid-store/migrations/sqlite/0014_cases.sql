-- Misuse cases: one model for alerts, "not me" reports, lost-card investigations and anyone's
-- report about anyone; each step of a case's history an entry (and an audit record).
CREATE TABLE cases (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    subject TEXT NOT NULL REFERENCES people (uuid),
    reporter TEXT REFERENCES people (uuid),
    org TEXT NOT NULL REFERENCES organisations (ods_code),
    owner TEXT REFERENCES people (uuid),
    status TEXT NOT NULL,
    summary TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    closed_at BIGINT,
    outcome TEXT,
    incident BIGINT
);
CREATE INDEX cases_org ON cases (org, status);
CREATE INDEX cases_subject ON cases (subject, status);
CREATE INDEX cases_incident ON cases (incident);

CREATE TABLE case_entries (
    id INTEGER PRIMARY KEY,
    case_id BIGINT NOT NULL REFERENCES cases (id),
    at BIGINT NOT NULL,
    by_person TEXT REFERENCES people (uuid),
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    record BIGINT
);
CREATE INDEX case_entries_case ON case_entries (case_id, id);
