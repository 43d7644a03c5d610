//! The `careid` binary: the composition root. It reads configuration, opens the store, wires
//! the service to the real clock and randomness, and runs the server, the demo, the RA's
//! command line and the benchmarks.

mod agent;
mod agent_local;
mod apps;
mod audit_log;
mod backchannel;
mod bench;
mod bench_audit;
mod bench_login;
mod card;
mod client;
mod config;
mod demo;
mod detect;
mod mail;
mod ra;
mod sessions;
mod witness;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use careid_domain::ports::Clock;
use careid_service::{OsRandom, Service};
use careid_store::{SqlStore, StoreOptions};
use clap::{Parser, Subcommand};

use crate::config::Config;

/// The real clock: the only place careid reads the time.
#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

#[derive(Debug, Parser)]
#[command(name = "careid", version, about = "careid: the care identity service")]
struct Cli {
    /// A TOML configuration file (see docs/config.md).
    #[arg(long, global = true, env = "CAREID_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the HTTP server.
    Serve {
        /// Address to listen on (overrides the configuration).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Creates a new deployment: the database, the RA's organisation and its first RA Manager.
    Init(InitArgs),
    /// Serves careid with a realistic demo RA area on a fresh embedded database.
    Demo(demo::DemoArgs),
    /// The Registration Authority's command line (a client of the HTTP API).
    Ra(ra::RaArgs),
    /// Clinical applications that sign in through careid's OpenID Connect provider (RA Managers).
    Client(apps::ClientArgs),
    /// Your own live sessions: list them, or end one (`careid sessions end ID`).
    Sessions(sessions::SessionsArgs),
    /// Smartcard ceremonies, run where the card is (a client of the HTTP API).
    Card(card::CardArgs),
    /// The workstation agent: logs the holder in with their card and keeps the session alive
    /// only while the card is in the reader.
    Agent(agent::AgentArgs),
    /// The audit log as a transparency log: its checkpoint and key, verifying it whole, and
    /// proofs of a record's inclusion and of the log's consistency.
    Audit(audit_log::AuditArgs),
    /// Measures careid's performance and prints the figures.
    Bench(bench::BenchArgs),
    /// Misuse detection over an organisation's own audit export (FHIR AuditEvent lines) with
    /// its staff, roster, leave and patient files: the rules careid applies live, offline.
    Detect(detect::DetectArgs),
    /// Prints the configuration reference page (docs/config.md).
    ConfigReference,
    /// Writes a consistent copy of the SQLite database, while careid serves, to a new file
    /// readable by its owner only. The master key is not in it: keep that apart. (PostgreSQL:
    /// pg_dump, see docs/operations.md.)
    Backup {
        /// The file to write; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// Moves this SQLite deployment to PostgreSQL: every record, the audit log byte for byte,
    /// into an empty database (or schema), in one transaction. Stop `careid serve` first; then
    /// point `store_url` at PostgreSQL and check with `careid audit verify`.
    Migrate {
        /// The PostgreSQL store: `postgres://user:password@host/database`.
        #[arg(long = "to")]
        to: String,
        /// The schema careid's tables go in (empty: the server's default).
        #[arg(long)]
        schema: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    /// ODS code of the RA's own organisation (for example the ICB).
    #[arg(long)]
    org_code: String,
    /// The RA organisation's name.
    #[arg(long)]
    org_name: String,
    /// icb, trust, gp_practice, pharmacy or other.
    #[arg(long, default_value = "icb")]
    org_kind: String,
    /// The first RA Manager.
    #[command(flatten)]
    manager: ra::DetailsArgs,
}

fn init_tracing(filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr, so that command output on stdout stays clean.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

/// The CA's files under the data directory.
pub(crate) fn pki_dir(config: &Config) -> PathBuf {
    config.data_dir.join("pki")
}

const PKI_FILES: [&str; 4] = ["root.der", "issuing.der", "root.key.sealed", "issuing.key.sealed"];

pub(crate) fn read_master_key(config: &Config) -> anyhow::Result<careid_pki::MasterKey> {
    let path = config.master_key_path();
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&path).with_context(|| format!("reading the master key {}", path.display()))?,
    );
    careid_pki::MasterKey::from_hex(&text).with_context(|| format!("the master key in {}", path.display()))
}

/// Creates the deployment's CA (and its master key, if none exists yet).
pub(crate) fn create_card_authority(config: &Config, deployment: &str) -> anyhow::Result<()> {
    let dir = pki_dir(config);
    if dir.join(PKI_FILES[0]).exists() {
        anyhow::bail!("{} already holds a certificate authority", dir.display());
    }
    client::private_dir(&config.data_dir)?;
    client::private_dir(&dir)?;
    let key_path = config.master_key_path();
    if !key_path.exists() {
        let hex = careid_pki::MasterKey::generate_hex()?;
        client::write_private(&key_path, format!("{}\n", hex.as_str()).as_bytes())?;
    }
    let master_key = read_master_key(config)?;
    let (_, files) = careid_pki::CertificateAuthority::create(deployment, SystemClock.now(), &master_key)?;
    let contents = [
        &files.root_certificate_der,
        &files.issuing_certificate_der,
        &files.root_key_sealed,
        &files.issuing_key_sealed,
    ];
    for (name, bytes) in PKI_FILES.iter().zip(contents) {
        client::write_private(&dir.join(name), bytes)?;
    }
    Ok(())
}

/// Loads the deployment's CA, if it has one.
pub(crate) fn load_card_authority(config: &Config) -> anyhow::Result<Option<careid_service::CardAuthority>> {
    let dir = pki_dir(config);
    if !dir.join(PKI_FILES[0]).exists() {
        return Ok(None);
    }
    let read =
        |name: &str| std::fs::read(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()));
    let files = careid_pki::CaFiles {
        root_certificate_der: read(PKI_FILES[0])?,
        issuing_certificate_der: read(PKI_FILES[1])?,
        root_key_sealed: read(PKI_FILES[2])?,
        issuing_key_sealed: read(PKI_FILES[3])?,
    };
    let master_key = read_master_key(config)?;
    let ca = careid_pki::CertificateAuthority::open(&files, &master_key)?
        .with_crl_url(format!("{}/pki/crl", config.public_url()));
    Ok(Some(careid_service::CardAuthority::new(
        ca,
        master_key,
        time::Duration::days(i64::from(config.card_certificate_days)),
    )))
}

/// Seals again, in the current format, each key file sealed in an older one (under the master
/// key itself, before sealing keys were derived with HKDF); says which.
fn reseal_key_files(config: &Config) -> anyhow::Result<()> {
    let dir = pki_dir(config);
    if !dir.join(PKI_FILES[0]).exists() {
        return Ok(());
    }
    let master_key = read_master_key(config)?;
    let files: [(&str, &[u8]); 4] = [
        (PKI_FILES[2], careid_pki::ROOT_KEY_LABEL),
        (PKI_FILES[3], careid_pki::ISSUING_KEY_LABEL),
        (OIDC_KEY_FILE, careid_pki::jws::SEAL_LABEL),
        (audit_log::LOG_KEY_FILE, audit_log::SEAL_LABEL),
    ];
    for (name, label) in files {
        let path = dir.join(name);
        let Ok(sealed) = std::fs::read(&path) else { continue };
        if careid_pki::MasterKey::is_current(&sealed) {
            continue;
        }
        let resealed = master_key.reseal(label, &sealed).with_context(|| format!("opening {}", path.display()))?;
        let fresh = path.with_extension("sealed.new");
        client::write_private(&fresh, &resealed)?;
        std::fs::rename(&fresh, &path).with_context(|| format!("replacing {}", path.display()))?;
        tracing::info!(file = %path.display(), "sealed again under a key derived with HKDF");
    }
    Ok(())
}

/// The OpenID Connect signing key's file under the CA's directory.
const OIDC_KEY_FILE: &str = "oidc.key.sealed";

/// The OpenID Connect provider, signing as `issuer`, with the deployment's token signing key
/// (created, sealed under the master key, the first time it is needed). `None` without a CA.
pub(crate) fn load_oidc(config: &Config, issuer: &str) -> anyhow::Result<Option<Arc<careid_http::Oidc>>> {
    let dir = pki_dir(config);
    if !dir.join(PKI_FILES[0]).exists() {
        return Ok(None);
    }
    let master_key = read_master_key(config)?;
    let path = dir.join(OIDC_KEY_FILE);
    let signer = if path.exists() {
        let sealed = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        careid_pki::TokenSigner::open(&master_key, &sealed).with_context(|| format!("opening {}", path.display()))?
    } else {
        let (signer, sealed) = careid_pki::TokenSigner::generate(&master_key)?;
        client::write_private(&path, &sealed)?;
        tracing::info!(kid = signer.kid(), "created the OpenID Connect signing key");
        signer
    };
    Ok(Some(Arc::new(careid_http::Oidc {
        signer,
        issuer: issuer.trim_end_matches('/').to_owned(),
        agent_port: config.agent_port,
    })))
}

/// The issuer a server on `listener` signs as: `public_url`, or the address it listens on.
pub(crate) fn issuer(config: &Config, listener: &tokio::net::TcpListener) -> anyhow::Result<String> {
    Ok(if config.public_url.is_empty() {
        format!("{}://{}", config.scheme(), listener.local_addr()?)
    } else {
        config.public_url()
    })
}

/// The database file of a SQLite store URL (`sqlite://PATH?options`, `sqlite:PATH`); `None`
/// for PostgreSQL or an in-memory database.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Opens the configured store and builds the service on it.
pub async fn open_service(config: &Config) -> anyhow::Result<(SqlStore, Service)> {
    let url = config.effective_store_url();
    let database = sqlite_file(&url);
    if let Some(file) = &database {
        // The database holds identity documents, absences and every login: the data directory
        // and every file in it are the owner's alone, whatever the umask. SQLite gives its
        // write-ahead log and shared-memory files the database file's own permissions.
        client::private_dir(&config.data_dir)?;
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            client::private_dir(dir)?;
        }
        if !file.exists() {
            client::write_private(file, b"")?;
        }
    }
    let mut options = StoreOptions::new(url);
    options.max_connections = config.store_max_connections;
    options.statement_timeout_ms = config.store_statement_timeout_ms;
    options.schema = Some(config.store_schema.clone()).filter(|s| !s.is_empty());
    let store = SqlStore::open(&options).await.context("opening the store")?;
    if let Some(file) = &database {
        for suffix in ["", "-wal", "-shm"] {
            let path = PathBuf::from(format!("{}{suffix}", file.display()));
            if path.exists() {
                client::owner_only(&path, 0o600)?;
            }
        }
    }
    let mut service =
        Service::new(Arc::new(store.clone()), Arc::new(SystemClock), Arc::new(OsRandom), config.service_settings());
    if let Some(authority) = load_card_authority(config)? {
        service = service.with_card_authority(authority);
    } else {
        tracing::warn!("no certificate authority in the data directory: card operations are refused");
    }
    Ok((store, service))
}

