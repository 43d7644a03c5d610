//! Delivering the outbox: the messages a use case decided to send, written in that use case's
//! transaction, leave here through a `Mailer`, each delivery audited. A sender leases what it
//! sends, so several servers on one store do not send a message twice; a failed try is retried
//! with growing pauses.

use careid_domain::audit::{Action, AuditActor};
use careid_domain::ports::Mailer;
use time::Duration;

use crate::audit_orgs::AppendAudit;
use crate::cards::mask_email;
use crate::{RaError, RequestContext, Service};

/// The label message bodies are sealed under while they wait in the outbox.
const BODY_LABEL: &[u8] = b"careid outbox message body";
/// The prefix of a sealed body (hex after it); a body without it is from an earlier version.
const SEALED: &str = "sealed:";

/// Opens a body `seal_message_body` sealed (a body from before sealing passes as it is).
pub fn open_message_body(master_key: &careid_pki::MasterKey, body: &str) -> Result<String, careid_pki::SealError> {
    let Some(sealed) = body.strip_prefix(SEALED) else { return Ok(body.to_owned()) };
    let bytes = hex::decode(sealed).map_err(|_| careid_pki::SealError::Format)?;
    let plain = master_key.unseal(BODY_LABEL, &bytes)?;
    String::from_utf8(plain.to_vec()).map_err(|_| careid_pki::SealError::Format)
}

/// How long a sender holds the messages it took before another may take them.
const LEASE: Duration = Duration::minutes(2);
/// How many messages one round takes.
const ROUND: u32 = 50;

/// What one round of delivery did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    pub sent: usize,
    pub failed: usize,
}

/// The pause after the `attempts`th failed try: 30 s, doubling, at most an hour.
pub fn retry_delay(attempts: u32) -> Duration {
    let doubled = 30i64 << attempts.saturating_sub(1).min(7);
    Duration::seconds(doubled.min(3600))
}

impl Service {
    /// A message body as the outbox keeps it: sealed under the master key's sealing key, so an
    /// unlock code is never in the database file or its write-ahead log in the clear, not even
    /// for the seconds before it is sent.
    pub(crate) fn seal_message_body(&self, body: &str) -> Result<String, RaError> {
        let sealed = self
            .card_authority()?
            .master_key
            .seal(BODY_LABEL, body.as_bytes())
            .map_err(|e| RaError::Store(careid_domain::ports::StoreError::Unavailable(e.to_string())))?;
        Ok(format!("{SEALED}{}", hex::encode(sealed)))
    }

    /// Sends what waits in the outbox through `mailer`, one round of at most 50 messages.
    pub async fn deliver_outbox(&self, ctx: &RequestContext, mailer: &dyn Mailer) -> Result<Delivery, RaError> {
        let now = self.clock.now();
        let waiting = {
            let mut tx = self.store.begin_read().await?;
            tx.outbox_waiting(now).await?
        };
        if !waiting {
            return Ok(Delivery::default());
        }
        let mut tx = self.store.begin_write().await?;
        let messages = tx.lease_unsent_messages(now, now + LEASE, ROUND).await?;
        tx.commit().await?;
        let mut delivery = Delivery::default();
        for mut message in messages {
            let result = match self.card_authority().map(|a| open_message_body(&a.master_key, &message.body)) {
                Ok(Ok(body)) => {
                    message.body = body;
                    mailer.send(&message).await
                }
                Ok(Err(error)) => Err(format!("the message's body does not open: {error}")),
                Err(error) => Err(error.to_string()),
            };
            let at = self.clock.now();
            let mut tx = self.store.begin_write().await?;
            match result {
                Ok(()) => {
                    tx.mark_message_sent(message.id, at).await?;
                    let mut event = self.event(ctx, AuditActor::system(), Action::MessageSent, "message", message.id);
                    event.detail.push(("to", mask_email(&message.recipient)));
                    event.detail.push(("subject", message.subject.clone()));
                    tx.record(&event).await?;
                    delivery.sent += 1;
                }
                Err(error) => {
                    let attempts = message.attempts + 1;
                    tx.mark_message_failed(message.id, &error, at + retry_delay(attempts)).await?;
                    tracing::warn!(message = message.id, attempts, %error, "email not sent; it will be retried");
                    delivery.failed += 1;
                }
            }
            tx.commit().await?;
        }
        Ok(delivery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_pause_longer_each_time_up_to_an_hour() {
        let pauses: Vec<i64> = (1..=9).map(|a| retry_delay(a).whole_seconds()).collect();
        assert_eq!(pauses, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }
}
