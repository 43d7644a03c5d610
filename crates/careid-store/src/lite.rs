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
/// `secure_delete`: what a row held before an update or delete (an email's body once sent, a
/// session's state) is overwritten in the file, not left in the page's free space.
const PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                       PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY; PRAGMA secure_delete = ON;";

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

    /// Writes a consistent copy of the database to `path` (an empty or new file), with
    /// SQLite's `VACUUM INTO`: everything committed when it starts, compacted.
    pub(crate) async fn backup_to(&self, path: &std::path::Path) -> Result<(), StoreError> {
        let target = path.to_str().ok_or_else(|| StoreError::Unavailable("the backup's path is not UTF-8".into()))?;
        let mut writer = self.group.take_for_reading().await?;
        writer.connection().execute("VACUUM INTO ?1", [target]).map(|_| ()).map_err(|e| lite_error("back up", e))
    }

    /// Every row of `table`, in the order they were written (rowid, or the key where there is
    /// none), with its column names.
    pub(crate) async fn read_table(
        &self,
        table: &str,
    ) -> Result<(Vec<String>, Vec<Vec<rusqlite::types::Value>>), StoreError> {
        let mut writer = self.group.take_for_reading().await?;
        let conn = writer.connection();
        // A table WITHOUT ROWID has no rowid, and its rows come in its key's order.
        let mut statement = match conn.prepare(&format!("SELECT * FROM {table} ORDER BY rowid")) {
            Ok(statement) => statement,
            Err(_) => conn.prepare(&format!("SELECT * FROM {table}")).map_err(|e| lite_error("read a table", e))?,
        };
        let columns: Vec<String> = statement.column_names().iter().map(|c| (*c).to_owned()).collect();
        let width = columns.len();
        let rows = statement
            .query_map([], |row| (0..width).map(|i| row.get::<_, rusqlite::types::Value>(i)).collect())
            .map_err(|e| lite_error("read a table", e))?
            .collect::<Result<Vec<Vec<_>>, _>>()
            .map_err(|e| lite_error("read a table", e))?;
        Ok((columns, rows))
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

/// A reader connection changes nothing, and reads the database file through a memory map.
const READER_PRAGMAS: &str = "PRAGMA query_only = ON; PRAGMA mmap_size = 2147418112";

/// How many idle readers are kept; more may be open while busy.
const IDLE_READERS: usize = 64;

impl ReaderPool {
    fn begin(&self) -> Result<Reader, StoreError> {
        let idle = self.idle.lock().map_or(None, |mut idle| idle.pop());
        let conn = if let Some(conn) = idle {
            conn
        } else {
            let conn = open_connection(&self.location, false)?;
            // Readers map the database file (read-only; up to SQLite's 2 GiB cap, the rest
            // is read as before): a page costs no system call and no copy, which is most of
            // reading a whole log. The price, as SQLite documents it: a disk that fails under a
            // mapped page stops the process with a signal instead of an error.
            conn.execute_batch(READER_PRAGMAS).map_err(|e| lite_error("configure reader", e))?;
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
///
/// Foreign keys are off while migrations run, as SQLite's procedure for rebuilding a table
/// asks (a table referred to cannot otherwise be dropped and replaced); each migration is
/// checked with `foreign_key_check` before it commits instead.
fn migrate(conn: &Connection, migrations: &[(i64, &str, &str)]) -> Result<(), StoreError> {
    let fail = |e| lite_error("migrations", e);
    conn.execute_batch("PRAGMA foreign_keys = OFF").map_err(fail)?;
    let outcome = apply_migrations(conn, migrations);
    conn.execute_batch("PRAGMA foreign_keys = ON").map_err(fail)?;
    outcome
}

fn apply_migrations(conn: &Connection, migrations: &[(i64, &str, &str)]) -> Result<(), StoreError> {
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
        let outcome =
            conn.execute_batch(sql).map_err(|e| e.to_string()).and_then(|()| foreign_keys_hold(conn)).and_then(|()| {
                conn.execute(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                     VALUES (?1, ?2, TRUE, ?3, ?4)",
                    rusqlite::params![version, description, checksum, started.elapsed().as_nanos() as i64],
                )
                .map_err(|e| e.to_string())
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

/// `Ok` if every foreign key in the database refers to a row that exists; else which does not.
fn foreign_keys_hold(conn: &Connection) -> Result<(), String> {
    let broken: Option<(String, i64, String)> = conn
        .prepare("PRAGMA foreign_key_check")
        .and_then(|mut check| {
            check.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.next().transpose()
        })
        .map_err(|e| e.to_string())?;
    match broken {
        None => Ok(()),
        Some((table, rowid, parent)) => {
            Err(format!("row {rowid} of {table} refers to a row of {parent} that does not exist"))
        }
    }
}

fn sha384(sql: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha384::digest(sql.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test's database, removed when the test ends.
    struct Scratch {
        dir: std::path::PathBuf,
    }

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("careid-{name}-{:016x}", rand::random::<u64>()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch { dir }
        }

        fn path(&self) -> std::path::PathBuf {
            self.dir.join("careid.db")
        }

        fn url(&self) -> String {
            format!("sqlite://{}?mode=rwc", self.path().display())
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

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
        let scratch = Scratch::new("checkpoint");
        let path = scratch.path();
        let store = LiteStore::open(&scratch.url(), crate::SQLITE_MIGRATIONS).unwrap();
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
    }

    #[tokio::test]
    async fn the_write_ahead_log_starts_over_under_a_steady_stream_of_writes() {
        let scratch = Scratch::new("wal");
        let store = LiteStore::open_with(&scratch.url(), crate::SQLITE_MIGRATIONS, 1 << 20).unwrap();
        store.execute_raw("CREATE TABLE blobs (b BLOB)").await.unwrap();
        let wal = scratch.dir.join("careid.db-wal");
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
    }

    #[test]
    fn the_audit_log_is_rebuilt_in_sequence_order_with_every_row_and_rule_kept() {
        let scratch = Scratch::new("in-sequence");
        let url = scratch.url();
        let all = crate::SQLITE_MIGRATIONS;
        let rows = |store: &LiteStore, sql: &str| -> Vec<String> {
            let writer = store.group.try_writer().unwrap();
            let mut statement = writer.connection_ref().prepare(sql).unwrap();
            let width = statement.column_count();
            statement
                .query_map([], |row| {
                    (0..width)
                        .map(|i| Ok(format!("{:?}", row.get::<_, rusqlite::types::Value>(i)?)))
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap()
                .map(|row| row.unwrap().join("|"))
                .collect()
        };
        let log = "SELECT seq, at_us, action, actor, subject_person, org, entry, chain_hash, session FROM audit_log ORDER BY seq";
        let accesses = "SELECT * FROM patient_access ORDER BY seq";
        let incidents = "SELECT * FROM misuse_incidents ORDER BY id";
        // A database an earlier careid made, with records, patient accesses and an incident
        // that refer to them, written out of order.
        let older = LiteStore::open(&url, &all[..8]).unwrap();
        let mut writer = older.group.try_writer().unwrap();
        writer
            .connection()
            .execute_batch(
                "INSERT INTO organisations VALUES ('F83001', 'Practice', 'gp_practice', NULL);
                 INSERT INTO people VALUES ('555000000018', NULL, 'Ann', 'Ash', 'ANN', 'ASH', '1980-01-01',
                     'QQ123456C', NULL, NULL, 'active', 'F83001', 0);
                 INSERT INTO audit_log VALUES (2, 20, 'patient_access', '555000000018', NULL, 'F83001',
                     X'02', X'22', 's1');
                 INSERT INTO audit_log VALUES (0, 10, 'login', '555000000018', NULL, 'F83001', X'00', X'20', 's1');
                 INSERT INTO audit_log VALUES (1, 15, 'not_me', NULL, '555000000018', NULL, X'01', X'21', NULL);
                 INSERT INTO patient_access VALUES (2, '9434765919', '555000000018', 'F83001', 'gp', 'view',
                     'emergency', 20, 'emergency');
                 INSERT INTO misuse_incidents (record, person, org, comment, context, opened_at)
                     VALUES (0, '555000000018', 'F83001', 'not me', '{}', 30);",
            )
            .unwrap();
        drop(writer);
        let before = [rows(&older, log), rows(&older, accesses), rows(&older, incidents)];
        assert_eq!(before[0].len(), 3);
        drop(older);

        let current = LiteStore::open(&url, &all[..9]).unwrap();
        assert_eq!([rows(&current, log), rows(&current, accesses), rows(&current, incidents)], before);
        // seq is the rowid: no separate index on it, and the rows are stored in its order.
        let autoindexes = "SELECT name FROM sqlite_master WHERE name LIKE 'sqlite_autoindex_audit_log%' \
                           OR name LIKE 'sqlite_autoindex_patient_access%'";
        assert_eq!(rows(&current, autoindexes), Vec::<String>::new());
        assert_eq!(rows(&current, "SELECT seq FROM audit_log NOT INDEXED"), ["Integer(0)", "Integer(1)", "Integer(2)"]);
        let plan = rows(&current, "EXPLAIN QUERY PLAN SELECT entry FROM audit_log WHERE seq >= 1 ORDER BY seq");
        assert!(plan.iter().any(|step| step.contains("INTEGER PRIMARY KEY")), "{plan:?}");
        let plan = rows(&current, "EXPLAIN QUERY PLAN SELECT seq FROM audit_log WHERE actor = 'x' ORDER BY seq DESC");
        assert!(plan.iter().all(|step| !step.contains("TEMP B-TREE")), "{plan:?}");
        // The rules went across with the rows: append-only, and foreign keys enforced again.
        let writer = current.group.try_writer().unwrap();
        let conn = writer.connection_ref();
        for refused in [
            "UPDATE audit_log SET entry = X'ff' WHERE seq = 1",
            "DELETE FROM audit_log WHERE seq = 1",
            "UPDATE patient_access SET alert = NULL",
            "DELETE FROM patient_access",
        ] {
            let error = conn.execute(refused, []).unwrap_err().to_string();
            assert!(error.contains("append-only"), "{refused}: {error}");
        }
        let error = conn
            .execute("INSERT INTO patient_access VALUES (7, '9434765919', '555000000018', 'F83001', 'gp', 'view', 'referral', 1, NULL)", [])
            .unwrap_err();
        assert!(error.to_string().contains("FOREIGN KEY"), "{error}");
        drop(writer);
        drop(current);

        // Migration 11: each record's organisation moves to the query index, cited by itself.
        let latest = LiteStore::open(&url, all).unwrap();
        let orgs = rows(&latest, "SELECT seq, org, source FROM audit_orgs ORDER BY seq");
        assert_eq!(orgs, ["Integer(0)|Text(\"F83001\")|Integer(0)", "Integer(2)|Text(\"F83001\")|Integer(2)"]);
        let columns = rows(&latest, "SELECT name FROM pragma_table_info('audit_log') WHERE name = 'org'");
        assert!(columns.is_empty(), "the single organisation column is gone");
        let writer = latest.group.try_writer().unwrap();
        let error = writer.connection_ref().execute("DELETE FROM audit_orgs", []).unwrap_err().to_string();
        assert!(error.contains("append-only"), "{error}");
    }

    #[test]
    fn a_migration_that_leaves_a_foreign_key_broken_is_not_applied() {
        let scratch = Scratch::new("broken-key");
        let url = scratch.url();
        let breaks: &[(i64, &str, &str)] = &[
            (1, "parent", "CREATE TABLE parent (id INTEGER PRIMARY KEY)"),
            (2, "child", "CREATE TABLE child (parent INTEGER REFERENCES parent (id)); INSERT INTO child VALUES (4)"),
        ];
        let refused = LiteStore::open(&url, breaks).unwrap_err().to_string();
        assert!(refused.contains("migration 2") && refused.contains("row 1 of child"), "{refused}");
        // Nothing of it stayed, and migration 1 did.
        let store = LiteStore::open(&url, &breaks[..1]).unwrap();
        let writer = store.group.try_writer().unwrap();
        let tables: i64 = writer
            .connection_ref()
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'child'", [], |row| row.get(0))
            .unwrap();
        assert_eq!(tables, 0);
        drop(writer);
        drop(store);
    }

    #[test]
    fn migrations_apply_once_in_order_and_a_newer_database_is_refused() {
        let scratch = Scratch::new("migrate");
        let url = scratch.url();
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
    }
}
