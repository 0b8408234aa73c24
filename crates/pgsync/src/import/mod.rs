//! Imports payloads in one transaction together with the cursor they carry (BRIEF §4.2): the counterpart of
//! [`ExportSession`](crate::ExportSession). [`ImportSession::begin`] decides once how each table is written,
//! [`chunk`](ImportSession::chunk) applies one checked chunk after the other (numbering them itself), and
//! [`finish`](ImportSession::finish) prunes what a replacing upload did not carry, records the peer cursor and
//! returns the report, all inside the caller's transaction: either every statement of every chunk and the new
//! cursor are committed, or nothing is. The shop's staged and streamed uploads and the office's pull all import
//! through it.
//!
//! Nothing of the payload's text is executed. Each statement's rows are copied into a temporary table shaped
//! like the target's columns (so PostgreSQL's own input functions check every value), then merged with SQL we
//! build from the catalog: an upsert on the primary key, or a delete by key.

mod conflicts;
mod held;
mod ownership;
mod pending;
mod prune;
mod report;
mod stage;
mod statement;
mod unique;
mod validate;

use std::collections::{BTreeMap, BTreeSet};

use protocol::payload::{Payload, TableName};
use protocol::policy::Policy;
use protocol::schema::SchemaMismatch;
use tokio_postgres::{Client, Transaction};

pub use conflicts::{ConflictCheck, RecordedConflict, Rule, recorded as recorded_conflicts};
pub use ownership::Ownership;
pub use report::{ApplyReport, TableCounts};
pub use validate::validate;

use crate::catalog::Catalog;
use crate::error::{Error, Result, rejected};
use crate::peer_cursor;
use crate::schema::ORIGIN_SETTING;
use statement::{Path, TableGuard};

/// What guards incoming rows on this side.
#[derive(Debug, Clone, Default)]
pub enum Guard {
    /// Nothing: every row is applied.
    #[default]
    None,
    /// The shop's side of BRIEF §4.4: in these tables an incoming row whose key has local changes not yet
    /// acknowledged by the peer is deferred rather than applied (the office sees the local version first).
    Defer(BTreeSet<TableName>),
    /// The office's side: conflicts on these tables are decided by rule and recorded.
    Decide(ConflictCheck),
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The origin the applied changes are marked with in the change log (the sender's name).
    pub origin: String,
    /// What guards incoming rows.
    pub guard: Guard,
    /// Among these tables, those empty when the session begins take the upload's rows straight in, without
    /// staging and merging (an initial load). A key may then appear only once in the upload; a second one is
    /// refused as a unique violation and nothing is applied. Tables with a guard or a replacement still merge.
    pub fresh_among: BTreeSet<TableName>,
    /// Check the foreign keys of upserted rows with one set-based query per key (locking the referenced rows as
    /// PostgreSQL's own check does) and insert with `session_replication_role = replica`, which skips the
    /// per-row trigger checks, the way logical replication applies rows. Only on tables where that skips nothing
    /// else: no triggers or rules of their own, plain immediate foreign keys whose columns the upload carries,
    /// and no other table referencing columns besides the primary key. The caller must be allowed to set
    /// `session_replication_role` (superuser, or `GRANT SET ON PARAMETER session_replication_role`).
    pub set_based_foreign_keys: bool,
    /// Record the cursor the chunks carry as the last applied from `origin` (`branchsync.peer_cursor`), in the
    /// same transaction, unless a row was deferred (the older cursor stays, so the sender sends it again). Without it the caller records [`Imported::cursor`] in its own books, in the same
    /// transaction.
    pub record_peer_cursor: bool,
    /// Take replacing uploads (`-- replace:`): the rows of those tables that no chunk carried are deleted at
    /// [`ImportSession::finish`]. Only the office sends them (its complete synchronisation); a receiver that does
    /// not take them refuses such a chunk, so that no sender can delete what it did not name.
    pub accept_replace: bool,
    /// Whose rows the sender may write (the office taking a branch's changes); `None`: any.
    pub ownership: Option<Ownership>,
}

impl ImportOptions {
    /// The shop taking an upload from the office (`origin`) under `policy`: `both` rows with local changes
    /// wait, tables it receives that are empty take the rows straight in, the office cursor is recorded.
    pub fn shop(origin: &str, policy: &Policy) -> ImportOptions {
        ImportOptions {
            origin: origin.into(),
            guard: Guard::Defer(policy.both.iter().cloned().collect()),
            fresh_among: policy.shop_receives(),
            set_based_foreign_keys: false,
            record_peer_cursor: true,
            accept_replace: true,
            ownership: None,
        }
    }

