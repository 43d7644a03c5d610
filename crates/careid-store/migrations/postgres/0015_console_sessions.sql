-- Web console sign-ins: the browser keeps a secret whose hash names the row; a card session
-- approved it, and the console acts only while that card session lives.
CREATE TABLE console_sessions (
    id TEXT PRIMARY KEY,
    session TEXT NOT NULL REFERENCES sessions (id),
    person TEXT NOT NULL REFERENCES people (uuid),
    signed_in_at BIGINT NOT NULL,
    ended_at BIGINT
);
CREATE INDEX console_sessions_session ON console_sessions (session);
