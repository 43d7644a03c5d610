//! The audit log as a transparency log: its signing key (sealed under the master key), the task
//! that follows the records with the Merkle tree and signs a checkpoint whenever it grew, and
//! `careid audit`: print the checkpoint and key, verify the whole log, prove a record's
//! inclusion or the log's consistency since an older checkpoint.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use careid_audit::merkle::{self, HashReader};
use careid_audit::note::{Checkpoint, LogSigner, NoteVerifier};
use careid_audit::tiles::{self, TILE_WIDTH, TileRef, TileSource, TiledHashes};
use careid_audit::verify::{LogVerifier, Prepared};
use careid_audit::witness::CosignatureVerifier;
use careid_domain::ports::{Store, Transaction};
use careid_service::Service;

use crate::config::Config;

pub(crate) const LOG_KEY_FILE: &str = "log.key.sealed";
pub(crate) const SEAL_LABEL: &[u8] = b"careid audit log signing key";
/// How often the tree catches up with the records and a checkpoint is signed.
const INTEGRATE_EVERY: Duration = Duration::from_millis(500);

/// The origin line of this deployment's checkpoints. It comes from the configuration alone,
/// never from the port a server happened to bind, so that it stays the same across restarts.
pub(crate) fn log_origin(config: &Config) -> String {
    if !config.log_origin.is_empty() {
        return config.log_origin.clone();
    }
    let base = config.public_url();
    let host = base.split_once("://").map_or(base.as_str(), |(_, rest)| rest).trim_end_matches('/');
    format!("{host}/log")
}

/// The log's signer (its key created and sealed the first time), `None` before the deployment
/// has a master key.
pub(crate) fn load_log_signer(config: &Config, origin: &str) -> anyhow::Result<Option<LogSigner>> {
    let dir = crate::pki_dir(config);
    if !config.master_key_path().exists() {
        return Ok(None);
    }
    let master_key = crate::read_master_key(config)?;
    let path = dir.join(LOG_KEY_FILE);
    let pkcs8 = if path.exists() {
        let sealed = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        master_key.unseal(SEAL_LABEL, &sealed).with_context(|| format!("opening {}", path.display()))?
    } else {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pkcs8 = zeroize::Zeroizing::new(LogSigner::generate_pkcs8()?);
        crate::client::write_private(&path, &master_key.seal(SEAL_LABEL, &pkcs8)?)?;
        tracing::info!("created the audit log's signing key");
        pkcs8
    };
    Ok(Some(LogSigner::new(origin, &pkcs8).with_context(|| format!("the log origin {origin:?}"))?))
}

/// The role of the node that signs the log's checkpoints (`Store::lead`).
const SIGNER_ROLE: &str = "audit log signer";

