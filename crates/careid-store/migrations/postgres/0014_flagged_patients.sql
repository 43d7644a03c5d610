-- Patients an organisation's privacy officer flagged (VIPs, staff's families, anyone whose
-- record needs watching): a reported access to one without a registration or referral raises
-- a high alert at once.
CREATE TABLE flagged_patients (
    org TEXT NOT NULL REFERENCES organisations (ods_code),
    nhs_number TEXT NOT NULL,
    reason TEXT NOT NULL,
    flagged_by TEXT NOT NULL REFERENCES people (uuid),
    flagged_at BIGINT NOT NULL,
    PRIMARY KEY (org, nhs_number)
);
CREATE INDEX flagged_patients_patient ON flagged_patients (nhs_number);
