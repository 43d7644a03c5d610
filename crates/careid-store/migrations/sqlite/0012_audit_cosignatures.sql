-- Cosignatures that witnesses (C2SP tlog-witness) returned for the log's checkpoints: each is a
-- note signature line over the checkpoint of that size, served with it at /log/checkpoint so
-- that readers can require them. Like checkpoints they are not records of the log: they sign it.
CREATE TABLE audit_cosignatures (
    size BIGINT NOT NULL,
    witness TEXT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (size, witness)
);
