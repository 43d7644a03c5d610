//! The `Store` port on SQLite (embedded default, through rusqlite) and PostgreSQL (scale-out,
//! through sqlx).
//!
//! One SQL text serves both backends (`db.rs` runs it on either driver): the schema keeps to
//! portable types (BIGINT times in microseconds, TEXT dates, blobs) and `$n` placeholders, and
//! each backend owns its migrations. Driver errors are translated here and go no further.

mod copy;
mod db;
mod group;
mod lite;
mod pg_group;
mod rows;
mod tx;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use careid_domain::ports::{PresenceProof, Store, StoreError, Transaction, WriteStats};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};

use db::DbError;
use lite::LiteStore;
use tx::Conn;
pub use tx::SqlTransaction;

/// Which database a store URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The URL's scheme picks the backend.
    pub fn of_url(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Unavailable("store URL must start with sqlite: or postgres:".into()))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite:PATH`, `sqlite::memory:`, or `postgres://...`.
    pub url: String,
    /// PostgreSQL only: the schema to use (created if missing). Tests give each run its own.
    pub schema: Option<String>,
    pub max_connections: u32,
    /// PostgreSQL only: statements running longer are cancelled (0: no limit).
    pub statement_timeout_ms: u32,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> StoreOptions {
        StoreOptions { url: url.into(), schema: None, max_connections: 8, statement_timeout_ms: 0 }
    }
}

/// A store on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    backend: Backend,
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Lite(LiteStore),
    /// The pool serves reads (and the flushes); writes go through the node's batch writer.
    Pg(AnyPool, pg_group::PgGroup),
}

/// Each backend's migrations, in order: (version, description, SQL).
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "registration authority", include_str!("../migrations/sqlite/0001_registration_authority.sql")),
    (2, "cards", include_str!("../migrations/sqlite/0002_cards.sql")),
    (3, "outbox delivery", include_str!("../migrations/sqlite/0003_outbox_delivery.sql")),
    (4, "card sessions", include_str!("../migrations/sqlite/0004_card_sessions.sql")),
    (5, "openid connect", include_str!("../migrations/sqlite/0005_openid_connect.sql")),
    (6, "absences", include_str!("../migrations/sqlite/0006_absences.sql")),
    (7, "audit tree", include_str!("../migrations/sqlite/0007_audit_tree.sql")),
    (8, "patient access", include_str!("../migrations/sqlite/0008_patient_access.sql")),
    (9, "audit log in sequence", include_str!("../migrations/sqlite/0009_audit_log_in_sequence.sql")),
    (10, "side doors", include_str!("../migrations/sqlite/0010_side_doors.sql")),
    (11, "audit orgs", include_str!("../migrations/sqlite/0011_audit_orgs.sql")),
    (12, "audit cosignatures", include_str!("../migrations/sqlite/0012_audit_cosignatures.sql")),
    (13, "spot checks", include_str!("../migrations/sqlite/0013_spot_checks.sql")),
    (14, "cases", include_str!("../migrations/sqlite/0014_cases.sql")),
    (15, "flagged patients", include_str!("../migrations/sqlite/0015_flagged_patients.sql")),
    (16, "console sessions", include_str!("../migrations/sqlite/0016_console_sessions.sql")),
    (17, "audit orgs by record", include_str!("../migrations/sqlite/0017_audit_orgs_by_record.sql")),
    (18, "presence proofs", include_str!("../migrations/sqlite/0018_presence_proofs.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "registration authority", include_str!("../migrations/postgres/0001_registration_authority.sql")),
    (2, "cards", include_str!("../migrations/postgres/0002_cards.sql")),
    (3, "outbox delivery", include_str!("../migrations/postgres/0003_outbox_delivery.sql")),
    (4, "card sessions", include_str!("../migrations/postgres/0004_card_sessions.sql")),
    (5, "openid connect", include_str!("../migrations/postgres/0005_openid_connect.sql")),
    (6, "absences", include_str!("../migrations/postgres/0006_absences.sql")),
    (7, "audit tree", include_str!("../migrations/postgres/0007_audit_tree.sql")),
    (8, "patient access", include_str!("../migrations/postgres/0008_patient_access.sql")),
    (9, "side doors", include_str!("../migrations/postgres/0009_side_doors.sql")),
    (10, "audit orgs", include_str!("../migrations/postgres/0010_audit_orgs.sql")),
    (11, "audit cosignatures", include_str!("../migrations/postgres/0011_audit_cosignatures.sql")),
    (12, "spot checks", include_str!("../migrations/postgres/0012_spot_checks.sql")),
    (13, "cases", include_str!("../migrations/postgres/0013_cases.sql")),
    (14, "flagged patients", include_str!("../migrations/postgres/0014_flagged_patients.sql")),
    (15, "console sessions", include_str!("../migrations/postgres/0015_console_sessions.sql")),
    (16, "audit orgs by record", include_str!("../migrations/postgres/0016_audit_orgs_by_record.sql")),
    (17, "presence proofs", include_str!("../migrations/postgres/0017_presence_proofs.sql")),
];

fn postgres_migrations() -> Migrator {
    let migrations: Vec<Migration> = POSTGRES_MIGRATIONS
        .iter()
        .map(|(version, name, sql)| {
            Migration::new(*version, (*name).into(), MigrationType::Simple, (*sql).into(), false)
        })
        .collect();
    Migrator { migrations: migrations.into(), ignore_missing: false, locking: true, no_tx: false }
}

fn sqlx_error(context: &'static str, error: sqlx::Error) -> StoreError {
    db::driver_error(context, &DbError::Sqlx(error))
}

/// Quotes a PostgreSQL identifier made of safe characters only.
fn schema_identifier(schema: &str) -> Result<String, StoreError> {
    if schema.is_empty() || !schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(StoreError::Unavailable("schema name must be letters, digits and _".into()));
    }
    Ok(format!("\"{schema}\""))
}

