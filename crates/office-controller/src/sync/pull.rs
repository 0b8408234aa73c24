//! Pull: `diff` loops from the recorded pull cursor until one brings nothing. Each answer is imported in its own
//! transaction with its conflicts decided, and the last answer of a loop together with the new pull cursor;
//! once that is committed the office `confirm`s the cursor, so the shop purges and stops deferring what the
//! office has. A dry run commits nothing and so confirms nothing.

use std::time::Instant;

use agent_client::DiffAnswer;
use anyhow::{Context, Result, anyhow};
use pgsync::{Catalog, ConflictCheck, ImportOptions, ImportSession, Ownership};
use protocol::cursor::Cursor;
use protocol::fault::FaultCode;
use protocol::payload::{ReadLimits, Statement, read_payload};
use tokio_postgres::Client;

use super::cycle::{Cycle, explain};
use crate::records::{self, LogEntry};

/// Runs the pull. `applied` is the office cursor the shop has applied: office changes after it are unsent.
/// `complete` (the re-pull of `sync --full`, after its complete push): every row the shop holds is pulled and
/// compared with the office's, a difference is a conflict, and rows the office holds beyond them are reported.
pub(super) async fn run(cycle: &mut Cycle<'_>, applied: Option<&Cursor>, complete: bool) -> Result<()> {
    let tables = cycle.policy.tables.to_office();
    let catalog = Catalog::load(&*cycle.office()?, &tables).await?;
    let limits = ReadLimits {
        max_decompressed_bytes: cycle.config.sync.max_chunk_bytes,
        allowed_tables: tables.iter().cloned().collect(),
    };
    let check = ConflictCheck {
        branch: cycle.branch.name.clone(),
        unsent_since: applied.map(|c| c.snapshot.clone()),
        rules: cycle.policy.rules.clone(),
        newer_column: cycle.policy.newer_column.clone(),
        // A complete pull compares every row the shop holds, as after a restore: a difference is a conflict.
        compare_values: complete,
    };
    let set_based = may_set_replication_role(cycle.office()?).await?;
    if !set_based {
        tracing::debug!("foreign keys checked per row: the office role may not set session_replication_role");
    }
    // A branch writes only its own rows: the trust boundary of the pull (BRIEF §4).
    let id_start = cycle.branch.id_start();
    let ownership = Ownership {
        branch: cycle.branch.name.clone(),
        id_start,
        id_end: id_start + cycle.branch.id_range - 1,
        own_rows: cycle.policy.tables.from_target.iter().cloned().collect(),
        own_deletes: if cycle.policy.own_both_deletes {
            cycle.policy.tables.both.iter().cloned().collect()
        } else {
            Default::default()
        },
    };
    let mut take = Take {
        catalog: &catalog,
        limits: &limits,
        options: ImportOptions::office(check.clone(), set_based, ownership.clone()),
        dry_run: cycle.options.dry_run,
    };
    let mut since = if complete { String::new() } else { cycle.branch.pull_cursor.clone().unwrap_or_default() };
    for _ in 0..3 {
        let mut cursor = since.clone();
        let mut loop_rows = 0u64;
        let mut prefetched: Option<DiffAnswer> = None;
        loop {
            let answer = match prefetched.take() {
                Some(answer) => answer,
                None => match cycle.agent.diff(&cursor).await {
                    Err(e) if e.fault() == Some(FaultCode::CursorRefused) && !cursor.is_empty() => {
                        fall_back(cycle, &catalog, &e).await?;
                        let compare = ConflictCheck { compare_values: true, ..check.clone() };
                        take.options = ImportOptions::office(compare, set_based, ownership.clone());
                        cursor.clear();
                        since.clear();
                        continue;
                    }
                    other => other.map_err(explain)?,
                },
            };
            cycle.report.bytes_pulled += answer.data.len() as u64;
            // Checked before anything of the answer is used, its cursor before it is sent back for the next chunk.
            check_cursor(&answer)?;
            // The shop reads its next chunk while the office applies this one: a continuation only says what the
            // office has received, and the pull cursor moves only with the last answer of the loop.
            let agent = &cycle.agent;
            let following = async { if answer.more { Some(agent.diff(&answer.cursor).await) } else { None } };
            let office = cycle.office.as_mut().ok_or_else(|| anyhow!("the branch's office connection is gone"))?;
            let (taken, following) = tokio::join!(take.apply(office, &cycle.branch.name, &answer), following);
            let taken = taken?;
            for (table, rows, conflicts) in &taken {
                cycle.report.add(table, "pull", *rows, *conflicts);
                loop_rows += rows;
            }
            prefetched = following.transpose().map_err(explain)?;
            cycle.progress.update(&cycle.branch.name, "pull", cycle.report);
            cursor = answer.cursor;
            if !answer.more {
                break;
            }
        }
        if cycle.options.dry_run {
            // Nothing was committed: a second loop would start from a cursor the office does not have.
            break;
        }
        if cursor != since {
            confirm(cycle, &cursor).await?;
        }
        since = cursor;
        if loop_rows == 0 {
            break;
        }
    }
    if complete {
        extras(cycle, &catalog).await?;
    }
    Ok(())
}

