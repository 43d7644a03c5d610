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

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use careid_domain::ports::StoreError;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use crate::driver_error;

/// How many transactions one batch holds at most, so that none waits long for its fsync.
const MOST_PER_BATCH: usize = 512;
/// How long a transaction that handed the writer on waits before taking it back.
const HANDOVER_PATIENCE: Duration = Duration::from_millis(20);

/// A batch's outcome, once committed or failed.
type Outcome = Option<Result<(), String>>;

/// The writer: its connection, and the batch open on it.
pub(crate) struct Writer {
    conn: PoolConnection<Any>,
    batch: Option<Batch>,
    /// The audit log's head as the open batch left it (next sequence number, chain hash):
    /// transactions in a batch take it from here and hand it back when they commit, and the
    /// batch writes it to `audit_head` once, before its COMMIT. `None`: read it from the table.
    pub(crate) head: Option<(u64, [u8; 32])>,
    /// `head` differs from the table.
    pub(crate) head_dirty: bool,
    /// A transaction's savepoint is open: its transaction has not ended, or ended without
    /// saying so (dropped where no runtime could undo it). Whoever takes the writer next
    /// undoes it before anything else, so an abandoned transaction never commits.
    savepoint_open: bool,
    /// The last transaction to commit left its savepoint on the stack: the next one releases
    /// it in the same call that opens its own, and COMMIT ends it in any case. One call fewer
    /// per transaction: each costs two thread hand-offs in the driver.
    release_due: bool,
}

struct Batch {
    id: u64,
    /// Transactions released into the batch, waiting for it to commit.
    members: usize,
    done: watch::Sender<Outcome>,
}

/// The shared writer of one SQLite store.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    writer: Arc<Mutex<Writer>>,
    /// Transactions waiting for the writer: while there are any, a finishing one hands on.
    waiting: Arc<AtomicUsize>,
    next_batch: Arc<AtomicUsize>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").field("waiting", &self.waiting.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

/// Counts a transaction as waiting for the writer until dropped.
struct InLine(Arc<AtomicUsize>);

impl Drop for InLine {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

const SAVEPOINT: &str = "SAVEPOINT careid_tx";
const BEGIN_AND_SAVEPOINT: &str = "BEGIN IMMEDIATE; SAVEPOINT careid_tx";
const RELEASE_AND_SAVEPOINT: &str = "RELEASE careid_tx; SAVEPOINT careid_tx";
const ROLLBACK_TO: &str = "ROLLBACK TO careid_tx; RELEASE careid_tx";

impl GroupCommit {
    /// Takes one connection out of `pool` for good, as the writer.
    pub(crate) async fn new(pool: &AnyPool) -> Result<GroupCommit, StoreError> {
        let conn = pool.acquire().await.map_err(|e| driver_error("writer connection", &e))?;
        Ok(GroupCommit {
            writer: Arc::new(Mutex::new(Writer {
                conn,
                batch: None,
                head: None,
                head_dirty: false,
                savepoint_open: false,
                release_due: false,
            })),
            waiting: Arc::new(AtomicUsize::new(0)),
            next_batch: Arc::new(AtomicUsize::new(1)),
        })
    }

    /// Waits for the writer and opens a savepoint for a new transaction, in the open batch
    /// or a new one.
    pub(crate) async fn begin(&self) -> Result<OwnedMutexGuard<Writer>, StoreError> {
        let in_line = {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            InLine(self.waiting.clone())
        };
        let mut writer = self.writer.clone().lock_owned().await;
        drop(in_line);
        undo_abandoned(&mut writer).await?;
        let opening = if writer.batch.is_none() {
            let id = self.next_batch.fetch_add(1, Ordering::SeqCst) as u64;
            writer.batch = Some(Batch { id, members: 0, done: watch::channel(None).0 });
            BEGIN_AND_SAVEPOINT
        } else if writer.release_due {
            RELEASE_AND_SAVEPOINT
        } else {
            SAVEPOINT
        };
        writer.release_due = false;
        if let Err(e) = writer.conn.execute(opening).await {
            let error = driver_error("savepoint", &e);
            fail_batch(&mut writer, &error).await;
            return Err(error);
        }
        writer.savepoint_open = true;
        Ok(writer)
    }

    /// Ends a transaction that succeeded: it joins the batch, which commits now if nobody else
    /// waits for the writer (or the batch is full), or later, by whoever ends it.
    pub(crate) async fn commit(&self, mut writer: OwnedMutexGuard<Writer>) -> Result<(), StoreError> {
        (writer.savepoint_open, writer.release_due) = (false, true);
        let Some(batch) = writer.batch.as_mut() else {
            return Err(StoreError::Unavailable("the writer's batch vanished".into()));
        };
        batch.members += 1;
        let (id, full) = (batch.id, batch.members >= MOST_PER_BATCH);
        let mut done = batch.done.subscribe();
        if full || self.waiting.load(Ordering::SeqCst) == 0 {
            return commit_batch(&mut writer).await;
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
                        return commit_batch(&mut writer).await;
                    }
                }
            }
        }
    }

    /// Ends a transaction that failed or was abandoned: its savepoint is undone; the batch
    /// commits if it holds others and nobody else is waiting to join it.
    pub(crate) async fn roll_back(&self, mut writer: OwnedMutexGuard<Writer>) {
        if undo_abandoned(&mut writer).await.is_err() {
            return;
        }
        if self.waiting.load(Ordering::SeqCst) == 0 {
            // Nobody comes after: end the batch here (committing whoever joined it).
            let _ = commit_batch(&mut writer).await;
        }
    }
}

impl Writer {
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

/// Undoes the savepoint of a transaction that ended without committing; on failure the whole
/// batch fails.
async fn undo_abandoned(writer: &mut Writer) -> Result<(), StoreError> {
    if !writer.savepoint_open {
        return Ok(());
    }
    writer.savepoint_open = false;
    if let Err(e) = writer.conn.execute(ROLLBACK_TO).await {
        let error = driver_error("roll back to savepoint", &e);
        fail_batch(writer, &error).await;
        return Err(error);
    }
    Ok(())
}

/// Commits the open batch and tells its members.
async fn commit_batch(writer: &mut Writer) -> Result<(), StoreError> {
    undo_abandoned(writer).await?;
    let Some(batch) = writer.batch.take() else { return Ok(()) };
    // COMMIT also ends a savepoint left for release. The head goes in the same call, its
    // values written into the statement: both are numbers careid made.
    let commit = match (writer.head_dirty, writer.head) {
        (true, Some((seq, chain))) => format!(
            "UPDATE audit_head SET next_seq = {seq}, chain_hash = X'{}' WHERE id = 1; COMMIT",
            hex::encode(chain)
        ),
        _ => "COMMIT".to_owned(),
    };
    let outcome = writer.conn.execute(commit.as_str()).await.map(|_| ()).map_err(|e| driver_error("commit", &e));
    writer.release_due = false;
    writer.head_dirty = false;
    if outcome.is_err() {
        let _ = writer.conn.execute("ROLLBACK").await;
        writer.head = None;
    }
    batch.done.send_replace(Some(outcome.clone().map_err(|e| e.to_string())));
    outcome
}

/// Rolls the whole batch back and gives its members the error.
async fn fail_batch(writer: &mut Writer, error: &StoreError) {
    let _ = writer.conn.execute("ROLLBACK").await;
    (writer.head, writer.head_dirty, writer.savepoint_open, writer.release_due) = (None, false, false, false);
    if let Some(batch) = writer.batch.take() {
        batch.done.send_replace(Some(Err(format!("the batch this transaction was in failed: {error}"))));
    }
}
