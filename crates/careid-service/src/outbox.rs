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
        for message in messages {
            let result = mailer.send(&message).await;
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
