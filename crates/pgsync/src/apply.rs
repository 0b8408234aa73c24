//! Applies validated payloads in one transaction together with the cursor they carry (BRIEF §4.2): either every
//! statement of every chunk and the new cursor are committed, or nothing is.
//!
//! Nothing of the payload's text is executed. Each statement's rows are copied into a temporary table shaped
//! like the target's columns (so PostgreSQL's own input functions check every value), then merged with SQL we
//! build from the catalog: an upsert on the primary key, or a delete by key.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use futures_util::SinkExt;
use protocol::payload::{Payload, Statement, TableName, Value, escape_copy, quote_ident};
use protocol::schema::{SchemaMismatch, compare_columns};
use tokio_postgres::{Client, Transaction};

use crate::catalog::{Catalog, TableInfo};
use crate::error::{Error, Result};
use crate::schema::ORIGIN_SETTING;

/// How to apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// The origin the applied changes are marked with in the change log (the sender's name).
    pub origin: String,
    /// Tables where an incoming row whose key has local changes not yet acknowledged by the peer is deferred
    /// rather than applied (the shop's side of BRIEF §4.4: the office sees the local version first).
    pub defer_tables: BTreeSet<TableName>,
    /// Record this cursor as the last applied from `origin`, in the same transaction.
    pub record_cursor: Option<String>,
}

/// What an apply did, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Per table: rows upserted, rows deleted, rows deferred.
    pub tables: Vec<(TableName, TableCounts)>,
}

/// Row counts for one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounts {
    /// Rows inserted or updated.
    pub upserted: u64,
    /// Rows deleted.
    pub deleted: u64,
    /// Incoming rows deferred because of local changes.
    pub deferred: u64,
}

impl ApplyReport {
    fn counts(&mut self, table: &TableName) -> &mut TableCounts {
        if let Some(i) = self.tables.iter().position(|(t, _)| t == table) {
            return &mut self.tables[i].1;
        }
        self.tables.push((table.clone(), TableCounts::default()));
        let last = self.tables.len() - 1;
        &mut self.tables[last].1
    }

    /// Total deferred rows.
    pub fn deferred(&self) -> u64 {
        self.tables.iter().map(|(_, c)| c.deferred).sum()
    }

    /// Total rows upserted.
    pub fn upserted(&self) -> u64 {
        self.tables.iter().map(|(_, c)| c.upserted).sum()
    }

    /// Total rows deleted.
    pub fn deleted(&self) -> u64 {
        self.tables.iter().map(|(_, c)| c.deleted).sum()
    }

    /// Adds another report's counts to this one.
    pub fn merge(&mut self, other: ApplyReport) {
        for (table, c) in other.tables {
            let mine = self.counts(&table);
            mine.upserted += c.upserted;
            mine.deleted += c.deleted;
            mine.deferred += c.deferred;
        }
    }
}

/// Checks every chunk against the catalog, then applies all of them and records the cursor in one transaction.
/// On any error the transaction is rolled back and nothing, cursor included, has changed.
pub async fn apply(
    client: &mut Client,
    catalog: &Catalog,
    payloads: &[Payload],
    options: &ApplyOptions,
) -> Result<ApplyReport> {
    let tx = client.transaction().await?;
    let report = apply_in(&tx, catalog, payloads, options).await?;
    tx.commit().await?;
    Ok(report)
}

/// As [`apply`], inside the caller's transaction, so that the caller can commit its own bookkeeping with the
/// data (the shop agent marks the upload session finished). The caller commits; on error it must roll back.
pub async fn apply_in(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    payloads: &[Payload],
    options: &ApplyOptions,
) -> Result<ApplyReport> {
    for (i, payload) in payloads.iter().enumerate() {
        validate(catalog, payload, i + 1)?;
    }
    tx.query_one("SELECT set_config($1, $2, true)", &[&ORIGIN_SETTING, &options.origin]).await?;
    let mut report = ApplyReport::default();
    let mut stages = Stages::default();
    for (c, payload) in payloads.iter().enumerate() {
        for (s, statement) in payload.statements.iter().enumerate() {
            let table = catalog
                .get(statement.table())
                .ok_or_else(|| SchemaMismatch::MissingTable(statement.table().clone()))?;
            let defer = options.defer_tables.contains(&table.name);
            apply_statement(tx, &mut stages, table, statement, defer, report.counts(&table.name))
                .await
                .map_err(|e| rejected(e, c + 1, s + 1))?;
        }
    }
    if let Some(cursor) = &options.record_cursor {
        tx.execute(
            "INSERT INTO branchsync.peer_cursor (peer, cursor, applied_at) VALUES ($1, $2, now()) \
             ON CONFLICT (peer) DO UPDATE SET cursor = EXCLUDED.cursor, applied_at = EXCLUDED.applied_at",
            &[&options.origin, cursor],
        )
        .await?;
    }
    Ok(report)
}

