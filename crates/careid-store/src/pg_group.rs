//! Group commit on PostgreSQL: many write transactions in one database transaction, and the
//! flush to disk outside the lock that every node waits for.
//!
//! careid runs a deployment's write transactions one at a time: each takes the audit log's head
//! row first, so that a rule read and the write it decides can never interleave with another's,
//! on this node or any other. That lock is the *serial section*: the whole deployment makes at
//! most one trip through it at a time, so its length bounds every node's writes together.
//!
//! On one node, write transactions run as savepoints on one dedicated connection inside a
//! shared database transaction (a *batch*), as on SQLite (`group.rs`). The batch's first
//! statement locks the head row and reads it; its members take sequence numbers from the head
//! in memory, and their audit records are inserted together, in multi-row statements, when the
//! batch ends, or sooner only before a statement that reads the log or refers to its records
//! (`touches_the_log`). The head row is written once per batch. A member that runs no
//! statement of its own (an application's report of a patient access) costs the batch no round
//! trip at all; one that does opens its savepoint with its first statement, so that a failed
//! statement undoes that member only.
//!
//! The batch commits with `synchronous_commit = off` on this connection: COMMIT returns, and
//! the head row is free for the next batch (this node's or another's), once the commit record
//! is in PostgreSQL's write-ahead log, before that log reaches the disk. Then, outside the
//! lock, a small transaction with a synchronous commit on another connection waits until the
//! log is flushed past it, and so past the batch; only then does any member return from
//! `commit`. No change is acknowledged before it is durable, and the serial section holds no
//! flush. The log is flushed in order, so a later batch that built on this one's head (its
//! sequence numbers, its chain hash) is never durable without it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use careid_domain::ports::StoreError;
use sqlx::{AnyConnection, AnyPool, Connection as _, Executor as _};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use crate::db::{DbConn, DbError, driver_error, query};
use crate::group::InLine;
use crate::rows::{hash, int};
use crate::tx::AuditRows;
use crate::{Backend, BatchCounters};

/// How many transactions one batch holds at most, so that none waits long for its flush.
const MOST_PER_BATCH: usize = 512;
/// How long a transaction that handed the writer on waits before taking it back.
const HANDOVER_PATIENCE: Duration = Duration::from_millis(20);

/// Where a batch is.
#[derive(Debug, Clone)]
enum BatchState {
    /// Members may still join.
    Open,
    /// Committed; the flush that makes it durable is under way.
    Flushing,
    /// Durable, or failed with this error.
    Ended(Result<(), String>),
}

struct Batch {
    id: u64,
    members: usize,
    state: watch::Sender<BatchState>,
    /// When the batch took the head row: the start of its serial section.
    locked_at: Instant,
}

/// The writer of one node: its connection and the batch open on it.
pub(crate) struct PgWriter {
    /// Detached from the pool (its commits are asynchronous, and so it never goes back there);
    /// `None` after a failure, and opened again by the next batch.
    conn: Option<AnyConnection>,
    batch: Option<Batch>,
    /// The log's head as the open batch left it (next sequence number, chain hash).
    pub(crate) head: Option<(u64, [u8; 32])>,
    head_dirty: bool,
    /// The transaction holding the writer opened a savepoint (it has run a statement).
    savepoint_open: bool,
    /// Audit rows of transactions released into the open batch, not yet inserted.
    pending: AuditRows,
    /// Rows of `pending` inserted inside the savepoint of the transaction holding the writer
    /// (its statement needed them): queued again should that savepoint be undone.
    inserted_in_savepoint: AuditRows,
}

/// Whether a statement reads the audit log or refers to its records: then the records the batch
/// holds in memory must be in the database first. (`every_table_that_refers_to_the_log_is_named`
/// checks the list against PostgreSQL's own foreign keys.)
fn touches_the_log(sql: &str) -> bool {
    ["audit_", "misuse_incidents", "patient_access"].iter().any(|table| sql.contains(table))
}

/// The shared writer of one node's PostgreSQL store.
#[derive(Clone)]
pub(crate) struct PgGroup {
    writer: Arc<Mutex<PgWriter>>,
    pool: AnyPool,
    waiting: Arc<AtomicUsize>,
    next_batch: Arc<AtomicU64>,
    pub(crate) counters: Arc<BatchCounters>,
    leader: Arc<Mutex<Leader>>,
}

/// The roles this node holds: session-level advisory locks on a connection of their own,
/// which PostgreSQL releases when the session ends, however the node stopped.
#[derive(Default)]
struct Leader {
    conn: Option<AnyConnection>,
    held: Vec<&'static str>,
}

