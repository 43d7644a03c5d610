-- The Registration Authority's records and the hash-chained audit log (SQLite).
-- Times are microseconds since the Unix epoch (UTC); dates are TEXT 'YYYY-MM-DD'.

CREATE TABLE organisations (
    ods_code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    parent TEXT REFERENCES organisations (ods_code)
);
CREATE INDEX organisations_parent ON organisations (parent);

CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    next_value BIGINT NOT NULL
);
INSERT INTO counters (name, next_value) VALUES ('person_serial', 10000000000);

CREATE TABLE people (
    uuid TEXT PRIMARY KEY,
    title TEXT,
    given_name TEXT NOT NULL,
    family_name TEXT NOT NULL,
    given_name_key TEXT NOT NULL,
    family_name_key TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    ni_number TEXT NOT NULL UNIQUE,
    email TEXT,
    phone TEXT,
    status TEXT NOT NULL,
    registered_org TEXT NOT NULL REFERENCES organisations (ods_code),
    created_at BIGINT NOT NULL
);
CREATE INDEX people_name_dob ON people (family_name_key, given_name_key, date_of_birth);

CREATE TABLE identity_checks (
    id INTEGER PRIMARY KEY,
    person TEXT NOT NULL REFERENCES people (uuid),
    purpose TEXT NOT NULL,
    documents TEXT NOT NULL,
    checked_by TEXT REFERENCES people (uuid),
    checked_at BIGINT NOT NULL
);
CREATE INDEX identity_checks_person ON identity_checks (person);

CREATE TABLE terms_acceptances (
    id INTEGER PRIMARY KEY,
    person TEXT NOT NULL REFERENCES people (uuid),
    version TEXT NOT NULL,
    context TEXT NOT NULL,
    accepted_at BIGINT NOT NULL
);

CREATE TABLE positions (
    id INTEGER PRIMARY KEY,
    org TEXT NOT NULL REFERENCES organisations (ods_code),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    activities TEXT NOT NULL,
    description TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    approved_how TEXT NOT NULL,
    assignable BIGINT NOT NULL,
    created_by TEXT REFERENCES people (uuid),
    created_at BIGINT NOT NULL
);
CREATE INDEX positions_org ON positions (org);

CREATE TABLE registrations (
    id INTEGER PRIMARY KEY,
    org TEXT NOT NULL REFERENCES organisations (ods_code),
    title TEXT,
    given_name TEXT NOT NULL,
    family_name TEXT NOT NULL,
    given_name_key TEXT NOT NULL,
    family_name_key TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    ni_number TEXT NOT NULL,
    email TEXT,
    phone TEXT,
    position_sought BIGINT REFERENCES positions (id),
    note TEXT NOT NULL,
    sponsor TEXT NOT NULL REFERENCES people (uuid),
    status TEXT NOT NULL,
    person TEXT REFERENCES people (uuid),
    reason TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX registrations_org ON registrations (org, status);
CREATE INDEX registrations_ni ON registrations (ni_number);

CREATE TABLE assignments (
    id INTEGER PRIMARY KEY,
    person TEXT NOT NULL REFERENCES people (uuid),
    position BIGINT NOT NULL REFERENCES positions (id),
    org TEXT NOT NULL REFERENCES organisations (ods_code),
    start_date TEXT NOT NULL,
    end_date TEXT,
    assigned_by TEXT REFERENCES people (uuid),
    removed_by TEXT REFERENCES people (uuid),
    removed_at BIGINT,
    removal_reason TEXT
);
CREATE INDEX assignments_person ON assignments (person);
CREATE INDEX assignments_position ON assignments (position);

CREATE TABLE requests (
    id INTEGER PRIMARY KEY,
    person TEXT NOT NULL REFERENCES people (uuid),
    org TEXT NOT NULL REFERENCES organisations (ods_code),
    kind TEXT NOT NULL,
    position BIGINT REFERENCES positions (id),
    start_date TEXT,
    end_date TEXT,
    reason TEXT,
    note TEXT NOT NULL,
    requested_by TEXT NOT NULL REFERENCES people (uuid),
    requested_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT REFERENCES people (uuid),
    decided_at BIGINT,
    decision_reason TEXT
);
CREATE INDEX requests_org ON requests (org, status);

CREATE TABLE credentials (
    secret_hash BLOB PRIMARY KEY,
    person TEXT NOT NULL REFERENCES people (uuid),
    kind TEXT NOT NULL,
    issued_by TEXT REFERENCES people (uuid),
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    person TEXT NOT NULL REFERENCES people (uuid),
    assignment BIGINT NOT NULL REFERENCES assignments (id),
    auth TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT
);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at_us BIGINT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT,
    subject_person TEXT,
    org TEXT,
    entry BLOB NOT NULL,
    chain_hash BLOB NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_subject ON audit_log (subject_person, seq);
CREATE INDEX audit_log_org ON audit_log (org, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);

-- The head of the log: next sequence number and the chain hash so far. Every write
-- transaction updates this row first, which serialises writers.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    next_seq BIGINT NOT NULL,
    chain_hash BLOB NOT NULL,
    writes BIGINT NOT NULL
);
INSERT INTO audit_head (id, next_seq, chain_hash, writes)
VALUES (1, 0, X'0000000000000000000000000000000000000000000000000000000000000000', 0);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