/// How often the server looks for sessions whose card stopped proving its presence.
const SESSION_SWEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Ends lapsed sessions for as long as the server runs; requests with a lapsed session's token
/// are refused in any case (fail closed), this makes the ending visible within seconds. Each
/// round also records the counts of repeated refusals whose window has closed.
async fn end_lapsed_sessions_forever(service: Service) {
    let mut tick = tokio::time::interval(SESSION_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match service.end_lapsed_sessions(&careid_service::RequestContext::new("session-sweep")).await {
            Ok(0) => {}
            Ok(ended) => tracing::info!(ended, "lapsed sessions ended"),
            Err(error) => tracing::warn!(%error, "session sweep failed this round"),
        }
        if let Err(error) =
            service.record_repeated_refusals(&careid_service::RequestContext::new("refusal-count")).await
        {
            tracing::warn!(%error, "counts of repeated refusals not recorded this round");
        }
    }
}

/// Reads the TLS certificate and key again on each SIGHUP; a bad pair is reported and the
/// certificate in use stays.
async fn reload_on_hangup(certificate: std::sync::Arc<careid_http::tls::ServerCertificate>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("no SIGHUP handler: the TLS certificate is read at start only");
            return;
        };
        while hangups.recv().await.is_some() {
            match certificate.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(error) => tracing::error!(%error, "TLS certificate not reloaded; the one in use stays"),
            }
        }
    }
    #[cfg(not(unix))]
    drop(certificate);
}