    /// The office taking branch `check.branch`'s changes: conflicts decided and recorded, foreign keys of large
    /// statements checked set-based when `set_based` (the role may set `session_replication_role`). The caller
    /// records the pull cursor. Every row must be the branch's as `ownership` says.
    pub fn office(check: ConflictCheck, set_based: bool, ownership: Ownership) -> ImportOptions {
        ImportOptions {
            origin: check.branch.clone(),
            guard: Guard::Decide(check),
            fresh_among: BTreeSet::new(),
            set_based_foreign_keys: set_based,
            record_peer_cursor: false,
            accept_replace: false,
            ownership: Some(ownership),
        }
    }
}

/// What a finished import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// Per-table counts.
    pub report: ApplyReport,
    /// The cursor the chunks carried (the last `-- cursor:` header), if any.
    pub cursor: Option<String>,
    /// Chunks imported.
    pub chunks: usize,
}

/// One import in progress, inside the caller's transaction.
#[derive(Debug)]
pub struct ImportSession<'c> {
    catalog: &'c Catalog,
    options: ImportOptions,
    /// Tables that were empty when the session began (see [`ImportOptions::fresh_among`]).
    fresh: BTreeSet<TableName>,
    scratch: statement::Scratch,
    replaced: BTreeSet<TableName>,
    imported: Imported,
    /// The ownership rule of each table it concerns.
    owned: BTreeMap<TableName, ownership::Rule>,
}

impl<'c> ImportSession<'c> {
    /// Starts importing in `tx`; call it first thing in the transaction, since the tables empty now take the
    /// upload's rows straight in.
    pub async fn begin(
        tx: &Transaction<'_>,
        catalog: &'c Catalog,
        options: ImportOptions,
    ) -> Result<ImportSession<'c>> {
        let fresh = if options.fresh_among.is_empty() {
            BTreeSet::new()
        } else {
            empty_tables(tx, &catalog.subset(&options.fresh_among)).await?
        };
        tx.query_one("SELECT set_config($1, $2, true)", &[&ORIGIN_SETTING, &options.origin]).await?;
        // The sender's rows arrive as net states in key order, not as the steps that produced them: two products
        // that swapped barcodes, or a category filed under one that comes later, hold for a moment what a
        // constraint checked row by row refuses. A constraint declared DEFERRABLE is checked once, at the end.
        tx.batch_execute("SET CONSTRAINTS ALL DEFERRED").await?;
        let owned = options.ownership.as_ref().map(|o| ownership::rules(catalog, o)).unwrap_or_default();
        Ok(ImportSession {
            owned,
            catalog,
            options,
            fresh,
            scratch: statement::Scratch::default(),
            replaced: BTreeSet::new(),
            imported: Imported::default(),
        })
    }

    /// Chunks imported so far.
    pub fn chunks(&self) -> usize {
        self.imported.chunks
    }

    /// Checks the next chunk against the catalog and applies it. On error the caller must roll back.
    pub async fn chunk(&mut self, tx: &Transaction<'_>, payload: &Payload) -> Result<()> {
        let number = self.imported.chunks + 1;
        validate(self.catalog, payload, number)?;
        if !payload.header.replace.is_empty() && !self.options.accept_replace {
            return Err(Error::Rejected {
                chunk: number,
                statement: 0,
                sqlstate: None,
                table: None,
                message: "a replacing upload (-- replace:) is not accepted from this sender".into(),
            });
        }
        if payload.header.cursor.is_some() {
            self.imported.cursor = payload.header.cursor.clone();
        }
        self.replaced.extend(payload.header.replace.iter().cloned());
        for (s, statement) in payload.statements.iter().enumerate() {
            let table = self
                .catalog
                .get(statement.table())
                .ok_or_else(|| SchemaMismatch::MissingTable(statement.table().clone()))?;
            let path = path(&self.options, &self.fresh, &self.owned, table, payload);
            let counts = self.imported.report.counts(&table.name);
            statement::apply(tx, &mut self.scratch, table, statement, path, counts).await.map_err(|e| {
                // A write the role may not do is the policy's problem, and says which table.
                if matches!(e, Error::NotOwned { .. }) {
                    e
                } else if e.sqlstate() == Some("42501") {
                    Error::NotWritable { table: table.name.clone(), need: "write" }
                } else {
                    rejected(e, number, s + 1, Some(&table.name))
                }
            })?;
        }
        self.imported.chunks = number;
        Ok(())
    }

    /// After the last chunk: deletes what a replacing upload did not carry and records the carried cursor (with
    /// [`ImportOptions::record_peer_cursor`]), in `tx`, which the caller commits.
    pub async fn finish(mut self, tx: &Transaction<'_>) -> Result<Imported> {
        let deferred = match &self.options.guard {
            Guard::Defer(tables) => tables.clone(),
            _ => BTreeSet::new(),
        };
        self.scratch.held.restore(tx, self.imported.chunks).await?;
        self.imported.report.merge(prune::prune_unseen(tx, self.catalog, &self.replaced, &deferred).await?);
        self.scratch.vacated.check(tx, self.imported.chunks).await?;
        // A deferred row is an office change the shop has not applied: keeping the older cursor keeps that change
        // inside the office's conflict window and the next push's export, so that the office decides it against
        // the shop's version instead of taking the shop's edit as a plain update (and losing its own).
        if self.options.record_peer_cursor
            && self.imported.report.deferred() == 0
            && let Some(cursor) = &self.imported.cursor
        {
            peer_cursor::record(tx, &self.options.origin, cursor).await?;
        }
        // Checked here rather than at commit, so that a violation is the upload's fault with its table named, and
        // the caller rolls back as after any refused chunk.
        if let Err(e) = tx.batch_execute("SET CONSTRAINTS ALL IMMEDIATE").await {
            let table = e.as_db_error().and_then(|d| Some(TableName::new(d.schema()?, d.table()?)));
            return Err(rejected(e.into(), self.imported.chunks, 0, table.as_ref()));
        }
        Ok(self.imported)
    }
}

