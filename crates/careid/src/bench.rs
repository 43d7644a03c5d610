//! `careid bench ...`: performance figures, printed. Benchmarks, not tests: this machine is
//! shared and noisy, so each figure is printed beside a baseline measured in the same run.

use careid_domain::ids::DisplayText;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use careid_domain::access::{Actor, RaAction};
use careid_domain::ids::{NamePart, OdsCode, PersonUuid, RoleTriple};
use careid_domain::model::{
    ContactDetails, NewPosition, Organisation, OrganisationKind, PersonalDetails, PositionApproval,
};
use careid_service::{ImportPerson, InitDeployment, OsRandom, RequestContext, Service, ServiceSettings};
use careid_store::{SqlStore, StoreOptions};
use clap::{Args, Subcommand};

use crate::SystemClock;
use crate::demo::demo_ni_number;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Registration Authority: bulk import, person lookup and permission checks.
    Ra {
        /// People to import into SQLite.
        #[arg(long, default_value_t = 1_200_000)]
        people: usize,
        /// People to import into PostgreSQL (when a URL is given).
        #[arg(long, default_value_t = 200_000)]
        postgres_people: usize,
        /// PostgreSQL URL; a fresh schema is created and dropped.
        #[arg(long, env = "CAREID_TEST_POSTGRES_URL")]
        postgres_url: Option<String>,
        /// Lookups and permission checks to time.
        #[arg(long, default_value_t = 20_000)]
        samples: usize,
    },
    /// Certificate authority: card certificates issued per second and CRL generation, beside
    /// the raw ECDSA P-256 signing rate.
    Pki {
        /// Certificates to issue.
        #[arg(long, default_value_t = 20_000)]
        certificates: usize,
        /// Revoked certificates in the CRL.
        #[arg(long, default_value_t = 100_000)]
        revoked: usize,
    },
    /// The audit log: durable appends with group commit, append latency, the tree following,
    /// verification rate, inclusion proofs in a large tree, beside raw SHA-256 and SQLite.
    Audit {
        /// Records appended in batches (a tenth of them one a transaction).
        #[arg(long, default_value_t = 500_000)]
        records: usize,
        /// Writers at once.
        #[arg(long, default_value_t = 64)]
        writers: usize,
        /// Records a transaction in the batched run (an application's report).
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Records in the tree the inclusion proofs are timed in.
        #[arg(long, default_value_t = 10_000_000)]
        proof_records: u64,
        /// PostgreSQL URL for the same appends; a fresh schema is created and dropped.
        #[arg(long, env = "CAREID_TEST_POSTGRES_URL")]
        postgres_url: Option<String>,
    },
    /// Card login over HTTP: logins, heartbeats and token exchanges per second with many
    /// virtual cards, beside the raw P-256 verification rate.
    Login {
        /// Virtual cards (each logs in once).
        #[arg(long, default_value_t = 2_000)]
        cards: usize,
        /// Heartbeats each card signs.
        #[arg(long, default_value_t = 5)]
        heartbeats: usize,
        /// Agents working at once.
        #[arg(long, default_value_t = 64)]
        workers: usize,
        /// `careid` server processes on the one store; requests go to each in turn (a session
        /// started on one heartbeats on the next). More than one needs PostgreSQL.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// Run the servers on PostgreSQL (a fresh schema, dropped after) instead of SQLite.
        #[arg(long)]
        postgres_url: Option<String>,
        /// People without cards imported beside the card holders, so that the servers' memory
        /// is measured over a national store (1,200,000).
        #[arg(long, default_value_t = 0)]
        people: usize,
    },
    /// One server process of `careid bench login`, with no rate limits (its one client sends
    /// thousands of logins a second from one address); prints the URL it serves.
    #[command(hide = true)]
    Node,
    /// The web console: each page's time at the server with the RA Manager signed in, over a
    /// store of `people` people (SQLite), beside a `/healthz` round trip in the same run.
    Console {
        /// People in the store.
        #[arg(long, default_value_t = 1_200_000)]
        people: usize,
        /// Requests timed for each page.
        #[arg(long, default_value_t = 200)]
        samples: usize,
    },
    /// Offline misuse detection: a synthetic month with planted cases, generated and run
    /// through `careid detect`, beside raw JSON parsing of the same file; recall and false
    /// alerts scored.
    Detect {
        /// Staff in the month (11,000 make about 10 million events).
        #[arg(long, default_value_t = 11_000)]
        staff: usize,
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long, default_value_t = 17)]
        seed: u64,
        /// Keep the generated files in this folder (otherwise a temporary one, removed).
        #[arg(long)]
        keep: Option<std::path::PathBuf>,
    },
}

