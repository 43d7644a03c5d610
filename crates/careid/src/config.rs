//! Configuration: one typed struct, read from a TOML file and overlaid by `CAREID_*`
//! environment variables. Unknown keys are refused. The reference page (`docs/config.md`) is
//! generated from the declarations below, and a test fails when it is stale.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// A URL that may carry a password (the store's, the mail relay's). Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(pub String);

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // postgres://user:password@host/db -> postgres://user:[redacted]@host/db
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let credentials = &self.0[scheme_end + 3..at];
                match credentials.split_once(':') {
                    Some((user, _)) => {
                        write!(f, "\"{}{user}:[redacted]{}\"", &self.0[..scheme_end + 3], &self.0[at..])
                    }
                    None => write!(f, "{:?}", self.0),
                }
            }
            _ => write!(f, "{:?}", self.0),
        }
    }
}

/// Environment variables that start with `CAREID_` but are not settings.
const NOT_SETTINGS: &[&str] =
    &["CAREID_CONFIG", "CAREID_SERVER", "CAREID_CLI_HOME", "CAREID_PROFILE", "CAREID_CREDENTIAL"];

macro_rules! settings {
    ($( $(#[doc = $doc:literal])+ $field:ident : $ty:ty = $default:expr ; )*) => {
        /// careid's settings.
        #[derive(Clone, Debug, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $field: $ty, )*
        }

        impl Default for Config {
            fn default() -> Config {
                Config { $( $field: $default, )* }
            }
        }

        impl Config {
            /// Each setting's name, default (as TOML) and documentation.
            pub fn reference() -> Vec<(&'static str, String, String)> {
                let defaults = Config::default();
                vec![$(
                    (
                        stringify!($field),
                        toml::Value::try_from(&defaults.$field).map(|v| v.to_string()).unwrap_or_default(),
                        [$($doc),+].iter().map(|l| l.trim()).collect::<Vec<_>>().join(" "),
                    ),
                )*]
            }
        }
    };
}

settings! {
    /// Address and port the HTTP server listens on.
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8420));
    /// Where careid keeps its files (the SQLite database by default, and later its keys).
    data_dir: PathBuf = PathBuf::from("careid-data");
    /// The store: `sqlite:PATH` (embedded, the default: `careid.db` in `data_dir`) or
    /// `postgres://user:password@host/database`. The scheme picks the backend. Empty means
    /// the default. TLS to PostgreSQL: add `?sslmode=verify-full` (the system's CAs, or
    /// `&sslrootcert=/path/ca.pem` for a private one); `sslmode=require` encrypts without
    /// checking whose server it is.
    store_url: SecretUrl = SecretUrl(String::new());
    /// PostgreSQL only: the schema careid's tables live in (empty: the server's default).
    store_schema: String = String::new();
    /// Most connections the store keeps open.
    store_max_connections: u32 = 8;
    /// PostgreSQL only: a statement running longer than this many milliseconds is cancelled
    /// (its transaction fails and changes nothing); 0 for no limit.
    store_statement_timeout_ms: u32 = 30_000;
    /// A session ends after this many seconds without a request.
    session_idle_timeout_seconds: u32 = 15 * 60;
    /// A session ends this many seconds after sign-in, whatever happens.
    session_absolute_lifetime_seconds: u32 = 12 * 60 * 60;
    /// Seconds between the heartbeats a workstation's card signs to prove it is still there.
    heartbeat_interval_seconds: u32 = 30;
    /// A card session ends when its card has proved nothing for this many seconds.
    presence_grace_seconds: u32 = 60;
    /// A card login while the same person has a live card session elsewhere: `refuse` (the
    /// default) or `end_older`.
    concurrent_login: String = "refuse".to_owned();
    /// Days the recovery credential printed by `careid init` stays valid.
    recovery_credential_days: u32 = 7;
    /// Days an interim credential issued by an RA Manager stays valid (1 to 7): it stands in
    /// for a card only until the card is issued, and a card becoming active revokes it.
    interim_credential_days: u32 = 3;
    /// The file holding the master key (64 hex digits) that seals the CA's private keys and the
    /// cards' administrative secrets. `careid init` creates it, readable by its owner only.
    /// Empty means `master.key` in `data_dir`.
    master_key_file: PathBuf = PathBuf::new();
    /// Days a card certificate lasts (2 to 3 years is usual).
    card_certificate_days: u32 = 730;
    /// The address clients reach careid at, for links inside certificates (the CRL
    /// distribution point). Empty means `http://` and `listen`.
    public_url: String = String::new();
    /// The mail relay careid sends email through (self-service unlock codes):
    /// `smtp://host:25` (plain, to a relay on the same network), `smtp://host:587?tls=required`
    /// (STARTTLS), or `smtps://host:465`; credentials as `smtp://user:password@host`. Empty means
    /// no email leaves: messages wait in the store's outbox.
    smtp_url: SecretUrl = SecretUrl(String::new());
    /// The sender of careid's email.
    mail_from: String = "careid <careid@localhost>".to_owned();
    /// The port of the workstation agent's local endpoint on 127.0.0.1 (`careid agent
    /// --local-port`), which careid's sign-in page asks for the card's approval.
    agent_port: u16 = 7390;
    /// Witnesses that cosign each audit log checkpoint (C2SP tlog-witness), separated by
    /// commas: each is `URL VKEY`, the witness's add-checkpoint URL prefix and its cosignature
    /// key (`careid audit witness` prints it). Readers can then require their cosignatures
    /// (`careid audit verify --witness VKEY`). Empty: none.
    log_witnesses: String = String::new();
    /// The origin line of the audit log's checkpoints: names this deployment's log to anyone
    /// who checks it (no spaces, no `+`). Empty means the host and path of `public_url` (or of
    /// `listen`) followed by `/log`.
    log_origin: String = String::new();
    /// Seconds between looks at the outbox for email to send.
    outbox_poll_seconds: u32 = 5;
    /// What one smartcard costs your organisation, in pence (card, reader time, postage), for
    /// the card costs report (`careid ra report card-costs`). 0 until you set it.
    card_unit_cost_pence: u32 = 0;
    /// Sign-in attempts (credential or card login, challenges, wrong-passcode reports) one
    /// address may make a minute, with bursts of half as many again; more are answered 429.
    /// The workstations of a practice often share one address, so keep it above the number
    /// of staff who sign in within a few minutes of each other.
    login_attempts_per_minute: u32 = 120;
    /// Attempts a minute on one credential, card, workstation's challenge or unlock, from any
    /// address.
    attempts_per_target_per_minute: u32 = 10;
    /// The address of the reverse proxy in front of careid, if any: its `X-Forwarded-For` then
    /// names the client for rate limits and audit, and careid may listen beyond loopback without
    /// TLS of its own (the proxy terminates TLS). Empty: no proxy.
    trusted_proxy: String = String::new();
    /// The server's TLS certificate chain (PEM, leaf first). With `tls_key_file`, `careid serve`
    /// speaks HTTPS and reads both files again on SIGHUP (a renewed certificate needs no
    /// restart). Without them careid listens on loopback only, unless `trusted_proxy` names the
    /// proxy that terminates TLS in front of it.
    tls_certificate_file: PathBuf = PathBuf::new();
    /// The private key of `tls_certificate_file` (PEM: PKCS#8, PKCS#1 or SEC1), readable by
    /// careid's user only.
    tls_key_file: PathBuf = PathBuf::new();
    /// Log filter, in `tracing` env-filter syntax (`info`, `careid=debug,sqlx=warn`).
    log: String = "info,sqlx=warn".to_owned();
}