/// How a statement of `payload` on `table` is applied.
fn path<'a>(
    options: &'a ImportOptions,
    fresh: &BTreeSet<TableName>,
    owned: &'a BTreeMap<TableName, ownership::Rule>,
    table: &crate::catalog::TableInfo,
    payload: &Payload,
) -> Path<'a> {
    let owned = options.ownership.as_ref().zip(owned.get(&table.name));
    let guard = match &options.guard {
        Guard::Defer(tables) if tables.contains(&table.name) => TableGuard::Defer,
        Guard::Decide(check) => match check.rules.get(&table.name) {
            Some(rule) => TableGuard::Decide(check, *rule),
            // After a refused cursor the office keeps what it holds of the shop's own tables too.
            None if check.compare_values => TableGuard::Decide(check, conflicts::Rule::OfficeWins),
            None => TableGuard::None,
        },
        _ => TableGuard::None,
    };
    let remember = payload.header.replace.contains(&table.name);
    if fresh.contains(&table.name)
        && matches!(guard, TableGuard::None)
        && !remember
        && owned.is_none()
        && !held::needed(table)
    {
        return Path::Straight;
    }
    Path::Merge { guard, remember, set_based: options.set_based_foreign_keys, owned }
}

/// Imports `payloads` in a transaction of its own and commits it: for tools and tests, through the same session
/// the agent and the controller use. `options` decide as everywhere: a replacing upload needs `accept_replace`.
pub async fn apply(
    client: &mut Client,
    catalog: &Catalog,
    payloads: &[Payload],
    options: ImportOptions,
) -> Result<Imported> {
    let tx = client.transaction().await?;
    let mut session = ImportSession::begin(&tx, catalog, options).await?;
    for payload in payloads {
        session.chunk(&tx, payload).await?;
    }
    let imported = session.finish(&tx).await?;
    tx.commit().await?;
    Ok(imported)
}

/// Which tables are empty now; call it first thing in the transaction.
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