pub async fn run(args: BenchArgs, config: crate::config::Config) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Ra { people, postgres_people, postgres_url, samples } => {
            let dir = tempfile_dir()?;
            let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
            println!("careid bench ra: SQLite ({people} people)");
            bench_ra(StoreOptions::new(url), people, samples).await?;
            if let Some(url) = postgres_url {
                println!("\ncareid bench ra: PostgreSQL ({postgres_people} people)");
                let mut options = StoreOptions::new(url);
                options.schema = Some(format!("careid_bench_{}", std::process::id()));
                bench_ra(options.clone(), postgres_people, samples).await?;
                drop_schema(&options).await?;
            }
            let _ = std::fs::remove_dir_all(&dir);
            Ok(())
        }
        BenchCommand::Audit { records, writers, batch, proof_records, postgres_url } => {
            crate::bench_audit::bench_audit(records, writers, batch.max(1), proof_records.max(1), postgres_url).await
        }
        BenchCommand::Console { people, samples } => bench_console(people, samples.max(1)).await,
        BenchCommand::Detect { staff, days, seed, keep } => crate::detect::bench(staff, days, seed, keep.as_deref()),
        BenchCommand::Login { cards, heartbeats, workers, nodes, postgres_url, people } => {
            let store = crate::bench_login::BenchStore { nodes: nodes.max(1), postgres_url, people };
            crate::bench_login::bench_login(cards, heartbeats, workers, store).await
        }
        BenchCommand::Node => crate::bench_login::node(config).await,
        BenchCommand::Pki { certificates, revoked } => {
            bench_pki(certificates, revoked)?;
            bench_card_issue(certificates.min(5_000)).await
        }
    }
}