/// A role's advisory lock key: FNV-1a of its name, in careid's own space of keys.
fn role_key(role: &str) -> i64 {
    let hash = format!("careid:{role}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    hash as i64
}

impl std::fmt::Debug for PgGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgGroup").field("waiting", &self.waiting.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

fn sqlx_failure(context: &'static str, error: sqlx::Error) -> StoreError {
    driver_error(context, &DbError::Sqlx(error))
}

impl PgWriter {
    /// The writer's connection, while a batch is open on it.
    pub(crate) fn connection(&mut self) -> DbConn<'_> {
        DbConn::Pg(self.pg_connection())
    }

    pub(crate) fn pg_connection(&mut self) -> &mut AnyConnection {
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("a batch is open only on a connection"),
        }
    }

    async fn run(&mut self, sql: &'static str) -> Result<(), StoreError> {
        query(sql).execute(self.connection()).await.map(drop).map_err(|e| driver_error(sql, &e))
    }

    /// Inserts the rows of transactions already released into the batch.
    async fn insert_pending(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut rows = std::mem::take(&mut self.pending);
        rows.insert(self.connection(), Backend::Postgres).await.map_err(|e| driver_error("append audit", &e))
    }

    /// Before a statement of the transaction holding the writer: if it reads the log or refers
    /// to its records, the records held in memory go in first, the batch's earlier ones (kept,
    /// should this transaction's savepoint be undone) and then the transaction's own (`own`).
    /// Any other statement costs nothing more.
    pub(crate) async fn before_statement(&mut self, sql: &str, own: &mut AuditRows) -> Result<(), DbError> {
        if !touches_the_log(sql) {
            return Ok(());
        }
        if !self.pending.is_empty() {
            let earlier = std::mem::take(&mut self.pending);
            earlier.clone().insert_pg(self.pg_connection()).await?;
            self.inserted_in_savepoint.extend(earlier);
        }
        if !own.is_empty() {
            std::mem::take(own).insert_pg(self.pg_connection()).await?;
        }
        Ok(())
    }

    /// Before the transaction holding the writer runs its first statement: its savepoint opens,
    /// so that undoing it undoes only its own work. A failure here fails the whole batch.
    pub(crate) async fn open_savepoint(&mut self) -> Result<(), StoreError> {
        if self.savepoint_open {
            return Ok(());
        }
        let opened = self.run("SAVEPOINT careid_tx").await;
        if let Err(error) = &opened {
            self.fail_batch(error);
            return opened;
        }
        self.savepoint_open = true;
        Ok(())
    }

    /// Undoes the savepoint of a transaction that ended without committing; on failure the
    /// whole batch fails.
    async fn undo_abandoned(&mut self) -> Result<(), StoreError> {
        if !self.savepoint_open {
            return Ok(());
        }
        self.savepoint_open = false;
        let undone = async {
            self.run("ROLLBACK TO careid_tx").await?;
            self.run("RELEASE careid_tx").await
        }
        .await;
        if let Err(error) = &undone {
            self.fail_batch(error);
        } else {
            // Earlier transactions' records inserted inside the undone savepoint wait again.
            let mut requeued = std::mem::take(&mut self.inserted_in_savepoint);
            requeued.extend(std::mem::take(&mut self.pending));
            self.pending = requeued;
        }
        undone
    }

    /// Gives up the batch: the connection is closed (which rolls it back and frees the head
    /// row), and every member gets the error.
    fn fail_batch(&mut self, error: &StoreError) {
        self.conn = None;
        (self.head, self.head_dirty, self.savepoint_open) = (None, false, false);
        self.pending = AuditRows::default();
        self.inserted_in_savepoint = AuditRows::default();
        if let Some(batch) = self.batch.take() {
            batch
                .state
                .send_replace(BatchState::Ended(Err(format!("the batch this transaction was in failed: {error}"))));
        }
    }
}

impl PgGroup {
    pub(crate) fn new(pool: AnyPool) -> PgGroup {
        PgGroup {
            writer: Arc::new(Mutex::new(PgWriter {
                conn: None,
                batch: None,
                head: None,
                head_dirty: false,
                savepoint_open: false,
                pending: AuditRows::default(),
                inserted_in_savepoint: AuditRows::default(),
            })),
            pool,
            waiting: Arc::new(AtomicUsize::new(0)),
            next_batch: Arc::new(AtomicU64::new(1)),
            counters: Arc::new(BatchCounters::default()),
            leader: Arc::default(),
        }
    }

