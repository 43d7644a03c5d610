//! Group commit on SQLite: many write transactions, one fsync.
//!
//! SQLite has one writer at a time, and a durable commit costs an fsync of the write-ahead log.
//! Every write transaction here runs on one dedicated connection as a SAVEPOINT inside a
//! shared physical transaction (a *batch*). A transaction that ends while others wait for the
//! writer releases its savepoint and hands the writer on; the last one in line commits the
//! batch, with one fsync for all, and only then does any of them return from `commit`. So no
//! change is acknowledged before it is durable, and a failed transaction rolls back to its own
//! savepoint without touching the others. If the batch itself fails to commit, every
//! transaction in it gets the error.
//!
//! A transaction that handed the writer on waits for its batch; should the writer it handed
//! to never finish (its caller gave up while waiting), the waiter takes the writer back after
//! a short pause and commits the batch itself.
//!
//! Statements run on the caller's thread (rusqlite); only the COMMIT, which waits for the
//! disk, is moved off the async runtime's worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use careid_domain::ports::StoreError;
use rusqlite::Connection;
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use crate::BatchCounters;
use crate::db::{DbError, driver_error};

/// How many transactions one batch holds at most, so that none waits long for its fsync.
const MOST_PER_BATCH: usize = 512;
/// How long a transaction that handed the writer on waits before taking it back.
const HANDOVER_PATIENCE: Duration = Duration::from_millis(20);

/// A batch's outcome, once committed or failed.
type Outcome = Option<Result<(), String>>;

/// A file database's write-ahead log, and how large it may grow.
#[derive(Debug, Clone)]
pub(crate) struct WalWatch {
    pub(crate) path: std::path::PathBuf,
    /// Past this many bytes, the writer itself finishes a checkpoint after a commit, so that
    /// the log starts over (and is cut back to this size: `journal_size_limit`).
    pub(crate) limit: u64,
}

/// The writer: its connection, and the batch open on it.
pub(crate) struct Writer {
    conn: Connection,
    /// File databases: a commit waits for the disk, and the write-ahead log is watched.
    wal: Option<WalWatch>,
    batch: Option<Batch>,
    /// The audit log's head as the open batch left it (next sequence number, chain hash):
    /// transactions in a batch take it from here and hand it back when they commit, and the
    /// batch writes it to `audit_head` once, before its COMMIT. `None`: read it from the table.
    pub(crate) head: Option<(u64, [u8; 32])>,
    /// `head` differs from the table.
    pub(crate) head_dirty: bool,
    /// A transaction's savepoint is open: its transaction has not ended, or ended without
    /// saying so. Whoever takes the writer next undoes it before anything else, so an
    /// abandoned transaction never commits.
    savepoint_open: bool,
    counters: Arc<BatchCounters>,
}

struct Batch {
    id: u64,
    /// Transactions released into the batch, waiting for it to commit.
    members: usize,
    done: watch::Sender<Outcome>,
    /// When the batch took SQLite's write lock: its serial section runs until the COMMIT is
    /// on disk.
    locked_at: std::time::Instant,
}

/// The shared writer of one SQLite store.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    writer: Arc<Mutex<Writer>>,
    /// Transactions waiting for the writer: while there are any, a finishing one hands on.
    waiting: Arc<AtomicUsize>,
    next_batch: Arc<AtomicUsize>,
    pub(crate) counters: Arc<BatchCounters>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").field("waiting", &self.waiting.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

/// Counts a transaction as waiting for the writer until dropped (both backends' writers).
pub(crate) struct InLine(Arc<AtomicUsize>);

impl InLine {
    pub(crate) fn join(waiting: &Arc<AtomicUsize>) -> InLine {
        waiting.fetch_add(1, Ordering::SeqCst);
        InLine(waiting.clone())
    }
}

