//! One transaction on SQLite or PostgreSQL: the SQL behind every `Transaction` method.

use async_trait::async_trait;
use careid_domain::absence::{Absence, AbsencePolicy, WorkingHours};
use careid_domain::access::AuthMethod;
use careid_domain::audit::{AuditEvent, AuditRecord, MisuseIncident, SignedCheckpoint, TreeHead};
use careid_domain::card::{
    CardCertificate, CardRecord, CardSerial, Incident, IncidentClosure, OutboxMessage, RevocationReason, UnlockCode,
};
use careid_domain::case::{Case, CaseEntry, CaseSource};
use careid_domain::ids::Email;
use careid_domain::ids::{
    AssignmentId, NiNumber, OdsCode, PersonUuid, PositionId, RegistrationId, RequestId, format_date,
};
use careid_domain::model::{
    Assignment, IdentityCheck, NewPosition, Organisation, Person, PersonalDetails, Position, Registration,
    RegistrationStatus, Removal, RequestKind, RequestStatus, SponsorRequest,
};
use careid_domain::oidc::{Authorization, Client, ClientId, IssuedToken, PendingLogout};
use careid_domain::patient::{FlaggedPatient, NhsNumber, PatientAccess};
use careid_domain::ports::{
    AuditIndexRow, AuditQuery, ConsoleSession, Credential, NewAssignment, PatientAccessQuery, PresenceProof,
    SealedSecrets, Session, StoreError, Transaction,
};
use sqlx::Any;
use time::{Date, OffsetDateTime};

use crate::Backend;
use crate::db::{DbConn, DbError, Query, Row, Value, driver_error, query};
use crate::group::{GroupCommit, Writer};
use crate::lite::Reader;
use crate::pg_group::{PgGroup, PgWriter};
use crate::rows::{self, hash, int, micros, name_key};

/// How many rows one multi-row INSERT carries in a bulk write (well under SQLite's 32,766 parameters).
const BULK_ROWS: usize = 512;

/// The connection a transaction runs on.
pub(crate) enum Conn {
    /// PostgreSQL, reading: a transaction of its own on a pooled connection.
    Pg(sqlx::Transaction<'static, Any>),
    /// PostgreSQL, writing: a savepoint on the node's writer, committed with its batch.
    PgBatched(tokio::sync::OwnedMutexGuard<PgWriter>, PgGroup),
    /// SQLite, writing: a savepoint on the shared writer, committed with its batch.
    Batched(tokio::sync::OwnedMutexGuard<Writer>, GroupCommit),
    /// SQLite, reading: a connection in a read transaction of its own.
    Read(Reader),
}

pub struct SqlTransaction {
    /// Present until the transaction ends.
    conn: Option<Conn>,
    /// The log's head, once read in this transaction: next sequence number and chain hash.
    head: Option<(u64, [u8; 32])>,
    /// A statement failed. PostgreSQL then refuses everything until rollback, SQLite does not;
    /// so that both behave alike, a failed transaction never commits.
    failed: bool,
    /// Batched only: this transaction appended to the log, and its head goes to the writer.
    head_written: bool,
    /// Batched on PostgreSQL: the records this transaction appended, not yet inserted.
    own_records: AuditRows,
    backend: Backend,
}

impl Drop for SqlTransaction {
    fn drop(&mut self) {
        // Ended without a commit: undo this transaction's savepoint on the writer. (The other
        // kinds roll themselves back when dropped.)
        match self.conn.take() {
            Some(Conn::Batched(writer, group)) => group.roll_back(writer),
            Some(Conn::PgBatched(writer, group)) => {
                // Undone by a task of its own; failing that (no runtime), by whoever takes the
                // writer next.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move { group.roll_back(writer).await });
                }
            }
            _ => {}
        }
    }
}

impl std::fmt::Debug for SqlTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlTransaction").field("head", &self.head.map(|h| h.0)).finish_non_exhaustive()
    }
}

impl SqlTransaction {
    pub(crate) fn new(conn: Conn, backend: Backend) -> Self {
        SqlTransaction {
            conn: Some(conn),
            head: None,
            failed: false,
            head_written: false,
            own_records: AuditRows::default(),
            backend,
        }
    }

    /// The connection for this transaction's next statement. In a batch on PostgreSQL, the
    /// first opens the transaction's savepoint; a statement that reads the log has the records
    /// held in memory inserted first (`PgWriter::before_statement`).
    async fn conn(&mut self) -> Result<DbConn<'_>, StoreError> {
        if let Some(Conn::PgBatched(writer, _)) = &mut self.conn
            && let Err(error) = writer.open_savepoint().await
        {
            self.failed = true;
            return Err(error);
        }
        Ok(match &mut self.conn {
            Some(Conn::Pg(tx)) => DbConn::Pg(tx),
            Some(Conn::PgBatched(writer, _)) => DbConn::PgBatched(writer, &mut self.own_records),
            Some(Conn::Batched(writer, _)) => DbConn::Lite(writer.connection()),
            Some(Conn::Read(reader)) => DbConn::Lite(reader.connection()),
            None => unreachable!("a transaction's connection is taken only when it ends"),
        })
    }

    /// Records that a statement failed and translates the driver's error.
    fn failure(&mut self, context: &'static str, error: &DbError) -> StoreError {
        self.failed = true;
        driver_error(context, error)
    }

    async fn fetch_all(&mut self, context: &'static str, sql: &str, args: Vec<Value>) -> Result<Vec<Row>, StoreError> {
        Query::with_args(sql, args).fetch_all(self.conn().await?).await.map_err(|e| self.failure(context, &e))
    }

    async fn head(&mut self) -> Result<(u64, [u8; 32]), StoreError> {
        if let Some(head) = self.head {
            return Ok(head);
        }
        let batch_head = match &self.conn {
            Some(Conn::Batched(writer, _)) => writer.head,
            Some(Conn::PgBatched(writer, _)) => writer.head,
            _ => None,
        };
        if let Some(head) = batch_head {
            self.head = Some(head);
            return Ok(head);
        }
        let row = query("SELECT next_seq, chain_hash FROM audit_head WHERE id = 1")
            .fetch_one(self.conn().await?)
            .await
            .map_err(|e| self.failure("read audit head", &e))?;
        let head = (int(&row, "next_seq")? as u64, hash(&row, "chain_hash")?);
        self.head = Some(head);
        Ok(head)
    }

    async fn write_head(&mut self, head: (u64, [u8; 32])) -> Result<(), StoreError> {
        if let Some(Conn::Batched(..) | Conn::PgBatched(..)) = &self.conn {
            // Handed to the writer at commit; the batch writes it once.
            self.head = Some(head);
            self.head_written = true;
            return Ok(());
        }
        query("UPDATE audit_head SET next_seq = $1, chain_hash = $2 WHERE id = 1")
            .bind(head.0 as i64)
            .bind(head.1.to_vec())
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("write audit head", &e))?;
        self.head = Some(head);
        Ok(())
    }

    /// `SELECT * FROM sessions WHERE <condition>`; in a write transaction on PostgreSQL the rows
    /// are locked, so that a heartbeat counted beside the batches (`Store::record_presence`)
    /// either came before this read or waits for the transaction and finds what it did.
    fn sessions_where(&self, condition: &str) -> String {
        let lock = if let Some(Conn::PgBatched(..)) = &self.conn { " FOR UPDATE" } else { "" };
        format!("SELECT * FROM sessions WHERE {condition}{lock}")
    }

    /// This transaction's commit does not wait for the disk (PostgreSQL): for what fails
    /// closed if lost.
    pub(crate) async fn without_waiting_for_the_disk(&mut self) -> Result<(), StoreError> {
        query("SET LOCAL synchronous_commit = off")
            .execute(self.conn().await?)
            .await
            .map(drop)
            .map_err(|e| self.failure("synchronous_commit", &e))
    }

    /// Appends events with one multi-row INSERT per chunk and one head update. In a batch on
    /// PostgreSQL the rows wait in memory until the batch (or this transaction's next
    /// statement) inserts them together with others'.
    async fn append_many(&mut self, events: &[AuditEvent]) -> Result<u64, StoreError> {
        let (first_seq, mut chain) = self.head().await?;
        let mut rows = AuditRows::default();
        let mut seq = first_seq;
        for event in events {
            let entry = careid_audit::encode(event);
            chain = careid_audit::chain_hash(&chain, &entry);
            // The organisations each record names, for scoped queries: derived from the entry.
            let mut named: Vec<&OdsCode> = event.orgs.iter().collect();
            named.sort();
            named.dedup();
            for org in named {
                rows.push_org(seq, org, seq);
            }
            rows.push_record(seq, event, entry, chain);
            seq += 1;
        }
        if let Some(Conn::PgBatched(..)) = &self.conn {
            self.own_records.extend(rows);
        } else {
            self.insert_rows(rows).await?;
        }
        self.write_head((seq, chain)).await?;
        Ok(first_seq)
    }

    async fn insert_rows(&mut self, mut rows: AuditRows) -> Result<(), StoreError> {
        let backend = self.backend;
        let conn = self.conn().await?;
        rows.insert(conn, backend).await.map_err(|e| self.failure("append audit", &e))
    }
}

/// Audit records and their organisations' index rows, as bound values, ready to insert.
#[derive(Default, Clone)]
pub(crate) struct AuditRows {
    records: Vec<Value>,
    orgs: Vec<Value>,
}

impl AuditRows {
    const RECORD_COLUMNS: usize = 8;
    const ORG_COLUMNS: usize = 3;

    fn push_record(&mut self, seq: u64, event: &AuditEvent, entry: Vec<u8>, chain: [u8; 32]) {
        self.records.extend([
            Value::int(seq as i64),
            Value::int(micros(event.at)),
            Value::text(event.action.code()),
            event.actor.person.as_ref().map(PersonUuid::as_str).into(),
            event.subject_person.as_ref().map(PersonUuid::as_str).into(),
            event.actor.session.clone().into(),
            entry.into(),
            chain.to_vec().into(),
        ]);
    }

    fn push_org(&mut self, seq: u64, org: &OdsCode, source: u64) {
        self.orgs.extend([Value::int(seq as i64), Value::text(org.to_string()), Value::int(source as i64)]);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty() && self.orgs.is_empty()
    }

    pub(crate) fn extend(&mut self, other: AuditRows) {
        self.records.extend(other.records);
        self.orgs.extend(other.orgs);
    }

    /// Inserts the rows, a multi-row INSERT a chunk, and empties `self`.
    pub(crate) async fn insert(&mut self, mut conn: DbConn<'_>, backend: Backend) -> Result<(), DbError> {
        for (sql, args) in self.take_statements(backend) {
            Query::with_args(&sql, args).execute(conn.reborrow()).await?;
        }
        Ok(())
    }

    /// `insert`, straight on a PostgreSQL connection (a batch's writer inserting what it holds).
    pub(crate) async fn insert_pg(&mut self, conn: &mut sqlx::AnyConnection) -> Result<(), DbError> {
        for (sql, args) in self.take_statements(Backend::Postgres) {
            Query::with_args(&sql, args).execute_pg(conn).await?;
        }
        Ok(())
    }

    /// The INSERT statements for the rows, which leave `self`.
    fn take_statements(&mut self, backend: Backend) -> Vec<(String, Vec<Value>)> {
        let mut statements = Vec::new();
        let tables = [
            (
                "INSERT INTO audit_log (seq, at_us, action, actor, subject_person, session, entry, chain_hash) VALUES ",
                std::mem::take(&mut self.records),
                Self::RECORD_COLUMNS,
            ),
            ("INSERT INTO audit_orgs (seq, org, source) VALUES ", std::mem::take(&mut self.orgs), Self::ORG_COLUMNS),
        ];
        for (insert, values, columns) in tables {
            let mut left = values.len() / columns;
            let mut values = values.into_iter();
            while left > 0 {
                // Chunks of a power of two rows: a few statement texts, each prepared once
                // per connection, whatever the batches' sizes.
                let rows = 1 << left.min(BULK_ROWS).ilog2();
                let chunk: Vec<Value> = values.by_ref().take(rows * columns).collect();
                let mut sql = String::from(insert);
                push_placeholders(&mut sql, backend, rows, columns);
                statements.push((sql, chunk));
                left -= rows;
            }
        }
        statements
    }
}

