//! The `careid` binary: the composition root. It reads configuration, opens the store, wires
//! the service to the real clock and randomness, and runs the server, the demo, the RA's
//! command line and the benchmarks.

mod bench;
mod client;
mod config;
mod demo;
mod ra;

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
    /// Measures careid's performance and prints the figures.
    Bench(bench::BenchArgs),
    /// Prints the configuration reference page (docs/config.md).
    ConfigReference,
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    /// ODS code of the RA's own organisation (for example the ICB).
    #[arg(long)]
    org_code: String,
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

/// Opens the configured store and builds the service on it.
pub async fn open_service(config: &Config) -> anyhow::Result<(SqlStore, Service)> {
    let url = config.effective_store_url();
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    }
    let mut options = StoreOptions::new(url);
    options.max_connections = config.store_max_connections;
    options.schema = Some(config.store_schema.clone()).filter(|s| !s.is_empty());
    let store = SqlStore::open(&options).await.context("opening the store")?;
    let service =
        Service::new(Arc::new(store.clone()), Arc::new(SystemClock), Arc::new(OsRandom), config.service_settings());
    Ok((store, service))
}

/// Serves until Ctrl-C.
pub async fn serve(listener: tokio::net::TcpListener, service: Service) -> anyhow::Result<()> {
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    careid_http::serve(listener, careid_http::App::new(service), shutdown).await.context("serving")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref(), std::env::vars())?;
    init_tracing(&config.log);
    match cli.command {
        Command::Serve { listen } => {
            let (_store, service) = open_service(&config).await?;
            let address = listen.unwrap_or(config.listen);
            let listener =
                tokio::net::TcpListener::bind(address).await.with_context(|| format!("listening on {address}"))?;
            eprintln!("careid serving on http://{} (store: {})", listener.local_addr()?, service.store().backend());
            serve(listener, service).await
        }
        Command::Init(args) => init(&config, args).await,
        Command::Demo(args) => demo::run(config, args).await,
        Command::Ra(args) => ra::run(args).await,
        Command::Bench(args) => bench::run(args).await,
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
    let (_store, service) = open_service(config).await?;
    let outcome = service.init_deployment(&careid_service::RequestContext::new("init"), init).await?;
    println!("careid initialised: store {}", service.store().backend());
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

fn main() -> std::process::ExitCode {
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
