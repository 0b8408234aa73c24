//! Applies validated payloads in one transaction together with the cursor they carry (BRIEF §4.2): either every
//! statement of every chunk and the new cursor are committed, or nothing is.
//!
//! Nothing of the payload's text is executed. Each statement's rows are copied into a temporary table shaped
//! like the target's columns (so PostgreSQL's own input functions check every value), then merged with SQL we
//! build from the catalog: an upsert on the primary key, or a delete by key.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use futures_util::SinkExt;
use protocol::payload::{Payload, Rows, Statement, TableName, quote_ident};
use protocol::schema::{SchemaMismatch, compare_columns};
use tokio_postgres::{Client, Transaction};

use crate::catalog::{Catalog, TableInfo};
use crate::error::{Error, Result};
use crate::schema::ORIGIN_SETTING;

/// Who wins when a row changed on both sides since the last exchange (BRIEF §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The office's version stays and is sent to the shop again.
    OfficeWins,
    /// The shop's version is applied.
    ShopWins,
    /// The version whose timestamp column is later wins; ties and missing timestamps go to the office.
    NewerWins,
}

impl Rule {
    /// The rule's name in configuration files and records.
    pub fn name(self) -> &'static str {
        match self {
            Rule::OfficeWins => "office-wins",
            Rule::ShopWins => "shop-wins",
            Rule::NewerWins => "newer-wins",
        }
    }

    /// Parses a rule name.
    pub fn parse(text: &str) -> Option<Rule> {
        [Rule::OfficeWins, Rule::ShopWins, Rule::NewerWins].into_iter().find(|r| r.name() == text)
    }
}

/// The office's conflict check while applying a branch's changes.
#[derive(Debug, Clone)]
pub struct ConflictCheck {
    /// The branch, as recorded with each conflict.
    pub branch: String,
    /// The snapshot of the branch's push cursor: office changes not visible in it have not reached the shop
    /// yet. `None`: nothing has reached it.
    pub unsent_since: Option<String>,
    /// The checked tables and their rules.
    pub rules: std::collections::BTreeMap<TableName, Rule>,
    /// The timestamp column `newer-wins` compares.
    pub newer_column: String,
}

/// How to apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Decide conflicts on these tables by rule and record them (the office's side of BRIEF §4.4).
    pub conflicts: Option<ConflictCheck>,
    /// The origin the applied changes are marked with in the change log (the sender's name).
    pub origin: String,
    /// Tables where an incoming row whose key has local changes not yet acknowledged by the peer is deferred
    /// rather than applied (the shop's side of BRIEF §4.4: the office sees the local version first).
    pub defer_tables: BTreeSet<TableName>,
    /// Record this cursor as the last applied from `origin`, in the same transaction.
    pub record_cursor: Option<String>,
    /// Tables that were empty when the transaction began and that only this upload writes: their rows are
    /// copied straight in, without staging and merging (an initial load). A key may then appear only once in
    /// the upload; a second one is refused as a unique violation and nothing is applied. Ignored for tables
    /// with deferral, conflict checks or replacement.
    pub fresh_tables: BTreeSet<TableName>,
    /// Check the foreign keys of upserted rows with one set-based query per key (locking the referenced rows as
    /// PostgreSQL's own check does) and insert with `session_replication_role = replica`, which skips the
    /// per-row trigger checks, the way logical replication applies rows. Only on tables where that skips nothing
    /// else: no triggers or rules of their own, plain immediate foreign keys whose columns the upload carries,
    /// and no other table referencing columns besides the primary key. The caller must be allowed to set
    /// `session_replication_role` (superuser, or `GRANT SET ON PARAMETER session_replication_role`).
    pub set_based_foreign_keys: bool,
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
    /// Conflicts decided (office side).
    pub conflicts: u64,
    /// Rows deleted because a replacing upload did not carry them.
    pub pruned: u64,
    /// Of the upserted rows, those whose foreign keys were checked set-based
    /// ([`ApplyOptions::set_based_foreign_keys`]).
    pub set_based: u64,
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

    /// Total conflicts decided.
    pub fn conflicts(&self) -> u64 {
        self.tables.iter().map(|(_, c)| c.conflicts).sum()
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
            mine.conflicts += c.conflicts;
            mine.pruned += c.pruned;
            mine.set_based += c.set_based;
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
    let mut report = apply_in(&tx, catalog, payloads, options).await?;
    let replaced: BTreeSet<TableName> = payloads.iter().flat_map(|p| p.header.replace.iter().cloned()).collect();
    report.merge(prune_unseen(&tx, catalog, &replaced).await?);
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
            let how = How {
                defer: options.defer_tables.contains(&table.name),
                conflict: options.conflicts.as_ref().and_then(|c| c.rules.get(&table.name).map(|r| (c, *r))),
                remember: payload.header.replace.contains(&table.name),
                fresh: options.fresh_tables.contains(&table.name),
                set_based: options.set_based_foreign_keys,
            };
            apply_statement(tx, &mut stages, table, statement, &how, report.counts(&table.name))
                .await
                .map_err(|e| rejected(e, c + 1, s + 1))?;
        }
    }
    if let Some(cursor) = &options.record_cursor {
        record_cursor(tx, &options.origin, cursor).await?;
    }
    Ok(report)
}