/// After a complete pull: the rows of the branch's range (from where its shop's history starts) that the office
/// holds beyond what the shop sent, per shop-written table. They are reported and kept: the office never deletes
/// a sale because a shop no longer has it.
async fn extras(cycle: &mut Cycle<'_>, catalog: &Catalog) -> Result<()> {
    let from = cycle.branch.history_from.unwrap_or(cycle.branch.id_start());
    let end = cycle.branch.id_end();
    for table in catalog.tables().iter().filter(|t| cycle.policy.tables.from_target.contains(&t.name)) {
        let Some(column) = catalog.range_column(table, &cycle.policy.tables.from_target) else { continue };
        let column = protocol::sql::quote_ident(&column);
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {column}::bigint BETWEEN $1::bigint AND $2::bigint",
            table.name.quoted()
        );
        let held: i64 = cycle.office()?.query_one(sql.as_str(), &[&from, &end]).await?.get(0);
        let sent = cycle.report.tables.get(&table.name.to_string()).and_then(|d| d.get("pull")).map_or(0, |m| m.rows);
        let beyond = held.saturating_sub(sent as i64);
        if beyond > 0 {
            cycle.report.notes.push(format!(
                "the office holds {beyond} rows of {} in this branch's range that the shop did not send: kept at the office; the shop no longer has them",
                table.name
            ));
        }
    }
    Ok(())
}

/// Tells the shop that the office has committed everything up to `cursor` (its new pull cursor). An agent from
/// before protocol v2 has no `confirm`: it takes the next `diff(since)` as the acknowledgement instead.
async fn confirm(cycle: &mut Cycle<'_>, cursor: &str) -> Result<()> {
    match cycle.agent.confirm(cursor).await {
        Err(e) if e.fault() == Some(FaultCode::UnknownMethod) => {
            tracing::debug!("the agent predates confirm; its next diff acknowledges the pull");
            Ok(())
        }
        other => other.map_err(explain).context("confirming the pulled changes (they are committed at the office)"),
    }
}

/// The shop refused the pull cursor: it was restored from a backup or rebuilt, so its sequences may be rewound
/// and its rows stale. Before the full pull, every shop sequence is moved above the highest id of the branch's
/// range the office holds (a rewound sequence would issue ids of later sales again); the full pull then
/// compares values (a differing row is a conflict, never a silent overwrite), and the push becomes complete (the
/// shop's catalogue may be older than what the office's change log still holds).
async fn fall_back(cycle: &mut Cycle<'_>, catalog: &Catalog, e: &agent_client::ClientError) -> Result<()> {
    cycle.report.notes.push(format!("pull cursor refused by the shop ({e}); fell back to a full pull"));
    cycle.options.full = true;
    let id_start = cycle.branch.id_start();
    let id_end = id_start + cycle.branch.id_range - 1;
    let highest = highest_id(&*cycle.office()?, catalog, id_start, id_end).await?;
    if let Some(highest) = highest
        && !cycle.options.dry_run
    {
        let moved = cycle.agent.setidstart_above(id_start, highest).await.map_err(explain).context(
            "moving the shop's sequences past the ids the office holds (nothing was pulled; fix this before the shop sells again)",
        )?;
        cycle.report.notes.push(format!(
            "moved {} shop sequences above id {highest}, the highest of the branch the office holds",
            moved.sequences.len()
        ));
        // What the shop sold up to that id it may have lost with the restore: verify compares from here on.
        let branch = cycle.branch.name.clone();
        records::set_history_from(&*cycle.office()?, &branch, highest + 1).await?;
    }
    if !cycle.options.dry_run {
        let entry = LogEntry {
            branch: &cycle.branch.name,
            table: "*",
            direction: "pull",
            rows: 0,
            bytes: None,
            result: "fallback",
            message: "cursor refused, full pull",
        };
        records::log(&*cycle.office()?, entry).await?;
    }
    Ok(())
}

