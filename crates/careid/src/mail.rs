//! Email out through an SMTP relay (lettre): the `Mailer` the outbox delivery uses when
//! `smtp_url` is set.

use anyhow::Context;
use async_trait::async_trait;
use careid_domain::card::OutboxMessage;
use careid_domain::ports::Mailer;
use careid_service::{RequestContext, Service};
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Sends through one SMTP relay.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the relay's credentials.
        f.debug_struct("SmtpMailer").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for the relay at `url` (`smtp://`, `smtps://`), sending as `from`.
    pub fn new(url: &str, from: &str) -> anyhow::Result<SmtpMailer> {
        // lettre's own error would repeat the URL, password included: say what is wrong instead.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|_| {
                anyhow::anyhow!(
                    "configuration: smtp_url must be smtp://[user:password@]host[:port][?tls=required] or smtps://..."
                )
            })?
            .build();
        let from = from.parse().with_context(|| format!("configuration: mail_from {from:?} is not an address"))?;
        Ok(SmtpMailer { transport, from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, message: &OutboxMessage) -> Result<(), String> {
        let to: Mailbox = message.recipient.as_str().parse().map_err(|e| format!("recipient: {e}"))?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(message.body.clone())
            .map_err(|e| format!("building the message: {e}"))?;
        self.transport.send(email).await.map(|_| ()).map_err(|e| format!("SMTP: {e}"))
    }
}

/// Delivers the outbox every `every` until the process ends.
pub async fn deliver_forever(service: Service, mailer: SmtpMailer, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match service.deliver_outbox(&RequestContext::new("outbox"), &mailer).await {
            Ok(delivery) if delivery.sent + delivery.failed > 0 => {
                tracing::info!(sent = delivery.sent, failed = delivery.failed, "outbox delivered");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "outbox delivery stopped for this round"),
        }
    }
}