impl SqlStore {
    /// Opens the store and brings its schema up to date.
    pub async fn open(options: &StoreOptions) -> Result<SqlStore, StoreError> {
        let backend = Backend::of_url(&options.url)?;
        let inner = match backend {
            Backend::Sqlite => Inner::Lite(LiteStore::open(&options.url, SQLITE_MIGRATIONS)?),
            Backend::Postgres => {
                let pool = open_postgres(options).await?;
                Inner::Pg(pool.clone(), pg_group::PgGroup::new(pool))
            }
        };
        Ok(SqlStore { backend, inner })
    }

    /// The PostgreSQL pool, for operator tools and tests that manage schemas. `None` on SQLite.
    pub fn postgres_pool(&self) -> Option<&AnyPool> {
        match &self.inner {
            Inner::Pg(pool, _) => Some(pool),
            Inner::Lite(_) => None,
        }
    }

    /// Runs SQL as it is, outside careid's transactions and rules: for operator tools that
    /// inspect the raw tables, and for tests that tamper with them. Use cases go through `Store`.
    pub async fn execute_raw(&self, sql: &str) -> Result<(), StoreError> {
        match &self.inner {
            Inner::Lite(lite) => lite.execute_raw(sql).await,
            Inner::Pg(pool, _) => {
                sqlx::raw_sql(sql).execute(pool).await.map(|_| ()).map_err(|e| sqlx_error("raw SQL", e))
            }
        }
    }

    /// Copies every row of this SQLite store into `target`, an empty PostgreSQL store (its
    /// migrations run), in one transaction: the audit log byte for byte, so its checkpoints
    /// verify the same there. Returns each table with the rows copied.
    pub async fn copy_to_postgres(&self, target: &SqlStore) -> Result<Vec<(&'static str, usize)>, StoreError> {
        match (&self.inner, &target.inner) {
            (Inner::Lite(source), Inner::Pg(pool, _)) => copy::sqlite_to_postgres(source, pool).await,
            _ => Err(StoreError::Unavailable("a copy goes from an SQLite store to a PostgreSQL one".into())),
        }
    }