/// The highest id in `start..=end` of any id sequence's column among the pulled tables at the office.
pub async fn highest_id(office: &Client, catalog: &Catalog, start: i64, end: i64) -> Result<Option<i64>> {
    let mut highest: Option<i64> = None;
    for table in catalog.tables() {
        for (column, _) in &table.sequences {
            let column = protocol::sql::quote_ident(column);
            let sql = format!(
                "SELECT max({column})::bigint FROM {} WHERE {column} BETWEEN $1::bigint AND $2::bigint",
                table.name.quoted()
            );
            let max: Option<i64> = office.query_one(sql.as_str(), &[&start, &end]).await?.get(0);
            highest = highest.max(max);
        }
    }
    Ok(highest)
}

/// Whether the office role may set `session_replication_role` (a superuser, or granted `SET ON PARAMETER` since
/// PostgreSQL 15): then pulled rows have their foreign keys checked per statement rather than per row.
async fn may_set_replication_role(office: &Client) -> Result<bool> {
    let row = office
        .query_one(
            "SELECT rolsuper, current_setting('server_version_num')::int >= 150000 FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let (superuser, v15): (bool, bool) = (row.get(0), row.get(1));
    if superuser || !v15 {
        return Ok(superuser);
    }
    Ok(office.query_one("SELECT has_parameter_privilege('session_replication_role', 'SET')", &[]).await?.get(0))
}

/// The longest cursor the office takes from a shop: a snapshot lists the transactions in progress, so a real one
/// stays far below this.
const MAX_CURSOR_BYTES: usize = 64 * 1024;

/// Refuses an answer whose cursor the office would send back or record without being one: too long, or, for the
/// last answer of a loop (whose cursor becomes the pull cursor), not a cursor at all.
fn check_cursor(answer: &DiffAnswer) -> Result<()> {
    let shown = || protocol::text::capped(&answer.cursor, 80);
    if answer.cursor.len() > MAX_CURSOR_BYTES {
        anyhow::bail!(
            "the shop sent a cursor of {} bytes ({}); nothing of its answer was applied",
            answer.cursor.len(),
            shown()
        );
    }
    if !answer.more && answer.cursor.parse::<Cursor>().is_err() {
        anyhow::bail!("the shop's last answer carries {:?}, which is not a cursor; nothing of it was applied", shown());
    }
    Ok(())
}

/// How the office takes one `diff` answer in.
struct Take<'a> {
    catalog: &'a Catalog,
    limits: &'a ReadLimits,
    options: ImportOptions,
    dry_run: bool,
}

impl Take<'_> {
    /// Imports one answer with its conflicts decided, in one transaction that also records the pull cursor when
    /// the answer is the last of its loop. Returns rows moved and conflicts per table (counted only, with
    /// `dry_run`).
    async fn apply(
        &self,
        office: &mut Client,
        branch: &str,
        answer: &DiffAnswer,
    ) -> Result<Vec<(protocol::payload::TableName, u64, u64)>> {
        let payload = read_payload(&answer.data, self.limits)
            .map_err(|e| anyhow!("the shop sent a chunk the office refuses: {e}"))?;
        if self.dry_run {
            return Ok(payload
                .statements
                .iter()
                .map(|s| {
                    let n = match s {
                        Statement::Upsert { rows, .. } | Statement::Delete { rows, .. } => rows.len() as u64,
                    };
                    (s.table().clone(), n, 0)
                })
                .collect());
        }
        let tx = office.transaction().await?;
        let started = Instant::now();
        let mut import = ImportSession::begin(&tx, self.catalog, self.options.clone()).await?;
        import.chunk(&tx, &payload).await?;
        let imported = import.finish(&tx).await?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            bytes = answer.data.len(),
            set_based = imported.report.set_based(),
            upserted = imported.report.upserted(),
            "pulled chunk applied"
        );
        if !answer.more {
            records::set_pull_cursor(&tx, branch, &answer.cursor).await?;
        }
        tx.commit().await?;
        Ok(imported
            .report
            .tables
            .iter()
            .map(|(table, c)| (table.clone(), c.upserted + c.deleted + c.conflicts, c.conflicts))
            .collect())
    }
}