/// Records `cursor` as the last applied from `origin`, inside the caller's transaction (the one that applied the
/// rows behind it).
pub async fn record_cursor(tx: &Transaction<'_>, origin: &str, cursor: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO branchsync.peer_cursor (peer, cursor, applied_at) VALUES ($1, $2, now()) \
         ON CONFLICT (peer) DO UPDATE SET cursor = EXCLUDED.cursor, applied_at = EXCLUDED.applied_at",
        &[&origin, &cursor],
    )
    .await?;
    Ok(())
}

/// After every chunk of a replacing upload: deletes the rows of `tables` whose keys the upload did not carry,
/// children first. The caller runs it in the apply transaction, after the last `apply_in`.
pub async fn prune_unseen(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    tables: &BTreeSet<TableName>,
) -> Result<ApplyReport> {
    let mut report = ApplyReport::default();
    for table in catalog.tables().iter().rev().filter(|t| tables.contains(&t.name)) {
        let seen = seen_table(tx, table).await?;
        let key: Vec<String> = table.primary_key.iter().map(|c| format!("t.{}::text", quote_ident(c))).collect();
        let sql = format!(
            "DELETE FROM {} t WHERE NOT EXISTS (SELECT 1 FROM {seen} k WHERE k.pk = ARRAY[{}])",
            table.name.quoted(),
            key.join(", ")
        );
        let pruned = tx.execute(sql.as_str(), &[]).await.map_err(|e| rejected(e.into(), 0, 0))?;
        report.counts(&table.name).pruned += pruned;
    }
    Ok(report)
}

/// The temporary table of keys a replacing upload carried for `table`.
async fn seen_table(tx: &Transaction<'_>, table: &TableInfo) -> Result<String> {
    let name = format!("branchsync_seen_{:016x}", fnv(&table.name.to_string()));
    tx.batch_execute(&format!("CREATE TEMP TABLE IF NOT EXISTS {name} (pk text[]) ON COMMIT DROP")).await?;
    Ok(format!("pg_temp.{name}"))
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// What to do with one statement's rows besides applying them.
struct How<'a> {
    defer: bool,
    conflict: Option<(&'a ConflictCheck, Rule)>,
    remember: bool,
    fresh: bool,
    set_based: bool,
}

/// Which tables are empty now, for [`ApplyOptions::fresh_tables`]; call it first thing in the transaction.
pub async fn empty_tables(tx: &Transaction<'_>, catalog: &Catalog) -> Result<BTreeSet<TableName>> {
    let mut empty = BTreeSet::new();
    for table in catalog.tables() {
        let row = tx.query_one(&format!("SELECT NOT EXISTS (SELECT 1 FROM {})", table.name.quoted()), &[]).await?;
        if row.get::<_, bool>(0) {
            empty.insert(table.name.clone());
        }
    }
    Ok(empty)
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
        Error::Rejected { chunk: 0, statement: 0, sqlstate, message } => {
            Error::Rejected { chunk, statement, sqlstate: sqlstate.clone(), message: message.clone() }
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

/// Statements with fewer rows keep PostgreSQL's per-row foreign-key checks: the set-based ones cost a few
/// planned queries per key, which only pays off on many rows.
const SET_BASED_MIN_ROWS: usize = 1000;

/// Temporary staging tables of this transaction, by target table and column list. Named after a hash of both,
/// so that several `apply_in` calls in one transaction reuse them instead of colliding.
#[derive(Default)]
struct Stages {
    names: HashMap<(TableName, Vec<String>), String>,
    /// Per table: whether set-based foreign-key checks skip nothing else there.
    set_based: HashMap<TableName, bool>,
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

    /// Whether replica mode would skip nothing but the per-row foreign-key checks on `table` for an upsert of
    /// `columns` (see [`ApplyOptions::set_based_foreign_keys`]); asked once per table and transaction.
    async fn set_based_allowed(&mut self, tx: &Transaction<'_>, table: &TableInfo, columns: &[String]) -> Result<bool> {
        if !table.foreign_keys.iter().all(|fk| fk.columns.iter().all(|c| columns.contains(c))) {
            return Ok(false);
        }
        if let Some(&allowed) = self.set_based.get(&table.name) {
            return Ok(allowed);
        }
        let row = tx
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = $1::text::regclass AND NOT t.tgisinternal)
                    AND NOT EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = $1::text::regclass AND r.rulename <> '_RETURN')
                    AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = $1::text::regclass AND c.contype = 'f'
                                    AND (c.confmatchtype <> 's' OR c.condeferrable))
                    AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.confrelid = $1::text::regclass AND c.contype = 'f'
                                    AND NOT c.confkey <@ COALESCE((SELECT p.conkey FROM pg_constraint p
                                        WHERE p.conrelid = $1::text::regclass AND p.contype = 'p'), '{}'))",
                &[&table.name.quoted()],
            )
            .await?;
        let allowed: bool = row.get(0);
        self.set_based.insert(table.name.clone(), allowed);
        Ok(allowed)
    }
}

