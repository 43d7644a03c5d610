//! The `Store` port on SQLite (embedded default) and PostgreSQL (scale-out), both through sqlx.
//!
//! One SQL text serves both backends through sqlx's `Any` driver: the schema keeps to
//! portable types (BIGINT times in microseconds, TEXT dates, blobs) and `$n` placeholders, and
//! each backend owns its migrations. Driver errors are translated here and go no further.

mod group;
mod rows;
mod tx;

use std::sync::Arc;

use async_trait::async_trait;
use careid_domain::ports::{Store, StoreError, Transaction};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};

use group::GroupCommit;
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
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> StoreOptions {
        StoreOptions { url: url.into(), schema: None, max_connections: 8 }
    }
}

/// A store on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer at a time; waiting here is cheaper than its busy handler.
    /// In-memory SQLite only (it has one connection, so no writer of its own).
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// File SQLite: the shared writer that commits transactions in batches.
    group: Option<GroupCommit>,
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
];

fn migrations(backend: Backend) -> Migrator {
    let list = match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS,
        Backend::Postgres => POSTGRES_MIGRATIONS,
    };
    let migrations: Vec<Migration> = list
        .iter()
        .map(|(version, name, sql)| {
            Migration::new(*version, (*name).into(), MigrationType::Simple, (*sql).into(), false)
        })
        .collect();
    Migrator { migrations: migrations.into(), ignore_missing: false, locking: true, no_tx: false }
}

pub(crate) fn driver_error(context: &'static str, error: &sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = error {
        match db.kind() {
            sqlx::error::ErrorKind::UniqueViolation => return StoreError::Duplicate(context),
            sqlx::error::ErrorKind::ForeignKeyViolation => return StoreError::MissingReference(context),
            _ => {}
        }
    }
    StoreError::Unavailable(format!("{context}: {error}"))
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
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(&options.url)?;
        let connect: AnyConnectOptions =
            options.url.parse().map_err(|e: sqlx::Error| StoreError::Unavailable(format!("store URL: {e}")))?;
        let in_memory = options.url.contains(":memory:") || options.url.contains("mode=memory");
        let schema = options.schema.as_deref().map(schema_identifier).transpose()?;

        if let (Backend::Postgres, Some(schema)) = (backend, &schema) {
            let pool = AnyPoolOptions::new()
                .max_connections(1)
                .connect_with(connect.clone())
                .await
                .map_err(|e| driver_error("connect", &e))?;
            pool.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
                .await
                .map_err(|e| driver_error("create schema", &e))?;
            pool.close().await;
        }

        let mut pool_options = AnyPoolOptions::new().max_connections(options.max_connections.max(1));
        if in_memory {
            // Each SQLite connection to `:memory:` is its own database: keep exactly one, forever.
            pool_options = pool_options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
        }
        let after_connect_schema = schema.clone();
        let pool = pool_options
            .after_connect(move |conn, _meta| {
                let schema = after_connect_schema.clone();
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                                 PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;",
                            )
                            .await?;
                        }
                        Backend::Postgres => {
                            if let Some(schema) = schema {
                                conn.execute(format!("SET search_path TO {schema}").as_str()).await?;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(connect)
            .await
            .map_err(|e| driver_error("connect", &e))?;

        migrations(backend).run(&pool).await.map_err(|e| StoreError::Unavailable(format!("migrations: {e}")))?;
        let (write_gate, group) = match backend {
            Backend::Sqlite if in_memory => (Some(Arc::new(tokio::sync::Mutex::new(()))), None),
            Backend::Sqlite => (None, Some(GroupCommit::new(&pool).await?)),
            Backend::Postgres => (None, None),
        };
        Ok(SqlStore { pool, backend, write_gate, group })
    }

    /// The connection pool, for operator tools that read the raw tables (verification,
    /// tamper tests). Use cases go through `Store`.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool: idle connections now, the others as they are returned. The group-commit
    /// writer keeps its connection for as long as any clone of the store lives, so this waits
    /// a moment for the rest and no longer; the writer's connection closes when it is dropped.
    pub async fn close(&self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.pool.close()).await;
    }

    /// On SQLite, moves everything committed from the write-ahead log into the database file,
    /// so that the file alone holds the data (a server stopping, backups, inspection).
    pub async fn checkpoint_wal(&self) {
        if self.backend == Backend::Sqlite
            && let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await
        {
            tracing::warn!(%error, "could not checkpoint the write-ahead log");
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn begin_read(&self) -> Result<Box<dyn Transaction>, StoreError> {
        let tx = self.pool.begin().await.map_err(|e| driver_error("begin", &e))?;
        Ok(Box::new(SqlTransaction::new(Conn::Own(tx, None), self.backend)))
    }

    async fn begin_write(&self) -> Result<Box<dyn Transaction>, StoreError> {
        let conn = if let Some(group) = &self.group {
            Conn::Batched(group.begin().await?, group.clone())
        } else {
            let gate = match &self.write_gate {
                Some(gate) => Some(gate.clone().lock_owned().await),
                None => None,
            };
            let tx = self.pool.begin().await.map_err(|e| driver_error("begin", &e))?;
            Conn::Own(tx, gate)
        };
        let mut tx = SqlTransaction::new(conn, self.backend);
        // The first statement writes the log's head row: from here on this transaction holds
        // the write lock (SQLite's RESERVED lock, PostgreSQL's row lock).
        tx.take_write_lock().await?;
        Ok(Box::new(tx))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ()).map_err(|e| driver_error("ping", &e))
    }

    fn backend(&self) -> &'static str {
        self.backend.name()
    }
}
