-- The OpenID Connect provider: registered clinical applications, the authorization requests
-- a card approves, the tokens issued for a session (which die with it), and the back-channel
-- logouts owed to applications when a session ends.
CREATE TABLE oidc_clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    secret_hash BLOB,
    redirect_uris TEXT NOT NULL,
    backchannel_logout_uri TEXT,
    org TEXT NOT NULL REFERENCES organisations (ods_code),
    registered_by TEXT NOT NULL REFERENCES people (uuid),
    registered_at BIGINT NOT NULL,
    disabled_at BIGINT
);

CREATE TABLE oidc_authorizations (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL REFERENCES oidc_clients (id),
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    state TEXT,
    nonce TEXT,
    code_challenge TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    session TEXT REFERENCES sessions (id),
    approved_at BIGINT,
    code_hash BLOB UNIQUE,
    code_used_at BIGINT
);
CREATE INDEX oidc_authorizations_expiry ON oidc_authorizations (expires_at);

CREATE TABLE oidc_tokens (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL REFERENCES oidc_clients (id),
    session TEXT NOT NULL REFERENCES sessions (id),
    person TEXT NOT NULL,
    authorization_id TEXT REFERENCES oidc_authorizations (id),
    scope TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX oidc_tokens_live_of_session ON oidc_tokens (session) WHERE revoked_at IS NULL;
CREATE INDEX oidc_tokens_of_authorization ON oidc_tokens (authorization_id);

CREATE TABLE oidc_logouts (
    id INTEGER PRIMARY KEY,
    client TEXT NOT NULL REFERENCES oidc_clients (id),
    uri TEXT NOT NULL,
    session TEXT NOT NULL,
    person TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    leased_until BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    UNIQUE (client, session)
);
CREATE INDEX oidc_logouts_unsent ON oidc_logouts (id) WHERE sent_at IS NULL;