/// Checks every foreign key of the staged rows with one query each, after locking the referenced rows
/// `FOR KEY SHARE` as PostgreSQL's per-row check does (so that they cannot go before this transaction commits).
/// A missing parent refuses the statement with SQLSTATE 23503, as the per-row check would.
async fn check_foreign_keys(tx: &Transaction<'_>, table: &TableInfo, stage: &str) -> Result<()> {
    for fk in &table.foreign_keys {
        let cols: Vec<String> = fk.columns.iter().map(|c| format!("s.{}", quote_ident(c))).collect();
        let refs: Vec<String> = fk.ref_columns.iter().map(|c| format!("p.{}", quote_ident(c))).collect();
        let not_null: Vec<String> = cols.iter().map(|c| format!("{c} IS NOT NULL")).collect();
        let matches: Vec<String> = cols.iter().zip(&refs).map(|(c, r)| format!("{r} = {c}")).collect();
        let parent = fk.references.quoted();
        tx.execute(
            &format!(
                "SELECT 1 FROM {parent} p WHERE ({}) IN (SELECT {} FROM {stage} s) FOR KEY SHARE OF p",
                refs.join(", "),
                cols.join(", ")
            ),
            &[],
        )
        .await?;
        let missing = tx
            .query_opt(
                &format!(
                    "SELECT {}::text FROM {stage} s WHERE {} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {}) LIMIT 1",
                    if cols.len() == 1 { cols[0].clone() } else { format!("ROW({})", cols.join(", ")) },
                    not_null.join(" AND "),
                    matches.join(" AND ")
                ),
                &[],
            )
            .await?;
        if let Some(row) = missing {
            let key: String = row.get(0);
            return Err(Error::Rejected {
                chunk: 0,
                statement: 0,
                sqlstate: Some("23503".into()),
                message: format!(
                    "insert or update on table {} violates foreign key ({}): key {key} is not present in table {}",
                    table.name,
                    fk.columns.join(", "),
                    fk.references
                ),
            });
        }
    }
    Ok(())
}

