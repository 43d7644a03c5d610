//! One way to run a statement on either driver: rusqlite for SQLite, sqlx for PostgreSQL.
//!
//! `tx.rs` writes each statement once, as portable SQL with `$n` placeholders, and runs it
//! through [`query`]. On SQLite the statement runs at once, on the caller's thread, from a
//! per-connection cache of prepared statements: a statement costs microseconds, where a
//! driver that hands each one to a worker thread and back costs tens. On PostgreSQL it goes
//! to sqlx as before.

use careid_domain::ports::StoreError;
use rusqlite::types::ValueRef;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use crate::pg_group::PgWriter;
use crate::tx::AuditRows;

/// A value bound to a statement. Nulls keep their type: PostgreSQL checks it.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

impl Value {
    pub(crate) fn int(value: i64) -> Value {
        Value::Int(Some(value))
    }

    pub(crate) fn text(value: impl Into<String>) -> Value {
        Value::Text(Some(value.into()))
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Value {
        Value::Int(Some(value))
    }
}

impl From<Option<i64>> for Value {
    fn from(value: Option<i64>) -> Value {
        Value::Int(value)
    }
}

impl From<String> for Value {
    fn from(value: String) -> Value {
        Value::Text(Some(value))
    }
}

impl From<Option<String>> for Value {
    fn from(value: Option<String>) -> Value {
        Value::Text(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Value {
        Value::Text(Some(value.to_owned()))
    }
}

impl From<Option<&str>> for Value {
    fn from(value: Option<&str>) -> Value {
        Value::Text(value.map(str::to_owned))
    }
}

impl From<Vec<u8>> for Value {
    fn from(value: Vec<u8>) -> Value {
        Value::Blob(Some(value))
    }
}

impl From<Option<Vec<u8>>> for Value {
    fn from(value: Option<Vec<u8>>) -> Value {
        Value::Blob(value)
    }
}

/// A driver's error, kept until it is translated into a `StoreError` with its context.
#[derive(Debug)]
pub(crate) enum DbError {
    Sqlx(sqlx::Error),
    Lite(rusqlite::Error),
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> DbError {
        DbError::Sqlx(error)
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(error: rusqlite::Error) -> DbError {
        DbError::Lite(error)
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Sqlx(e) => e.fmt(f),
            DbError::Lite(e) => e.fmt(f),
        }
    }
}

/// Translates a driver's error: constraint violations become the domain's own errors, the
/// rest says what was being done.
pub(crate) fn driver_error(context: &'static str, error: &DbError) -> StoreError {
    match error {
        DbError::Sqlx(sqlx::Error::Database(db)) => match db.kind() {
            sqlx::error::ErrorKind::UniqueViolation => return StoreError::Duplicate(context),
            sqlx::error::ErrorKind::ForeignKeyViolation => return StoreError::MissingReference(context),
            _ => {}
        },
        DbError::Lite(rusqlite::Error::SqliteFailure(failure, _)) => match failure.extended_code {
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                return StoreError::Duplicate(context);
            }
            rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => return StoreError::MissingReference(context),
            _ => {}
        },
        _ => {}
    }
    StoreError::Unavailable(format!("{context}: {error}"))
}

/// The connection a statement runs on.
pub(crate) enum DbConn<'c> {
    Pg(&'c mut AnyConnection),
    /// A transaction in a PostgreSQL batch: the writer, and the records the transaction holds
    /// in memory (a statement that reads the log has them inserted first).
    PgBatched(&'c mut PgWriter, &'c mut AuditRows),
    Lite(&'c mut rusqlite::Connection),
}

impl DbConn<'_> {
    /// The same connection, for one more statement.
    pub(crate) fn reborrow(&mut self) -> DbConn<'_> {
        match self {
            DbConn::Pg(conn) => DbConn::Pg(conn),
            DbConn::PgBatched(writer, own) => DbConn::PgBatched(writer, own),
            DbConn::Lite(conn) => DbConn::Lite(conn),
        }
    }
}

/// What a statement that returns no rows did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done {
    rows_affected: u64,
}

impl Done {
    pub(crate) fn rows_affected(self) -> u64 {
        self.rows_affected
    }
}

/// A row read back, from either driver.
pub(crate) enum Row {
    Pg(AnyRow),
    Lite(LiteRow),
}

/// A SQLite row: its values, and the column names shared by every row of its statement.
pub(crate) struct LiteRow {
    columns: std::sync::Arc<[String]>,
    values: Vec<rusqlite::types::Value>,
}

impl LiteRow {
    fn index(&self, column: &str) -> Result<usize, StoreError> {
        self.columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| StoreError::Corrupt(format!("{column}: no such column")))
    }

    fn value(&self, column: &str) -> Result<&rusqlite::types::Value, StoreError> {
        Ok(&self.values[self.index(column)?])
    }
}

fn wrong_type(column: &str, wanted: &str) -> StoreError {
    StoreError::Corrupt(format!("{column}: not {wanted}"))
}

