//! SQLite through rusqlite: where the database is, its connections, and its migrations.
//!
//! Writes go through one writer connection with group commit (`group.rs`). Reads on a file
//! database each take a connection of their own from a small pool, inside a read
//! transaction, so that they see one snapshot and never wait for the writer (write-ahead
//! log). An in-memory database is one connection, so its reads take the writer.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use careid_domain::ports::StoreError;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::OwnedMutexGuard;

use crate::db::{DbError, driver_error};
use crate::group::{GroupCommit, WalWatch, Writer};

/// Where a `sqlite:` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Memory,
    File { path: PathBuf, create: bool },
}

impl Location {
    /// `sqlite::memory:`, `sqlite:PATH`, `sqlite://PATH`, with `?mode=rwc` (create if missing),
    /// `?mode=rw` (the default: the file must exist) or `?mode=memory`.
    pub(crate) fn of_url(url: &str) -> Result<Location, StoreError> {
        let rest = url.strip_prefix("sqlite:").ok_or_else(|| bad_url("it must start with sqlite:"))?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
        let mut create = false;
        for param in params.split('&').filter(|p| !p.is_empty()) {
            match param.split_once('=') {
                Some(("mode", "rwc")) => create = true,
                Some(("mode", "rw")) => create = false,
                Some(("mode", "memory")) => return Ok(Location::Memory),
                _ => return Err(bad_url(&format!("unknown parameter {param:?} (only mode=rwc, rw or memory)"))),
            }
        }
        if path == ":memory:" {
            return Ok(Location::Memory);
        }
        if path.is_empty() {
            return Err(bad_url("it names no file"));
        }
        Ok(Location::File { path: PathBuf::from(path), create })
    }
}

fn bad_url(why: &str) -> StoreError {
    StoreError::Unavailable(format!("SQLite store URL: {why}"))
}

fn lite_error(context: &'static str, error: rusqlite::Error) -> StoreError {
    driver_error(context, &DbError::Lite(error))
}

/// Settings every connection gets. (The writer of a file database also gets `synchronous = FULL`:
/// a commit is on disk before it returns.)
const PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                       PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;";

/// How large the write-ahead log may grow before the writer sees to it that it starts over.
const WAL_LIMIT: u64 = 64 << 20;

/// How many prepared statements each connection keeps.
const STATEMENT_CACHE: usize = 256;

fn open_connection(location: &Location, create: bool) -> Result<Connection, StoreError> {
    let conn = match location {
        Location::Memory => Connection::open_in_memory(),
        Location::File { path, .. } => {
            let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            if create {
                flags |= OpenFlags::SQLITE_OPEN_CREATE;
            }
            Connection::open_with_flags(path, flags)
        }
    }
    .map_err(|e| lite_error("open SQLite", e))?;
    conn.execute_batch(PRAGMAS).map_err(|e| lite_error("configure SQLite", e))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// The SQLite side of a store.
#[derive(Debug, Clone)]
pub(crate) struct LiteStore {
    pub(crate) group: GroupCommit,
    /// File databases only.
    readers: Option<ReaderPool>,
    /// File databases only: stops the checkpointer when the last clone of the store goes.
    _checkpointer: Option<Arc<Checkpointer>>,
}

impl LiteStore {
    pub(crate) fn open(url: &str, migrations: &[(i64, &str, &str)]) -> Result<LiteStore, StoreError> {
        LiteStore::open_with(url, migrations, WAL_LIMIT)
    }

    fn open_with(url: &str, migrations: &[(i64, &str, &str)], wal_limit: u64) -> Result<LiteStore, StoreError> {
        let location = Location::of_url(url)?;
        let create = matches!(location, Location::File { create: true, .. });
        let writer = open_connection(&location, create)?;
        if matches!(location, Location::File { .. }) {
            // Journal mode is the database's own setting; WAL lets readers run beside the writer.
            writer
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get::<_, String>(0))
                .map_err(|e| lite_error("write-ahead log", e))?;
            writer.execute_batch("PRAGMA synchronous = FULL").map_err(|e| lite_error("configure SQLite", e))?;
        }
        migrate(&writer, migrations)?;
        let (wal, readers, checkpointer) = match location {
            Location::Memory => (None, None, None),
            Location::File { ref path, .. } => {
                // The writer does not copy the write-ahead log into the database after its
                // commits (a commit that did would wait for it): a thread of the store's own
                // does, beside it. The writer finishes a checkpoint only once the log has
                // passed its limit (`group.rs`), and then cuts the file back to it.
                writer
                    .execute_batch(&format!("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {wal_limit}"))
                    .map_err(|e| lite_error("configure SQLite", e))?;
                let mut wal_path = path.clone().into_os_string();
                wal_path.push("-wal");
                let wal = WalWatch { path: wal_path.into(), limit: wal_limit };
                let checkpointer = Checkpointer::start(open_connection(&location, false)?)?;
                let readers = ReaderPool { location, idle: Arc::new(Mutex::new(Vec::new())) };
                (Some(wal), Some(readers), Some(Arc::new(checkpointer)))
            }
        };
        Ok(LiteStore { group: GroupCommit::new(writer, wal), readers, _checkpointer: checkpointer })
    }

    pub(crate) async fn begin_read(&self) -> Result<Reader, StoreError> {
        match &self.readers {
            Some(pool) => pool.begin(),
            None => Ok(Reader::Writer(self.group.take_for_reading().await?)),
        }
    }

    /// Runs SQL outside any transaction of careid's: operator tools and tamper tests.
    pub(crate) async fn execute_raw(&self, sql: &str) -> Result<(), StoreError> {
        let mut writer = self.group.take_for_reading().await?;
        writer.connection().execute_batch(sql).map_err(|e| lite_error("raw SQL", e))
    }

    /// Moves the write-ahead log into the database file.
    pub(crate) async fn checkpoint_wal(&self) -> Result<(), StoreError> {
        if self.readers.is_none() {
            return Ok(());
        }
        let mut writer = self.group.take_for_reading().await?;
        writer
            .connection()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| lite_error("checkpoint the write-ahead log", e))
    }
}