async fn stage_rows(tx: &Transaction<'_>, stage: &str, columns: &[String], rows: &Rows) -> Result<()> {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let sink = tx.copy_in(&format!("COPY {stage} ({}) FROM STDIN", cols.join(", "))).await?;
    let mut sink = std::pin::pin!(sink);
    // The reader kept the rows in COPY text format: they go to the database as they are.
    sink.send(Bytes::copy_from_slice(rows.copy_text().as_bytes())).await?;
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
    how: &How<'_>,
    counts: &mut TableCounts,
) -> Result<()> {
    let defer = how.defer;
    match statement {
        Statement::Upsert { columns, update, rows, .. } => {
            if rows.is_empty() {
                return Ok(());
            }
            if how.fresh && !how.defer && how.conflict.is_none() && !how.remember {
                // Nothing to merge with: straight into the table, as pg_restore would.
                stage_rows(tx, &table.name.quoted(), columns, rows).await?;
                counts.upserted += rows.len() as u64;
                return Ok(());
            }
            let stage = stages.get(tx, table, columns).await?;
            stage_rows(tx, &stage, columns, rows).await?;
            if let Some((check, rule)) = how.conflict {
                counts.conflicts += decide_conflicts(tx, table, &stage, check, rule, true).await?;
            }
            if how.remember {
                let seen = seen_table(tx, table).await?;
                let key: Vec<String> =
                    table.primary_key.iter().map(|c| format!("s.{}::text", quote_ident(c))).collect();
                tx.execute(&format!("INSERT INTO {seen} SELECT ARRAY[{}] FROM {stage} s", key.join(", ")), &[]).await?;
            }
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
            let set_based = how.set_based
                && rows.len() >= SET_BASED_MIN_ROWS
                && stages.set_based_allowed(tx, table, columns).await?;
            if set_based {
                check_foreign_keys(tx, table, &stage).await?;
                tx.batch_execute("SET LOCAL session_replication_role = replica").await?;
            }
            let applied = tx.execute(sql.as_str(), &[]).await?;
            if set_based {
                tx.batch_execute("SET LOCAL session_replication_role = origin").await?;
                counts.set_based += applied;
            }
            if defer {
                counts.deferred += deferred_count(tx, table, &stage).await?;
            }
            counts.upserted += applied;
        }
        Statement::Delete { key, rows, .. } => {
            let stage = stages.get(tx, table, key).await?;
            stage_rows(tx, &stage, key, rows).await?;
            if let Some((check, rule)) = how.conflict {
                counts.conflicts += decide_conflicts(tx, table, &stage, check, rule, false).await?;
            }
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

/// Finds the staged rows whose keys the office changed since its last push to the branch, records each
/// conflict with both versions and the decision, and takes the rows the office wins out of the stage. A key the
/// office wins is marked changed again, so that the next push carries the office's version back to the shop.
/// `upsert` is false for a stage of deleted keys (the shop's version is then "deleted"). Returns the number of
/// conflicts.
async fn decide_conflicts(
    tx: &Transaction<'_>,
    table: &TableInfo,
    stage: &str,
    check: &ConflictCheck,
    rule: Rule,
    upsert: bool,
) -> Result<u64> {
    let key_of = |alias: &str| -> String {
        let parts: Vec<String> =
            table.primary_key.iter().map(|c| format!("{alias}.{}::text", quote_ident(c))).collect();
        format!("ARRAY[{}]", parts.join(", "))
    };
    let join: Vec<String> = table.primary_key.iter().map(|c| format!("t.{0} = s.{0}", quote_ident(c))).collect();
    let newer = quote_ident(&check.newer_column);
    let decision = match rule {
        Rule::OfficeWins => "'office'".to_string(),
        Rule::ShopWins => "'shop'".to_string(),
        Rule::NewerWins if upsert && table.column_type(&check.newer_column).is_some() => {
            format!(
                "CASE WHEN s.{newer} IS NOT NULL AND (t.{newer} IS NULL OR s.{newer} > t.{newer}) THEN 'shop' ELSE 'office' END"
            )
        }
        Rule::NewerWins => "'office'".to_string(),
    };
    let shop_version = if upsert { "to_jsonb(s)" } else { "NULL::jsonb" };
    let sql = format!(
        "WITH decided AS (
            INSERT INTO branchsync.conflict (branch, tbl, pk, office_version, shop_version, rule, decision)
            SELECT $1, $2, {sk}, CASE WHEN t.{first} IS NULL THEN NULL ELSE to_jsonb(t) END, {shop_version}, $3, {decision}
            FROM {stage} s LEFT JOIN {table} t ON {join}
            WHERE EXISTS (SELECT 1 FROM branchsync.change_log cl WHERE cl.tbl = $2 AND cl.pk = {sk}
                          AND cl.origin <> $1 AND ($4::text IS NULL OR NOT pg_visible_in_snapshot(cl.xid, $4::text::pg_snapshot)))
            RETURNING pk, decision),
         dropped AS (DELETE FROM {stage} s USING decided d WHERE d.decision = 'office' AND d.pk = {sk} RETURNING d.pk),
         touched AS (INSERT INTO branchsync.change_log (tbl, pk, op, origin) SELECT $2, pk, 'U', '' FROM dropped RETURNING 1)
         SELECT (SELECT count(*) FROM decided), (SELECT count(*) FROM touched)",
        sk = key_of("s"),
        first = quote_ident(&table.primary_key[0]),
        table = table.name.quoted(),
        join = join.join(" AND "),
    );
    let row = tx
        .query_one(sql.as_str(), &[&check.branch, &table.name.to_string(), &rule.name(), &check.unsent_since])
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}