/// Refuses to serve identity data in clear beyond this machine: off loopback, careid speaks
/// TLS itself or sits behind the proxy the configuration names.
fn check_transport(config: &Config, address: std::net::SocketAddr) -> anyhow::Result<()> {
    if address.ip().is_loopback() || config.tls_files().is_some() || config.trusted_proxy()?.is_some() {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to listen on {address} without TLS: careid would carry sign-ins and identity data in clear. \
         Give tls_certificate_file and tls_key_file, or name the TLS-terminating proxy in front (trusted_proxy)"
    )
}

/// Ctrl-C, or on Unix SIGTERM: either stops the server the same orderly way.
async fn stop_signal() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serves until Ctrl-C or SIGTERM (a service manager stopping it), with the OpenID Connect
/// provider when the deployment has a CA.
pub async fn serve(listener: tokio::net::TcpListener, service: Service, config: &Config) -> anyhow::Result<()> {
    serve_with_limits(listener, service, config, config.limits()).await
}

/// `serve`, holding anonymous clients to `limits` instead of the configured ones (benchmarks).
pub(crate) async fn serve_with_limits(
    listener: tokio::net::TcpListener,
    service: Service,
    config: &Config,
    limits: careid_http::limit::Limits,
) -> anyhow::Result<()> {
    // Records of an earlier version that did not name every organisation they concern are
    // annotated before anyone reads the log through a scoped query.
    let annotated = service.annotate_audit_orgs().await.context("annotating the audit log's organisations")?;
    if annotated > 0 {
        tracing::info!(records = annotated, "gave earlier audit records the organisations they concern");
    }
    reseal_key_files(config)?;
    let resealing = service.clone();
    tokio::spawn(async move {
        match resealing.reseal_card_secrets(&careid_service::RequestContext::new("reseal"), 500).await {
            Ok(0) => {}
            Ok(cards) => tracing::info!(cards, "card secrets sealed again under a key derived with HKDF"),
            Err(error) => tracing::error!(%error, "card secrets not sealed again; they still open"),
        }
    });
    let sweeper = tokio::spawn(end_lapsed_sessions_forever(service.clone()));
    let mut app = careid_http::App::new(service.clone())
        .with_limits(limits)
        .behind_proxy(config.trusted_proxy()?)
        .with_secure_cookies(config.public_url().starts_with("https://"));
    let mut logouts = None;
    let listening = issuer(config, &listener)?;
    let mut integrator = None;
    if let Some(signer) = audit_log::load_log_signer(config, &audit_log::log_origin(config))? {
        app = app.with_log_key(signer.verifier_key());
        let witnesses = config.log_witnesses()?;
        integrator = Some(tokio::spawn(audit_log::integrate_forever(service.clone(), Arc::new(signer), witnesses)));
    }
    if let Some(oidc) = load_oidc(config, &listening)? {
        let sender = backchannel::HttpLogoutSender::new(oidc.clone())?;
        logouts = Some(tokio::spawn(backchannel::deliver_forever(service, sender)));
        app = app.with_oidc(oidc);
    }
    let shutdown = async {
        stop_signal().await;
        tracing::info!("shutting down");
    };
    let served = match config.tls_files() {
        Some(files) => {
            let certificate =
                careid_http::tls::ServerCertificate::load(files).map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
            let reloads = tokio::spawn(reload_on_hangup(certificate.clone()));
            let served = careid_http::serve_tls(listener, &certificate, app, shutdown).await.context("serving");
            reloads.abort();
            served
        }
        None => careid_http::serve(listener, app, shutdown).await.context("serving"),
    };
    sweeper.abort();
    for task in [logouts, integrator].into_iter().flatten() {
        task.abort();
    }
    served
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
    init_tracing(&config.log);
    if matches!(cli.command, Command::Audit(_) | Command::Backup { .. } | Command::Migrate { .. }) {
        config.find_demo_data();
    }
    match cli.command {
        Command::Serve { listen } => {
            let (store, service) = open_service(&config).await?;
            // A server on a data directory (or database) with no deployment would serve a new,
            // empty one: most likely the wrong directory, so say so instead.
            if careid_domain::ports::Store::begin_read(&store).await?.audit_range(0, 1).await?.is_empty() {
                anyhow::bail!(
                    "no careid deployment in {} (store: {}): run `careid init` first, or point --config or \
                     CAREID_DATA_DIR at the deployment's data directory",
                    config.data_dir.display(),
                    service.store().backend()
                );
            }
            let address = listen.unwrap_or(config.listen);
            check_transport(&config, address)?;
            let listener =
                tokio::net::TcpListener::bind(address).await.with_context(|| format!("listening on {address}"))?;
            eprintln!(
                "careid serving on {}://{} (store: {})",
                config.scheme(),
                listener.local_addr()?,
                service.store().backend()
            );
            if config.smtp_url.0.is_empty() {
                tracing::info!("no smtp_url: email waits in the outbox");
            } else {
                let mailer = mail::SmtpMailer::new(&config.smtp_url.0, &config.mail_from)?;
                let every = std::time::Duration::from_secs(u64::from(config.outbox_poll_seconds));
                tokio::spawn(mail::deliver_forever(service.clone(), mailer, every));
            }
            let served = serve(listener, service, &config).await;
            store.checkpoint_wal().await;
            served
        }
        Command::Init(args) => init(&config, args).await,
        Command::Demo(args) => demo::run(config, args).await,
        // Without --server, a client talks to the server the configuration describes.
        Command::Ra(args) => ra::run(args, config.public_url()).await,
        Command::Client(args) => apps::run(args).await,
        Command::Sessions(args) => sessions::run(args).await,
        Command::Card(args) => card::run(args, config.public_url()).await,
        Command::Agent(args) => agent::run(args, config.public_url()).await,
        Command::Bench(args) => bench::run(args, config).await,
        Command::Detect(args) => detect::run(&args),
        Command::Audit(args) => audit_log::run(&config, args).await,
        Command::Backup { out } => {
            anyhow::ensure!(!out.exists(), "{} already exists: name a new file", out.display());
            let (store, _) = open_service(&config).await?;
            client::write_private(&out, b"")?;
            if let Err(error) = store.backup_to(&out).await {
                let _ = std::fs::remove_file(&out);
                return Err(error.into());
            }
            println!(
                "backed up to {}\ncheck it with: CAREID_STORE_URL=sqlite:{} careid audit verify",
                out.display(),
                out.display()
            );
            Ok(())
        }
        Command::Migrate { to, schema } => {
            anyhow::ensure!(to.starts_with("postgres"), "--to must be a postgres:// URL");
            let (store, _) = open_service(&config).await?;
            let mut options = careid_store::StoreOptions::new(to);
            options.schema = schema;
            let target = careid_store::SqlStore::open(&options).await.context("opening the PostgreSQL store")?;
            let copied = store.copy_to_postgres(&target).await?;
            target.close().await;
            for (table, rows) in &copied {
                println!("{table:>20}: {rows} rows");
            }
            let records = copied.iter().find(|(t, _)| *t == "audit_log").map_or(0, |(_, n)| *n);
            println!(
                "moved; the audit log's {records} records verify with `careid audit verify` once store_url names it"
            );
            Ok(())
        }
        Command::ConfigReference => {
            print!("{}", Config::reference_markdown());
            Ok(())
        }
    }
}