/// Copies committed pages from the write-ahead log into the database file, off the writer's
/// path, every `CHECKPOINT_EVERY` (a PASSIVE checkpoint: it never waits for the writer or
/// readers). The log starts over only when a checkpoint has caught up with it between two
/// write transactions; under a steady stream of writes the writer sees to that once the log
/// has grown past its limit (`group.rs`).
#[derive(Debug)]
struct Checkpointer {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Checkpointer {
    fn start(conn: Connection) -> Result<Checkpointer, StoreError> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("careid-wal-checkpoint".into())
            .spawn(move || {
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(%error, "could not checkpoint the write-ahead log");
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("starting the checkpointer: {e}")))?;
        Ok(Checkpointer { stop })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Idle reader connections of a file database.
#[derive(Clone)]
pub(crate) struct ReaderPool {
    location: Location,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl std::fmt::Debug for ReaderPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderPool").field("location", &self.location).finish_non_exhaustive()
    }
}

/// How many idle readers are kept; more may be open while busy.
const IDLE_READERS: usize = 64;

impl ReaderPool {
    fn begin(&self) -> Result<Reader, StoreError> {
        let idle = self.idle.lock().map_or(None, |mut idle| idle.pop());
        let conn = if let Some(conn) = idle {
            conn
        } else {
            let conn = open_connection(&self.location, false)?;
            conn.execute_batch("PRAGMA query_only = ON").map_err(|e| lite_error("configure reader", e))?;
            conn
        };
        conn.prepare_cached("BEGIN").and_then(|mut s| s.execute([])).map_err(|e| lite_error("begin read", e))?;
        Ok(Reader::Pooled(Some(conn), self.clone()))
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_READERS
        {
            idle.push(conn);
        }
    }
}

/// A read transaction's connection.
pub(crate) enum Reader {
    /// A pooled connection of a file database, inside BEGIN; returned to the pool at the end.
    Pooled(Option<Connection>, ReaderPool),
    /// An in-memory database's only connection, held for the whole read.
    Writer(OwnedMutexGuard<Writer>),
}

impl Reader {
    pub(crate) fn connection(&mut self) -> &mut Connection {
        match self {
            Reader::Pooled(Some(conn), _) => conn,
            Reader::Pooled(None, _) => unreachable!("a reader's connection is taken only when it is dropped"),
            Reader::Writer(writer) => writer.connection(),
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Reader::Pooled(conn, pool) = self
            && let Some(conn) = conn.take()
        {
            // A read changes nothing: ending it either way frees its snapshot. A connection
            // that cannot end its transaction is closed instead of reused.
            if conn.prepare_cached("ROLLBACK").and_then(|mut s| s.execute([])).is_ok() {
                pool.give_back(conn);
            }
        }
    }
}

/// The table sqlx kept its migrations in, so that databases made by earlier versions go on.
const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
)";

/// Applies each migration not yet applied, each in its own transaction with its record.
fn migrate(conn: &Connection, migrations: &[(i64, &str, &str)]) -> Result<(), StoreError> {
    let fail = |e| lite_error("migrations", e);
    conn.execute_batch(MIGRATIONS_TABLE).map_err(fail)?;
    let applied: Vec<i64> = conn
        .prepare("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .and_then(|mut s| s.query_map([], |row| row.get(0))?.collect())
        .map_err(fail)?;
    if let Some(unknown) = applied.iter().find(|v| !migrations.iter().any(|(version, ..)| version == *v)) {
        return Err(StoreError::Unavailable(format!(
            "migrations: the database has migration {unknown}, which this careid does not know: is it older than the database?"
        )));
    }
    for (version, description, sql) in migrations.iter().filter(|(v, ..)| !applied.contains(v)) {
        let started = std::time::Instant::now();
        let checksum = sha384(sql);
        conn.execute_batch("BEGIN IMMEDIATE").map_err(fail)?;
        let outcome = conn.execute_batch(sql).and_then(|()| {
            conn.execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (?1, ?2, TRUE, ?3, ?4)",
                rusqlite::params![version, description, checksum, started.elapsed().as_nanos() as i64],
            )
        });
        match outcome {
            Ok(_) => conn.execute_batch("COMMIT").map_err(fail)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(StoreError::Unavailable(format!("migration {version} ({description}): {e}")));
            }
        }
    }
    Ok(())
}

