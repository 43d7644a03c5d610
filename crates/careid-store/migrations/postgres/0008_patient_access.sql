-- Patient-record accesses reported by clinical applications. Each is a record in the audit log
-- (which names the patient only by a keyed pseudonym); this index holds the NHS number so that
-- the privacy officer can search by patient, and the alerts of self-claimed and emergency access.
CREATE TABLE patient_access (
    seq BIGINT PRIMARY KEY REFERENCES audit_log (seq),
    patient TEXT NOT NULL,
    person TEXT NOT NULL REFERENCES people (uuid),
    org TEXT NOT NULL REFERENCES organisations (ods_code),
    client TEXT NOT NULL,
    action TEXT NOT NULL,
    relationship TEXT NOT NULL,
    accessed_at BIGINT NOT NULL,
    alert TEXT
);
CREATE INDEX patient_access_patient ON patient_access (patient, seq);
CREATE INDEX patient_access_person ON patient_access (person, seq);
CREATE INDEX patient_access_org ON patient_access (org, seq);
CREATE FUNCTION patient_access_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'patient_access is append-only';
END;
$$;
CREATE TRIGGER patient_access_no_change BEFORE UPDATE OR DELETE ON patient_access
FOR EACH ROW EXECUTE FUNCTION patient_access_append_only();
