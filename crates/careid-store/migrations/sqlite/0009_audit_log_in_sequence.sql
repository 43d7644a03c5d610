-- The audit log and the patient-access index stored in sequence order. Declared
-- `seq BIGINT PRIMARY KEY`, each was a rowid table beside a separate index on seq: every record
-- went into one b-tree more than it needed, and reading the log in order (verification,
-- archives) looked each row up through that index. `INTEGER PRIMARY KEY` makes seq the rowid:
-- the rows are stored in log order and found by it. Every index holds the rowid after its own
-- columns, so `(actor)` is ordered as `(actor, seq)` was.
--
-- SQLite cannot change a primary key in place: each table is copied into a new one, which then
-- takes the old one's name (the documented procedure; migrations run with foreign keys off and
-- are checked with foreign_key_check before they commit). DROP TABLE fires no trigger.

CREATE TABLE audit_log_in_sequence (
    seq INTEGER PRIMARY KEY,
    at_us BIGINT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT,
    subject_person TEXT,
    org TEXT,
    entry BLOB NOT NULL,
    chain_hash BLOB NOT NULL,
    session TEXT
);
INSERT INTO audit_log_in_sequence (seq, at_us, action, actor, subject_person, org, entry, chain_hash, session)
SELECT seq, at_us, action, actor, subject_person, org, entry, chain_hash, session FROM audit_log ORDER BY seq;
DROP TABLE audit_log;
ALTER TABLE audit_log_in_sequence RENAME TO audit_log;
CREATE INDEX audit_log_actor ON audit_log (actor);
CREATE INDEX audit_log_subject ON audit_log (subject_person);
CREATE INDEX audit_log_org ON audit_log (org);
CREATE INDEX audit_log_action ON audit_log (action);
CREATE INDEX audit_log_session ON audit_log (session);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

CREATE TABLE patient_access_in_sequence (
    seq INTEGER PRIMARY KEY REFERENCES audit_log (seq),
    patient TEXT NOT NULL,
    person TEXT NOT NULL REFERENCES people (uuid),
    org TEXT NOT NULL REFERENCES organisations (ods_code),
    client TEXT NOT NULL,
    action TEXT NOT NULL,
    relationship TEXT NOT NULL,
    accessed_at BIGINT NOT NULL,
    alert TEXT
);
INSERT INTO patient_access_in_sequence
SELECT seq, patient, person, org, client, action, relationship, accessed_at, alert FROM patient_access ORDER BY seq;
DROP TABLE patient_access;
ALTER TABLE patient_access_in_sequence RENAME TO patient_access;
CREATE INDEX patient_access_patient ON patient_access (patient);
CREATE INDEX patient_access_person ON patient_access (person);
CREATE INDEX patient_access_org ON patient_access (org);
CREATE TRIGGER patient_access_no_update BEFORE UPDATE ON patient_access
BEGIN SELECT RAISE(ABORT, 'patient_access is append-only'); END;
CREATE TRIGGER patient_access_no_delete BEFORE DELETE ON patient_access
BEGIN SELECT RAISE(ABORT, 'patient_access is append-only'); END;