    /// Writes a consistent copy of an SQLite store to `path`, a new or empty file. PostgreSQL
    /// is backed up with its own tools (`pg_dump`), which careid does not wrap.
    pub async fn backup_to(&self, path: &std::path::Path) -> Result<(), StoreError> {
        match &self.inner {
            Inner::Lite(lite) => lite.backup_to(path).await,
            Inner::Pg(..) => Err(StoreError::Unavailable(
                "a PostgreSQL store is backed up with pg_dump (see docs/operations.md)".into(),
            )),
        }
    }

    /// Closes the store: PostgreSQL's pool waits a moment for connections in use, and no longer.
    /// SQLite's connections close when the last clone of the store is dropped.
    pub async fn close(&self) {
        if let Inner::Pg(pool, group) = &self.inner {
            let closing = async {
                group.close().await;
                pool.close().await;
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), closing).await;
        }
    }

    /// On SQLite, moves everything committed from the write-ahead log into the database file,
    /// so that the file alone holds the data (a server stopping, backups, inspection).
    pub async fn checkpoint_wal(&self) {
        if let Inner::Lite(lite) = &self.inner
            && let Err(error) = lite.checkpoint_wal().await
        {
            tracing::warn!(%error, "could not checkpoint the write-ahead log");
        }
    }
}

async fn open_postgres(options: &StoreOptions) -> Result<AnyPool, StoreError> {
    sqlx::any::install_default_drivers();
    let connect: AnyConnectOptions =
        options.url.parse().map_err(|e: sqlx::Error| StoreError::Unavailable(format!("store URL: {e}")))?;
    let schema = options.schema.as_deref().map(schema_identifier).transpose()?;
    if let Some(schema) = &schema {
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect_with(connect.clone())
            .await
            .map_err(|e| sqlx_error("connect", e))?;
        pool.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
            .await
            .map_err(|e| sqlx_error("create schema", e))?;
        pool.close().await;
    }
    let statement_timeout_ms = options.statement_timeout_ms;
    let pool = AnyPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .after_connect(move |conn, _meta| {
            let schema = schema.clone();
            Box::pin(async move {
                if let Some(schema) = schema {
                    conn.execute(format!("SET search_path TO {schema}").as_str()).await?;
                }
                conn.execute(format!("SET statement_timeout = {statement_timeout_ms}").as_str()).await?;
                Ok(())
            })
        })
        .connect_with(connect)
        .await
        .map_err(|e| sqlx_error("connect", e))?;
    // Migrations may take longer than any statement should in service (an index on a large
    // table): they run on a connection of their own with no timeout, which is restored after.
    let mut conn = pool.acquire().await.map_err(|e| sqlx_error("connect", e))?;
    conn.execute("SET statement_timeout = 0").await.map_err(|e| sqlx_error("migrations", e))?;
    postgres_migrations().run(&mut *conn).await.map_err(|e| StoreError::Unavailable(format!("migrations: {e}")))?;
    conn.execute(format!("SET statement_timeout = {statement_timeout_ms}").as_str())
        .await
        .map_err(|e| sqlx_error("migrations", e))?;
    drop(conn);
    Ok(pool)
}

#[async_trait]
impl Store for SqlStore {
    async fn begin_read(&self) -> Result<Box<dyn Transaction>, StoreError> {
        let conn = match &self.inner {
            Inner::Lite(lite) => Conn::Read(lite.begin_read().await?),
            Inner::Pg(pool, _) => Conn::Pg(pool.begin().await.map_err(|e| sqlx_error("begin", e))?),
        };
        Ok(Box::new(SqlTransaction::new(conn, self.backend)))
    }

