//! Moving a deployment from SQLite to PostgreSQL: every row of every table, in one PostgreSQL
//! transaction, the audit log's bytes untouched, so that the log's signed checkpoints verify
//! the same on the new store as on the old.

use careid_domain::ports::StoreError;
use rusqlite::types::Value as LiteValue;
use sqlx::AnyPool;

use crate::db::{DbConn, Query, Value, driver_error};
use crate::lite::LiteStore;

/// The tables, parents before children (the foreign keys allow no other order).
const TABLES: &[&str] = &[
    "organisations",
    "counters",
    "people",
    "identity_checks",
    "terms_acceptances",
    "positions",
    "registrations",
    "assignments",
    "requests",
    "credentials",
    "cards",
    "sessions",
    "audit_log",
    "audit_head",
    "card_certificates",
    "incidents",
    "unlock_codes",
    "outbox",
    "used_challenges",
    "oidc_clients",
    "oidc_authorizations",
    "oidc_tokens",
    "oidc_logouts",
    "absences",
    "absence_policies",
    "audit_tiles",
    "audit_tree",
    "audit_checkpoints",
    "audit_cosignatures",
    "misuse_incidents",
    "patient_access",
    "audit_orgs",
    "spot_checks",
    "cases",
    "case_entries",
    "flagged_patients",
    "console_sessions",
];

/// Tables whose migrations write rows of their own: the copy replaces them.
const SEEDED: &[&str] = &["counters", "audit_head", "audit_tree"];

fn failed(context: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| driver_error(context, &crate::db::DbError::Sqlx(e))
}

/// A SQLite value as PostgreSQL's column of `data_type` takes it.
fn convert(table: &str, column: &str, data_type: &str, value: &LiteValue) -> Result<Value, StoreError> {
    let wrong = || StoreError::Corrupt(format!("{table}.{column}: a value PostgreSQL's {data_type} cannot take"));
    Ok(match (data_type, value) {
        ("bigint" | "integer" | "smallint", LiteValue::Null) => Value::Int(None),
        ("bigint" | "integer" | "smallint", LiteValue::Integer(n)) => Value::Int(Some(*n)),
        ("bigint" | "integer" | "smallint", LiteValue::Text(t)) => Value::Int(Some(t.parse().map_err(|_| wrong())?)),
        ("text" | "character varying", LiteValue::Null) => Value::Text(None),
        ("text" | "character varying", LiteValue::Text(t)) => Value::Text(Some(t.clone())),
        ("text" | "character varying", LiteValue::Integer(n)) => Value::Text(Some(n.to_string())),
        ("bytea", LiteValue::Null) => Value::Blob(None),
        ("bytea", LiteValue::Blob(b)) => Value::Blob(Some(b.clone())),
        ("bytea", LiteValue::Text(t)) => Value::Blob(Some(t.as_bytes().to_vec())),
        _ => return Err(wrong()),
    })
}

/// Organisations parents first, whatever order they were written in.
fn parents_first(columns: &[String], rows: Vec<Vec<LiteValue>>) -> Vec<Vec<LiteValue>> {
    let at = |name: &str| columns.iter().position(|c| c == name);
    let (Some(code), Some(parent)) = (at("ods_code"), at("parent")) else { return rows };
    let text = |v: &LiteValue| match v {
        LiteValue::Text(t) => Some(t.clone()),
        _ => None,
    };
    let mut placed = std::collections::HashSet::new();
    let (mut ordered, mut waiting) = (Vec::with_capacity(rows.len()), rows);
    while !waiting.is_empty() {
        let before = waiting.len();
        let (ready, rest): (Vec<_>, Vec<_>) =
            waiting.into_iter().partition(|r| text(&r[parent]).is_none_or(|p| placed.contains(&p)));
        for row in ready {
            placed.extend(text(&row[code]));
            ordered.push(row);
        }
        waiting = rest;
        if waiting.len() == before {
            // A parent that is not there: let the foreign key name it.
            ordered.append(&mut waiting);
        }
    }
    ordered
}

/// Copies every row of `source` into `target`, an empty PostgreSQL store with careid's schema;
/// returns each table with the rows it copied. Nothing is written unless everything is.
pub(crate) async fn sqlite_to_postgres(
    source: &LiteStore,
    target: &AnyPool,
) -> Result<Vec<(&'static str, usize)>, StoreError> {
    let mut tx = target.begin().await.map_err(failed("begin the copy"))?;
    let records = Query::with_args("SELECT COUNT(*) AS n FROM audit_log", Vec::new())
        .fetch_one(DbConn::Pg(&mut tx))
        .await
        .map_err(|e| driver_error("count the target's records", &e))?;
    if crate::rows::int(&records, "n")? > 0 {
        return Err(StoreError::Unavailable(
            "the PostgreSQL store already holds an audit log: migrate into an empty schema".into(),
        ));
    }
    let mut copied = Vec::new();
    for &table in TABLES {
        let types = Query::with_args(
            "SELECT CAST(column_name AS TEXT) AS column_name, CAST(data_type AS TEXT) AS data_type \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
            vec![Value::text(table)],
        )
        .fetch_all(DbConn::Pg(&mut tx))
        .await
        .map_err(|e| driver_error("read the target's columns", &e))?;
        let types: std::collections::HashMap<String, String> = types
            .iter()
            .map(|r| Ok((crate::rows::text(r, "column_name")?, crate::rows::text(r, "data_type")?)))
            .collect::<Result<_, StoreError>>()?;
        if types.is_empty() {
            return Err(StoreError::Unavailable(format!("the PostgreSQL store has no table {table}: is it careid's?")));
        }
        let (columns, mut rows) = source.read_table(table).await?;
        if table == "organisations" {
            rows = parents_first(&columns, rows);
        }
        let kept: Vec<usize> = (0..columns.len()).filter(|&i| types.contains_key(&columns[i])).collect();
        if SEEDED.contains(&table) {
            Query::with_args(&format!("DELETE FROM {table}"), Vec::new())
                .execute(DbConn::Pg(&mut tx))
                .await
                .map_err(|e| driver_error("clear a seeded table", &e))?;
        }
        let names: Vec<&str> = kept.iter().map(|&i| columns[i].as_str()).collect();
        let places: Vec<String> = (1..=kept.len()).map(|n| format!("${n}")).collect();
        let sql = format!("INSERT INTO {table} ({}) VALUES ({})", names.join(", "), places.join(", "));
        for row in &rows {
            let args = kept
                .iter()
                .map(|&i| convert(table, &columns[i], &types[&columns[i]], &row[i]))
                .collect::<Result<Vec<_>, _>>()?;
            Query::with_args(&sql, args)
                .execute(DbConn::Pg(&mut tx))
                .await
                .map_err(|e| driver_error("copy a row", &e))?;
        }
        if types.get("id").is_some_and(|t| t == "bigint") {
            // Identity columns go on from the highest id copied.
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) \
                 FROM {table} WHERE pg_get_serial_sequence('{table}', 'id') IS NOT NULL"
            );
            Query::with_args(&sql, Vec::new())
                .fetch_all(DbConn::Pg(&mut tx))
                .await
                .map_err(|e| driver_error("move an identity on", &e))?;
        }
        copied.push((table, rows.len()));
    }
    tx.commit().await.map_err(failed("commit the copy"))?;
    Ok(copied)
}