impl Drop for InLine {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn run(conn: &Connection, sql: &'static str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs `f`, which waits for the disk, where it does not hold up the runtime's other tasks.
fn off_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl GroupCommit {
    pub(crate) fn new(conn: Connection, wal: Option<WalWatch>) -> GroupCommit {
        let counters = Arc::new(BatchCounters::default());
        GroupCommit {
            writer: Arc::new(Mutex::new(Writer {
                conn,
                wal,
                batch: None,
                head: None,
                head_dirty: false,
                savepoint_open: false,
                counters: counters.clone(),
            })),
            waiting: Arc::new(AtomicUsize::new(0)),
            next_batch: Arc::new(AtomicUsize::new(1)),
            counters,
        }
    }

    /// Waits for the writer and opens a savepoint for a new transaction, in the open batch
    /// or a new one.
    pub(crate) async fn begin(&self) -> Result<OwnedMutexGuard<Writer>, StoreError> {
        let in_line = InLine::join(&self.waiting);
        let mut writer = self.writer.clone().lock_owned().await;
        drop(in_line);
        undo_abandoned(&mut writer)?;
        if writer.batch.is_none() {
            let id = self.next_batch.fetch_add(1, Ordering::SeqCst) as u64;
            writer.batch =
                Some(Batch { id, members: 0, done: watch::channel(None).0, locked_at: std::time::Instant::now() });
            if let Err(e) = run(&writer.conn, "BEGIN IMMEDIATE") {
                let error = driver_error("begin", &DbError::Lite(e));
                fail_batch(&mut writer, &error);
                return Err(error);
            }
        }
        if let Err(e) = run(&writer.conn, "SAVEPOINT careid_tx") {
            let error = driver_error("savepoint", &DbError::Lite(e));
            fail_batch(&mut writer, &error);
            return Err(error);
        }
        writer.savepoint_open = true;
        Ok(writer)
    }

    /// Takes the writer with no batch open on it, for work outside careid's transactions:
    /// reading an in-memory database, raw SQL, checkpointing the write-ahead log.
    pub(crate) async fn take_for_reading(&self) -> Result<OwnedMutexGuard<Writer>, StoreError> {
        let mut writer = self.writer.clone().lock_owned().await;
        commit_batch(&mut writer)?;
        Ok(writer)
    }

    /// Ends a transaction that succeeded: it joins the batch, which commits now if nobody else
    /// waits for the writer (or the batch is full), or later, by whoever ends it.
    pub(crate) async fn commit(&self, mut writer: OwnedMutexGuard<Writer>) -> Result<(), StoreError> {
        writer.savepoint_open = false;
        if let Err(e) = run(&writer.conn, "RELEASE careid_tx") {
            let error = driver_error("release savepoint", &DbError::Lite(e));
            fail_batch(&mut writer, &error);
            return Err(error);
        }
        let Some(batch) = writer.batch.as_mut() else {
            return Err(StoreError::Unavailable("the writer's batch vanished".into()));
        };
        batch.members += 1;
        let (id, full) = (batch.id, batch.members >= MOST_PER_BATCH);
        let mut done = batch.done.subscribe();
        if full || self.waiting.load(Ordering::SeqCst) == 0 {
            return commit_batch(&mut writer);
        }
        drop(writer);
        loop {
            let waited = tokio::time::timeout(HANDOVER_PATIENCE, done.wait_for(Option::is_some))
                .await
                .map(|outcome| outcome.map(|o| o.clone()));
            match waited {
                Ok(Ok(outcome)) => return outcome.unwrap_or(Ok(())).map_err(StoreError::Unavailable),
                Ok(Err(_)) => return Err(StoreError::Unavailable("the batch ended without an outcome".into())),
                Err(_) => {
                    // Nobody has ended the batch yet: take the writer back and end it, unless it
                    // ended while we queued.
                    let mut writer = self.writer.clone().lock_owned().await;
                    if writer.batch.as_ref().is_some_and(|b| b.id == id) {
                        return commit_batch(&mut writer);
                    }
                }
            }
        }
    }

    /// Ends a transaction that failed or was abandoned: its savepoint is undone; the batch
    /// commits if it holds others and nobody else is waiting to join it.
    pub(crate) fn roll_back(&self, mut writer: OwnedMutexGuard<Writer>) {
        if undo_abandoned(&mut writer).is_err() {
            return;
        }
        if self.waiting.load(Ordering::SeqCst) == 0 {
            // Nobody comes after: end the batch here (committing whoever joined it).
            let _ = commit_batch(&mut writer);
        }
    }
}

#[cfg(test)]
impl GroupCommit {
    /// The writer, if nobody holds it (tests look at the database through it).
    pub(crate) fn try_writer(&self) -> Option<tokio::sync::MutexGuard<'_, Writer>> {
        self.writer.try_lock().ok()
    }
}

impl Writer {
    #[cfg(test)]
    pub(crate) fn connection_ref(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// Undoes the savepoint of a transaction that ended without committing; on failure the whole
/// batch fails.
fn undo_abandoned(writer: &mut Writer) -> Result<(), StoreError> {
    if !writer.savepoint_open {
        return Ok(());
    }
    writer.savepoint_open = false;
    if let Err(e) = run(&writer.conn, "ROLLBACK TO careid_tx").and_then(|()| run(&writer.conn, "RELEASE careid_tx")) {
        let error = driver_error("roll back to savepoint", &DbError::Lite(e));
        fail_batch(writer, &error);
        return Err(error);
    }
    Ok(())
}

/// Commits the open batch and tells its members.
fn commit_batch(writer: &mut Writer) -> Result<(), StoreError> {
    undo_abandoned(writer)?;
    let Some(batch) = writer.batch.take() else { return Ok(()) };
    let conn = &writer.conn;
    let head = match (writer.head_dirty, writer.head) {
        (true, Some((seq, chain))) => conn
            .prepare_cached("UPDATE audit_head SET next_seq = ?1, chain_hash = ?2 WHERE id = 1")
            .and_then(|mut s| s.execute(rusqlite::params![seq as i64, chain.to_vec()]))
            .map(|_| ()),
        _ => Ok(()),
    };
    let committed = head.and_then(|()| match &writer.wal {
        Some(wal) => off_the_runtime(|| {
            run(conn, "COMMIT")?;
            // The checkpointer copies the log into the database beside the writer, but the log
            // starts over only when a checkpoint has caught up with it between two write
            // transactions: under a steady stream of writes that is here, once it has grown.
            if std::fs::metadata(&wal.path).is_ok_and(|m| m.len() > wal.limit) {
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            }
            Ok(())
        }),
        None => run(conn, "COMMIT"),
    });
    let outcome = committed.map_err(|e| driver_error("commit", &DbError::Lite(e)));
    writer.head_dirty = false;
    if outcome.is_err() {
        let _ = run(&writer.conn, "ROLLBACK");
        writer.head = None;
    } else {
        writer.counters.count(batch.members, batch.locked_at.elapsed(), Duration::ZERO);
    }
    batch.done.send_replace(Some(outcome.clone().map_err(|e| e.to_string())));
    outcome
}

/// Rolls the whole batch back and gives its members the error.
fn fail_batch(writer: &mut Writer, error: &StoreError) {
    let _ = run(&writer.conn, "ROLLBACK");
    (writer.head, writer.head_dirty, writer.savepoint_open) = (None, false, false);
    if let Some(batch) = writer.batch.take() {
        batch.done.send_replace(Some(Err(format!("the batch this transaction was in failed: {error}"))));
    }
}