    async fn begin_write(&self) -> Result<Box<dyn Transaction>, StoreError> {
        let conn = match &self.inner {
            Inner::Lite(lite) => Conn::Batched(lite.group.begin().await?, lite.group.clone()),
            Inner::Pg(_, group) => Conn::PgBatched(group.begin().await?, group.clone()),
        };
        // The batch holds the deployment's write lock already: SQLite's BEGIN IMMEDIATE, or on
        // PostgreSQL the audit log's head row.
        Ok(Box::new(SqlTransaction::new(conn, self.backend)))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match &self.inner {
            Inner::Lite(lite) => lite.begin_read().await.map(drop),
            Inner::Pg(pool, _) => {
                sqlx::query("SELECT 1").execute(pool).await.map(|_| ()).map_err(|e| sqlx_error("ping", e))
            }
        }
    }

    fn backend(&self) -> &'static str {
        self.backend.name()
    }

    async fn record_presence(&self, proof: &PresenceProof) -> Result<bool, StoreError> {
        let mut tx: Box<dyn Transaction> = match &self.inner {
            // One writer: the heartbeat takes its turn, with no audit record to write.
            Inner::Lite(_) => self.begin_write().await?,
            Inner::Pg(pool, _) => {
                // A transaction of its own on the pool, beside the batches: no head row, and no
                // wait for the disk.
                let tx = pool.begin().await.map_err(|e| sqlx_error("begin", e))?;
                let mut tx = SqlTransaction::new(Conn::Pg(tx), self.backend);
                tx.without_waiting_for_the_disk().await?;
                Box::new(tx)
            }
        };
        let counted = tx.record_heartbeat(proof).await?;
        tx.commit().await?;
        Ok(counted)
    }

    async fn lead(&self, role: &'static str) -> Result<bool, StoreError> {
        match &self.inner {
            // One node, and so always the one.
            Inner::Lite(_) => Ok(true),
            Inner::Pg(_, group) => group.lead(role).await,
        }
    }

    fn write_stats(&self) -> WriteStats {
        match &self.inner {
            Inner::Lite(lite) => lite.group.counters.snapshot(),
            Inner::Pg(_, group) => group.counters.snapshot(),
        }
    }
}

/// How a store's batches have gone: counted by the writer, read by the operator's metrics.
#[derive(Debug, Default)]
pub(crate) struct BatchCounters {
    batches: AtomicU64,
    transactions: AtomicU64,
    serial_micros: AtomicU64,
    flush_micros: AtomicU64,
}

impl BatchCounters {
    /// A batch of `transactions` committed, after holding the write lock for `serial` and
    /// waiting `flush` outside it for the disk.
    pub(crate) fn count(&self, transactions: usize, serial: Duration, flush: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.transactions.fetch_add(transactions as u64, Ordering::Relaxed);
        self.serial_micros.fetch_add(serial.as_micros() as u64, Ordering::Relaxed);
        self.flush_micros.fetch_add(flush.as_micros() as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> WriteStats {
        WriteStats {
            batches: self.batches.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            serial_seconds: self.serial_micros.load(Ordering::Relaxed) as f64 / 1e6,
            flush_seconds: self.flush_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// For test suites: the PostgreSQL server to run against too (`CAREID_TEST_POSTGRES_URL`),
/// if any. Where `CAREID_TEST_REQUIRE_POSTGRES=1` (as CI sets it), a missing URL fails the
/// test instead of leaving PostgreSQL silently untried.
pub fn test_postgres_url() -> Option<String> {
    let url = std::env::var("CAREID_TEST_POSTGRES_URL").ok().filter(|u| !u.trim().is_empty());
    assert!(
        url.is_some() || std::env::var("CAREID_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
        "CAREID_TEST_REQUIRE_POSTGRES=1 but CAREID_TEST_POSTGRES_URL is not set: PostgreSQL would go untested"
    );
    url
}
