-- Every organisation a record concerns, for scoped queries. A record names each of them in
-- its hashed entry (an `org` line): `source` is then the record itself. Records written before
-- records named all the organisations they concern get theirs from an annotation record that
-- careid appends on upgrade (`audit.annotate`, naming each record and organisation): `source`
-- is then that record. `careid audit verify` checks every row against the entry of its source
-- and every entry's organisations against the rows, so no query column lies outside the hash
-- (which is also why a row needs no foreign key: one that names a missing record is reported).
CREATE TABLE audit_orgs (
    org TEXT NOT NULL,
    seq BIGINT NOT NULL,
    source BIGINT NOT NULL,
    PRIMARY KEY (org, seq)
);
CREATE INDEX audit_orgs_source ON audit_orgs (source, seq);
INSERT INTO audit_orgs (org, seq, source) SELECT org, seq, seq FROM audit_log WHERE org IS NOT NULL;
CREATE FUNCTION audit_orgs_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_orgs is append-only';
END;
$$;
CREATE TRIGGER audit_orgs_no_change BEFORE UPDATE OR DELETE ON audit_orgs
FOR EACH ROW EXECUTE FUNCTION audit_orgs_append_only();
CREATE TRIGGER audit_orgs_no_truncate BEFORE TRUNCATE ON audit_orgs
FOR EACH STATEMENT EXECUTE FUNCTION audit_orgs_append_only();
-- The single organisation column is replaced by the table above (its index goes with it).
ALTER TABLE audit_log DROP COLUMN org;
