//! `careid bench audit`: the audit log's figures beside baselines measured in the same run (raw
//! SHA-256, raw SQLite inserts): durable appends with group commit (a record a transaction, and
//! records in batches as applications report them), their latency, the tree following the
//! records, `careid audit verify`'s rate, inclusion-proof latency in a tree of ten million
//! records, and the appends on PostgreSQL. Every phase has a fixed size: it stops by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use careid_audit::merkle::CompactRange;
use careid_audit::note::{Checkpoint, LogSigner};
use careid_audit::tiles::TileWriter;
use careid_domain::audit::{Action, AuditActor, AuditEvent, Outcome, TreeHead};
use careid_domain::ids::{AssignmentId, OdsCode, PersonUuid};
use careid_domain::ports::Store;
use careid_service::{OsRandom, Service, ServiceSettings};
use careid_store::{SqlStore, StoreOptions};
use sha2::Digest;

use crate::SystemClock;
use crate::audit_log::{Source, check_log, write_archive};
use crate::bench::{drive, percentile, tempfile_dir};

/// A record as applications' reports make them: a patient access by a card session.
fn event(n: u64) -> AuditEvent {
    AuditEvent {
        at: careid_domain::ports::Clock::now(&SystemClock),
        request_id: format!("bench-{n:016x}"),
        actor: AuditActor {
            person: Some(
                PersonUuid::from_serial(PersonUuid::FIRST_SERIAL + n % 5_000).unwrap_or_else(|_| unreachable!()),
            ),
            assignment: Some(AssignmentId(1 + (n % 5_000) as i64)),
            role: Some("S8000:G8000:R8000".into()),
            org: OdsCode::parse("F83001").ok(),
            auth: "card",
            session: Some(format!("{:024x}", n / 50)),
        },
        action: Action::PatientAccess,
        subject_kind: "patient",
        subject_id: format!("{:032x}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        subject_person: None,
        orgs: OdsCode::parse("F83001").into_iter().collect(),
        outcome: Outcome::Success,
        detail: vec![
            ("client", "gp-records".into()),
            ("record_action", "view".into()),
            ("relationship", "registered_patient".into()),
        ],
        workstation: Some("surgery-2".into()),
    }
}

fn line(name: &str, rate: f64, unit: &str, baseline: Option<(f64, &str)>, target: &str) {
    let ratio = baseline.map(|(b, what)| format!(" ({:.3} of {what})", rate / b)).unwrap_or_default();
    println!("  {name:<52} {rate:>12.0} {unit}{ratio}  target {target}");
}

fn latency(name: &str, sorted: &[Duration], target: &str) {
    println!(
        "  {name:<52} p50 {:>8.3} ms  p99 {:>8.3} ms  target {target}",
        percentile(sorted, 0.5).as_secs_f64() * 1e3,
        percentile(sorted, 0.99).as_secs_f64() * 1e3
    );
}

/// Leaf hashes per second of raw SHA-256 over a typical entry, for about a second.
fn raw_sha256_rate() -> f64 {
    let entry = careid_audit::encode(&event(1));
    let started = Instant::now();
    let mut n = 0u64;
    let mut sink = 0u8;
    while started.elapsed() < Duration::from_secs(1) {
        for _ in 0..1_000 {
            sink ^= careid_audit::leaf_hash(&entry)[0];
        }
        n += 1_000;
    }
    std::hint::black_box(sink);
    n as f64 / started.elapsed().as_secs_f64()
}

/// Rows per second inserted into a bare SQLite table in one transaction (the same driver,
/// pragmas and file system as careid's store): the best a database on this machine can do.
fn raw_sqlite_insert_rate(dir: &std::path::Path, rows: usize) -> anyhow::Result<f64> {
    let conn = rusqlite::Connection::open(dir.join("raw.db"))?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.execute_batch("PRAGMA synchronous = FULL; CREATE TABLE raw (seq BIGINT PRIMARY KEY, entry BLOB NOT NULL)")?;
    let entry = careid_audit::encode(&event(1));
    let started = Instant::now();
    conn.execute_batch("BEGIN")?;
    let mut insert = conn.prepare("INSERT INTO raw (seq, entry) VALUES (?1, ?2)")?;
    for seq in 0..rows as i64 {
        insert.execute(rusqlite::params![seq, entry])?;
    }
    drop(insert);
    conn.execute_batch("COMMIT")?;
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// `writers` tasks append `records` records in transactions of `per_transaction`, each
/// acknowledged only once its commit is durable; records per second and each commit's latency.
async fn appends(
    store: &SqlStore,
    records: usize,
    per_transaction: usize,
    writers: usize,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let batches: Vec<Vec<AuditEvent>> = (0..records / per_transaction)
        .map(|t| (0..per_transaction).map(|i| event((t * per_transaction + i) as u64)).collect())
        .collect();
    let store = store.clone();
    let (batch_rate, latencies) = drive(batches, writers, move |events: Vec<AuditEvent>| {
        let store = store.clone();
        async move {
            let mut tx = store.begin_write().await?;
            tx.append_audit_batch(&events).await?;
            tx.commit().await?;
            Ok(())
        }
    })
    .await?;
    Ok((batch_rate * per_transaction as f64, latencies))
}

pub async fn bench_audit(
    records: usize,
    writers: usize,
    batch: usize,
    proof_records: u64,
    postgres_url: Option<String>,
) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    println!(
        "careid bench audit: {records} records, {writers} writers at once, durable commits (group commit on SQLite)"
    );
    let sha = raw_sha256_rate();
    println!(
        "  baseline: raw SHA-256 leaf hashes of a {}-byte entry  {sha:>12.0} /s",
        careid_audit::encode(&event(1)).len()
    );
    let raw = raw_sqlite_insert_rate(&dir, records)?;
    println!("  baseline: raw SQLite inserts, one transaction          {raw:>12.0} rows/s");

    let store =
        SqlStore::open(&StoreOptions::new(format!("sqlite://{}?mode=rwc", dir.join("audit.db").display()))).await?;
    let (rate, lat) = appends(&store, records / 10, 1, writers).await?;
    line("appends, one record a transaction", rate, "records/s", Some((raw, "raw inserts")), ">= 100,000/s");
    latency("  append latency (one record, until durable)", &lat, "p99 < 10 ms");
    let (rate, lat) = appends(&store, records, batch, writers).await?;
    line(
        &format!("appends, {batch} records a transaction"),
        rate,
        "records/s",
        Some((raw, "raw inserts")),
        ">= 100,000/s",
    );
    latency(&format!("  append latency ({batch} records, until durable)"), &lat, "p99 < 10 ms");

    // The tree follows the records; then the whole log is verified against its checkpoint.
    let service =
        Service::new(Arc::new(store.clone()), Arc::new(SystemClock), Arc::new(OsRandom), ServiceSettings::default());
    let signer = LogSigner::new("bench.careid/log", &LogSigner::generate_pkcs8()?)?;
    let started = Instant::now();
    let mut checkpoint = None;
    while let Some(signed) = service.integrate_audit_log(&signer).await? {
        checkpoint = Some(signed);
    }
    let checkpoint = checkpoint.ok_or_else(|| anyhow::anyhow!("nothing to integrate"))?;
    let size = checkpoint.size;
    line(
        "the tree following the log (tiles + checkpoint)",
        size as f64 / started.elapsed().as_secs_f64(),
        "records/s",
        Some((sha, "raw SHA-256")),
        "keeps up",
    );
    // `careid audit verify`, from the database and from an archive of the tiles on disk.
    let note = checkpoint.note;
    let checkpoint = Checkpoint::parse_body(&note)?;
    let source = Source::Store(store.clone());
    let started = Instant::now();
    check_log(&source, checkpoint.clone(), false).await?;
    line(
        "careid audit verify (database: read, chain, tree, root)",
        size as f64 / started.elapsed().as_secs_f64(),
        "records/s",
        Some((sha, "raw SHA-256")),
        ">= 2,000,000/s",
    );
    let archive = dir.join("archive");
    write_archive(&source, checkpoint.clone(), &note, &signer.verifier_key(), &archive).await?;
    let started = Instant::now();
    check_log(&Source::Files(archive), checkpoint, false).await?;
    line(
        "careid audit verify (archived tiles: read, tree, root)",
        size as f64 / started.elapsed().as_secs_f64(),
        "records/s",
        Some((sha, "raw SHA-256")),
        ">= 2,000,000/s",
    );
    store.close().await;

    bench_proofs(&dir, proof_records).await?;

    if let Some(url) = postgres_url {
        let mut options = StoreOptions::new(url);
        options.schema = Some(format!("careid_bench_audit_{}", std::process::id()));
        let store = SqlStore::open(&options).await?;
        let before = store.write_stats();
        let (rate, lat) = appends(&store, records / 10, 1, writers).await?;
        line(
            "PostgreSQL appends, one record a transaction",
            rate,
            "records/s",
            Some((raw, "raw SQLite inserts")),
            ">= 10,000/s",
        );
        latency("  append latency (one record, until durable)", &lat, "p99 <= 20 ms");
        serial_section(before, store.write_stats());
        let before = store.write_stats();
        let (rate, lat) = appends(&store, records, batch, writers).await?;
        line(
            &format!("PostgreSQL appends, {batch} records a transaction"),
            rate,
            "records/s",
            Some((raw, "raw SQLite inserts")),
            "(figure)",
        );
        latency(&format!("  append latency ({batch} records, until durable)"), &lat, "(figure)");
        serial_section(before, store.write_stats());
        store.close().await;
        crate::bench::drop_schema(&options).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The write batches between two readings of the store's counters: their size, the time each
/// transaction held the deployment's write lock, and the time batches waited outside it for the
/// disk.
fn serial_section(before: careid_domain::ports::WriteStats, after: careid_domain::ports::WriteStats) {
    let transactions = (after.transactions - before.transactions).max(1) as f64;
    let batches = (after.batches - before.batches).max(1) as f64;
    let serial = after.serial_seconds - before.serial_seconds;
    println!(
        "    serial section {:.1} µs a transaction ({:.1} a batch; ceiling {:.0} transactions/s), flush wait {:.2} ms a batch, outside it",
        serial / transactions * 1e6,
        transactions / batches,
        transactions / serial.max(1e-9),
        (after.flush_seconds - before.flush_seconds) / batches * 1e3,
    );
}

/// Inclusion proofs read from the stored tiles of a tree of `size` records (leaves made up:
/// the proof touches only tiles), through the same code `careid ra proof` takes.
async fn bench_proofs(dir: &std::path::Path, size: u64) -> anyhow::Result<()> {
    let store =
        SqlStore::open(&StoreOptions::new(format!("sqlite://{}?mode=rwc", dir.join("proofs.db").display()))).await?;
    let started = Instant::now();
    let mut range = CompactRange::new();
    let mut writer = TileWriter::default();
    for n in 0..size {
        let leaf: [u8; 32] = sha2::Sha256::digest(n.to_be_bytes()).into();
        range.push(leaf, |level, index, hash| writer.completed(level, index, hash));
    }
    let mut tiles: Vec<(u8, u64, Vec<u8>)> = writer.tiles.into_iter().map(|((l, i), h)| (l, i, h)).collect();
    tiles.sort_unstable_by_key(|(l, i, _)| (*l, *i));
    let mut tx = store.begin_write().await?;
    for chunk in tiles.chunks(2_000) {
        tx.put_audit_tiles(chunk).await?;
    }
    tx.set_audit_tree(&TreeHead { size, root: range.root(), chain_hash: [0; 32] }).await?;
    tx.commit().await?;
    println!("  (a tree of {size} records built and stored in {:.1} s)", started.elapsed().as_secs_f64());
    let service =
        Service::new(Arc::new(store.clone()), Arc::new(SystemClock), Arc::new(OsRandom), ServiceSettings::default());
    let mut latencies = Vec::with_capacity(2_000);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..2_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let seq = x % size;
        let began = Instant::now();
        let proof = service.log_inclusion_proof(seq, size).await?;
        latencies.push(began.elapsed());
        let leaf: [u8; 32] = sha2::Sha256::digest(seq.to_be_bytes()).into();
        careid_audit::merkle::verify_inclusion(&leaf, seq, size, &proof, &range.root())?;
    }
    latencies.sort_unstable();
    latency(&format!("inclusion proof at {size} records (read tiles, build)"), &latencies, "p99 < 1 ms");
    store.close().await;
    Ok(())
}