/// Appends `($1, $2, ...), (...)` for `rows` rows of `columns` columns. SQLite gets anonymous
/// `?` placeholders instead: sqlx asks SQLite for every parameter's name, and SQLite finds a
/// named one by a linear scan, which made a 6,500-parameter insert quadratic.
fn push_placeholders(sql: &mut String, backend: Backend, rows: usize, columns: usize) {
    use std::fmt::Write;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            let sep = if c == 0 { "" } else { ", " };
            match backend {
                Backend::Sqlite => {
                    let _ = write!(sql, "{sep}?");
                }
                Backend::Postgres => {
                    let _ = write!(sql, "{sep}${}", r * columns + c + 1);
                }
            }
        }
        sql.push(')');
    }
}

/// Records `from_seq..` on SQLite, read column by column. The outer error is the driver's, the
/// inner one a stored value that is not what it should be.
fn lite_audit_range(
    conn: &rusqlite::Connection,
    sql: &str,
    from_seq: u64,
    limit: u32,
) -> Result<Result<Vec<AuditRecord>, StoreError>, rusqlite::Error> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(rusqlite::params![from_seq as i64, i64::from(limit)])?;
    let mut records = Vec::with_capacity(limit.min(4096) as usize);
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let entry: Vec<u8> = row.get(1)?;
        // The hash is copied straight out of the row, with no allocation of its own.
        let chain_hash = match row.get_ref(2)? {
            rusqlite::types::ValueRef::Blob(chain) => <[u8; 32]>::try_from(chain).ok(),
            _ => None,
        };
        let Some(chain_hash) = chain_hash else {
            return Ok(Err(StoreError::Corrupt(format!("chain_hash of record {seq}: not 32 bytes"))));
        };
        records.push(AuditRecord { seq: seq as u64, entry, chain_hash });
    }
    Ok(Ok(records))
}

/// An audit record, its entry moved out of the row rather than copied (logs are read whole).
fn record(mut row: Row) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        seq: int(&row, "seq")? as u64,
        entry: row.take_bytes("entry")?,
        chain_hash: hash(&row, "chain_hash")?,
    })
}

fn opt_string<T: ToString>(value: Option<&T>) -> Option<String> {
    value.map(ToString::to_string)
}

const PERSON_COLUMNS: &str = "uuid, title, given_name, family_name, given_name_key, family_name_key, date_of_birth, \
                              ni_number, email, phone, status, registered_org, created_at";

/// A person `p` registered or employed within `under_org` (the CTE `UNDER` opens).
const IN_SCOPE_PERSON: &str = "(p.registered_org IN (SELECT ods_code FROM under_org) OR EXISTS \
        (SELECT 1 FROM assignments sa WHERE sa.person = p.uuid AND sa.org IN (SELECT ods_code FROM under_org)))";

/// The person named by `column` (a card's holder, an incident's subject) within `under_org`.
fn person_in_scope(column: &str) -> String {
    format!("EXISTS (SELECT 1 FROM people p WHERE p.uuid = {column} AND {IN_SCOPE_PERSON})")
}

/// Assignment `a` current on the date `$2`.
const CURRENT: &str = "a.removed_at IS NULL AND a.start_date <= $2 AND (a.end_date IS NULL OR a.end_date >= $2)";

const UNDER: &str = "WITH RECURSIVE under_org(ods_code) AS (\
        SELECT CAST($1 AS TEXT) \
        UNION ALL SELECT o.ods_code FROM organisations o JOIN under_org u ON o.parent = u.ods_code)";

/// A query over the rows of the organisations at and under one, narrowed by optional
/// conditions, each with its value as the next `$n`.
struct Filter {
    /// `WITH` clauses the conditions use (the organisations under one), or nothing.
    with: &'static str,
    /// `SELECT ... FROM table`.
    select: String,
    conditions: Vec<String>,
    args: Vec<Value>,
}

impl Filter {
    /// `select` (`SELECT ... FROM table`), within `org_under` if given: `within` is the condition
    /// that keeps a row of the organisations in `under_org`.
    fn new(select: &str, org_under: Option<&OdsCode>, within: &str) -> Filter {
        let mut filter = Filter { with: "", select: select.to_owned(), conditions: Vec::new(), args: Vec::new() };
        if let Some(org) = org_under {
            filter.args.push(Value::text(org.to_string()));
            filter.with = UNDER;
            filter.conditions.push(within.to_owned());
        }
        filter
    }

    /// Adds ` AND condition`, where each `$?` stands for `value`.
    fn and(&mut self, condition: &str, value: Value) {
        self.args.push(value);
        let placeholder = format!("${}", self.args.len());
        self.conditions.push(condition.replace("$?", &placeholder));
    }

    /// Adds a condition that takes no value.
    fn and_plain(&mut self, condition: &str) {
        self.conditions.push(condition.to_owned());
    }

    fn where_clause(&self) -> String {
        if self.conditions.is_empty() { "1 = 1".to_owned() } else { self.conditions.join(" AND ") }
    }

    /// The newest `limit` rows first, by `seq`.
    fn newest_first(mut self, limit: u32) -> (String, Vec<Value>) {
        self.args.push(Value::int(i64::from(limit)));
        let sql = format!(
            "{} {} WHERE {} ORDER BY seq DESC LIMIT ${}",
            self.with,
            self.select,
            self.where_clause(),
            self.args.len()
        );
        (sql, self.args)
    }

    /// The newest `limit` audit records first, by `seq`, of those where `person` is the actor or
    /// the subject. Each side is read newest first through its own `(column, seq)` index and
    /// cut at `limit` before the two are merged: one `OR` would make the database gather every
    /// record of a person who acted a million times (an RA Manager's import) and sort them.
    fn newest_audit_of_person(mut self, person: &PersonUuid, limit: u32) -> (String, Vec<Value>) {
        self.args.push(Value::text(person.to_string()));
        let who = format!("${}", self.args.len());
        self.args.push(Value::int(i64::from(limit)));
        let most = format!("${}", self.args.len());
        let conditions = self.where_clause();
        let side = |column: &str| {
            format!(
                "SELECT seq FROM (SELECT seq FROM audit_log WHERE {conditions} AND {column} = {who} \
                 ORDER BY seq DESC LIMIT {most}) AS {column}_side"
            )
        };
        let sql = format!(
            "{} {} WHERE seq IN ({} UNION {}) ORDER BY seq DESC LIMIT {most}",
            self.with,
            self.select,
            side("actor"),
            side("subject_person")
        );
        (sql, self.args)
    }
}

