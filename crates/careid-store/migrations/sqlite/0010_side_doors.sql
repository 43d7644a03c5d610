-- Closing the side doors around cards and sessions.
-- An interim credential stops working when its holder's card becomes active, when a newer one
-- replaces it, and when the profile closes: it is revoked, not deleted, so its use stays
-- explainable.
ALTER TABLE credentials ADD COLUMN revoked_at BIGINT;
CREATE INDEX credentials_person ON credentials (person);
-- "No new card while a lost or stolen card is under investigation" reads a person's open
-- investigations on every path that issues a card, key or certificate.
CREATE INDEX incidents_subject ON incidents (subject) WHERE closed_at IS NULL;
-- A leaver's or a closed profile's pending requests are withdrawn in the same transaction.
CREATE INDEX requests_pending_of_person ON requests (person) WHERE status = 'pending';