async fn init(config: &Config, args: InitArgs) -> anyhow::Result<()> {
    use careid_domain::ids::OdsCode;
    use careid_domain::model::{Organisation, OrganisationKind, parse_organisation_name};
    let (manager, contact) = args.manager.parse()?;
    let init = careid_service::InitDeployment {
        org: Organisation {
            ods_code: OdsCode::parse(&args.org_code)?,
            name: parse_organisation_name(&args.org_name)?,
            kind: OrganisationKind::parse(&args.org_kind)?,
            parent: None,
        },
        manager,
        contact,
    };
    create_card_authority(config, &args.org_name)?;
    let (_store, service) = open_service(config).await?;
    let outcome = service.init_deployment(&careid_service::RequestContext::new("init"), init).await?;
    println!("careid initialised: store {}", service.store().backend());
    println!(
        "certificate authority in {}, its keys sealed under {}",
        pki_dir(config).display(),
        config.master_key_path().display()
    );
    println!("first RA Manager: {}", outcome.manager);
    println!();
    println!("Recovery credential (shown once; valid until {}):", careid_audit::format_time(outcome.expires_at));
    println!("  {}", outcome.recovery_credential.expose());
    println!();
    println!("Start the server with `careid serve`, then sign in:");
    println!("  careid ra login ra-manager --credential <the credential above>");
    println!("Every use of the recovery credential is audited and flagged.");
    Ok(())
}

/// `careid ra audit | head -1`: when the reader of standard output goes away, stop quietly
/// as other command-line tools do (the exit status a SIGPIPE would give), instead of the
/// panic `println!` raises on a broken pipe.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> std::process::ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("careid: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("careid: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