/// Signatures per second of raw ECDSA P-256 (ring) over 32-byte messages, for about a second.
fn raw_p256_signing_rate() -> anyhow::Result<f64> {
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).map_err(|_| anyhow::anyhow!("keygen"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("key"))?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        for i in 0..100u64 {
            key.sign(&rng, &(n + i).to_le_bytes()).map_err(|_| anyhow::anyhow!("sign"))?;
        }
        n += 100;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

fn bench_pki(certificates: usize, revoked: usize) -> anyhow::Result<()> {
    use careid_domain::card::{CardSerial, RevocationReason};
    use careid_pki::{CardCertificateRequest, CertificateAuthority, MasterKey, Revoked};
    use rcgen::PublicKeyData;

    println!("careid bench pki");
    let raw = raw_p256_signing_rate()?;
    println!("  baseline: raw ECDSA P-256 signatures      {raw:>10.0} /s");
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let master = MasterKey::from_hex(&MasterKey::generate_hex()?)?;
    let (ca, _) = CertificateAuthority::create("careid bench", now, &master)?;
    let card_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let public_key = card_key.subject_public_key_info();
    let person = PersonUuid::from_serial(PersonUuid::FIRST_SERIAL)?;
    let card = CardSerial::parse("BENCH0001")?;
    let started = Instant::now();
    for i in 0..certificates {
        let serial = (i as u64 + 1).to_be_bytes();
        ca.issue_card_certificate(&CardCertificateRequest {
            public_key_der: &public_key,
            person: &person,
            card: &card,
            serial: &serial,
            not_before: now,
            not_after: now + time::Duration::days(730),
        })?;
    }
    let rate = certificates as f64 / started.elapsed().as_secs_f64();
    println!(
        "  card certificates built and signed       {rate:>10.0} /s   ({:.2} of the raw signing rate; target >= 2,000/s)",
        rate / raw
    );
    let list: Vec<Revoked> = (0..revoked)
        .map(|i| Revoked {
            serial: (i as u64 + 1).to_be_bytes().to_vec(),
            at: now,
            reason: if i % 3 == 0 { RevocationReason::KeyCompromise } else { RevocationReason::Superseded },
        })
        .collect();
    let started = Instant::now();
    let crl = ca.crl(&list, 1, now, now + time::Duration::days(1))?;
    let elapsed = started.elapsed();
    println!(
        "  CRL with {revoked} revoked certificates    {:>10.1} ms   ({} bytes; target < 1 s)",
        elapsed.as_secs_f64() * 1e3,
        crl.len()
    );
    Ok(())
}

/// Concurrent issuers in the card issue benchmark.
const DESKS: usize = 32;

fn bench_event(n: usize) -> careid_domain::audit::AuditEvent {
    careid_domain::audit::AuditEvent {
        at: careid_domain::ports::Clock::now(&SystemClock),
        request_id: format!("bench-{n}"),
        actor: careid_domain::audit::AuditActor::system(),
        action: careid_domain::audit::Action::CardCertify,
        subject_kind: "card",
        subject_id: n.to_string(),
        subject_person: None,
        orgs: Vec::new(),
        outcome: careid_domain::audit::Outcome::Success,
        detail: Vec::new(),
        workstation: None,
    }
}

/// Card certificates issued through the service on SQLite: build, sign, store and audit in one
/// durable transaction each (`certify_card`), beside a durable empty write in the same store.
async fn bench_card_issue(cards: usize) -> anyhow::Result<()> {
    use careid_domain::card::CardSerial;
    use careid_pki::BoxRecipient;
    use rcgen::PublicKeyData;

    let dir = tempfile_dir()?;
    let (store, service, manager, uuids) = card_holders(&dir, "Card", cards).await?;
    let ctx = RequestContext::new("bench");
    let mut card_ids = Vec::with_capacity(cards);
    for (i, uuid) in uuids.iter().enumerate() {
        let recipient = BoxRecipient::new()?;
        let serial = CardSerial::parse(&format!("BENCH{i:08}"))?;
        card_ids.push(service.begin_card_issue(&ctx, &manager, uuid, serial, recipient.public_key()).await?.0);
    }
    let public_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?.subject_public_key_info();

    // Baseline: durable transactions that only append one audit record, one at a time: one
    // fsync each, the floor for any audited change made alone.
    let started = Instant::now();
    for n in 0..cards {
        let mut tx = service.store().begin_write().await?;
        tx.append_audit(&bench_event(n)).await?;
        tx.commit().await?;
    }
    let floor_rate = cards as f64 / started.elapsed().as_secs_f64();
    println!("  baseline: durable commits of one audit record, one at a time (SQLite)  {floor_rate:>10.0} /s");

    // Issue from many RA desks at once: each certify_card is its own durable transaction,
    // acknowledged only once committed; concurrent ones share an fsync (group commit).
    let (alone, together) = card_ids.split_at(cards / 5);
    let started = Instant::now();
    for id in alone {
        service.certify_card(&ctx, &manager, *id, &public_key).await?;
    }
    let one_rate = alone.len() as f64 / started.elapsed().as_secs_f64();
    println!(
        "  card certificates issued one at a time, build + sign + store + audit  {one_rate:>10.0} /s   ({:.2} of the floor)",
        one_rate / floor_rate
    );
    let started = Instant::now();
    let mut desks = tokio::task::JoinSet::new();
    for chunk in together.chunks(together.len().div_ceil(DESKS)) {
        let (service, ctx, manager, public_key, chunk) =
            (service.clone(), ctx.clone(), manager.clone(), public_key.clone(), chunk.to_vec());
        desks.spawn(async move {
            for id in chunk {
                service.certify_card(&ctx, &manager, id, &public_key).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(desk) = desks.join_next().await {
        desk??;
    }
    let rate = together.len() as f64 / started.elapsed().as_secs_f64();
    println!(
        "  card certificates issued from {DESKS} desks at once (group commit)         {rate:>10.0} /s   ({:.2} of the floor; target >= 2,000/s)",
        rate / floor_rate
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

pub(crate) fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("careid-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

pub(crate) async fn drop_schema(options: &StoreOptions) -> anyhow::Result<()> {
    let Some(schema) = &options.schema else { return Ok(()) };
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&options.url).await?;
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await?;
    Ok(())
}

/// Runs `work` for every item from `workers` tasks at once; the rate and each item's latency.
pub(crate) async fn drive<T, F, Fut>(items: Vec<T>, workers: usize, work: F) -> anyhow::Result<(f64, Vec<Duration>)>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let count = items.len();
    let queue = Arc::new(std::sync::Mutex::new(items));
    let work = Arc::new(work);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (queue, work) = (queue.clone(), work.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let item = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
                let Some(item) = item else { break };
                let began = Instant::now();
                work(item).await?;
                latencies.push(began.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok((rate, latencies))
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    println!(
        "  {name:<34} p50 {:>8.1} µs   p99 {:>8.1} µs   ({} samples)",
        percentile(&samples, 0.50).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}

const BATCH: usize = 20_000;
const FAMILY: &[&str] = &["Smith", "Jones", "Patel", "Khan", "Brown", "Taylor", "Evans", "Wilson"];

pub(crate) fn bench_details(given: &str, family: &str, n: u64) -> anyhow::Result<PersonalDetails> {
    Ok(PersonalDetails {
        title: None,
        given_name: NamePart::parse("given_name", given)?,
        family_name: NamePart::parse("family_name", family)?,
        date_of_birth: time::Date::from_calendar_date(1960 + (n % 40) as i32, time::Month::March, 1 + (n % 28) as u8)?,
        ni_number: demo_ni_number(n),
    })
}

/// A deployment for card benchmarks in `dir`: a store, a CA, an RA Manager and `count` people
/// (given name `given`) in one position.
pub(crate) async fn card_holders(
    dir: &std::path::Path,
    given: &str,
    count: usize,
) -> anyhow::Result<(SqlStore, Service, Actor, Vec<PersonUuid>)> {
    use careid_pki::{CertificateAuthority, MasterKey};
    let url = format!("sqlite://{}?mode=rwc", dir.join(format!("{}.db", given.to_lowercase())).display());
    let store = SqlStore::open(&StoreOptions::new(url)).await?;
    let master_key = MasterKey::from_hex(&MasterKey::generate_hex()?)?;
    let (ca, _) =
        CertificateAuthority::create("careid bench", careid_domain::ports::Clock::now(&SystemClock), &master_key)?;
    let authority = careid_service::CardAuthority::new(ca, master_key, time::Duration::days(730));
    let service =
        Service::new(Arc::new(store.clone()), Arc::new(SystemClock), Arc::new(OsRandom), ServiceSettings::default())
            .with_card_authority(authority);
    let (manager, _, uuids) = people_in_one_position(&service, given, count).await?;
    Ok((store, service, manager, uuids))
}

/// A bench deployment on `service` with `count` people in one position; its RA Manager, the
/// position and the people.
pub(crate) async fn people_in_one_position(
    service: &Service,
    given: &str,
    count: usize,
) -> anyhow::Result<(Actor, careid_domain::ids::PositionId, Vec<PersonUuid>)> {
    let (manager, position, _) = bench_deployment(service).await?;
    let start = time::Date::from_calendar_date(2024, time::Month::January, 1)?;
    let people = (0..count)
        .map(|i| {
            let n = i as u64 + 1;
            Ok(ImportPerson {
                details: bench_details(given, &format!("Holder{n}"), n)?,
                contact: ContactDetails::default(),
                position,
                start,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let uuids = service.import_people(&RequestContext::new("bench"), &manager, people).await?;
    Ok((manager, position, uuids))
}

/// A deployment with one practice and one position; returns its RA Manager and the position.
/// A deployment for benchmarks: the RA Manager (signed in) and the recovery credential they
/// signed in with, and a practice with one position.
pub(crate) async fn bench_deployment(
    service: &Service,
) -> anyhow::Result<(Actor, careid_domain::ids::PositionId, careid_domain::secret::Secret)> {
    let ctx = RequestContext::new("bench");
    let details = bench_details;
    let icb = OdsCode::parse("QBENCH")?;
    let init = service
        .init_deployment(
            &ctx,
            InitDeployment {
                org: Organisation {
                    ods_code: icb.clone(),
                    name: DisplayText::sanitised("Bench ICB"),
                    kind: OrganisationKind::IntegratedCareBoard,
                    parent: None,
                },
                manager: details("Bench", "Manager", 999_999_999)?,
                contact: ContactDetails::default(),
            },
        )
        .await?;
    let manager: Actor = service.login(&ctx, &init.recovery_credential, None).await?.actor;
    let practice = OdsCode::parse("B81001")?;
    service
        .create_organisation(
            &ctx,
            &manager,
            Organisation {
                ods_code: practice.clone(),
                name: DisplayText::sanitised("Bench Practice"),
                kind: OrganisationKind::GpPractice,
                parent: Some(icb),
            },
        )
        .await?;
    let position = service
        .create_position(
            &ctx,
            &manager,
            NewPosition {
                org: practice,
                name: DisplayText::sanitised("Receptionist"),
                role: RoleTriple::parse("S0080:G0440:R8009")?,
                activities: Vec::new(),
                description: String::new(),
                approval: PositionApproval {
                    approved_by: DisplayText::sanitised("bench"),
                    how: DisplayText::sanitised("bench"),
                },
                assignable_by_sponsors: true,
            },
        )
        .await?;
    Ok((manager, position, init.recovery_credential))
}

/// Imports `people` people at `position` in batches; their identifiers, and the time spent
/// building the batches (not careid's).
/// Imports `people` made-up people into `position`, numbered after `after` (their NI numbers
/// and names follow from the number, and must not repeat others in the store).
pub(crate) async fn import_bench_people(
    service: &Service,
    manager: &Actor,
    position: careid_domain::ids::PositionId,
    people: usize,
    after: u64,
) -> anyhow::Result<(Vec<PersonUuid>, Duration)> {
    let ctx = RequestContext::new("bench");
    let start_date = time::Date::from_calendar_date(2024, time::Month::January, 1)?;
    let mut uuids: Vec<PersonUuid> = Vec::with_capacity(people);
    let mut build = Duration::ZERO;
    let mut n = after;
    while uuids.len() < people {
        let size = BATCH.min(people - uuids.len());
        let build_started = Instant::now();
        let batch = (0..size)
            .map(|_| {
                n += 1;
                // Unique by n: the import refuses the same names and date of birth twice.
                let family = format!("{}{n}", FAMILY[(n % 8) as usize]);
                Ok(ImportPerson {
                    details: bench_details("Sam", &family, n)?,
                    contact: ContactDetails::default(),
                    position,
                    start: start_date,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        build += build_started.elapsed();
        uuids.extend(service.import_people(&ctx, manager, batch).await?);
    }
    Ok((uuids, build))
}

/// The console's pages timed over HTTP on loopback with the RA Manager signed in, over a store
/// of `people` people; a `/healthz` round trip in the same run is the baseline, so that a
/// page's own time is its figure less the baseline's.
async fn bench_console(people: usize, samples: usize) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let store = SqlStore::open(&StoreOptions::new(url)).await?;
    let service =
        Service::new(Arc::new(store.clone()), Arc::new(SystemClock), Arc::new(OsRandom), ServiceSettings::default());
    let ctx = RequestContext::new("bench");
    let (manager, position, credential) = bench_deployment(&service).await?;
    println!("careid bench console: SQLite, {people} people");
    let started = Instant::now();
    let (uuids, _) = import_bench_people(&service, &manager, position, people, 0).await?;
    println!("  (imported in {:.1} s)", started.elapsed().as_secs_f64());
    // The RA Manager signs in to the console with the deployment's credential.
    service.logout(&ctx, &manager, careid_domain::login::SessionEnd::SignedOut).await?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    service.console_sign_in_with_credential(&ctx, &secret, &credential, None).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = careid_http::App::new(service.clone()).with_limits(careid_http::limit::Limits::unlimited());
    let server = tokio::spawn(careid_http::serve(listener, app, std::future::pending()));
    let http = reqwest::Client::builder().build()?;
    let cookie = format!("careid-console={secret}");
    let someone = &uuids[uuids.len() / 2];
    let pages = [
        ("baseline: GET /healthz", "/healthz".to_owned()),
        ("sign-in", "/console/sign-in".to_owned()),
        ("home", "/console/".to_owned()),
        ("my activity", "/console/activity".to_owned()),
        ("my sessions", "/console/sessions".to_owned()),
        ("my card", "/console/card".to_owned()),
        ("work queue", "/console/queue".to_owned()),
        ("people (family name prefix)", "/console/people?family_name=Patel5".to_owned()),
        ("a person's profile", format!("/console/people/{someone}")),
        ("team", "/console/team".to_owned()),
        ("cases", "/console/cases".to_owned()),
        ("alerts", "/console/alerts".to_owned()),
        ("dashboard", "/console/dashboard".to_owned()),
    ];
    // The dashboard's first view computes its reports over everyone in scope; later views
    // within five minutes reuse them.
    let t = Instant::now();
    let first = http.get(format!("{base}/console/dashboard")).header("cookie", &cookie).send().await?;
    anyhow::ensure!(first.status().is_success(), "dashboard: {}", first.status());
    first.bytes().await?;
    println!("  dashboard, first view (reports computed over everyone): {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let mut baseline = Duration::ZERO;
    for (name, path) in pages {
        let mut times = Vec::with_capacity(samples);
        for round in 0..samples + 3 {
            let t = Instant::now();
            let response = http.get(format!("{base}{path}")).header("cookie", &cookie).send().await?;
            let status = response.status();
            response.bytes().await?;
            anyhow::ensure!(status.is_success(), "{path}: {status}");
            if round >= 3 {
                times.push(t.elapsed());
            }
        }
        times.sort_unstable();
        let (p50, p95) = (percentile(&times, 0.50), percentile(&times, 0.95));
        if baseline.is_zero() {
            baseline = p50;
        }
        let server = p95.saturating_sub(baseline);
        println!(
            "  {name:<30} p50 {:>7.2} ms   p95 {:>7.2} ms   p95 less baseline {:>7.2} ms   {:>5.1}x baseline{}",
            p50.as_secs_f64() * 1e3,
            p95.as_secs_f64() * 1e3,
            server.as_secs_f64() * 1e3,
            p50.as_secs_f64() / baseline.as_secs_f64().max(1e-9),
            if server > Duration::from_millis(50) { "   OVER the 50 ms target" } else { "" }
        );
    }
    server.abort();
    // The process serves and loads alike: its resident memory is an upper bound on a server's.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let field = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned()).unwrap_or_default()
        };
        println!(
            "  memory (this process, server and load): resident {}, peak {}   (target: <= 600 MB at 1.2M people)",
            field("VmRSS:"),
            field("VmHWM:")
        );
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Sets up one organisation and position, then imports `people` in batches.
async fn bench_ra(options: StoreOptions, people: usize, samples: usize) -> anyhow::Result<()> {
    let store = SqlStore::open(&options).await?;
    let service =
        Service::new(Arc::new(store.clone()), Arc::new(SystemClock), Arc::new(OsRandom), ServiceSettings::default());
    let (manager, position, _) = bench_deployment(&service).await?;

    let started = Instant::now();
    let (uuids, build) = import_bench_people(&service, &manager, position, people, 0).await?;
    let elapsed = started.elapsed().saturating_sub(build);
    let rate = people as f64 / elapsed.as_secs_f64();
    println!(
        "  bulk import (person + position + audit)  {rate:>10.0} people/s   {people} in {:.1} s{}",
        elapsed.as_secs_f64(),
        if options.url.starts_with("sqlite") {
            format!("   (target: 1.2M in < 60 s; projected {:.1} s)", 1_200_000.0 / rate)
        } else {
            String::new()
        }
    );

    // A baseline from the same run: the cheapest read the store can do.
    let mut ping = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        service.store().ping().await?;
        ping.push(t.elapsed());
    }
    report("baseline: store round trip (SELECT 1)", ping);

    let mut lookups = Vec::with_capacity(samples);
    let mut checks = Vec::with_capacity(samples);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..samples {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let uuid = &uuids[(x % uuids.len() as u64) as usize];
        let t = Instant::now();
        let view = service.person(uuid).await?;
        lookups.push(t.elapsed());
        debug_assert_eq!(&view.person.uuid, uuid);
        let t = Instant::now();
        let decision = service.authorise_on_person(&manager, RaAction::ChangePersonalDetails, uuid).await?;
        checks.push(t.elapsed());
        anyhow::ensure!(decision.is_ok(), "the RA Manager should be allowed: {decision:?}");
    }
    report("person lookup by identifier", lookups);
    report("permission check on a person", checks);
    store.close().await;
    Ok(())
}