    /// Whether this node holds `role`, taking it if no node does (see `Store::lead`).
    pub(crate) async fn lead(&self, role: &'static str) -> Result<bool, StoreError> {
        let mut leader = self.leader.lock().await;
        let leader = &mut *leader;
        if leader.conn.is_none() {
            leader.held.clear();
            leader.conn = Some(self.pool.acquire().await.map_err(|e| sqlx_failure("connect", e))?.detach());
        }
        let Some(conn) = leader.conn.as_mut() else { unreachable!("connected above") };
        let checked = if leader.held.contains(&role) {
            // Held while this session lives: check that it still does.
            sqlx::query("SELECT 1").execute(&mut *conn).await.map(|_| true)
        } else {
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)").bind(role_key(role)).fetch_one(conn).await
        };
        match checked {
            Ok(held) => {
                if held && !leader.held.contains(&role) {
                    leader.held.push(role);
                }
                Ok(held)
            }
            Err(error) => {
                // The session, and every role with it, is gone.
                (leader.conn, leader.held) = (None, Vec::new());
                Err(sqlx_failure("lead", error))
            }
        }
    }

    /// Waits for the writer, in the open batch or a new one that has locked the head row.
    pub(crate) async fn begin(&self) -> Result<OwnedMutexGuard<PgWriter>, StoreError> {
        let in_line = InLine::join(&self.waiting);
        let mut writer = self.writer.clone().lock_owned().await;
        drop(in_line);
        writer.undo_abandoned().await?;
        if writer.batch.is_none() {
            self.open_batch(&mut writer).await?;
        }
        Ok(writer)
    }

    async fn open_batch(&self, writer: &mut PgWriter) -> Result<(), StoreError> {
        if writer.conn.is_none() {
            let mut conn = self.pool.acquire().await.map_err(|e| sqlx_failure("connect", e))?.detach();
            conn.execute("SET synchronous_commit = off").await.map_err(|e| sqlx_failure("connect", e))?;
            writer.conn = Some(conn);
        }
        let id = self.next_batch.fetch_add(1, Ordering::SeqCst);
        writer.batch =
            Some(Batch { id, members: 0, state: watch::channel(BatchState::Open).0, locked_at: Instant::now() });
        let locked = async {
            writer.run("BEGIN").await?;
            let row = query("UPDATE audit_head SET writes = writes + 1 WHERE id = 1 RETURNING next_seq, chain_hash")
                .fetch_one(writer.connection())
                .await
                .map_err(|e| driver_error("take write lock", &e))?;
            Ok::<_, StoreError>((int(&row, "next_seq")? as u64, hash(&row, "chain_hash")?))
        }
        .await;
        match locked {
            Ok(head) => {
                writer.head = Some(head);
                writer.head_dirty = false;
                if let Some(batch) = writer.batch.as_mut() {
                    batch.locked_at = Instant::now();
                }
                Ok(())
            }
            Err(error) => {
                writer.fail_batch(&error);
                Err(error)
            }
        }
    }

    /// Ends a transaction that succeeded: its savepoint is released, its records and the head
    /// it moved join the batch, which commits now if nobody else waits for the writer (or the
    /// batch is full), or later, by whoever ends it.
    pub(crate) async fn commit(
        &self,
        mut writer: OwnedMutexGuard<PgWriter>,
        records: AuditRows,
        head: Option<(u64, [u8; 32])>,
    ) -> Result<(), StoreError> {
        if writer.savepoint_open {
            writer.savepoint_open = false;
            if let Err(error) = writer.run("RELEASE careid_tx").await {
                writer.fail_batch(&error);
                return Err(error);
            }
        }
        // Whatever went in inside the savepoint is now the batch's.
        writer.inserted_in_savepoint = AuditRows::default();
        writer.pending.extend(records);
        if let Some(head) = head {
            writer.head = Some(head);
            writer.head_dirty = true;
        }
        let Some(batch) = writer.batch.as_mut() else {
            return Err(StoreError::Unavailable("the writer's batch vanished".into()));
        };
        batch.members += 1;
        let (id, full) = (batch.id, batch.members >= MOST_PER_BATCH);
        let mut state = batch.state.subscribe();
        if full || self.waiting.load(Ordering::SeqCst) == 0 {
            return self.commit_batch(writer).await;
        }
        drop(writer);
        loop {
            let waited = tokio::time::timeout(HANDOVER_PATIENCE, state.wait_for(|s| !matches!(s, BatchState::Open)))
                .await
                .map(|seen| seen.map(drop));
            match waited {
                Ok(Ok(())) => break,
                Ok(Err(_)) => return Err(StoreError::Unavailable("the batch ended without an outcome".into())),
                Err(_) => {
                    // Nobody has ended the batch yet: take the writer back and end it, unless it
                    // ended while we queued.
                    let writer = self.writer.clone().lock_owned().await;
                    if writer.batch.as_ref().is_some_and(|b| b.id == id) {
                        return self.commit_batch(writer).await;
                    }
                }
            }
        }
        let ended = state.wait_for(|s| matches!(s, BatchState::Ended(_))).await.map(|s| s.clone());
        match ended {
            Ok(BatchState::Ended(outcome)) => outcome.map_err(StoreError::Unavailable),
            _ => Err(StoreError::Unavailable("the batch ended without an outcome".into())),
        }
    }

    /// Ends a transaction that failed or was abandoned: its savepoint is undone (its records
    /// were never inserted, and its head never handed on); the batch commits if it holds
    /// others and nobody else is waiting to join it.
    pub(crate) async fn roll_back(&self, mut writer: OwnedMutexGuard<PgWriter>) {
        if writer.undo_abandoned().await.is_err() {
            return;
        }
        if self.waiting.load(Ordering::SeqCst) == 0 {
            let _ = self.commit_batch(writer).await;
        }
    }

    /// Commits the open batch, frees the writer, waits for the flush and tells the members.
    async fn commit_batch(&self, mut writer: OwnedMutexGuard<PgWriter>) -> Result<(), StoreError> {
        writer.undo_abandoned().await?;
        let Some(batch) = writer.batch.take() else { return Ok(()) };
        let committed = async {
            writer.insert_pending().await?;
            if let (true, Some((seq, chain))) = (writer.head_dirty, writer.head) {
                query("UPDATE audit_head SET next_seq = $1, chain_hash = $2 WHERE id = 1")
                    .bind(seq as i64)
                    .bind(chain.to_vec())
                    .execute(writer.connection())
                    .await
                    .map_err(|e| driver_error("write audit head", &e))?;
            }
            writer.run("COMMIT").await
        }
        .await;
        writer.head_dirty = false;
        if let Err(error) = committed {
            writer.batch = Some(batch);
            writer.fail_batch(&error);
            return Err(error);
        }
        let serial = batch.locked_at.elapsed();
        drop(writer);
        batch.state.send_replace(BatchState::Flushing);
        let flushing = Instant::now();
        let durable = self.wait_for_flush().await;
        self.counters.count(batch.members, serial, flushing.elapsed());
        batch.state.send_replace(BatchState::Ended(durable.clone().map_err(|e| e.to_string())));
        durable
    }

    /// Waits until PostgreSQL's write-ahead log is on disk past everything committed so far:
    /// a transaction that gets a transaction id commits synchronously, which flushes the log
    /// up to its own commit record. Flushes of several nodes' batches share one write.
    async fn wait_for_flush(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(|e| sqlx_failure("flush", e))?;
        let mut tx = conn.begin().await.map_err(|e| sqlx_failure("flush", e))?;
        sqlx::query("SELECT txid_current()").execute(&mut *tx).await.map_err(|e| sqlx_failure("flush", e))?;
        tx.commit().await.map_err(|e| sqlx_failure("flush", e))
    }

    /// Closes the writer's connection and gives up this node's roles (the store is closing).
    pub(crate) async fn close(&self) {
        let writer = self.writer.lock().await.conn.take();
        let leader = self.leader.lock().await.conn.take();
        for conn in [writer, leader].into_iter().flatten() {
            let _ = conn.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

    use super::touches_the_log;
    use crate::{SqlStore, StoreOptions};

    /// A statement that refers to the log's records must find the batch's records inserted:
    /// every table with a foreign key to `audit_log` is one `touches_the_log` knows.
    #[tokio::test]
    async fn every_table_that_refers_to_the_log_is_named() {
        let Some(url) = crate::test_postgres_url() else {
            eprintln!("CAREID_TEST_POSTGRES_URL is not set: the tables referring to the log were not listed");
            return;
        };
        let schema = format!("careid_test_{:016x}", rand::random::<u64>());
        let mut options = StoreOptions::new(url);
        options.schema = Some(schema.clone());
        let store = SqlStore::open(&options).await.unwrap();
        let pool = store.postgres_pool().cloned().unwrap();
        let referring: Vec<(String,)> = sqlx::query_as(
            "SELECT c.conrelid::regclass::text FROM pg_constraint c \
             WHERE c.contype = 'f' AND c.confrelid = 'audit_log'::regclass",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(!referring.is_empty(), "the schema has tables referring to the log");
        for (table,) in &referring {
            assert!(touches_the_log(&format!("INSERT INTO {table} (x) VALUES ($1)")), "{table} is not named");
        }
        assert!(!touches_the_log("INSERT INTO sessions (id) VALUES ($1)"));
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await.unwrap();
        store.close().await;
    }
}
