-- The RA's spot checks: a visit to an organisation and what it found, recorded by the RA
-- (seed 002: trusts that did not know how their cards were looked after).
CREATE TABLE spot_checks (
    id INTEGER PRIMARY KEY,
    org TEXT NOT NULL REFERENCES organisations (ods_code),
    visited_on TEXT NOT NULL,
    findings TEXT NOT NULL,
    checked_by TEXT NOT NULL REFERENCES people (uuid),
    recorded_at BIGINT NOT NULL
);
CREATE INDEX spot_checks_org ON spot_checks (org, visited_on);
