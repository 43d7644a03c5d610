-- The organisations of one audit record, found from the record: a query narrowed by action,
-- person or card reads the newest records through their own index and checks each record's
-- organisations here, instead of gathering every record of a large organisation first.
CREATE INDEX audit_orgs_record ON audit_orgs (seq, org);