#[async_trait]
impl Transaction for SqlTransaction {
    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        if self.failed {
            // Roll back to the savepoint on the writer now; an own transaction rolls back when
            // dropped.
            match self.conn.take() {
                Some(Conn::Batched(writer, group)) => group.roll_back(writer),
                Some(Conn::PgBatched(writer, group)) => group.roll_back(writer).await,
                // An own transaction rolls back when dropped.
                _ => {}
            }
            return Err(StoreError::Unavailable(
                "a statement in this transaction failed; nothing was committed".into(),
            ));
        }
        match self.conn.take() {
            Some(Conn::Batched(mut writer, group)) => {
                if self.head_written {
                    writer.head = self.head;
                    writer.head_dirty = true;
                }
                group.commit(writer).await
            }
            Some(Conn::PgBatched(writer, group)) => {
                let head = if self.head_written { self.head } else { None };
                group.commit(writer, std::mem::take(&mut self.own_records), head).await
            }
            Some(Conn::Pg(tx)) => tx.commit().await.map_err(|e| driver_error("commit", &DbError::Sqlx(e))),
            // A read ends when its connection goes back to the pool.
            Some(Conn::Read(reader)) => {
                drop(reader);
                Ok(())
            }
            None => unreachable!("a transaction's connection is taken only when it ends"),
        }
    }

    async fn append_audit(&mut self, event: &AuditEvent) -> Result<u64, StoreError> {
        self.append_many(std::slice::from_ref(event)).await
    }

    async fn append_audit_batch(&mut self, events: &[AuditEvent]) -> Result<u64, StoreError> {
        self.append_many(events).await
    }

    async fn audit_records(&mut self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        // Narrowed by an indexed column (an action, a person, a card's sessions), the newest
        // records are read through that index and each is checked for the organisations it
        // concerns; otherwise the organisations' records are gathered first. The other way
        // round, the first would gather a whole ICB's million records to keep fifty alerts.
        let narrowed = query.action.is_some() || query.person.is_some() || query.card.is_some();
        let within = if narrowed {
            "EXISTS (SELECT 1 FROM audit_orgs o WHERE o.seq = audit_log.seq \
             AND o.org IN (SELECT ods_code FROM under_org))"
        } else {
            "seq IN (SELECT seq FROM audit_orgs WHERE org IN (SELECT ods_code FROM under_org))"
        };
        let mut filter = Filter::new("SELECT seq, entry, chain_hash FROM audit_log", query.org_under.as_ref(), within);
        if let Some(action) = &query.action {
            filter.and("action = $?", Value::text(action.clone()));
        }
        if let Some(card) = query.card {
            filter.and("session IN (SELECT id FROM sessions WHERE card = $?)", Value::int(card));
        }
        if let Some(since) = query.since {
            filter.and("at_us >= $?", Value::int(micros(since)));
        }
        if let Some(until) = query.until {
            filter.and("at_us < $?", Value::int(micros(until)));
        }
        if let Some(before) = query.before_seq {
            filter.and("seq < $?", Value::int(before as i64));
        }
        let (sql, args) = match &query.person {
            Some(person) => filter.newest_audit_of_person(person, query.limit),
            None => filter.newest_first(query.limit),
        };
        self.fetch_all("read audit", &sql, args).await?.into_iter().map(record).collect()
    }

    async fn audit_range(&mut self, from_seq: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = "SELECT seq, entry, chain_hash FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2";
        if let DbConn::Lite(conn) = self.conn().await? {
            // Whole logs are read through here (verification, archives): straight from SQLite's
            // row into the record, one copy of each entry.
            let read = lite_audit_range(conn, sql, from_seq, limit);
            return read.map_err(|e| self.failure("read audit range", &DbError::Lite(e)))?;
        }
        let args = vec![Value::int(from_seq as i64), Value::int(i64::from(limit))];
        self.fetch_all("read audit range", sql, args).await?.into_iter().map(record).collect()
    }

    async fn reserve_person_serials(&mut self, count: u64) -> Result<u64, StoreError> {
        let row = query(
            "UPDATE counters SET next_value = next_value + $1 WHERE name = 'person_serial' RETURNING next_value - $1 AS v",
        )
        .bind(count as i64)
        .fetch_one(self.conn().await?)
        .await
        .map_err(|e| self.failure("next person serial", &e))?;
        Ok(int(&row, "v")? as u64)
    }

    async fn insert_organisation(&mut self, org: &Organisation) -> Result<(), StoreError> {
        query("INSERT INTO organisations (ods_code, name, kind, parent) VALUES ($1, $2, $3, $4)")
            .bind(org.ods_code.to_string())
            .bind(org.name.to_string())
            .bind(org.kind.code())
            .bind(opt_string(org.parent.as_ref()))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("organisation", &e))?;
        Ok(())
    }

    async fn organisation(&mut self, ods: &OdsCode) -> Result<Option<Organisation>, StoreError> {
        let rows = self
            .fetch_all(
                "read organisation",
                "SELECT ods_code, name, kind, parent FROM organisations WHERE ods_code = $1",
                vec![Value::text(ods.to_string())],
            )
            .await?;
        rows.first().map(rows::organisation).transpose()
    }

    async fn organisation_ancestors(&mut self, ods: &OdsCode) -> Result<Vec<OdsCode>, StoreError> {
        let sql = "WITH RECURSIVE up(ods_code, parent, depth) AS (\
                     SELECT ods_code, parent, 0 FROM organisations WHERE ods_code = $1 \
                     UNION ALL SELECT o.ods_code, o.parent, up.depth + 1 FROM organisations o \
                       JOIN up ON o.ods_code = up.parent WHERE up.depth < 64) \
                   SELECT ods_code FROM up ORDER BY depth";
        let rows = self.fetch_all("organisation ancestors", sql, vec![Value::text(ods.to_string())]).await?;
        rows.iter().map(|r| OdsCode::parse(&rows::text(r, "ods_code")?).map_err(rows::corrupt)).collect()
    }

    async fn person_within(&mut self, person: &PersonUuid, org: &OdsCode) -> Result<bool, StoreError> {
        let sql = "WITH RECURSIVE base(ods_code) AS (\
                     SELECT registered_org FROM people WHERE uuid = $1 \
                     UNION SELECT org FROM assignments WHERE person = $1), \
                   up(ods_code, parent, depth) AS (\
                     SELECT o.ods_code, o.parent, 0 FROM organisations o JOIN base b ON o.ods_code = b.ods_code \
                     UNION ALL SELECT o.ods_code, o.parent, up.depth + 1 FROM organisations o \
                       JOIN up ON o.ods_code = up.parent WHERE up.depth < 64) \
                   SELECT ods_code FROM up WHERE ods_code = $2 LIMIT 1";
        let args = vec![Value::text(person.to_string()), Value::text(org.to_string())];
        Ok(!self.fetch_all("person within", sql, args).await?.is_empty())
    }

    async fn organisations(
        &mut self,
        text: Option<&str>,
        parent: Option<&OdsCode>,
        limit: u32,
    ) -> Result<Vec<Organisation>, StoreError> {
        let mut sql = String::from("SELECT ods_code, name, kind, parent FROM organisations WHERE 1 = 1");
        let mut args = Vec::new();
        if let Some(text) = text {
            args.push(Value::text(format!("%{}%", text.to_lowercase())));
            sql.push_str(" AND (LOWER(ods_code) LIKE $1 OR LOWER(name) LIKE $1)");
        }
        if let Some(parent) = parent {
            args.push(Value::text(parent.to_string()));
            sql.push_str(&format!(" AND parent = ${}", args.len()));
        }
        args.push(Value::int(i64::from(limit)));
        sql.push_str(&format!(" ORDER BY ods_code LIMIT ${}", args.len()));
        self.fetch_all("list organisations", &sql, args).await?.iter().map(rows::organisation).collect()
    }

    async fn insert_person(&mut self, person: &Person) -> Result<(), StoreError> {
        self.bulk_insert_people(std::slice::from_ref(person), &[]).await
    }

    async fn person(&mut self, uuid: &PersonUuid) -> Result<Option<Person>, StoreError> {
        let sql = format!("SELECT {PERSON_COLUMNS} FROM people WHERE uuid = $1");
        let rows = self.fetch_all("read person", &sql, vec![Value::text(uuid.to_string())]).await?;
        rows.first().map(rows::person).transpose()
    }

    async fn update_person(&mut self, person: &Person) -> Result<(), StoreError> {
        let d = &person.details;
        query(
            "UPDATE people SET title = $2, given_name = $3, family_name = $4, given_name_key = $5, \
             family_name_key = $6, date_of_birth = $7, ni_number = $8, email = $9, phone = $10, status = $11 \
             WHERE uuid = $1",
        )
        .bind(person.uuid.to_string())
        .bind(opt_string(d.title.as_ref()))
        .bind(d.given_name.to_string())
        .bind(d.family_name.to_string())
        .bind(name_key(&d.given_name))
        .bind(name_key(&d.family_name))
        .bind(format_date(d.date_of_birth))
        .bind(d.ni_number.to_string())
        .bind(opt_string(person.contact.email.as_ref()))
        .bind(opt_string(person.contact.phone.as_ref()))
        .bind(person.status.code())
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("person", &e))?;
        Ok(())
    }

    async fn possible_duplicates(&mut self, details: &PersonalDetails) -> Result<Vec<Person>, StoreError> {
        let sql = format!(
            "SELECT {PERSON_COLUMNS} FROM people WHERE ni_number = $1 \
             UNION SELECT {PERSON_COLUMNS} FROM people \
               WHERE family_name_key = $2 AND given_name_key = $3 AND date_of_birth = $4"
        );
        let args = vec![
            Value::text(details.ni_number.to_string()),
            Value::text(name_key(&details.family_name)),
            Value::text(name_key(&details.given_name)),
            Value::text(format_date(details.date_of_birth)),
        ];
        self.fetch_all("duplicate check", &sql, args).await?.iter().map(rows::person).collect()
    }

    async fn report_lost_cards(
        &mut self,
        within: &OdsCode,
    ) -> Result<Vec<careid_domain::report::LostCard>, StoreError> {
        let sql = format!(
            "{UNDER} SELECT i.reported_at, i.closed_at, \
               (SELECT MIN(c.issued_at) FROM cards c WHERE c.person = i.subject AND c.issued_at > i.reported_at) \
                 AS replaced_at \
             FROM incidents i WHERE i.kind IN ('lost_card', 'stolen_card') AND {} ORDER BY i.id",
            person_in_scope("i.subject")
        );
        let rows = self.fetch_all("report lost cards", &sql, vec![Value::text(within.to_string())]).await?;
        rows.iter()
            .map(|r| {
                Ok(careid_domain::report::LostCard {
                    reported_at: rows::time_at(r, "reported_at")?,
                    closed_at: rows::opt_time_at(r, "closed_at")?,
                    replaced_at: rows::opt_time_at(r, "replaced_at")?,
                })
            })
            .collect()
    }

    async fn report_card_issues(&mut self, within: &OdsCode) -> Result<Vec<(OffsetDateTime, bool)>, StoreError> {
        let sql = format!(
            "{UNDER} SELECT c.issued_at, \
               (SELECT COUNT(*) FROM cards e WHERE e.person = c.person AND e.id < c.id) AS earlier \
             FROM cards c WHERE {} ORDER BY c.id",
            person_in_scope("c.person")
        );
        let rows = self.fetch_all("report card issues", &sql, vec![Value::text(within.to_string())]).await?;
        rows.iter().map(|r| Ok((rows::time_at(r, "issued_at")?, rows::int(r, "earlier")? > 0))).collect()
    }

    async fn report_people(
        &mut self,
        within: &OdsCode,
        today: Date,
    ) -> Result<Vec<careid_domain::report::ReportPerson>, StoreError> {
        let sql = format!(
            "{UNDER} SELECT p.uuid, p.given_name, p.family_name, p.status, c.id AS card, c.serial, \
               (SELECT COUNT(*) FROM cards l WHERE l.person = p.uuid AND l.live = 1) AS live_cards, \
               (SELECT MAX(cc.not_after) FROM card_certificates cc WHERE cc.card = c.id AND cc.revoked_at IS NULL) \
                 AS certificate_ends, \
               (SELECT MAX(s.created_at) FROM sessions s WHERE s.person = p.uuid) AS last_login, \
               (SELECT COUNT(*) FROM assignments a WHERE a.person = p.uuid AND {CURRENT}) AS current_positions \
             FROM people p LEFT JOIN cards c ON c.person = p.uuid AND c.live = 1 \
             WHERE {IN_SCOPE_PERSON} AND (c.id IS NOT NULL OR (p.status = 'closed' AND EXISTS \
               (SELECT 1 FROM assignments a WHERE a.person = p.uuid AND {CURRENT}))) \
             ORDER BY p.uuid, c.id"
        );
        let args = vec![Value::text(within.to_string()), Value::text(format_date(today))];
        let rows = self.fetch_all("report people", &sql, args).await?;
        rows.iter()
            .map(|r| {
                let count = |column: &str| rows::int(r, column).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
                let card = match rows::opt_int(r, "card")? {
                    Some(id) => Some((id, rows::text(r, "serial")?)),
                    None => None,
                };
                Ok(careid_domain::report::ReportPerson {
                    person: PersonUuid::parse(&rows::text(r, "uuid")?).map_err(rows::corrupt)?,
                    name: format!("{} {}", rows::text(r, "given_name")?, rows::text(r, "family_name")?),
                    closed: rows::text(r, "status")? == "closed",
                    current_positions: count("current_positions")?,
                    card,
                    live_cards: count("live_cards")?,
                    certificate_ends: rows::opt_time_at(r, "certificate_ends")?,
                    last_login: rows::opt_time_at(r, "last_login")?,
                })
            })
            .collect()
    }

    async fn report_coverage(&mut self, within: &OdsCode, today: Date) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let sql = format!(
            "{UNDER} SELECT a.org, COUNT(DISTINCT a.person) AS staff, \
               COUNT(DISTINCT CASE WHEN EXISTS (SELECT 1 FROM cards c WHERE c.person = a.person AND c.live = 1) \
                 THEN a.person END) AS with_card \
             FROM assignments a WHERE a.org IN (SELECT ods_code FROM under_org) AND {CURRENT} \
             GROUP BY a.org ORDER BY a.org"
        );
        let args = vec![Value::text(within.to_string()), Value::text(format_date(today))];
        let rows = self.fetch_all("report coverage", &sql, args).await?;
        let count = |r: &crate::db::Row, column: &str| rows::int(r, column).map(|n| u64::try_from(n).unwrap_or(0));
        rows.iter().map(|r| Ok((rows::text(r, "org")?, count(r, "staff")?, count(r, "with_card")?))).collect()
    }

    async fn insert_spot_check(&mut self, c: &careid_domain::report::SpotCheck) -> Result<i64, StoreError> {
        let row = query(
            "INSERT INTO spot_checks (org, visited_on, findings, checked_by, recorded_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id",
        )
        .bind(c.org.to_string())
        .bind(format_date(c.visited_on))
        .bind(c.findings.clone())
        .bind(c.checked_by.to_string())
        .bind(micros(c.recorded_at))
        .fetch_one(self.conn().await?)
        .await
        .map_err(|e| self.failure("spot check", &e))?;
        int(&row, "id")
    }

    async fn report_spot_checks(
        &mut self,
        within: &OdsCode,
    ) -> Result<Vec<careid_domain::report::SpotCheck>, StoreError> {
        let sql = format!(
            "{UNDER} SELECT id, org, visited_on, findings, checked_by, recorded_at FROM spot_checks \
             WHERE org IN (SELECT ods_code FROM under_org) ORDER BY visited_on DESC, id DESC"
        );
        let rows = self.fetch_all("report spot checks", &sql, vec![Value::text(within.to_string())]).await?;
        rows.iter()
            .map(|r| {
                Ok(careid_domain::report::SpotCheck {
                    id: rows::int(r, "id")?,
                    org: OdsCode::parse(&rows::text(r, "org")?).map_err(rows::corrupt)?,
                    visited_on: careid_domain::ids::parse_date("visited_on", &rows::text(r, "visited_on")?)
                        .map_err(rows::corrupt)?,
                    findings: rows::text(r, "findings")?,
                    checked_by: PersonUuid::parse(&rows::text(r, "checked_by")?).map_err(rows::corrupt)?,
                    recorded_at: rows::time_at(r, "recorded_at")?,
                })
            })
            .collect()
    }

    async fn people_by_family_name(
        &mut self,
        family_prefix: &str,
        within: &OdsCode,
        limit: u32,
    ) -> Result<Vec<Person>, StoreError> {
        // A range on the key column, so the index serves it on both backends; the scope is the
        // organisation and everything below it, as `person_within` reads it.
        let low = family_prefix.to_lowercase();
        let high = format!("{low}\u{10FFFF}");
        let sql = format!(
            "{UNDER} SELECT {PERSON_COLUMNS} FROM people p WHERE family_name_key >= $2 AND family_name_key < $3 \
               AND {IN_SCOPE_PERSON} ORDER BY family_name_key, given_name_key, uuid LIMIT $4"
        );
        let args =
            vec![Value::text(within.to_string()), Value::text(low), Value::text(high), Value::int(i64::from(limit))];
        self.fetch_all("search people", &sql, args).await?.iter().map(rows::person).collect()
    }

    async fn person_by_ni(&mut self, ni: &NiNumber) -> Result<Option<Person>, StoreError> {
        let sql = format!("SELECT {PERSON_COLUMNS} FROM people WHERE ni_number = $1");
        let rows = self.fetch_all("read person", &sql, vec![Value::text(ni.to_string())]).await?;
        rows.first().map(rows::person).transpose()
    }

    async fn insert_identity_check(&mut self, check: &IdentityCheck) -> Result<(), StoreError> {
        query(
            "INSERT INTO identity_checks (person, purpose, documents, checked_by, checked_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(check.person.to_string())
        .bind(check.purpose.code())
        .bind(rows::encode_documents(&check.documents))
        .bind(opt_string(check.checked_by.as_ref()))
        .bind(micros(check.checked_at))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("identity check", &e))?;
        Ok(())
    }

    async fn identity_checks(&mut self, person: &PersonUuid) -> Result<Vec<IdentityCheck>, StoreError> {
        let sql = "SELECT person, purpose, documents, checked_by, checked_at FROM identity_checks \
                   WHERE person = $1 ORDER BY id";
        self.fetch_all("identity checks", sql, vec![Value::text(person.to_string())])
            .await?
            .iter()
            .map(rows::identity_check)
            .collect()
    }

    async fn record_terms_acceptance(
        &mut self,
        person: &PersonUuid,
        version: &str,
        context: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        query("INSERT INTO terms_acceptances (person, version, context, accepted_at) VALUES ($1, $2, $3, $4)")
            .bind(person.to_string())
            .bind(version.to_owned())
            .bind(context.to_owned())
            .bind(micros(at))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("terms acceptance", &e))?;
        Ok(())
    }

    async fn insert_registration(&mut self, r: &Registration) -> Result<RegistrationId, StoreError> {
        let d = &r.details;
        let row = query(
            "INSERT INTO registrations (org, title, given_name, family_name, given_name_key, family_name_key, \
             date_of_birth, ni_number, email, phone, position_sought, note, sponsor, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
        )
        .bind(r.org.to_string())
        .bind(opt_string(d.title.as_ref()))
        .bind(d.given_name.to_string())
        .bind(d.family_name.to_string())
        .bind(name_key(&d.given_name))
        .bind(name_key(&d.family_name))
        .bind(format_date(d.date_of_birth))
        .bind(d.ni_number.to_string())
        .bind(opt_string(r.contact.email.as_ref()))
        .bind(opt_string(r.contact.phone.as_ref()))
        .bind(r.position_sought.map(|p| p.0))
        .bind(r.note.clone())
        .bind(r.sponsor.to_string())
        .bind(r.status.code())
        .bind(micros(r.created_at))
        .fetch_one(self.conn().await?)
        .await
        .map_err(|e| self.failure("registration", &e))?;
        Ok(RegistrationId(int(&row, "id")?))
    }

    async fn registration(&mut self, id: RegistrationId) -> Result<Option<Registration>, StoreError> {
        let rows = self
            .fetch_all("read registration", "SELECT * FROM registrations WHERE id = $1", vec![Value::int(id.0)])
            .await?;
        rows.first().map(rows::registration).transpose()
    }

    async fn set_registration_status(
        &mut self,
        id: RegistrationId,
        status: &RegistrationStatus,
    ) -> Result<(), StoreError> {
        let (person, reason) = match status {
            RegistrationStatus::Pending => (None, None),
            RegistrationStatus::Verified(uuid) => (Some(uuid.to_string()), None),
            RegistrationStatus::Rejected { reason } => (None, Some(reason.clone())),
        };
        query("UPDATE registrations SET status = $2, person = $3, reason = $4 WHERE id = $1")
            .bind(id.0)
            .bind(status.code())
            .bind(person)
            .bind(reason)
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("registration", &e))?;
        Ok(())
    }

    async fn registrations_under(
        &mut self,
        org: &OdsCode,
        pending_only: bool,
    ) -> Result<Vec<Registration>, StoreError> {
        let filter = if pending_only { " AND status = 'pending'" } else { "" };
        let sql = format!(
            "{UNDER} SELECT * FROM registrations WHERE org IN (SELECT ods_code FROM under_org){filter} ORDER BY id"
        );
        self.fetch_all("list registrations", &sql, vec![Value::text(org.to_string())])
            .await?
            .iter()
            .map(rows::registration)
            .collect()
    }

    async fn pending_registration_duplicates(
        &mut self,
        details: &PersonalDetails,
    ) -> Result<Vec<Registration>, StoreError> {
        let sql = "SELECT * FROM registrations WHERE status = 'pending' AND (ni_number = $1 OR \
                   (family_name_key = $2 AND given_name_key = $3 AND date_of_birth = $4))";
        let args = vec![
            Value::text(details.ni_number.to_string()),
            Value::text(name_key(&details.family_name)),
            Value::text(name_key(&details.given_name)),
            Value::text(format_date(details.date_of_birth)),
        ];
        self.fetch_all("duplicate check", sql, args).await?.iter().map(rows::registration).collect()
    }

    async fn insert_position(
        &mut self,
        p: &NewPosition,
        created_by: Option<&PersonUuid>,
        at: OffsetDateTime,
    ) -> Result<PositionId, StoreError> {
        let activities: Vec<&str> = p.activities.iter().map(careid_domain::ids::ActivityCode::as_str).collect();
        let row = query(
            "INSERT INTO positions (org, name, role, activities, description, approved_by, approved_how, \
             assignable, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(p.org.to_string())
        .bind(p.name.to_string())
        .bind(p.role.to_string())
        .bind(activities.join(","))
        .bind(p.description.clone())
        .bind(p.approval.approved_by.to_string())
        .bind(p.approval.how.to_string())
        .bind(i64::from(p.assignable_by_sponsors))
        .bind(opt_string(created_by))
        .bind(micros(at))
        .fetch_one(self.conn().await?)
        .await
        .map_err(|e| self.failure("position", &e))?;
        Ok(PositionId(int(&row, "id")?))
    }

    async fn position(&mut self, id: PositionId) -> Result<Option<Position>, StoreError> {
        let rows =
            self.fetch_all("read position", "SELECT * FROM positions WHERE id = $1", vec![Value::int(id.0)]).await?;
        rows.first().map(rows::position).transpose()
    }

    async fn positions_at(&mut self, org: &OdsCode) -> Result<Vec<Position>, StoreError> {
        let sql = "SELECT * FROM positions WHERE org = $1 ORDER BY id";
        self.fetch_all("list positions", sql, vec![Value::text(org.to_string())])
            .await?
            .iter()
            .map(rows::position)
            .collect()
    }

    async fn set_position_assignable(&mut self, id: PositionId, assignable: bool) -> Result<(), StoreError> {
        query("UPDATE positions SET assignable = $2 WHERE id = $1")
            .bind(id.0)
            .bind(i64::from(assignable))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("position", &e))?;
        Ok(())
    }

    async fn insert_assignment(&mut self, a: &NewAssignment) -> Result<AssignmentId, StoreError> {
        let row = query(
            "INSERT INTO assignments (person, position, org, start_date, end_date, assigned_by) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(a.person.to_string())
        .bind(a.position.0)
        .bind(a.org.to_string())
        .bind(format_date(a.start))
        .bind(a.end.map(format_date))
        .bind(opt_string(a.assigned_by.as_ref()))
        .fetch_one(self.conn().await?)
        .await
        .map_err(|e| self.failure("assignment", &e))?;
        Ok(AssignmentId(int(&row, "id")?))
    }

    async fn assignment(&mut self, id: AssignmentId) -> Result<Option<Assignment>, StoreError> {
        let rows = self
            .fetch_all("read assignment", "SELECT * FROM assignments WHERE id = $1", vec![Value::int(id.0)])
            .await?;
        rows.first().map(rows::assignment).transpose()
    }

    async fn assignments_of(&mut self, person: &PersonUuid) -> Result<Vec<Assignment>, StoreError> {
        let sql = "SELECT * FROM assignments WHERE person = $1 ORDER BY id";
        self.fetch_all("list assignments", sql, vec![Value::text(person.to_string())])
            .await?
            .iter()
            .map(rows::assignment)
            .collect()
    }

    async fn remove_assignment(&mut self, id: AssignmentId, removal: &Removal) -> Result<(), StoreError> {
        query("UPDATE assignments SET removed_by = $2, removed_at = $3, removal_reason = $4 WHERE id = $1")
            .bind(id.0)
            .bind(opt_string(removal.removed_by.as_ref()))
            .bind(micros(removal.removed_at))
            .bind(removal.reason.clone())
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("assignment", &e))?;
        Ok(())
    }

    async fn insert_request(&mut self, r: &SponsorRequest) -> Result<RequestId, StoreError> {
        let (position, start, end, reason) = match &r.kind {
            RequestKind::AssignPosition { position, start, end } => {
                (Some(position.0), Some(format_date(*start)), end.map(format_date), None)
            }
            RequestKind::CloseProfile { reason } => (None, None, None, Some(reason.clone())),
        };
        let row = query(
            "INSERT INTO requests (person, org, kind, position, start_date, end_date, reason, note, requested_by, \
             requested_at, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending') RETURNING id",
        )
        .bind(r.person.to_string())
        .bind(r.org.to_string())
        .bind(r.kind.code())
        .bind(position)
        .bind(start)
        .bind(end)
        .bind(reason)
        .bind(r.note.clone())
        .bind(r.requested_by.to_string())
        .bind(micros(r.requested_at))
        .fetch_one(self.conn().await?)
        .await
        .map_err(|e| self.failure("request", &e))?;
        Ok(RequestId(int(&row, "id")?))
    }

    async fn request(&mut self, id: RequestId) -> Result<Option<SponsorRequest>, StoreError> {
        let rows =
            self.fetch_all("read request", "SELECT * FROM requests WHERE id = $1", vec![Value::int(id.0)]).await?;
        rows.first().map(rows::request).transpose()
    }

    async fn set_request_status(&mut self, id: RequestId, status: &RequestStatus) -> Result<(), StoreError> {
        let (by, at, reason) = match status {
            RequestStatus::Pending => (None, None, None),
            RequestStatus::Granted { by, at } => (Some(by.to_string()), Some(micros(*at)), None),
            RequestStatus::Rejected { by, at, reason } | RequestStatus::Withdrawn { by, at, reason } => {
                (Some(by.to_string()), Some(micros(*at)), Some(reason.clone()))
            }
        };
        query("UPDATE requests SET status = $2, decided_by = $3, decided_at = $4, decision_reason = $5 WHERE id = $1")
            .bind(id.0)
            .bind(status.code())
            .bind(by)
            .bind(at)
            .bind(reason)
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("request", &e))?;
        Ok(())
    }

    async fn requests_under(&mut self, org: &OdsCode, pending_only: bool) -> Result<Vec<SponsorRequest>, StoreError> {
        let filter = if pending_only { " AND status = 'pending'" } else { "" };
        let sql =
            format!("{UNDER} SELECT * FROM requests WHERE org IN (SELECT ods_code FROM under_org){filter} ORDER BY id");
        self.fetch_all("list requests", &sql, vec![Value::text(org.to_string())])
            .await?
            .iter()
            .map(rows::request)
            .collect()
    }

    async fn pending_requests_of(&mut self, person: &PersonUuid) -> Result<Vec<SponsorRequest>, StoreError> {
        let sql = "SELECT * FROM requests WHERE person = $1 AND status = 'pending' ORDER BY id";
        self.fetch_all("list requests", sql, vec![Value::text(person.to_string())])
            .await?
            .iter()
            .map(rows::request)
            .collect()
    }

    async fn insert_credential(&mut self, c: &Credential) -> Result<(), StoreError> {
        query(
            "INSERT INTO credentials (secret_hash, person, kind, issued_by, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.secret_hash.to_vec())
        .bind(c.person.to_string())
        .bind(c.kind.code())
        .bind(opt_string(c.issued_by.as_ref()))
        .bind(micros(c.issued_at))
        .bind(micros(c.expires_at))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("credential", &e))?;
        Ok(())
    }

    async fn revoke_credentials(
        &mut self,
        person: &PersonUuid,
        kind: AuthMethod,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let done = query(
            "UPDATE credentials SET revoked_at = $3 \
             WHERE person = $1 AND kind = $2 AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(person.to_string())
        .bind(kind.code())
        .bind(micros(at))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("revoke credentials", &e))?;
        Ok(done.rows_affected())
    }

    async fn credential(&mut self, secret_hash: &[u8; 32]) -> Result<Option<Credential>, StoreError> {
        let rows = query("SELECT * FROM credentials WHERE secret_hash = $1")
            .bind(secret_hash.to_vec())
            .fetch_all(self.conn().await?)
            .await
            .map_err(|e| self.failure("read credential", &e))?;
        rows.first().map(rows::credential).transpose()
    }

    async fn insert_session(&mut self, s: &Session) -> Result<(), StoreError> {
        let card = s.card.as_ref();
        query(
            "INSERT INTO sessions (id, token_hash, person, assignment, auth, created_at, last_seen_at, expires_at, \
             card, workstation, heartbeat, last_proof_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(s.id.clone())
        .bind(s.token_hash.to_vec())
        .bind(s.person.to_string())
        .bind(s.assignment.0)
        .bind(s.auth.code())
        .bind(micros(s.created_at))
        .bind(micros(s.last_seen_at))
        .bind(micros(s.expires_at))
        .bind(card.map(|c| c.card))
        .bind(card.map(|c| c.workstation.clone()))
        .bind(card.map_or(0, |c| c.heartbeat as i64))
        .bind(card.map(|c| micros(c.last_proof_at)))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("session", &e))?;
        Ok(())
    }

    async fn session(&mut self, token_hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        let sql = self.sessions_where("token_hash = $1");
        let rows = self.fetch_all("read session", &sql, vec![Value::Blob(Some(token_hash.to_vec()))]).await?;
        rows.first().map(rows::session).transpose()
    }

    async fn session_by_id(&mut self, id: &str) -> Result<Option<Session>, StoreError> {
        let sql = self.sessions_where("id = $1");
        let rows = self.fetch_all("read session", &sql, vec![Value::text(id)]).await?;
        rows.first().map(rows::session).transpose()
    }

    async fn insert_console_session(&mut self, c: &ConsoleSession) -> Result<bool, StoreError> {
        let done = query(
            "INSERT INTO console_sessions (id, session, person, signed_in_at, ended_at) VALUES ($1, $2, $3, $4, NULL) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(c.id.clone())
        .bind(c.session.clone())
        .bind(c.person.to_string())
        .bind(micros(c.signed_in_at))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("insert console session", &e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn console_session(&mut self, id: &str) -> Result<Option<ConsoleSession>, StoreError> {
        let sql = "SELECT * FROM console_sessions WHERE id = $1";
        let rows = self.fetch_all("read console session", sql, vec![Value::text(id)]).await?;
        rows.first()
            .map(|r| {
                Ok(ConsoleSession {
                    id: rows::text(r, "id")?,
                    session: rows::text(r, "session")?,
                    person: PersonUuid::parse(&rows::text(r, "person")?).map_err(rows::corrupt)?,
                    signed_in_at: rows::time_at(r, "signed_in_at")?,
                    ended_at: rows::opt_time_at(r, "ended_at")?,
                })
            })
            .transpose()
    }

    async fn end_console_session(&mut self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        let done = query("UPDATE console_sessions SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL")
            .bind(id.to_owned())
            .bind(micros(at))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("end console session", &e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn live_sessions_of(&mut self, person: &PersonUuid) -> Result<Vec<Session>, StoreError> {
        let sql = self.sessions_where("person = $1 AND ended_at IS NULL ORDER BY created_at, id");
        self.fetch_all("list sessions", &sql, vec![Value::text(person.to_string())])
            .await?
            .iter()
            .map(rows::session)
            .collect()
    }

    async fn live_sessions_of_card(&mut self, card: i64) -> Result<Vec<Session>, StoreError> {
        let sql = self.sessions_where("card = $1 AND ended_at IS NULL ORDER BY created_at, id");
        self.fetch_all("list sessions", &sql, vec![Value::int(card)]).await?.iter().map(rows::session).collect()
    }

    async fn touch_session(&mut self, id: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        query("UPDATE sessions SET last_seen_at = $2 WHERE id = $1")
            .bind(id.to_owned())
            .bind(micros(at))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("session", &e))?;
        Ok(())
    }

    async fn end_session(&mut self, id: &str, at: OffsetDateTime, reason: &str) -> Result<bool, StoreError> {
        let done = query("UPDATE sessions SET ended_at = $2, end_reason = $3 WHERE id = $1 AND ended_at IS NULL")
            .bind(id.to_owned())
            .bind(micros(at))
            .bind(reason.to_owned())
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("session", &e))?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        // The session's applications hear of its end (queued before the tokens are revoked:
        // the live tokens say which applications had it).
        query(
            "INSERT INTO oidc_logouts (client, uri, session, person, created_at) \
             SELECT DISTINCT c.id, c.backchannel_logout_uri, t.session, t.person, $2 \
             FROM oidc_tokens t JOIN oidc_clients c ON c.id = t.client \
             WHERE t.session = $1 AND t.revoked_at IS NULL AND c.backchannel_logout_uri IS NOT NULL \
             ON CONFLICT (client, session) DO NOTHING",
        )
        .bind(id.to_owned())
        .bind(micros(at))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("queue logouts", &e))?;
        query("UPDATE oidc_tokens SET revoked_at = $2 WHERE session = $1 AND revoked_at IS NULL")
            .bind(id.to_owned())
            .bind(micros(at))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("revoke tokens", &e))?;
        Ok(true)
    }

    async fn record_heartbeat(&mut self, proof: &PresenceProof) -> Result<bool, StoreError> {
        let counter =
            i64::try_from(proof.counter).map_err(|_| StoreError::Corrupt("heartbeat counter out of range".into()))?;
        let done = query(
            "UPDATE sessions SET heartbeat = $2, last_proof_at = $3, proofs = proofs + 1, \
             last_proof_message = $4, last_proof_signature = $5 \
             WHERE id = $1 AND ended_at IS NULL AND card IS NOT NULL AND heartbeat < $2",
        )
        .bind(proof.session.clone())
        .bind(counter)
        .bind(micros(proof.at))
        .bind(proof.signed.message.clone())
        .bind(proof.signed.signature.clone())
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("heartbeat", &e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn sessions_due_to_end(
        &mut self,
        now: OffsetDateTime,
        idle_since: OffsetDateTime,
        proof_since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Session>, StoreError> {
        let sql = self.sessions_where(
            "ended_at IS NULL AND (expires_at <= $1 OR last_seen_at < $2 OR last_proof_at < $3) ORDER BY id LIMIT $4",
        );
        let args = vec![
            Value::int(micros(now)),
            Value::int(micros(idle_since)),
            Value::int(micros(proof_since)),
            Value::int(i64::from(limit)),
        ];
        self.fetch_all("sessions due to end", &sql, args).await?.iter().map(rows::session).collect()
    }

    async fn use_challenge(&mut self, nonce: &[u8], expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        let done =
            query("INSERT INTO used_challenges (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING")
                .bind(nonce.to_vec())
                .bind(micros(expires_at))
                .execute(self.conn().await?)
                .await
                .map_err(|e| self.failure("challenge", &e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn forget_challenges(&mut self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let done = query("DELETE FROM used_challenges WHERE expires_at < $1")
            .bind(micros(before))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("forget challenges", &e))?;
        Ok(done.rows_affected())
    }

    async fn insert_card(&mut self, card: &CardRecord, administrator_secret: &[u8]) -> Result<i64, StoreError> {
        let row = query(
            "INSERT INTO cards (serial, person, state, live, wrong_passcodes, public_key, administrator_secret, \
             issued_by, issued_at, last_known_safe_at, incident) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             RETURNING id",
        )
        .bind(card.serial.to_string())
        .bind(card.person.to_string())
        .bind(card.state.code())
        .bind(i64::from(card.state.is_live()))
        .bind(i64::from(card.wrong_passcodes))
        .bind(card.public_key.clone())
        .bind(administrator_secret.to_vec())
        .bind(opt_string(card.issued_by.as_ref()))
        .bind(micros(card.issued_at))
        .bind(micros(card.last_known_safe_at))
        .bind(card.incident)
        .fetch_one(self.conn().await?)
        .await
        .map_err(|e| self.failure("card", &e))?;
        int(&row, "id")
    }

    async fn card(&mut self, id: i64) -> Result<Option<CardRecord>, StoreError> {
        let rows = self.fetch_all("read card", "SELECT * FROM cards WHERE id = $1", vec![Value::int(id)]).await?;
        rows.first().map(rows::card).transpose()
    }

    async fn cards_of(&mut self, person: &PersonUuid) -> Result<Vec<CardRecord>, StoreError> {
        let sql = "SELECT * FROM cards WHERE person = $1 ORDER BY id";
        self.fetch_all("list cards", sql, vec![Value::text(person.to_string())]).await?.iter().map(rows::card).collect()
    }

    async fn update_card(&mut self, card: &CardRecord) -> Result<(), StoreError> {
        query(
            "UPDATE cards SET state = $2, live = $3, wrong_passcodes = $4, public_key = $5, last_known_safe_at = $6, \
             incident = $7 WHERE id = $1",
        )
        .bind(card.id)
        .bind(card.state.code())
        .bind(i64::from(card.state.is_live()))
        .bind(i64::from(card.wrong_passcodes))
        .bind(card.public_key.clone())
        .bind(micros(card.last_known_safe_at))
        .bind(card.incident)
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("card", &e))?;
        Ok(())
    }

    async fn cards_with_secrets_starting(
        &mut self,
        prefix: &[u8],
        after: i64,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError> {
        let sql = "SELECT id FROM cards WHERE id > $1 AND (substr(administrator_secret, 1, length($2)) = $2 \
                   OR substr(pending_administrator_secret, 1, length($2)) = $2) ORDER BY id LIMIT $3";
        let args = vec![Value::int(after), Value::Blob(Some(prefix.to_vec())), Value::int(i64::from(limit))];
        let rows = self.fetch_all("list cards", sql, args).await?;
        rows.iter().map(|r| r.opt_int("id")?.ok_or_else(|| StoreError::Corrupt("id: null".into()))).collect()
    }

    async fn card_with_secrets(&mut self, id: i64) -> Result<Option<(CardRecord, SealedSecrets)>, StoreError> {
        let rows = self.fetch_all("read card", "SELECT * FROM cards WHERE id = $1", vec![Value::int(id)]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let pending = row.opt_bytes("pending_administrator_secret")?;
        let ceremony = rows::opt_text(row, "pending_ceremony")?;
        let secrets =
            SealedSecrets { current: rows::bytes(row, "administrator_secret")?, pending: pending.zip(ceremony) };
        Ok(Some((rows::card(row)?, secrets)))
    }

    async fn set_card_administrator_secret(
        &mut self,
        card: i64,
        current: &[u8],
        pending: Option<(&[u8], &str)>,
    ) -> Result<(), StoreError> {
        query(
            "UPDATE cards SET administrator_secret = $2, pending_administrator_secret = $3, pending_ceremony = $4 \
             WHERE id = $1",
        )
        .bind(card)
        .bind(current.to_vec())
        .bind(pending.map(|(secret, _)| secret.to_vec()))
        .bind(pending.map(|(_, ceremony)| ceremony.to_owned()))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("card", &e))?;
        Ok(())
    }

    async fn insert_certificate(&mut self, c: &CardCertificate) -> Result<(), StoreError> {
        query(
            "INSERT INTO card_certificates (serial, card, der, not_before, not_after, revoked_at, revocation_reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(c.serial.clone())
        .bind(c.card)
        .bind(c.der.clone())
        .bind(micros(c.not_before))
        .bind(micros(c.not_after))
        .bind(c.revoked.map(|(at, _)| micros(at)))
        .bind(c.revoked.map(|(_, reason)| reason.code()))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("certificate", &e))?;
        Ok(())
    }

    async fn certificate(&mut self, serial: &str) -> Result<Option<CardCertificate>, StoreError> {
        let sql = "SELECT * FROM card_certificates WHERE serial = $1";
        let rows = self.fetch_all("read certificate", sql, vec![Value::text(serial.to_owned())]).await?;
        rows.first().map(rows::certificate).transpose()
    }

    async fn certificates_of(&mut self, card: i64) -> Result<Vec<CardCertificate>, StoreError> {
        let sql = "SELECT * FROM card_certificates WHERE card = $1 ORDER BY not_before, serial";
        self.fetch_all("list certificates", sql, vec![Value::int(card)]).await?.iter().map(rows::certificate).collect()
    }

    async fn revoke_certificates_of(
        &mut self,
        card: i64,
        reason: RevocationReason,
        at: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let result = query(
            "UPDATE card_certificates SET revoked_at = $2, revocation_reason = $3 WHERE card = $1 AND revoked_at IS NULL",
        )
        .bind(card)
        .bind(micros(at))
        .bind(reason.code())
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("certificate", &e))?;
        Ok(result.rows_affected() as usize)
    }

    async fn revoked_certificates(&mut self) -> Result<Vec<(String, OffsetDateTime, RevocationReason)>, StoreError> {
        let sql = "SELECT serial, revoked_at, revocation_reason FROM card_certificates WHERE revoked_at IS NOT NULL \
                   ORDER BY revoked_at, serial";
        self.fetch_all("revoked certificates", sql, Vec::new()).await?.iter().map(rows::revoked).collect()
    }

    async fn revoked_count(&mut self) -> Result<u64, StoreError> {
        let sql = "SELECT COUNT(*) AS n FROM card_certificates WHERE revoked_at IS NOT NULL";
        let rows = self.fetch_all("count revoked", sql, Vec::new()).await?;
        Ok(rows.first().map(|r| int(r, "n")).transpose()?.unwrap_or(0) as u64)
    }

    async fn next_crl_number(&mut self) -> Result<u64, StoreError> {
        let row = query(
            "UPDATE counters SET next_value = next_value + 1 WHERE name = 'crl_number' RETURNING next_value - 1 AS v",
        )
        .fetch_one(self.conn().await?)
        .await
        .map_err(|e| self.failure("crl number", &e))?;
        Ok(int(&row, "v")? as u64)
    }

    async fn live_card_by_serial(&mut self, serial: &CardSerial) -> Result<Option<CardRecord>, StoreError> {
        let sql = "SELECT * FROM cards WHERE serial = $1 AND live = 1";
        let rows = self.fetch_all("read card", sql, vec![Value::text(serial.to_string())]).await?;
        rows.first().map(rows::card).transpose()
    }

    async fn insert_unlock_code(&mut self, code: &UnlockCode, at: OffsetDateTime) -> Result<(), StoreError> {
        query(
            "INSERT INTO unlock_codes (card, code_hash, expires_at, attempts, used_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(code.card)
        .bind(code.code_hash.to_vec())
        .bind(micros(code.expires_at))
        .bind(i64::from(code.attempts))
        .bind(code.used_at.map(micros))
        .bind(micros(at))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("unlock code", &e))?;
        Ok(())
    }

    async fn latest_unlock_code(&mut self, card: i64) -> Result<Option<UnlockCode>, StoreError> {
        let sql = "SELECT * FROM unlock_codes WHERE card = $1 ORDER BY id DESC LIMIT 1";
        let rows = self.fetch_all("read unlock code", sql, vec![Value::int(card)]).await?;
        rows.first().map(rows::unlock_code).transpose()
    }

    async fn unlock_codes_since(&mut self, card: i64, since: OffsetDateTime) -> Result<u64, StoreError> {
        let sql = "SELECT COUNT(*) AS n FROM unlock_codes WHERE card = $1 AND created_at >= $2";
        let rows = self.fetch_all("count unlock codes", sql, vec![Value::int(card), Value::int(micros(since))]).await?;
        Ok(rows.first().map(|row| int(row, "n")).transpose()?.unwrap_or(0) as u64)
    }

    async fn update_unlock_code(&mut self, code: &UnlockCode) -> Result<(), StoreError> {
        query("UPDATE unlock_codes SET attempts = $2, used_at = $3 WHERE id = $1")
            .bind(code.id)
            .bind(i64::from(code.attempts))
            .bind(code.used_at.map(micros))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("unlock code", &e))?;
        Ok(())
    }

    async fn enqueue_message(&mut self, m: &OutboxMessage) -> Result<i64, StoreError> {
        let row = query(
            "INSERT INTO outbox (recipient, subject, body, created_at, sent_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(m.recipient.to_string())
        .bind(m.subject.clone())
        .bind(m.body.clone())
        .bind(micros(m.created_at))
        .bind(m.sent_at.map(micros))
        .fetch_one(self.conn().await?)
        .await
        .map_err(|e| self.failure("outbox", &e))?;
        int(&row, "id")
    }

    async fn outbox(&mut self, recipient: Option<&Email>, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        let (sql, args) = match recipient {
            Some(r) => (
                "SELECT * FROM outbox WHERE recipient = $1 ORDER BY id DESC LIMIT $2",
                vec![Value::text(r.to_string()), Value::int(i64::from(limit))],
            ),
            None => ("SELECT * FROM outbox ORDER BY id DESC LIMIT $1", vec![Value::int(i64::from(limit))]),
        };
        self.fetch_all("read outbox", sql, args).await?.iter().map(rows::outbox_message).collect()
    }

    async fn outbox_waiting(&mut self, now: OffsetDateTime) -> Result<bool, StoreError> {
        let sql = "SELECT id FROM outbox WHERE sent_at IS NULL AND (leased_until IS NULL OR leased_until < $1) LIMIT 1";
        Ok(!self.fetch_all("read unsent messages", sql, vec![Value::int(micros(now))]).await?.is_empty())
    }

    async fn lease_unsent_messages(
        &mut self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let sql = "SELECT * FROM outbox WHERE sent_at IS NULL AND (leased_until IS NULL OR leased_until < $1) \
                   ORDER BY id LIMIT $2";
        let rows = self
            .fetch_all("read unsent messages", sql, vec![Value::int(micros(now)), Value::int(i64::from(limit))])
            .await?;
        let messages: Vec<OutboxMessage> = rows.iter().map(rows::outbox_message).collect::<Result<_, _>>()?;
        for message in &messages {
            query("UPDATE outbox SET leased_until = $2 WHERE id = $1")
                .bind(message.id)
                .bind(micros(until))
                .execute(self.conn().await?)
                .await
                .map_err(|e| self.failure("lease message", &e))?;
        }
        Ok(messages)
    }

    async fn mark_message_sent(&mut self, id: i64, at: OffsetDateTime) -> Result<(), StoreError> {
        // Delivered: the body (an unlock code, say) has no business staying in the database.
        query("UPDATE outbox SET sent_at = $2, leased_until = NULL, body = '' WHERE id = $1")
            .bind(id)
            .bind(micros(at))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("mark message sent", &e))?;
        Ok(())
    }

    async fn mark_message_failed(&mut self, id: i64, error: &str, retry_at: OffsetDateTime) -> Result<(), StoreError> {
        query("UPDATE outbox SET attempts = attempts + 1, last_error = $2, leased_until = $3 WHERE id = $1")
            .bind(id)
            .bind(error.to_owned())
            .bind(micros(retry_at))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("mark message failed", &e))?;
        Ok(())
    }

    async fn flag_patient(&mut self, f: &FlaggedPatient) -> Result<bool, StoreError> {
        let done = query(
            "INSERT INTO flagged_patients (org, nhs_number, reason, flagged_by, flagged_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (org, nhs_number) DO NOTHING",
        )
        .bind(f.org.to_string())
        .bind(f.patient.to_string())
        .bind(f.reason.clone())
        .bind(f.flagged_by.to_string())
        .bind(micros(f.flagged_at))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("flag patient", &e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn unflag_patient(&mut self, org: &OdsCode, patient: &NhsNumber) -> Result<bool, StoreError> {
        let done = query("DELETE FROM flagged_patients WHERE org = $1 AND nhs_number = $2")
            .bind(org.to_string())
            .bind(patient.to_string())
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("unflag patient", &e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn flagged_patients_under(&mut self, org: &OdsCode) -> Result<Vec<FlaggedPatient>, StoreError> {
        let sql = format!(
            "{UNDER} SELECT * FROM flagged_patients WHERE org IN (SELECT ods_code FROM under_org) \
             ORDER BY org, nhs_number"
        );
        let rows = self.fetch_all("list flagged patients", &sql, vec![Value::text(org.to_string())]).await?;
        rows.iter()
            .map(|r| {
                Ok(FlaggedPatient {
                    org: rows::ods(r, "org")?,
                    patient: NhsNumber::parse(&rows::text(r, "nhs_number")?).map_err(rows::corrupt)?,
                    reason: rows::text(r, "reason")?,
                    flagged_by: PersonUuid::parse(&rows::text(r, "flagged_by")?).map_err(rows::corrupt)?,
                    flagged_at: rows::time_at(r, "flagged_at")?,
                })
            })
            .collect()
    }

    async fn flagged_among(
        &mut self,
        patients: &[NhsNumber],
    ) -> Result<std::collections::BTreeSet<NhsNumber>, StoreError> {
        let mut flagged = std::collections::BTreeSet::new();
        for chunk in patients.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql =
                format!("SELECT DISTINCT nhs_number FROM flagged_patients WHERE nhs_number IN ({})", marks.join(", "));
            let args = chunk.iter().map(|p| Value::text(p.to_string())).collect();
            for row in self.fetch_all("read flagged patients", &sql, args).await? {
                flagged.insert(NhsNumber::parse(&rows::text(&row, "nhs_number")?).map_err(rows::corrupt)?);
            }
        }
        Ok(flagged)
    }

    async fn insert_case(&mut self, c: &Case) -> Result<i64, StoreError> {
        let row = query(
            "INSERT INTO cases (source, subject, reporter, org, owner, status, summary, opened_at, closed_at, outcome, \
             incident) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(c.source.code())
        .bind(c.subject.to_string())
        .bind(opt_string(c.reporter.as_ref()))
        .bind(c.org.to_string())
        .bind(opt_string(c.owner.as_ref()))
        .bind(c.status.code())
        .bind(c.summary.clone())
        .bind(micros(c.opened_at))
        .bind(c.closed_at.map(micros))
        .bind(c.outcome.map(careid_domain::case::CaseOutcome::code))
        .bind(c.incident)
        .fetch_one(self.conn().await?)
        .await
        .map_err(|e| self.failure("case", &e))?;
        int(&row, "id")
    }

    async fn case(&mut self, id: i64) -> Result<Option<Case>, StoreError> {
        let rows = self.fetch_all("read case", "SELECT * FROM cases WHERE id = $1", vec![Value::int(id)]).await?;
        rows.first().map(rows::case).transpose()
    }

    async fn update_case(&mut self, c: &Case) -> Result<(), StoreError> {
        query("UPDATE cases SET owner = $2, status = $3, closed_at = $4, outcome = $5 WHERE id = $1")
            .bind(c.id)
            .bind(opt_string(c.owner.as_ref()))
            .bind(c.status.code())
            .bind(c.closed_at.map(micros))
            .bind(c.outcome.map(careid_domain::case::CaseOutcome::code))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("case", &e))?;
        Ok(())
    }

    async fn cases_under(&mut self, org: &OdsCode, open_only: bool, limit: u32) -> Result<Vec<Case>, StoreError> {
        let open = if open_only { " AND status <> 'closed'" } else { "" };
        let sql = format!(
            "{UNDER} SELECT * FROM cases WHERE org IN (SELECT ods_code FROM under_org){open} ORDER BY id DESC LIMIT $2"
        );
        let rows = self
            .fetch_all("list cases", &sql, vec![Value::text(org.to_string()), Value::int(i64::from(limit))])
            .await?;
        rows.iter().map(rows::case).collect()
    }

    async fn open_case_about(&mut self, subject: &PersonUuid, source: CaseSource) -> Result<Option<Case>, StoreError> {
        let sql =
            "SELECT * FROM cases WHERE subject = $1 AND source = $2 AND status <> 'closed' ORDER BY id DESC LIMIT 1";
        let rows = self
            .fetch_all(
                "read open case",
                sql,
                vec![Value::text(subject.to_string()), Value::text(source.code().to_owned())],
            )
            .await?;
        rows.first().map(rows::case).transpose()
    }

    async fn case_of_incident(&mut self, incident: i64) -> Result<Option<Case>, StoreError> {
        let sql = "SELECT * FROM cases WHERE incident = $1 ORDER BY id DESC LIMIT 1";
        let rows = self.fetch_all("read case of incident", sql, vec![Value::int(incident)]).await?;
        rows.first().map(rows::case).transpose()
    }

    async fn insert_case_entry(&mut self, e: &CaseEntry) -> Result<(), StoreError> {
        query("INSERT INTO case_entries (case_id, at, by_person, kind, text, record) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(e.case)
            .bind(micros(e.at))
            .bind(opt_string(e.by.as_ref()))
            .bind(e.kind.code())
            .bind(e.text.clone())
            .bind(e.record.map(|r| r as i64))
            .execute(self.conn().await?)
            .await
            .map_err(|err| self.failure("case entry", &err))?;
        Ok(())
    }

    async fn case_entries(&mut self, case: i64) -> Result<Vec<CaseEntry>, StoreError> {
        let sql = "SELECT * FROM case_entries WHERE case_id = $1 ORDER BY id";
        let rows = self.fetch_all("read case entries", sql, vec![Value::int(case)]).await?;
        rows.iter().map(rows::case_entry).collect()
    }

    async fn assignments_at(&mut self, org: &OdsCode) -> Result<Vec<Assignment>, StoreError> {
        let sql = "SELECT * FROM assignments WHERE org = $1 ORDER BY id";
        self.fetch_all("list assignments at", sql, vec![Value::text(org.to_string())])
            .await?
            .iter()
            .map(rows::assignment)
            .collect()
    }

    async fn insert_incident(&mut self, i: &Incident) -> Result<i64, StoreError> {
        let row = query(
            "INSERT INTO incidents (kind, card, subject, reported_by, reported_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(i.kind.code())
        .bind(i.card)
        .bind(i.subject.to_string())
        .bind(i.reported_by.to_string())
        .bind(micros(i.reported_at))
        .fetch_one(self.conn().await?)
        .await
        .map_err(|e| self.failure("incident", &e))?;
        int(&row, "id")
    }

    async fn incident(&mut self, id: i64) -> Result<Option<Incident>, StoreError> {
        let rows =
            self.fetch_all("read incident", "SELECT * FROM incidents WHERE id = $1", vec![Value::int(id)]).await?;
        rows.first().map(rows::incident).transpose()
    }

    async fn open_incidents_of(&mut self, person: &PersonUuid) -> Result<Vec<Incident>, StoreError> {
        let sql = "SELECT * FROM incidents WHERE subject = $1 AND closed_at IS NULL ORDER BY id";
        let rows = self.fetch_all("read open incidents", sql, vec![Value::text(person.to_string())]).await?;
        rows.iter().map(rows::incident).collect()
    }

    async fn close_incident(&mut self, id: i64, closure: &IncidentClosure) -> Result<(), StoreError> {
        query("UPDATE incidents SET closed_by = $2, closed_at = $3, review = $4, outcome = $5 WHERE id = $1")
            .bind(id)
            .bind(closure.by.to_string())
            .bind(micros(closure.at))
            .bind(closure.review.clone())
            .bind(closure.outcome.clone())
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("incident", &e))?;
        Ok(())
    }

    async fn insert_absence(&mut self, a: &Absence) -> Result<i64, StoreError> {
        let row = query(
            "INSERT INTO absences (person, kind, first_day, last_day, recorded_by, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(a.person.to_string())
        .bind(a.kind.code())
        .bind(format_date(a.first_day))
        .bind(format_date(a.last_day))
        .bind(a.recorded_by.to_string())
        .bind(micros(a.recorded_at))
        .fetch_one(self.conn().await?)
        .await
        .map_err(|e| self.failure("absence", &e))?;
        int(&row, "id")
    }

    async fn absences_of(&mut self, person: &PersonUuid, from: Date) -> Result<Vec<Absence>, StoreError> {
        let sql = "SELECT * FROM absences WHERE person = $1 AND last_day >= $2 AND cancelled_at IS NULL \
                   ORDER BY first_day, id";
        self.fetch_all("read absences", sql, vec![Value::text(person.to_string()), Value::text(format_date(from))])
            .await?
            .iter()
            .map(rows::absence)
            .collect()
    }

    async fn absence(&mut self, id: i64) -> Result<Option<Absence>, StoreError> {
        let rows = self.fetch_all("read absence", "SELECT * FROM absences WHERE id = $1", vec![Value::int(id)]).await?;
        rows.first().map(rows::absence).transpose()
    }

    async fn cancel_absence(&mut self, id: i64, at: OffsetDateTime) -> Result<bool, StoreError> {
        let done = query("UPDATE absences SET cancelled_at = $2 WHERE id = $1 AND cancelled_at IS NULL")
            .bind(id)
            .bind(micros(at))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("absence", &e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_working_hours(
        &mut self,
        assignment: AssignmentId,
        hours: Option<&WorkingHours>,
    ) -> Result<(), StoreError> {
        query("UPDATE assignments SET working_hours = $2 WHERE id = $1")
            .bind(assignment.0)
            .bind(hours.map(ToString::to_string))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("working hours", &e))?;
        Ok(())
    }

    async fn absence_policy(&mut self, org: &OdsCode) -> Result<Option<AbsencePolicy>, StoreError> {
        let sql = "SELECT policy FROM absence_policies WHERE org = $1";
        let rows = self.fetch_all("read absence policy", sql, vec![Value::text(org.to_string())]).await?;
        rows.first().map(|r| AbsencePolicy::parse(&rows::text(r, "policy")?).map_err(rows::corrupt)).transpose()
    }

    async fn set_absence_policy(
        &mut self,
        org: &OdsCode,
        policy: AbsencePolicy,
        by: &PersonUuid,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        query(
            "INSERT INTO absence_policies (org, policy, set_by, set_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (org) DO UPDATE SET policy = excluded.policy, set_by = excluded.set_by, set_at = excluded.set_at",
        )
        .bind(org.to_string())
        .bind(policy.code())
        .bind(by.to_string())
        .bind(micros(at))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("absence policy", &e))?;
        Ok(())
    }

    async fn insert_client(&mut self, c: &Client) -> Result<(), StoreError> {
        let uris: Vec<&str> = c.redirect_uris.iter().map(careid_domain::oidc::AppUri::as_str).collect();
        query(
            "INSERT INTO oidc_clients (id, name, kind, secret_hash, redirect_uris, backchannel_logout_uri, org, \
             registered_by, registered_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(c.id.to_string())
        .bind(c.name.to_string())
        .bind(c.kind.code())
        .bind(c.secret_hash.map(|h| h.to_vec()))
        .bind(uris.join("\n"))
        .bind(c.backchannel_logout_uri.as_ref().map(ToString::to_string))
        .bind(c.org.to_string())
        .bind(c.registered_by.to_string())
        .bind(micros(c.registered_at))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("client", &e))?;
        Ok(())
    }

    async fn client(&mut self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        let rows = self
            .fetch_all("read client", "SELECT * FROM oidc_clients WHERE id = $1", vec![Value::text(id.to_string())])
            .await?;
        rows.first().map(rows::client).transpose()
    }

    async fn clients(&mut self) -> Result<Vec<Client>, StoreError> {
        self.fetch_all("list clients", "SELECT * FROM oidc_clients ORDER BY id", vec![])
            .await?
            .iter()
            .map(rows::client)
            .collect()
    }

    async fn disable_client(&mut self, id: &ClientId, at: OffsetDateTime) -> Result<bool, StoreError> {
        let done = query("UPDATE oidc_clients SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL")
            .bind(id.to_string())
            .bind(micros(at))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("client", &e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_authorization(&mut self, a: &Authorization) -> Result<(), StoreError> {
        query(
            "INSERT INTO oidc_authorizations (id, client, redirect_uri, scope, state, nonce, code_challenge, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(a.id.clone())
        .bind(a.client.to_string())
        .bind(a.redirect_uri.to_string())
        .bind(a.scope.clone())
        .bind(a.state.clone())
        .bind(a.nonce.clone())
        .bind(a.code_challenge.clone())
        .bind(micros(a.created_at))
        .bind(micros(a.expires_at))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("authorization", &e))?;
        Ok(())
    }

    async fn authorization(&mut self, id: &str) -> Result<Option<Authorization>, StoreError> {
        let sql = "SELECT * FROM oidc_authorizations WHERE id = $1";
        let rows = self.fetch_all("read authorization", sql, vec![Value::text(id)]).await?;
        rows.first().map(rows::authorization).transpose()
    }

    async fn authorization_by_code(&mut self, code_hash: &[u8; 32]) -> Result<Option<Authorization>, StoreError> {
        let rows = query("SELECT * FROM oidc_authorizations WHERE code_hash = $1")
            .bind(code_hash.to_vec())
            .fetch_all(self.conn().await?)
            .await
            .map_err(|e| self.failure("read authorization", &e))?;
        rows.first().map(rows::authorization).transpose()
    }

    async fn approve_authorization(
        &mut self,
        id: &str,
        session: &str,
        code_hash: &[u8; 32],
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let done = query(
            "UPDATE oidc_authorizations SET session = $2, code_hash = $3, approved_at = $4 \
             WHERE id = $1 AND session IS NULL",
        )
        .bind(id.to_owned())
        .bind(session.to_owned())
        .bind(code_hash.to_vec())
        .bind(micros(at))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("authorization", &e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn use_authorization_code(&mut self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        let done = query(
            "UPDATE oidc_authorizations SET code_used_at = $2 WHERE id = $1 AND code_hash IS NOT NULL \
             AND code_used_at IS NULL",
        )
        .bind(id.to_owned())
        .bind(micros(at))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("authorization", &e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_token(&mut self, t: &IssuedToken) -> Result<(), StoreError> {
        query(
            "INSERT INTO oidc_tokens (id, client, session, person, authorization_id, scope, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(t.id.clone())
        .bind(t.client.to_string())
        .bind(t.session.clone())
        .bind(t.person.to_string())
        .bind(t.authorization.clone())
        .bind(t.scope.clone())
        .bind(micros(t.issued_at))
        .bind(micros(t.expires_at))
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("token", &e))?;
        Ok(())
    }

    async fn token(&mut self, id: &str) -> Result<Option<IssuedToken>, StoreError> {
        let rows =
            self.fetch_all("read token", "SELECT * FROM oidc_tokens WHERE id = $1", vec![Value::text(id)]).await?;
        rows.first().map(rows::issued_token).transpose()
    }

    async fn revoke_token(&mut self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        let done = query("UPDATE oidc_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id.to_owned())
            .bind(micros(at))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("revoke token", &e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_tokens_of_authorization(
        &mut self,
        authorization: &str,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let done = query("UPDATE oidc_tokens SET revoked_at = $2 WHERE authorization_id = $1 AND revoked_at IS NULL")
            .bind(authorization.to_owned())
            .bind(micros(at))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("revoke tokens", &e))?;
        Ok(done.rows_affected())
    }

    async fn logouts_waiting(&mut self, now: OffsetDateTime) -> Result<bool, StoreError> {
        let sql =
            "SELECT id FROM oidc_logouts WHERE sent_at IS NULL AND (leased_until IS NULL OR leased_until < $1) LIMIT 1";
        Ok(!self.fetch_all("read logouts", sql, vec![Value::int(micros(now))]).await?.is_empty())
    }

    async fn lease_logouts(
        &mut self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<PendingLogout>, StoreError> {
        let sql = "SELECT * FROM oidc_logouts WHERE sent_at IS NULL AND (leased_until IS NULL OR leased_until < $1) \
                   ORDER BY id LIMIT $2";
        let rows =
            self.fetch_all("read logouts", sql, vec![Value::int(micros(now)), Value::int(i64::from(limit))]).await?;
        let logouts: Vec<PendingLogout> = rows.iter().map(rows::pending_logout).collect::<Result<_, _>>()?;
        for logout in &logouts {
            query("UPDATE oidc_logouts SET leased_until = $2 WHERE id = $1")
                .bind(logout.id)
                .bind(micros(until))
                .execute(self.conn().await?)
                .await
                .map_err(|e| self.failure("lease logout", &e))?;
        }
        Ok(logouts)
    }

    async fn mark_logout_sent(&mut self, id: i64, at: OffsetDateTime) -> Result<(), StoreError> {
        query("UPDATE oidc_logouts SET sent_at = $2, leased_until = NULL WHERE id = $1")
            .bind(id)
            .bind(micros(at))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("mark logout sent", &e))?;
        Ok(())
    }

    async fn mark_logout_failed(&mut self, id: i64, error: &str, retry_at: OffsetDateTime) -> Result<(), StoreError> {
        query("UPDATE oidc_logouts SET attempts = attempts + 1, last_error = $2, leased_until = $3 WHERE id = $1")
            .bind(id)
            .bind(error.to_owned())
            .bind(micros(retry_at))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("mark logout failed", &e))?;
        Ok(())
    }

    async fn bulk_insert_people(&mut self, people: &[Person], assignments: &[NewAssignment]) -> Result<(), StoreError> {
        for chunk in people.chunks(BULK_ROWS) {
            let mut sql = format!("INSERT INTO people ({PERSON_COLUMNS}) VALUES ");
            push_placeholders(&mut sql, self.backend, chunk.len(), 13);
            let mut query = query(&sql);
            for p in chunk {
                let d = &p.details;
                query = query
                    .bind(p.uuid.to_string())
                    .bind(opt_string(d.title.as_ref()))
                    .bind(d.given_name.to_string())
                    .bind(d.family_name.to_string())
                    .bind(name_key(&d.given_name))
                    .bind(name_key(&d.family_name))
                    .bind(format_date(d.date_of_birth))
                    .bind(d.ni_number.to_string())
                    .bind(opt_string(p.contact.email.as_ref()))
                    .bind(opt_string(p.contact.phone.as_ref()))
                    .bind(p.status.code())
                    .bind(p.registered_org.to_string())
                    .bind(micros(p.created_at));
            }
            query.execute(self.conn().await?).await.map_err(|e| self.failure("person", &e))?;
        }
        for chunk in assignments.chunks(BULK_ROWS) {
            let mut sql = String::from(
                "INSERT INTO assignments (person, position, org, start_date, end_date, assigned_by) VALUES ",
            );
            push_placeholders(&mut sql, self.backend, chunk.len(), 6);
            let mut query = query(&sql);
            for a in chunk {
                query = query
                    .bind(a.person.to_string())
                    .bind(a.position.0)
                    .bind(a.org.to_string())
                    .bind(format_date(a.start))
                    .bind(a.end.map(format_date))
                    .bind(opt_string(a.assigned_by.as_ref()));
            }
            query.execute(self.conn().await?).await.map_err(|e| self.failure("assignment", &e))?;
        }
        Ok(())
    }

    async fn audit_tree(&mut self) -> Result<TreeHead, StoreError> {
        let rows = self
            .fetch_all("read audit tree", "SELECT size, root, chain_hash FROM audit_tree WHERE id = 1", vec![])
            .await?;
        let row = rows.first().ok_or_else(|| StoreError::Corrupt("the audit tree's head row is missing".into()))?;
        Ok(TreeHead { size: int(row, "size")? as u64, root: hash(row, "root")?, chain_hash: hash(row, "chain_hash")? })
    }

    async fn set_audit_tree(&mut self, head: &TreeHead) -> Result<(), StoreError> {
        query("UPDATE audit_tree SET size = $1, root = $2, chain_hash = $3 WHERE id = 1")
            .bind(head.size as i64)
            .bind(head.root.to_vec())
            .bind(head.chain_hash.to_vec())
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("write audit tree", &e))?;
        Ok(())
    }

    async fn audit_tile(&mut self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = "SELECT hashes FROM audit_tiles WHERE level = $1 AND idx = $2";
        let rows = self
            .fetch_all("read audit tile", sql, vec![Value::int(i64::from(level)), Value::int(index as i64)])
            .await?;
        rows.first().map(|r| rows::bytes(r, "hashes")).transpose()
    }

    async fn put_audit_tiles(&mut self, tiles: &[(u8, u64, Vec<u8>)]) -> Result<(), StoreError> {
        for (level, index, hashes) in tiles {
            query(
                "INSERT INTO audit_tiles (level, idx, hashes) VALUES ($1, $2, $3) \
                 ON CONFLICT (level, idx) DO UPDATE SET hashes = excluded.hashes",
            )
            .bind(i64::from(*level))
            .bind(*index as i64)
            .bind(hashes.clone())
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("write audit tile", &e))?;
        }
        Ok(())
    }

    async fn latest_checkpoint(&mut self) -> Result<Option<SignedCheckpoint>, StoreError> {
        let sql = "SELECT size, root, note, signed_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1";
        let rows = self.fetch_all("read checkpoint", sql, vec![]).await?;
        rows.first()
            .map(|r| {
                Ok(SignedCheckpoint {
                    size: int(r, "size")? as u64,
                    root: hash(r, "root")?,
                    note: rows::text(r, "note")?,
                    signed_at: rows::from_micros(int(r, "signed_at")?)?,
                })
            })
            .transpose()
    }

    async fn insert_checkpoint(&mut self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        query("INSERT INTO audit_checkpoints (size, root, note, signed_at) VALUES ($1, $2, $3, $4)")
            .bind(checkpoint.size as i64)
            .bind(checkpoint.root.to_vec())
            .bind(checkpoint.note.clone())
            .bind(micros(checkpoint.signed_at))
            .execute(self.conn().await?)
            .await
            .map_err(|e| self.failure("write checkpoint", &e))?;
        Ok(())
    }

    async fn person_orgs(&mut self, person: &PersonUuid, today: Date) -> Result<Vec<OdsCode>, StoreError> {
        let sql = "SELECT registered_org AS org FROM people WHERE uuid = $1 \
                   UNION SELECT org FROM assignments \
                     WHERE person = $1 AND removed_at IS NULL AND (end_date IS NULL OR end_date >= $2) \
                   ORDER BY org";
        let args = vec![Value::text(person.to_string()), Value::text(format_date(today))];
        let rows = self.fetch_all("read person orgs", sql, args).await?;
        rows.iter().map(|r| rows::ods(r, "org")).collect()
    }

    async fn root_organisations(&mut self) -> Result<Vec<OdsCode>, StoreError> {
        let sql = "SELECT ods_code FROM organisations WHERE parent IS NULL ORDER BY ods_code";
        let rows = self.fetch_all("read root organisations", sql, vec![]).await?;
        rows.iter().map(|r| rows::ods(r, "ods_code")).collect()
    }

    async fn audit_records_without_orgs(&mut self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = "SELECT seq, entry, chain_hash FROM audit_log \
                   WHERE NOT EXISTS (SELECT 1 FROM audit_orgs o WHERE o.seq = audit_log.seq) \
                   ORDER BY seq LIMIT $1";
        let args = vec![Value::int(i64::from(limit))];
        self.fetch_all("read records without orgs", sql, args).await?.into_iter().map(record).collect()
    }

    async fn insert_audit_orgs(&mut self, rows: &[(u64, OdsCode, u64)]) -> Result<(), StoreError> {
        let mut index = AuditRows::default();
        for (seq, org, source) in rows {
            index.push_org(*seq, org, *source);
        }
        self.insert_rows(index).await
    }

    async fn audit_index(&mut self, from_seq: u64, limit: u32) -> Result<Vec<AuditIndexRow>, StoreError> {
        let sql = "SELECT seq, at_us, action, actor, subject_person, session FROM audit_log \
                   WHERE seq >= $1 ORDER BY seq LIMIT $2";
        let args = vec![Value::int(from_seq as i64), Value::int(i64::from(limit))];
        let mut index = Vec::new();
        for row in self.fetch_all("read audit index", sql, args).await? {
            index.push(AuditIndexRow {
                seq: int(&row, "seq")? as u64,
                at_us: int(&row, "at_us")?,
                action: rows::text(&row, "action")?,
                actor: rows::opt_text(&row, "actor")?,
                subject_person: rows::opt_text(&row, "subject_person")?,
                session: rows::opt_text(&row, "session")?,
                orgs: Vec::new(),
            });
        }
        let (Some(first), Some(last)) = (index.first().map(|r| r.seq), index.last().map(|r| r.seq)) else {
            return Ok(index);
        };
        let sql =
            "SELECT source, seq, org FROM audit_orgs WHERE source >= $1 AND source <= $2 ORDER BY source, seq, org";
        let args = vec![Value::int(first as i64), Value::int(last as i64)];
        for row in self.fetch_all("read audit orgs", sql, args).await? {
            let source = int(&row, "source")? as u64;
            // A row citing a record that is not there goes with the next record there is, whose
            // entry does not name it: the check names the place.
            let place = index.binary_search_by_key(&source, |r| r.seq).unwrap_or_else(|next| next.min(index.len() - 1));
            index[place].orgs.push((int(&row, "seq")? as u64, rows::text(&row, "org")?));
        }
        Ok(index)
    }

    async fn patient_access_range(&mut self, from_seq: u64, limit: u32) -> Result<Vec<PatientAccess>, StoreError> {
        let sql = "SELECT * FROM patient_access WHERE seq >= $1 ORDER BY seq LIMIT $2";
        let args = vec![Value::int(from_seq as i64), Value::int(i64::from(limit))];
        self.fetch_all("read patient accesses", sql, args).await?.iter().map(rows::patient_access).collect()
    }

    async fn insert_cosignature(&mut self, size: u64, witness: &str, line: &str) -> Result<(), StoreError> {
        query(
            "INSERT INTO audit_cosignatures (size, witness, line) VALUES ($1, $2, $3) \
             ON CONFLICT (size, witness) DO UPDATE SET line = excluded.line",
        )
        .bind(size as i64)
        .bind(witness.to_owned())
        .bind(line.to_owned())
        .execute(self.conn().await?)
        .await
        .map_err(|e| self.failure("write cosignature", &e))?;
        Ok(())
    }

    async fn cosignatures(&mut self, size: u64) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT line FROM audit_cosignatures WHERE size = $1 ORDER BY witness";
        let rows = self.fetch_all("read cosignatures", sql, vec![Value::int(size as i64)]).await?;
        rows.iter().map(|r| rows::text(r, "line")).collect()
    }

    async fn audit_records_of_session(&mut self, session: &str, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = "SELECT seq, entry, chain_hash FROM audit_log WHERE session = $1 ORDER BY seq LIMIT $2";
        let args = vec![Value::text(session.to_owned()), Value::int(i64::from(limit))];
        self.fetch_all("read a session's records", sql, args).await?.into_iter().map(record).collect()
    }

    async fn insert_misuse_incident(&mut self, i: &MisuseIncident) -> Result<i64, StoreError> {
        let row = query(
            "INSERT INTO misuse_incidents (record, person, org, comment, context, opened_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(i.record as i64)
        .bind(i.person.to_string())
        .bind(i.org.as_ref().map(ToString::to_string))
        .bind(i.comment.clone())
        .bind(rows::encode_context(&i.context))
        .bind(micros(i.opened_at))
        .fetch_one(self.conn().await?)
        .await
        .map_err(|e| self.failure("misuse incident", &e))?;
        int(&row, "id")
    }

    async fn misuse_incident_of_record(&mut self, record: u64) -> Result<Option<MisuseIncident>, StoreError> {
        let sql = "SELECT * FROM misuse_incidents WHERE record = $1";
        let rows = self.fetch_all("read misuse incident", sql, vec![Value::int(record as i64)]).await?;
        rows.first().map(rows::misuse_incident).transpose()
    }

    async fn misuse_incidents_under(&mut self, org: &OdsCode, limit: u32) -> Result<Vec<MisuseIncident>, StoreError> {
        let sql = format!(
            "{UNDER} SELECT * FROM misuse_incidents WHERE org IN (SELECT ods_code FROM under_org) ORDER BY id DESC LIMIT $2"
        );
        let rows = self
            .fetch_all("read misuse incidents", &sql, vec![Value::text(org.to_string()), Value::int(i64::from(limit))])
            .await?;
        rows.iter().map(rows::misuse_incident).collect()
    }

    async fn insert_patient_accesses(&mut self, accesses: &[PatientAccess]) -> Result<(), StoreError> {
        for chunk in accesses.chunks(BULK_ROWS) {
            let mut sql = String::from(
                "INSERT INTO patient_access (seq, patient, person, org, client, action, relationship, accessed_at, alert) VALUES ",
            );
            push_placeholders(&mut sql, self.backend, chunk.len(), 9);
            let mut query = query(&sql);
            for a in chunk {
                query = query
                    .bind(a.seq as i64)
                    .bind(a.patient.to_string())
                    .bind(a.person.to_string())
                    .bind(a.org.to_string())
                    .bind(a.client.to_string())
                    .bind(a.action.code())
                    .bind(a.relationship.code())
                    .bind(micros(a.accessed_at))
                    .bind(a.alert.clone());
            }
            query.execute(self.conn().await?).await.map_err(|e| self.failure("patient access", &e))?;
        }
        Ok(())
    }

    async fn patient_accesses(&mut self, query: &PatientAccessQuery) -> Result<Vec<PatientAccess>, StoreError> {
        let within = "org IN (SELECT ods_code FROM under_org)";
        let mut filter = Filter::new("SELECT * FROM patient_access", query.org_under.as_ref(), within);
        if let Some(patient) = &query.patient {
            filter.and("patient = $?", Value::text(patient.to_string()));
        }
        if let Some(person) = &query.person {
            filter.and("person = $?", Value::text(person.to_string()));
        }
        if query.alerts_only {
            filter.and_plain("alert IS NOT NULL");
        }
        if let Some(since) = query.since_seq {
            filter.and("seq >= $?", Value::int(since as i64));
        }
        if let Some(before) = query.before_seq {
            filter.and("seq < $?", Value::int(before as i64));
        }
        let (sql, args) = filter.newest_first(query.limit);
        self.fetch_all("read patient accesses", &sql, args).await?.iter().map(rows::patient_access).collect()
    }
}