impl Config {
    /// The rates anonymous clients are held to.
    pub fn limits(&self) -> careid_http::limit::Limits {
        let mut limits = careid_http::limit::Limits::default();
        let login = self.login_attempts_per_minute;
        limits.login_per_source = careid_http::limit::Rate::new(login, login.div_ceil(2).max(1));
        let target = self.attempts_per_target_per_minute;
        limits.per_target = careid_http::limit::Rate::new(target, target);
        limits
    }

    /// The TLS certificate and key files, if careid speaks HTTPS itself.
    pub fn tls_files(&self) -> Option<careid_http::tls::TlsFiles> {
        (!self.tls_certificate_file.as_os_str().is_empty()).then(|| careid_http::tls::TlsFiles {
            certificate: self.tls_certificate_file.clone(),
            key: self.tls_key_file.clone(),
        })
    }

    /// `https` when careid speaks TLS itself, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_files().is_some() { "https" } else { "http" }
    }

    /// The reverse proxy in front of careid, if the configuration names one.
    pub fn trusted_proxy(&self) -> anyhow::Result<Option<std::net::IpAddr>> {
        if self.trusted_proxy.trim().is_empty() {
            return Ok(None);
        }
        let address = self.trusted_proxy.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "configuration: trusted_proxy must be an IP address (like 10.0.0.5), not {:?}",
                self.trusted_proxy
            )
        })?;
        Ok(Some(address))
    }

    /// Reads the TOML file (if given), then overlays `CAREID_<SETTING>` variables from `env`.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                text.parse::<toml::Table>().with_context(|| format!("{} is not valid TOML", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(key) = name.strip_prefix("CAREID_") else { continue };
            if NOT_SETTINGS.contains(&name.as_str()) || key.starts_with("TEST_") {
                continue;
            }
            let key = key.to_ascii_lowercase();
            // Numbers and booleans as TOML reads them; anything else as a string.
            let parsed = format!("v = {value}").parse::<toml::Table>().ok().and_then(|mut t| t.remove("v"));
            let value = match parsed {
                Some(v @ (toml::Value::Integer(_) | toml::Value::Boolean(_))) => v,
                _ => toml::Value::String(value),
            };
            table.insert(key, value);
        }
        let config: Config = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            anyhow::anyhow!("configuration: {} (settings are listed in docs/config.md)", e.message())
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.session_idle_timeout_seconds == 0 || self.session_absolute_lifetime_seconds == 0 {
            bail!("configuration: session timeouts must be more than 0 seconds");
        }
        if self.heartbeat_interval_seconds == 0 || self.presence_grace_seconds <= self.heartbeat_interval_seconds {
            bail!(
                "configuration: presence_grace_seconds must be more than heartbeat_interval_seconds (and both above 0)"
            );
        }
        self.concurrent_login()?;
        if !(1..=3650).contains(&self.card_certificate_days) {
            bail!("configuration: card_certificate_days must be 1 to 3650");
        }
        if self.login_attempts_per_minute == 0 || self.attempts_per_target_per_minute == 0 {
            bail!("configuration: login_attempts_per_minute and attempts_per_target_per_minute must be at least 1");
        }
        self.trusted_proxy()?;
        if self.tls_certificate_file.as_os_str().is_empty() != self.tls_key_file.as_os_str().is_empty() {
            bail!("configuration: give tls_certificate_file and tls_key_file together, or neither");
        }
        if self.outbox_poll_seconds == 0 {
            bail!("configuration: outbox_poll_seconds must be at least 1");
        }
        if !self.smtp_url.0.is_empty() {
            crate::mail::SmtpMailer::new(&self.smtp_url.0, &self.mail_from)?;
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            bail!("configuration: log is not a valid filter ({error}); for example `info` or `careid=debug,sqlx=warn`");
        }
        if !(1..=7).contains(&self.interim_credential_days) {
            bail!("configuration: interim_credential_days must be 1 to 7");
        }
        self.log_witnesses()?;
        if self.store_max_connections == 0 {
            bail!("configuration: store_max_connections must be at least 1");
        }
        Ok(())
    }

    /// The witnesses configured to cosign checkpoints: each one's URL prefix and key.
    pub fn log_witnesses(&self) -> anyhow::Result<Vec<(String, careid_audit::witness::CosignatureVerifier)>> {
        self.log_witnesses
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (url, key) = entry
                    .split_once(' ')
                    .with_context(|| format!("configuration: log_witnesses entry {entry:?} is not `URL VKEY`"))?;
                let key = careid_audit::witness::CosignatureVerifier::parse(key.trim())
                    .with_context(|| format!("configuration: the witness key of {url}"))?;
                Ok((url.trim_end_matches('/').to_owned(), key))
            })
            .collect()
    }

    /// The store URL in effect: the configured one, or SQLite in the data directory.
    pub fn effective_store_url(&self) -> String {
        if self.store_url.0.trim().is_empty() {
            format!("sqlite://{}?mode=rwc", self.data_dir.join("careid.db").display())
        } else {
            self.store_url.0.clone()
        }
    }

    pub fn master_key_path(&self) -> PathBuf {
        if self.master_key_file.as_os_str().is_empty() {
            self.data_dir.join("master.key")
        } else {
            self.master_key_file.clone()
        }
    }

    /// Where the embedded store is at its default place (`careid-data`) but no deployment is
    /// there (no master key), and `careid demo`'s is (`careid-demo`), uses the demo's, and says so: a
    /// newcomer who ran the demo checks its log with the README's commands as they are.
    pub fn find_demo_data(&mut self) {
        let default = PathBuf::from("careid-data");
        let demo = PathBuf::from(crate::demo::DEFAULT_DATA_DIR);
        if self.data_dir == default
            && self.store_url.0.trim().is_empty()
            && !default.join("master.key").exists()
            && demo.join("master.key").exists()
        {
            eprintln!("careid: no deployment in ./careid-data; using the demo's in ./{}", demo.display());
            self.data_dir = demo;
        }
    }

    pub fn public_url(&self) -> String {
        if self.public_url.is_empty() {
            format!("{}://{}", self.scheme(), self.listen)
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }

    pub fn service_settings(&self) -> careid_service::ServiceSettings {
        careid_service::ServiceSettings {
            session_idle_timeout: time::Duration::seconds(i64::from(self.session_idle_timeout_seconds)),
            session_absolute_lifetime: time::Duration::seconds(i64::from(self.session_absolute_lifetime_seconds)),
            recovery_credential_lifetime: time::Duration::days(i64::from(self.recovery_credential_days)),
            interim_credential_lifetime: time::Duration::days(i64::from(self.interim_credential_days)),
            heartbeat_interval: time::Duration::seconds(i64::from(self.heartbeat_interval_seconds)),
            presence_grace: time::Duration::seconds(i64::from(self.presence_grace_seconds)),
            concurrent_login: self.concurrent_login().unwrap_or_default(),
            card_unit_cost_pence: u64::from(self.card_unit_cost_pence),
        }
    }

    fn concurrent_login(&self) -> anyhow::Result<careid_domain::login::ConcurrentLogin> {
        use careid_domain::login::ConcurrentLogin;
        match self.concurrent_login.as_str() {
            "refuse" => Ok(ConcurrentLogin::Refuse),
            "end_older" => Ok(ConcurrentLogin::EndOlder),
            _ => bail!("configuration: concurrent_login must be refuse or end_older"),
        }
    }

    /// The reference page, as `docs/config.md` holds it.
    pub fn reference_markdown() -> String {
        let mut out = String::from(
            "# Configuration reference\n\n\
             Generated by `careid config-reference`; a test fails when this page is stale.\n\n\
             careid reads a TOML file (`careid --config FILE`, or `CAREID_CONFIG`), then overlays \
             environment variables: each setting `name` can be set as `CAREID_NAME`. Unknown keys \
             and unknown `CAREID_*` variables are refused.\n\n\
             | setting | default | what it does |\n| --- | --- | --- |\n",
        );
        for (name, default, doc) in Config::reference() {
            out.push_str(&format!("| `{name}` | `{default}` | {doc} |\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn environment_overlays_the_file_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("careid.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nstore_max_connections = 3\n").unwrap();
        let config = Config::load(Some(&file), env(&[("CAREID_STORE_MAX_CONNECTIONS", "5"), ("HOME", "/x")])).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.store_max_connections, 5);

        let err = Config::load(None, env(&[("CAREID_LISTN", "127.0.0.1:1")])).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
        std::fs::write(&file, "colour = \"blue\"\n").unwrap();
        assert!(Config::load(Some(&file), env(&[])).unwrap_err().to_string().contains("colour"));
        assert!(Config::load(None, env(&[("CAREID_SESSION_IDLE_TIMEOUT_SECONDS", "0")])).is_err());
        // A log filter that does not parse is refused, not silently replaced.
        let refused = Config::load(None, env(&[("CAREID_LOG", "careid=loudly")])).unwrap_err().to_string();
        assert!(refused.contains("log is not a valid filter"), "{refused}");
        assert!(Config::load(None, env(&[("CAREID_INTERIM_CREDENTIAL_DAYS", "30")])).is_err());
        assert!(Config::load(None, env(&[("CAREID_LOG_WITNESSES", "http://w.example only-a-url")])).is_err());
        // Variables that are not settings are left alone.
        assert!(Config::load(None, env(&[("CAREID_TEST_POSTGRES_URL", "x"), ("CAREID_SERVER", "y")])).is_ok());
    }

    #[test]
    fn debug_hides_the_store_password() {
        let config = Config {
            store_url: SecretUrl("postgres://careid:s3cret-pw@db.example/careid".into()),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("postgres://careid:[redacted]@db.example/careid"), "{shown}");
    }

    #[test]
    fn reference_page_is_current() {
        let page = include_str!("../../../docs/config.md");
        assert_eq!(
            page,
            Config::reference_markdown(),
            "docs/config.md is stale: run `careid config-reference > docs/config.md`"
        );
    }
}