impl Row {
    pub(crate) fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        match self {
            Row::Pg(row) => {
                row.try_get::<Option<String>, _>(column).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
            }
            Row::Lite(row) => match row.value(column)? {
                rusqlite::types::Value::Null => Ok(None),
                rusqlite::types::Value::Text(s) => Ok(Some(s.clone())),
                _ => Err(wrong_type(column, "text")),
            },
        }
    }

    pub(crate) fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        match self {
            Row::Pg(row) => {
                row.try_get::<Option<i64>, _>(column).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
            }
            Row::Lite(row) => match row.value(column)? {
                rusqlite::types::Value::Null => Ok(None),
                rusqlite::types::Value::Integer(i) => Ok(Some(*i)),
                _ => Err(wrong_type(column, "an integer")),
            },
        }
    }

    /// A column's bytes, moved out of the row (which reads as null there afterwards).
    pub(crate) fn take_bytes(&mut self, column: &str) -> Result<Vec<u8>, StoreError> {
        match self {
            Row::Pg(row) => {
                row.try_get::<Vec<u8>, _>(column).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
            }
            Row::Lite(row) => {
                let i = row.index(column)?;
                match std::mem::replace(&mut row.values[i], rusqlite::types::Value::Null) {
                    rusqlite::types::Value::Blob(b) => Ok(b),
                    _ => Err(wrong_type(column, "bytes")),
                }
            }
        }
    }

    pub(crate) fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Row::Pg(row) => {
                row.try_get::<Option<Vec<u8>>, _>(column).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
            }
            Row::Lite(row) => match row.value(column)? {
                rusqlite::types::Value::Null => Ok(None),
                rusqlite::types::Value::Blob(b) => Ok(Some(b.clone())),
                _ => Err(wrong_type(column, "bytes")),
            },
        }
    }
}

/// A statement and its values, built like sqlx's `query(...).bind(...)`.
pub(crate) struct Query<'q> {
    sql: &'q str,
    args: Vec<Value>,
}

/// Starts a statement.
pub(crate) fn query(sql: &str) -> Query<'_> {
    Query { sql, args: Vec::new() }
}

impl<'q> Query<'q> {
    pub(crate) fn with_args(sql: &'q str, args: Vec<Value>) -> Query<'q> {
        Query { sql, args }
    }

    pub(crate) fn bind(mut self, value: impl Into<Value>) -> Query<'q> {
        self.args.push(value.into());
        self
    }

    pub(crate) async fn execute(self, conn: DbConn<'_>) -> Result<Done, DbError> {
        match conn {
            DbConn::PgBatched(writer, own) => {
                writer.before_statement(self.sql, own).await?;
                self.execute_pg(writer.pg_connection()).await
            }
            DbConn::Pg(conn) => self.execute_pg(conn).await,
            DbConn::Lite(conn) => {
                let mut statement = conn.prepare_cached(self.sql)?;
                bind_lite(&mut statement, &self.args)?;
                if statement.column_count() == 0 {
                    let rows_affected = statement.raw_execute()? as u64;
                    Ok(Done { rows_affected })
                } else {
                    // A statement with RETURNING: step it to the end.
                    let mut rows = statement.raw_query();
                    while rows.next()?.is_some() {}
                    Ok(Done { rows_affected: conn.changes() })
                }
            }
        }
    }

    pub(crate) async fn execute_pg(self, conn: &mut AnyConnection) -> Result<Done, DbError> {
        let done = self.pg().execute(conn).await?;
        Ok(Done { rows_affected: done.rows_affected() })
    }

    pub(crate) async fn fetch_all(self, conn: DbConn<'_>) -> Result<Vec<Row>, DbError> {
        match conn {
            DbConn::PgBatched(writer, own) => {
                writer.before_statement(self.sql, own).await?;
                Ok(self.pg().fetch_all(writer.pg_connection()).await?.into_iter().map(Row::Pg).collect())
            }
            DbConn::Pg(conn) => Ok(self.pg().fetch_all(conn).await?.into_iter().map(Row::Pg).collect()),
            DbConn::Lite(conn) => Ok(self.lite_rows(conn)?.into_iter().map(Row::Lite).collect()),
        }
    }

    pub(crate) async fn fetch_one(self, conn: DbConn<'_>) -> Result<Row, DbError> {
        match conn {
            DbConn::PgBatched(writer, own) => {
                writer.before_statement(self.sql, own).await?;
                Ok(Row::Pg(self.pg().fetch_one(writer.pg_connection()).await?))
            }
            DbConn::Pg(conn) => Ok(Row::Pg(self.pg().fetch_one(conn).await?)),
            DbConn::Lite(conn) => self
                .lite_rows(conn)?
                .into_iter()
                .next()
                .map(Row::Lite)
                .ok_or(DbError::Lite(rusqlite::Error::QueryReturnedNoRows)),
        }
    }

    fn pg(self) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        let mut query = sqlx::query(self.sql);
        for arg in self.args {
            query = match arg {
                Value::Int(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
                Value::Blob(v) => query.bind(v),
            };
        }
        query
    }

    fn lite_rows(&self, conn: &rusqlite::Connection) -> Result<Vec<LiteRow>, rusqlite::Error> {
        let mut statement = conn.prepare_cached(self.sql)?;
        bind_lite(&mut statement, &self.args)?;
        let columns: std::sync::Arc<[String]> = statement.column_names().into_iter().map(str::to_owned).collect();
        let width = columns.len();
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(owned(row.get_ref(i)?));
            }
            out.push(LiteRow { columns: columns.clone(), values });
        }
        Ok(out)
    }
}

fn owned(value: ValueRef<'_>) -> rusqlite::types::Value {
    value.into()
}

/// Binds `$n` placeholders by their number and `?` ones by position.
fn bind_lite(statement: &mut rusqlite::CachedStatement<'_>, args: &[Value]) -> Result<(), rusqlite::Error> {
    statement.clear_bindings();
    for i in 1..=statement.parameter_count() {
        let n = match statement.parameter_name(i) {
            Some(name) => name
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| rusqlite::Error::InvalidParameterName(name.to_owned()))?,
            None => i,
        };
        let arg = args.get(n - 1).ok_or(rusqlite::Error::InvalidParameterCount(n, args.len()))?;
        match arg {
            Value::Int(v) => statement.raw_bind_parameter(i, v)?,
            Value::Text(v) => statement.raw_bind_parameter(i, v)?,
            Value::Blob(v) => statement.raw_bind_parameter(i, v)?,
        }
    }
    Ok(())
}