/// A database error while applying a statement is the statement's fault when it is about the data (class 22
/// data exceptions, class 23 constraint violations, 21000 a key twice in one statement); otherwise it is ours.
fn rejected(e: Error, chunk: usize, statement: usize) -> Error {
    match &e {
        Error::Db(db) => {
            let code = db.code().map(|c| c.code().to_string());
            let about_data =
                code.as_deref().is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c == "21000");
            if about_data {
                let message = db.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| db.to_string());
                Error::Rejected { chunk, statement, sqlstate: code, message }
            } else {
                e
            }
        }
        _ => e,
    }
}

/// Validates a payload against our catalog before anything is written: declared columns match ours, every
/// column exists, upserts and deletes are keyed on the primary key. `chunk` is the 1-based index reported in
/// errors. The shop agent calls it when a chunk arrives, and [`apply`] again before writing.
pub fn validate(catalog: &Catalog, payload: &Payload, chunk: usize) -> Result<()> {
    for (table, declared) in &payload.header.tables {
        let ours = catalog.get(table).ok_or_else(|| SchemaMismatch::MissingTable(table.clone()))?;
        compare_columns(table, declared, &ours.column_decls())?;
    }
    for (i, statement) in payload.statements.iter().enumerate() {
        let reject = |message: String| Error::Rejected { chunk, statement: i + 1, sqlstate: None, message };
        let table =
            catalog.get(statement.table()).ok_or_else(|| SchemaMismatch::MissingTable(statement.table().clone()))?;
        let pk: BTreeSet<&String> = table.primary_key.iter().collect();
        match statement {
            Statement::Upsert { columns, conflict, .. } => {
                for c in columns {
                    if table.column_type(c).is_none() {
                        return Err(
                            SchemaMismatch::MissingColumn { table: table.name.clone(), column: c.clone() }.into()
                        );
                    }
                }
                if !conflict.is_empty() && conflict.iter().collect::<BTreeSet<_>>() != pk {
                    return Err(reject(format!(
                        "ON CONFLICT must name the primary key ({})",
                        table.primary_key.join(", ")
                    )));
                }
                if !pk.iter().all(|k| columns.contains(k)) {
                    return Err(reject(format!(
                        "every primary key column ({}) must be given",
                        table.primary_key.join(", ")
                    )));
                }
            }
            Statement::Delete { key, .. } => {
                if key.iter().collect::<BTreeSet<_>>() != pk {
                    return Err(reject(format!(
                        "DELETE must match on the primary key ({})",
                        table.primary_key.join(", ")
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Temporary staging tables of this transaction, by target table and column list. Named after a hash of both,
/// so that several `apply_in` calls in one transaction reuse them instead of colliding.
#[derive(Default)]
struct Stages {
    names: HashMap<(TableName, Vec<String>), String>,
}

impl Stages {
    async fn get(&mut self, tx: &Transaction<'_>, table: &TableInfo, columns: &[String]) -> Result<String> {
        let key = (table.name.clone(), columns.to_vec());
        if let Some(name) = self.names.get(&key) {
            tx.batch_execute(&format!("TRUNCATE {name}")).await?;
            return Ok(name.clone());
        }
        let signature = format!("{}\u{1}{}", table.name, columns.join("\u{1}"));
        let hash =
            signature.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        let bare = format!("branchsync_stage_{hash:016x}");
        let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {bare} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA; TRUNCATE pg_temp.{bare}",
            cols.join(", "),
            table.name.quoted()
        ))
        .await?;
        let name = format!("pg_temp.{bare}");
        self.names.insert(key, name.clone());
        Ok(name)
    }
}

async fn stage_rows(tx: &Transaction<'_>, stage: &str, columns: &[String], rows: &[Vec<Value>]) -> Result<()> {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let sink = tx.copy_in(&format!("COPY {stage} ({}) FROM STDIN", cols.join(", "))).await?;
    let mut sink = std::pin::pin!(sink);
    let mut buf = String::with_capacity(64 * 1024);
    for row in rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                buf.push('\t');
            }
            match v {
                None => buf.push_str("\\N"),
                Some(t) => escape_copy(&mut buf, t),
            }
        }
        buf.push('\n');
        if buf.len() >= 1 << 20 {
            sink.send(Bytes::from(std::mem::take(&mut buf))).await?;
        }
    }
    if !buf.is_empty() {
        sink.send(Bytes::from(buf)).await?;
    }
    sink.finish().await?;
    Ok(())
}

/// The condition "this staged key has local changes the peer has not acknowledged".
fn pending_local(table: &TableInfo) -> String {
    let key: Vec<String> = table.primary_key.iter().map(|c| format!("s.{}::text", quote_ident(c))).collect();
    format!(
        "EXISTS (SELECT 1 FROM branchsync.change_log cl WHERE cl.tbl = '{}' AND cl.pk = ARRAY[{}] AND cl.origin = '')",
        table.name.to_string().replace('\'', "''"),
        key.join(", ")
    )
}

async fn apply_statement(
    tx: &Transaction<'_>,
    stages: &mut Stages,
    table: &TableInfo,
    statement: &Statement,
    defer: bool,
    counts: &mut TableCounts,
) -> Result<()> {
    match statement {
        Statement::Upsert { columns, update, rows, .. } => {
            if rows.is_empty() {
                return Ok(());
            }
            let stage = stages.get(tx, table, columns).await?;
            stage_rows(tx, &stage, columns, rows).await?;
            let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
            let select: Vec<String> = cols.iter().map(|c| format!("s.{c}")).collect();
            let keys: Vec<String> = table.primary_key.iter().map(|c| quote_ident(c)).collect();
            let sets: Vec<String> = update
                .iter()
                .filter(|c| !table.primary_key.contains(c))
                .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
                .collect();
            let action =
                if sets.is_empty() { "NOTHING".to_string() } else { format!("UPDATE SET {}", sets.join(", ")) };
            let filter = if defer { format!(" WHERE NOT {}", pending_local(table)) } else { String::new() };
            let overriding = if table.identity_always { " OVERRIDING SYSTEM VALUE" } else { "" };
            let sql = format!(
                "INSERT INTO {} ({}){overriding} SELECT {} FROM {stage} s{filter} ON CONFLICT ({}) DO {action}",
                table.name.quoted(),
                cols.join(", "),
                select.join(", "),
                keys.join(", ")
            );
            let applied = tx.execute(sql.as_str(), &[]).await?;
            if defer {
                counts.deferred += deferred_count(tx, table, &stage).await?;
            }
            counts.upserted += applied;
        }
        Statement::Delete { key, rows, .. } => {
            let stage = stages.get(tx, table, key).await?;
            stage_rows(tx, &stage, key, rows).await?;
            let matches: Vec<String> = key.iter().map(|c| format!("t.{0} = s.{0}", quote_ident(c))).collect();
            let filter = if defer { format!(" AND NOT {}", pending_local(table)) } else { String::new() };
            let sql = format!(
                "DELETE FROM {} t USING {stage} s WHERE {}{filter}",
                table.name.quoted(),
                matches.join(" AND ")
            );
            let deleted = tx.execute(sql.as_str(), &[]).await?;
            if defer {
                counts.deferred += deferred_count(tx, table, &stage).await?;
            }
            counts.deleted += deleted;
        }
    }
    Ok(())
}

async fn deferred_count(tx: &Transaction<'_>, table: &TableInfo, stage: &str) -> Result<u64> {
    let row = tx.query_one(&format!("SELECT count(*) FROM {stage} s WHERE {}", pending_local(table)), &[]).await?;
    Ok(row.get::<_, i64>(0) as u64)
}