/// Follows the records with the tree and signs a checkpoint whenever it grew, until aborted.
/// Of several nodes on one database, the one that holds the signer's role does.
/// A failure (a record that breaks the chain, tiles that do not give the last root) signs
/// nothing and is logged loudly every round: the log must not move on past it.
pub(crate) async fn integrate_forever(
    service: Service,
    signer: Arc<LogSigner>,
    witnesses: Vec<(String, CosignatureVerifier)>,
) {
    let mut tick = tokio::time::interval(INTEGRATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
    let mut cosigned_sizes = crate::witness::WitnessedSizes::default();
    let mut signing = false;
    loop {
        tick.tick().await;
        // One node of a deployment signs (the others serve what it signed); should two ever
        // sign at once, each checkpoint still extends the last, in a transaction of its own.
        let leads = service.store().lead(SIGNER_ROLE).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot tell whether this node signs the audit log");
            false
        });
        if leads != signing {
            signing = leads;
            if signing {
                tracing::info!("this node signs the audit log's checkpoints");
            } else {
                tracing::info!("another node signs the audit log's checkpoints");
            }
        }
        if !signing {
            continue;
        }
        if !witnesses.is_empty()
            && let Err(error) =
                crate::witness::submit_to_witnesses(&service, &http, &witnesses, &mut cosigned_sizes).await
        {
            tracing::warn!(error = %format!("{error:#}"), "could not send the checkpoint to the witnesses");
        }
        loop {
            match service.integrate_audit_log(&signer).await {
                Ok(Some(checkpoint)) => tracing::debug!(size = checkpoint.size, "signed an audit log checkpoint"),
                Ok(None) => break,
                Err(error) => {
                    tracing::error!(%error, "the audit log's tree cannot follow the records; no checkpoint signed");
                    break;
                }
            }
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Read a server's entry bundles as this saved profile (see `careid ra login`): they hold
    /// the records themselves and are served to auditors in scope only. Checkpoints and hash
    /// tiles need no sign-in.
    #[arg(long = "as", global = true, env = "CAREID_PROFILE")]
    profile: Option<String>,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Prints the latest signed checkpoint. Keep it: later, `verify --checkpoint` and `prove
    /// --since` show anyone that the log still holds what it held then.
    Checkpoint {
        /// Read from a careid server's `/log/` instead of the database.
        #[arg(long)]
        url: Option<String>,
    },
    /// Prints the verifier key of the log's checkpoints (`name+keyid+key`).
    Key {
        /// Read the log from this careid server (its /log/ tiles) instead of the local database.
        #[arg(long)]
        url: Option<String>,
    },
    /// Archives the log to files in the tlog-tiles layout (checkpoint, key, every tile and entry
    /// bundle), verifiable without careid: `verify --url file://<out>`. Full tiles already in
    /// the archive are kept, so running it again adds only what is new.
    Archive {
        /// The directory to write (it becomes the log's root: `checkpoint`, `tile/...`).
        #[arg(long)]
        out: PathBuf,
        /// Archive a careid server's `/log/` instead of the database.
        #[arg(long)]
        url: Option<String>,
    },
    /// Checks every record against a signed checkpoint and names the first record that is
    /// missing, out of order, edited or not in the tree.
    Verify {
        /// Check the tiles a careid server serves at `<url>/log/` (or an archive,
        /// `file:///path`) instead of the database.
        #[arg(long)]
        url: Option<String>,
        /// A checkpoint kept earlier (a file); default: the latest.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The verifier key to trust (`name+keyid+key`); default: this deployment's own key,
        /// or the server's `/log/key`.
        #[arg(long)]
        key: Option<String>,
        /// A witness whose cosignature the checkpoint must carry (its key, as `careid audit
        /// witness` prints it); repeat for several.
        #[arg(long = "witness")]
        witnesses: Vec<String>,
        /// How many of the witnesses given must have cosigned (default: all of them).
        #[arg(long)]
        witnesses_needed: Option<usize>,
    },
    /// Runs a witness of careid logs (C2SP tlog-witness): cosigns each checkpoint a log sends
    /// that extends the last one it cosigned, and never one that does not. Run it somewhere the
    /// log's operator does not control; give its key to `careid serve` (`log_witnesses`) and
    /// to readers (`verify --witness`).
    Witness(crate::witness::WitnessArgs),
    /// Prints the inclusion proof of one record in the latest checkpoint's tree, and with
    /// `--since` the consistency proof from an older tree size.
    Prove {
        /// The record's position in the log (from 0).
        #[arg(long)]
        entry: u64,
        /// The size of an older checkpoint this one must extend.
        #[arg(long)]
        since: Option<u64>,
        /// Read the log from this careid server (its /log/ tiles) instead of the local database.
        #[arg(long)]
        url: Option<String>,
    },
}

/// Where the log is read from.
#[derive(Clone)]
pub(crate) enum Source {
    Store(careid_store::SqlStore),
    Http {
        http: reqwest::Client,
        base: String,
        /// The auditor's session, for entry bundles.
        token: Option<String>,
    },
    /// An archive written by `careid audit archive`.
    Files(PathBuf),
}

impl Source {
    /// A read transaction on the database, if the log is read from one.
    async fn read_transaction(&self) -> anyhow::Result<Option<Box<dyn Transaction>>> {
        Ok(match self {
            Source::Store(store) => Some(store.begin_read().await?),
            Source::Http { .. } | Source::Files(_) => None,
        })
    }

    async fn open(config: &Config, url: Option<String>, profile: Option<&str>) -> anyhow::Result<Source> {
        Ok(match url {
            Some(url) if url.starts_with("file://") => Source::Files(PathBuf::from(&url["file://".len()..])),
            Some(url) => Source::Http {
                http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
                base: format!("{}/log", url.trim_end_matches('/')),
                token: profile.map(crate::client::profile_token).transpose()?,
            },
            None => Source::Store(crate::open_service(config).await?.0),
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        if let Source::Files(dir) = self {
            let file = dir.join(path);
            return std::fs::read(&file).with_context(|| format!("reading {}", file.display()));
        }
        let Source::Http { http, base, token } = self else { anyhow::bail!("not reading over HTTP") };
        let mut request = http.get(format!("{base}/{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| format!("GET {base}/{path}"))?;
        let status = response.status();
        let body = response.bytes().await?.to_vec();
        anyhow::ensure!(status.is_success(), "GET {base}/{path}: {status}: {}", String::from_utf8_lossy(&body).trim());
        Ok(body)
    }

    async fn checkpoint_note(&self) -> anyhow::Result<String> {
        match self {
            Source::Store(store) => {
                let mut tx = store.begin_read().await?;
                let checkpoint = tx
                    .latest_checkpoint()
                    .await?
                    .context("the log has no signed checkpoint yet: is `careid serve` running?")?;
                let cosignatures = tx.cosignatures(checkpoint.size).await?;
                Ok(format!("{}{}", checkpoint.note, cosignatures.concat()))
            }
            Source::Http { .. } | Source::Files(_) => Ok(String::from_utf8(self.get("checkpoint").await?)?),
        }
    }

    async fn key(&self, config: &Config) -> anyhow::Result<String> {
        match self {
            Source::Store(store) => {
                // This deployment's own key, under the name its checkpoints carry.
                let latest = store.begin_read().await?.latest_checkpoint().await?;
                let origin = latest
                    .and_then(|c| Checkpoint::parse_body(&c.note).ok())
                    .map_or_else(|| log_origin(config), |c| c.origin);
                let signer = load_log_signer(config, &origin)?
                    .context("this deployment has no master key, so no log key: pass --key")?;
                Ok(signer.verifier_key())
            }
            Source::Http { .. } | Source::Files(_) => Ok(String::from_utf8(self.get("key").await?)?.trim().to_owned()),
        }
    }

    async fn tile(
        &self,
        tx: &mut Option<Box<dyn Transaction>>,
        level: u8,
        index: u64,
        width: u64,
    ) -> anyhow::Result<Vec<u8>> {
        match (self, tx) {
            (Source::Store(_), Some(tx)) => {
                let stored =
                    tx.audit_tile(level, index).await?.with_context(|| format!("tile {level}/{index} is missing"))?;
                Ok(stored
                    .get(..width as usize * 32)
                    .with_context(|| format!("tile {level}/{index} is short"))?
                    .to_vec())
            }
            _ => self.get(&TileRef { level: Some(level), index, width }.path()).await,
        }
    }
}

/// Tiles read one at a time from an async source, for the proof algorithms (which are sync).
struct BlockingTiles<'a> {
    source: &'a Source,
    tx: Option<Box<dyn Transaction>>,
}

impl TileSource for BlockingTiles<'_> {
    type Error = std::io::Error;
    fn tile(&mut self, level: u8, index: u64, width: u64) -> Result<Vec<u8>, std::io::Error> {
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| handle.block_on(self.source.tile(&mut self.tx, level, index, width)))
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
    }
}

pub async fn run(config: &Config, args: AuditArgs) -> anyhow::Result<()> {
    let profile = args.profile.as_deref();
    match args.command {
        AuditCommand::Checkpoint { url } => {
            print!("{}", Source::open(config, url, profile).await?.checkpoint_note().await?);
            Ok(())
        }
        AuditCommand::Key { url } => {
            println!("{}", Source::open(config, url, profile).await?.key(config).await?);
            Ok(())
        }
        AuditCommand::Archive { out, url } => archive(config, Source::open(config, url, profile).await?, out).await,
        AuditCommand::Verify { url, checkpoint, key, witnesses, witnesses_needed } => {
            let witnesses = witnesses
                .iter()
                .map(|w| CosignatureVerifier::parse(w).with_context(|| format!("the witness key {w}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let needed = witnesses_needed.unwrap_or(witnesses.len());
            anyhow::ensure!(needed <= witnesses.len(), "--witnesses-needed is more than the witnesses given");
            let source = Source::open(config, url, profile).await?;
            verify(config, source, checkpoint, key, (&witnesses, needed)).await
        }
        AuditCommand::Witness(args) => crate::witness::run(args).await,
        AuditCommand::Prove { entry, since, url } => {
            prove(config, Source::open(config, url, profile).await?, entry, since).await
        }
    }
}

async fn checked_checkpoint(
    config: &Config,
    source: &Source,
    file: Option<PathBuf>,
    key: Option<String>,
) -> anyhow::Result<(Checkpoint, NoteVerifier, String)> {
    let key = match key {
        Some(key) => key,
        None => source.key(config).await?,
    };
    let verifier = NoteVerifier::parse(&key).context("the verifier key")?;
    let note = match file {
        Some(path) => std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
        None => source.checkpoint_note().await?,
    };
    let checkpoint = verifier.verify(&note).context("the checkpoint")?;
    Ok((checkpoint, verifier, note))
}

/// How many tiles' records are read and checked at once: large enough that a batch is hashed
/// on every core, small enough that reading the next overlaps checking this one.
const TILES_A_BATCH: u64 = 16;

async fn verify(
    config: &Config,
    source: Source,
    file: Option<PathBuf>,
    key: Option<String>,
    (witnesses, needed): (&[CosignatureVerifier], usize),
) -> anyhow::Result<()> {
    let given = file.is_some();
    let (checkpoint, verifier, note) = checked_checkpoint(config, &source, file, key).await?;
    if needed > 0 {
        // A cosignature follows its checkpoint by a round trip to the witness: wait a little
        // for the latest one's.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut note = note.clone();
        loop {
            let (cosigned, missing) = crate::witness::cosigned_by(&note, witnesses);
            if cosigned >= needed {
                eprintln!("the checkpoint carries the cosignatures of {cosigned} of the witnesses required");
                break;
            }
            anyhow::ensure!(
                !given && Instant::now() < deadline,
                "the checkpoint carries the cosignatures of {cosigned} witnesses, {needed} are required; missing: {}",
                missing.join(", ")
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
            note = source.checkpoint_note().await?;
        }
    }
    // The log as it stands now must extend the newest checkpoint this machine has seen of it;
    // an older checkpoint given to check against need not be the newest.
    let (latest, latest_note) = if given {
        let note = source.checkpoint_note().await?;
        (verifier.verify(&note).context("the log's latest checkpoint")?, note)
    } else {
        (checkpoint.clone(), note)
    };
    extends_kept(&source, &latest, &latest_note, &verifier).await?;
    anyhow::ensure!(
        latest.size >= checkpoint.size,
        "the log's latest checkpoint has {} records, fewer than the {} of the checkpoint given: the log was cut",
        latest.size,
        checkpoint.size
    );
    let size = checkpoint.size;
    eprintln!("checking {size} records against the checkpoint signed by {}", verifier.name());
    let started = Instant::now();
    let checkpoint = check_log(&source, checkpoint, true).await?;
    if let Source::Store(_) = source {
        // Every column a query filters on must say what the hashed entries say.
        let (_, service) = crate::open_service(config).await?;
        if let Err(mismatch) = service.check_query_index(size).await? {
            anyhow::bail!("the query index does not match the log: {mismatch}");
        }
    }
    let rate = size as f64 / started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "verified: all {size} records are present, in order, unedited, and give the checkpoint's root {} ({rate:.0} records/s)",
        STANDARD.encode(checkpoint.root)
    );
    Ok(())
}

/// Where this machine keeps the newest checkpoint it has verified of the log named `origin`.
fn kept_checkpoint_path(origin: &str) -> PathBuf {
    let name: String = origin.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect();
    crate::client::cli_home().join("checkpoints").join(name)
}

/// Checks that `checkpoint` extends the newest one this machine has verified of the same log
/// (as Go's checksum-database client does): never smaller, and consistent with it by a
/// consistency proof from the log's own tiles. Keeps `checkpoint` as the newest when it is.
/// A log cut back, with its newer checkpoints deleted, verifies against itself; against a
/// checkpoint kept elsewhere it cannot.
pub(crate) async fn extends_kept(
    source: &Source,
    checkpoint: &Checkpoint,
    note: &str,
    verifier: &NoteVerifier,
) -> anyhow::Result<()> {
    let path = kept_checkpoint_path(&checkpoint.origin);
    if let Ok(kept_note) = std::fs::read_to_string(&path) {
        let kept = verifier
            .verify(&kept_note)
            .with_context(|| format!("the checkpoint kept in {} is not this log's", path.display()))?;
        anyhow::ensure!(
            checkpoint.size >= kept.size,
            "the log is shorter than a checkpoint this machine verified before: {} records then, {} now; \
             records were cut from its end (kept in {})",
            kept.size,
            checkpoint.size,
            path.display()
        );
        if kept.size == checkpoint.size {
            anyhow::ensure!(
                kept.root == checkpoint.root,
                "the log of {} records has a different root than before",
                kept.size
            );
        } else if kept.size > 0 {
            let tx = source.read_transaction().await?;
            let mut hashes = TiledHashes::new(BlockingTiles { source, tx }, checkpoint.size);
            let proof = merkle::consistency_proof(&mut hashes, kept.size, checkpoint.size)??;
            merkle::verify_consistency(kept.size, checkpoint.size, &proof, &kept.root, &checkpoint.root).with_context(
                || {
                    format!(
                        "the log no longer extends the checkpoint of {} records kept in {}",
                        kept.size,
                        path.display()
                    )
                },
            )?;
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, note).with_context(|| format!("writing {}", fresh.display()))?;
    std::fs::rename(&fresh, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A stretch of the log as read for checking, with the leaf hashes the tree's tiles hold for it.
struct Stretch {
    /// The first tile.
    index: u64,
    /// Records the tiles cover.
    width: u64,
    leaves: Vec<u8>,
    records: StretchRecords,
}

enum StretchRecords {
    /// From the database: each record with its sequence number and chain hash.
    Stored(Vec<careid_domain::audit::AuditRecord>),
    /// From tiles: entry bundles, one a tile.
    Bundles(Vec<Vec<u8>>),
}

impl Stretch {
    /// Reads tiles `index..index + tiles`, in a read transaction of its own.
    async fn read(source: &Source, index: u64, tiles: u64, size: u64) -> anyhow::Result<Stretch> {
        let mut tx = source.read_transaction().await?;
        let (mut leaves, mut width, mut bundles) = (Vec::new(), 0, Vec::new());
        for i in index..index + tiles {
            let tile_width = TileRef::width_at(Some(0), i, size);
            let tile = source
                .tile(&mut tx, 0, i, tile_width)
                .await
                .with_context(|| format!("reading the leaf hashes of records {}..", i * TILE_WIDTH))?;
            leaves.extend_from_slice(&tile);
            width += tile_width;
            if tx.is_none() {
                bundles.push(source.get(&TileRef { level: None, index: i, width: tile_width }.path()).await?);
            }
        }
        let records = match tx.as_mut() {
            Some(tx) => StretchRecords::Stored(tx.audit_range(index * TILE_WIDTH, width as u32).await?),
            None => StretchRecords::Bundles(bundles),
        };
        Ok(Stretch { index, width, leaves, records })
    }

    /// Hashes each record and checks its encoding (on every core), which does not depend on
    /// the records before it. A bundle that does not decode is kept as the error it is, to be
    /// named only once every record before it has been checked.
    fn prepare(self, size: u64) -> PreparedStretch {
        let records = match self.records {
            StretchRecords::Stored(records) => {
                let prepared = Prepared::records(&records);
                PreparedRecords::Stored(records, prepared)
            }
            StretchRecords::Bundles(bundles) => PreparedRecords::Entries(Stretch::entries(self.index, &bundles, size)),
        };
        PreparedStretch { width: self.width, leaves: self.leaves, records }
    }

    /// The entries of the bundles of tiles `index..`, up to the first short one.
    fn entries(index: u64, bundles: &[Vec<u8>], size: u64) -> anyhow::Result<Prepared> {
        let mut entries = Vec::new();
        for (index, bundle) in (index..).zip(bundles) {
            let tile_width = TileRef::width_at(None, index, size);
            let found = tiles::decode_bundle(bundle).with_context(|| format!("entry tile {index}"))?;
            anyhow::ensure!(
                found.len() as u64 <= tile_width,
                "entry tile {index} holds {} entries where the log has {tile_width}",
                found.len()
            );
            let short = (found.len() as u64) < tile_width;
            entries.extend(found);
            if short {
                break;
            }
        }
        Ok(Prepared::entries(&entries))
    }
}

struct PreparedStretch {
    width: u64,
    leaves: Vec<u8>,
    records: PreparedRecords,
}

enum PreparedRecords {
    Stored(Vec<careid_domain::audit::AuditRecord>, Prepared),
    Entries(anyhow::Result<Prepared>),
}

impl PreparedStretch {
    /// Checks the stretch's records next, in order; returns whether the log ended in it.
    fn check(self, log: &mut LogVerifier) -> anyhow::Result<bool> {
        let found = match self.records {
            PreparedRecords::Stored(records, prepared) => {
                log.prepared_records(&records, prepared, Some(&self.leaves))?;
                records.len()
            }
            PreparedRecords::Entries(prepared) => {
                let prepared = prepared?;
                let found = prepared.len();
                log.entries(prepared, Some(&self.leaves))?;
                found
            }
        };
        Ok((found as u64) < self.width)
    }
}

/// How many stretches are read at once, each by a task of its own: reading a row out of SQLite
/// costs more than hashing it, so one reader cannot keep the cores that hash busy.
const READERS: u64 = 2;

/// Checks every record of the log against `checkpoint`, naming the first that is not what it
/// says. A pipeline: while one stretch is checked in order (chain, tree), the next is hashed
/// on every core and the ones after are read, `READERS` at a time.
pub(crate) async fn check_log(source: &Source, checkpoint: Checkpoint, progress: bool) -> anyhow::Result<Checkpoint> {
    let size = checkpoint.size;
    let tiles = size.div_ceil(TILE_WIDTH);
    // Reader `k` reads stretches k, k + READERS, ..., each in a read transaction of its own (the
    // records a checkpoint covers never change, so the stretches need no common snapshot, and
    // no reader holds an in-memory database's only connection for long).
    let readers: Vec<_> = (0..READERS)
        .map(|k| {
            let (sender, stretches) = tokio::sync::mpsc::channel::<anyhow::Result<Stretch>>(1);
            let source = source.clone();
            tokio::spawn(async move {
                let mut index = k * TILES_A_BATCH;
                while index < tiles {
                    let group = TILES_A_BATCH.min(tiles - index);
                    let stretch = Stretch::read(&source, index, group, size).await;
                    let failed = stretch.is_err();
                    if sender.send(stretch).await.is_err() || failed {
                        break; // the check stopped, or this read failed and the check will say so
                    }
                    index += READERS * TILES_A_BATCH;
                }
            });
            stretches
        })
        .collect();
    let (prepared_sender, mut prepared) = tokio::sync::mpsc::channel::<PreparedStretch>(1);
    let preparing = async move {
        // The stretches in log order: one from each reader in turn.
        let mut readers = readers;
        for turn in 0.. {
            let Some(stretch) = readers[turn % READERS as usize].recv().await else { break };
            let stretch = stretch?;
            let stretch = tokio::task::spawn_blocking(move || stretch.prepare(size)).await?;
            if prepared_sender.send(stretch).await.is_err() {
                break;
            }
        }
        anyhow::Ok(())
    };
    let checking = async move {
        let mut log = LogVerifier::new(checkpoint);
        let (started, mut last_report) = (Instant::now(), Instant::now());
        while let Some(stretch) = prepared.recv().await {
            let (checked, ended) = tokio::task::spawn_blocking(move || {
                let ended = stretch.check(&mut log);
                (log, ended)
            })
            .await?;
            log = checked;
            if ended? {
                return anyhow::Ok((log, true));
            }
            if progress && last_report.elapsed() > Duration::from_secs(1) {
                let done = log.checked();
                let rate = done as f64 / started.elapsed().as_secs_f64();
                eprintln!(
                    "  {done} of {size} records checked ({:.0}%, {rate:.0} records/s)",
                    done as f64 * 100.0 / size as f64
                );
                last_report = Instant::now();
            }
        }
        anyhow::Ok((log, false))
    };
    let (prepared, checked) = tokio::join!(preparing, checking);
    // The first thing wrong is named: a bad record comes before any read that failed after
    // it; a log that ends early ends there, whatever lies beyond; a read that failed starved
    // the check, and says why.
    let (log, ended) = checked?;
    if !ended {
        prepared?;
    }
    Ok(log.finish()?)
}

async fn prove(config: &Config, source: Source, entry: u64, since: Option<u64>) -> anyhow::Result<()> {
    let (checkpoint, _, note) = checked_checkpoint(config, &source, None, None).await?;
    let size = checkpoint.size;
    let tx = source.read_transaction().await?;
    let mut hashes = TiledHashes::new(BlockingTiles { source: &source, tx }, size);
    let proof = merkle::inclusion_proof(&mut hashes, entry, size)??;
    let leaf = hashes.hash(0, entry)?;
    merkle::verify_inclusion(&leaf, entry, size, &proof, &checkpoint.root).context("the proof does not check out")?;
    println!("record {entry} is in the log of {size} records");
    println!("leaf hash {}", STANDARD.encode(leaf));
    println!("inclusion proof ({} hashes, leaf to root):", proof.len());
    for hash in &proof {
        println!("  {}", STANDARD.encode(hash));
    }
    if let Some(old) = since {
        let old_root = merkle::tree_hash(&mut hashes, old)?;
        let consistency = merkle::consistency_proof(&mut hashes, old, size)??;
        merkle::verify_consistency(old, size, &consistency, &old_root, &checkpoint.root)
            .context("the consistency proof does not check out")?;
        println!("the tree of {old} records (root {}) is a prefix of this one;", STANDARD.encode(old_root));
        println!("consistency proof ({} hashes):", consistency.len());
        for hash in &consistency {
            println!("  {}", STANDARD.encode(hash));
        }
    }
    println!("checkpoint:");
    print!("{note}");
    Ok(())
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

async fn archive(config: &Config, source: Source, out: PathBuf) -> anyhow::Result<()> {
    let note = source.checkpoint_note().await?;
    let key = source.key(config).await?;
    // Only what verifies is archived.
    let checkpoint = NoteVerifier::parse(&key).context("the verifier key")?.verify(&note).context("the checkpoint")?;
    let size = checkpoint.size;
    let (written, kept) = write_archive(&source, checkpoint, &note, &key, &out).await?;
    println!(
        "archived {size} records to {}: {written} tiles written, {kept} already there\n\
         check it anywhere: careid audit verify --url file://{} --key '{key}'",
        out.display(),
        out.display()
    );
    Ok(())
}

/// Writes the tiles of the log up to `checkpoint` (already verified: its `note` under `key`)
/// to `out`, keeping full tiles already there. Returns the tiles written and kept.
pub(crate) async fn write_archive(
    source: &Source,
    checkpoint: Checkpoint,
    note: &str,
    key: &str,
    out: &std::path::Path,
) -> anyhow::Result<(u64, u64)> {
    let size = checkpoint.size;
    let mut tx = source.read_transaction().await?;
    let (mut written, mut kept) = (0u64, 0u64);
    let mut level = 0u8;
    while size >> (u32::from(level) * 8) > 0 {
        let count = size >> (u32::from(level) * 8);
        for index in 0..count.div_ceil(TILE_WIDTH) {
            let tile = TileRef { level: Some(level), index, width: TileRef::width_at(Some(level), index, size) };
            let path = out.join(tile.path());
            if tile.width == TILE_WIDTH && path.exists() {
                kept += 1;
                continue;
            }
            write_file(&path, &source.tile(&mut tx, level, index, tile.width).await?)?;
            written += 1;
        }
        level += 1;
    }
    for index in 0..size.div_ceil(TILE_WIDTH) {
        let tile = TileRef { level: None, index, width: TileRef::width_at(None, index, size) };
        let path = out.join(tile.path());
        if tile.width == TILE_WIDTH && path.exists() {
            kept += 1;
            continue;
        }
        let bundle = match tx.as_mut() {
            Some(tx) => {
                let records = tx.audit_range(index * TILE_WIDTH, tile.width as u32).await?;
                anyhow::ensure!(records.len() as u64 == tile.width, "records {}.. are missing", index * TILE_WIDTH);
                tiles::encode_bundle(records.iter().map(|r| r.entry.as_slice()))?
            }
            None => source.get(&tile.path()).await?,
        };
        write_file(&path, &bundle)?;
        written += 1;
    }
    write_file(&out.join("checkpoint"), note.as_bytes())?;
    write_file(&out.join("key"), format!("{key}\n").as_bytes())?;
    Ok((written, kept))
}

#[cfg(test)]
mod tests {
    use careid_audit::merkle::CompactRange;

    use super::*;

    /// An archive of `count` records as `careid audit archive` writes it (level-0 hash tiles
    /// and entry bundles), and the checkpoint of the whole.
    fn archive_of(dir: &std::path::Path, count: u64) -> Checkpoint {
        let entries: Vec<Vec<u8>> =
            (0..count).map(|n| format!("careid-audit/v1\nrequest r-{n}\naction test\n").into_bytes()).collect();
        let mut range = CompactRange::new();
        for index in 0..count.div_ceil(TILE_WIDTH) {
            let tile = &entries[(index * TILE_WIDTH) as usize..((index + 1) * TILE_WIDTH).min(count) as usize];
            let width = tile.len() as u64;
            let leaves: Vec<u8> = tile.iter().flat_map(|e| careid_audit::leaf_hash(e)).collect();
            for entry in tile {
                range.push(careid_audit::leaf_hash(entry), |_, _, _| {});
            }
            write_file(&dir.join(TileRef { level: Some(0), index, width }.path()), &leaves).unwrap();
            let bundle = tiles::encode_bundle(tile.iter().map(Vec::as_slice)).unwrap();
            write_file(&dir.join(TileRef { level: None, index, width }.path()), &bundle).unwrap();
        }
        Checkpoint { origin: "test.careid/log".into(), size: count, root: range.root() }
    }

    fn check(dir: &std::path::Path, checkpoint: &Checkpoint) -> Result<Checkpoint, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        runtime
            .block_on(check_log(&Source::Files(dir.to_owned()), checkpoint.clone(), false))
            .map_err(|e| format!("{e:#}"))
    }

    /// Changes one byte of the entry of record `seq` in its bundle.
    fn edit(dir: &std::path::Path, seq: u64, count: u64) {
        let index = seq / TILE_WIDTH;
        let path = dir.join(TileRef { level: None, index, width: TileRef::width_at(None, index, count) }.path());
        let mut bundle = std::fs::read(&path).unwrap();
        let mut at = 0;
        for _ in 0..seq % TILE_WIDTH {
            at += 2 + usize::from(u16::from_be_bytes([bundle[at], bundle[at + 1]]));
        }
        bundle[at + 2 + 20] ^= 0x01;
        std::fs::write(&path, bundle).unwrap();
    }

    #[test]
    fn an_archive_checks_in_stretches_and_names_the_first_thing_wrong() {
        let count = 20 * TILE_WIDTH + 17;
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = archive_of(dir.path(), count);
        assert_eq!(check(dir.path(), &checkpoint), Ok(checkpoint.clone()));

        // A tile missing far ahead: the read fails, and says which.
        let missing = dir.path().join(TileRef { level: None, index: 18, width: TILE_WIDTH }.path());
        let kept = std::fs::read(&missing).unwrap();
        std::fs::remove_file(&missing).unwrap();
        let said = check(dir.path(), &checkpoint).unwrap_err();
        assert!(said.contains("tile/entries/018"), "{said}");

        // An edited record before it is what is named, though the read beyond it fails too.
        edit(dir.path(), 300, count);
        let said = check(dir.path(), &checkpoint).unwrap_err();
        assert!(said.starts_with("record 300 "), "{said}");

        // With the tile back and the edit undone, the log checks out again; cut short, it ends
        // where it ends.
        std::fs::write(&missing, kept).unwrap();
        edit(dir.path(), 300, count);
        assert_eq!(check(dir.path(), &checkpoint), Ok(checkpoint.clone()));
        let last = dir.path().join(TileRef { level: None, index: 20, width: 17 }.path());
        let bundle = std::fs::read(&last).unwrap();
        let first_len = 2 + usize::from(u16::from_be_bytes([bundle[0], bundle[1]]));
        std::fs::write(&last, &bundle[..first_len]).unwrap();
        let said = check(dir.path(), &checkpoint).unwrap_err();
        assert!(said.contains(&format!("ends after {} records", 20 * TILE_WIDTH + 1)), "{said}");
    }
}