fn sha384(sql: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha384::digest(sql.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_memory_or_a_file() {
        assert_eq!(Location::of_url("sqlite::memory:").unwrap(), Location::Memory);
        assert_eq!(
            Location::of_url("sqlite:///tmp/a.db?mode=rwc").unwrap(),
            Location::File { path: "/tmp/a.db".into(), create: true }
        );
        assert_eq!(
            Location::of_url("sqlite:data/a.db").unwrap(),
            Location::File { path: "data/a.db".into(), create: false }
        );
        assert!(Location::of_url("sqlite://a.db?cache=shared").is_err());
        assert!(Location::of_url("sqlite://").is_err());
    }

    #[tokio::test]
    async fn commits_reach_the_database_file_without_the_writer_checkpointing() {
        let dir = std::env::temp_dir().join(format!("careid-checkpoint-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("careid.db");
        let store =
            LiteStore::open(&format!("sqlite://{}?mode=rwc", path.display()), crate::SQLITE_MIGRATIONS).unwrap();
        store.execute_raw("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3)").await.unwrap();
        tokio::time::sleep(CHECKPOINT_EVERY * 4).await;
        // `immutable` reads the database file alone, ignoring the write-ahead log.
        let file_alone = Connection::open_with_flags(
            format!("file:{}?immutable=1", path.display()),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap();
        let rows: i64 = file_alone.query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0)).unwrap();
        assert_eq!(rows, 3, "the checkpointer copied the commit into the file");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn the_write_ahead_log_starts_over_under_a_steady_stream_of_writes() {
        let dir = std::env::temp_dir().join(format!("careid-wal-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("careid.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let store = LiteStore::open_with(&url, crate::SQLITE_MIGRATIONS, 1 << 20).unwrap();
        store.execute_raw("CREATE TABLE blobs (b BLOB)").await.unwrap();
        let wal = dir.join("careid.db-wal");
        let mut largest = 0;
        // 40 MiB written back to back, with no pause for a checkpoint to catch up.
        for _ in 0..250 {
            let mut writer = store.group.begin().await.unwrap();
            for _ in 0..40 {
                writer.connection().execute("INSERT INTO blobs VALUES (randomblob(4096))", []).unwrap();
            }
            store.group.commit(writer).await.unwrap();
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        // The limit, plus what one transaction adds before the commit that looks.
        assert!(largest < 4 << 20, "the log grew to {largest} bytes");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn migrations_apply_once_in_order_and_a_newer_database_is_refused() {
        let dir = std::env::temp_dir().join(format!("careid-migrate-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("careid.db").display());
        let all = crate::SQLITE_MIGRATIONS;
        let applied = |store: &LiteStore| -> Vec<i64> {
            let writer = store.group.try_writer().unwrap();
            let mut statement =
                writer.connection_ref().prepare("SELECT version FROM _sqlx_migrations ORDER BY version").unwrap();
            statement.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
        };
        // A database an earlier careid made, seven migrations in, is brought up to date.
        let older = LiteStore::open(&url, &all[..7]).unwrap();
        assert_eq!(applied(&older), (1..=7).collect::<Vec<_>>());
        drop(older);
        let current = LiteStore::open(&url, all).unwrap();
        assert_eq!(applied(&current), (1..=all.len() as i64).collect::<Vec<_>>());
        drop(current);
        // Opened again, nothing is applied twice.
        assert!(LiteStore::open(&url, all).is_ok());
        // A careid older than its database refuses it rather than guess.
        let refused = LiteStore::open(&url, &all[..7]).unwrap_err();
        assert!(refused.to_string().contains("migration 8"), "{refused}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
