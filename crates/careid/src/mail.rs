//! Email out: through an SMTP relay (lettre) when `smtp_url` is set, or, for the demo, into
//! a mailbox directory of plain files the demo names (one file per recipient).

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

/// The demo's mailbox: each message is appended to `<dir>/<recipient>.txt`, readable by the
/// demo's user only, so that a holder's self-service unlock code can be read and typed.
#[derive(Debug, Clone)]
pub struct MailboxDir {
    dir: std::path::PathBuf,
}

impl MailboxDir {
    pub fn new(dir: &std::path::Path) -> anyhow::Result<MailboxDir> {
        crate::client::private_dir(dir)?;
        Ok(MailboxDir { dir: dir.to_owned() })
    }

    /// The file a recipient's messages are appended to.
    pub fn file_of(&self, recipient: &str) -> std::path::PathBuf {
        let name: String = recipient
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_') { c } else { '_' })
            .collect();
        self.dir.join(format!("{name}.txt"))
    }
}

#[async_trait]
impl Mailer for MailboxDir {
    async fn send(&self, message: &OutboxMessage) -> Result<(), String> {
        use std::io::Write;
        let file = self.file_of(message.recipient.as_str());
        let text = format!(
            "To: {}\nSubject: {}\n\n{}\n\n",
            message.recipient.as_str(),
            message.subject,
            message.body.trim_end()
        );
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options.open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        out.write_all(text.as_bytes()).map_err(|e| format!("{}: {e}", file.display()))
    }
}

/// Delivers the outbox every `every` until the process ends.
pub async fn deliver_forever<M: Mailer>(service: Service, mailer: M, every: std::time::Duration) {
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
