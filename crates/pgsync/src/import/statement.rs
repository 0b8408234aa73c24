//! Applies one checked statement: straight into a fresh table, or staged and merged on the primary key (an
//! upsert, or a delete by key) with the guard its table has on this side.

use protocol::payload::Statement;
use protocol::sql::quote_ident;
use tokio_postgres::Transaction;

use super::conflicts::{self, ConflictCheck, Rule};
use super::held::HeldReferences;
use super::ownership::{self, Ownership};
use super::pending::pending_local_of;
use super::prune;
use super::report::TableCounts;
use super::stage::{self, Stages};
use super::unique::Vacated;
use crate::catalog::TableInfo;
use crate::error::Result;

/// Statements with fewer rows keep PostgreSQL's per-row foreign-key checks: the set-based ones cost a few
/// planned queries per key, which only pays off on many rows.
const SET_BASED_MIN_ROWS: usize = 1000;

/// What stands between an incoming row and the table on this side.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TableGuard<'a> {
    /// Nothing: the row is applied.
    None,
    /// The shop: a row whose key has local changes the office has not acknowledged waits (BRIEF §4.4).
    Defer,
    /// The office: a row the office changed too is a conflict, decided by the rule and recorded.
    Decide(&'a ConflictCheck, Rule),
}

/// How one statement is applied, decided once per statement from the session's options.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Path<'a> {
    /// Into a table that was empty when the session began and that no guard or replacement concerns: copied
    /// straight in, as pg_restore would.
    Straight,
    /// Staged, then merged on the key.
    Merge {
        /// The table's guard.
        guard: TableGuard<'a>,
        /// Whether the keys are remembered for a replacing upload.
        remember: bool,
        /// Whether large upserts may check foreign keys set-based.
        set_based: bool,
        /// Whose rows the sender may write here, if that is checked.
        owned: Option<(&'a Ownership, &'a ownership::Rule)>,
    },
}

/// What an import keeps in temporary tables of its transaction, from one statement to the next.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// The staging tables.
    pub(crate) stages: Stages,
    /// Rows that gave a unique value up for another row (checked when the import ends).
    pub(crate) vacated: Vacated,
    /// Self-references set when the import ends.
    pub(crate) held: HeldReferences,
}

/// Applies `statement` to `table` along `path`, counting into `counts`.
pub(crate) async fn apply(
    tx: &Transaction<'_>,
    scratch: &mut Scratch,
    table: &TableInfo,
    statement: &Statement,
    path: Path<'_>,
    counts: &mut TableCounts,
) -> Result<()> {
    match (statement, path) {
        (Statement::Upsert { rows, .. }, _) if rows.is_empty() => Ok(()),
        (Statement::Upsert { columns, rows, .. }, Path::Straight) => {
            stage::copy_rows(tx, &table.name.quoted(), columns, rows).await?;
            counts.upserted += rows.len() as u64;
            Ok(())
        }
        (Statement::Upsert { columns, update, rows, .. }, Path::Merge { guard, remember, set_based, owned }) => {
            let Scratch { stages, vacated, held } = scratch;
            let stage = stages.get(tx, table, columns).await?;
            stage::copy_rows(tx, &stage, columns, rows).await?;
            if let Some((ownership, rule)) = owned {
                ownership::check(tx, table, &stage, columns, rule, ownership, false).await?;
            }
            if let TableGuard::Decide(check, rule) = guard {
                counts.conflicts += conflicts::decide(tx, table, &stage, columns, check, rule, true).await?;
            }
            if remember {
                prune::remember(tx, table, &stage).await?;
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
            let defer = matches!(guard, TableGuard::Defer);
            let filter = if defer { format!(" WHERE NOT {}", pending_local(table)) } else { String::new() };
            let applies = if defer { format!("NOT {}", pending_local(table)) } else { "true".to_string() };
            held.hold(tx, table, &stage, columns, &applies).await?;
            vacated.vacate(tx, table, &stage, columns, &applies).await?;
            let overriding = if table.identity_always { " OVERRIDING SYSTEM VALUE" } else { "" };
            let sql = format!(
                "INSERT INTO {} ({}){overriding} SELECT {} FROM {stage} s{filter} ON CONFLICT ({}) DO {action}",
                table.name.quoted(),
                cols.join(", "),
                select.join(", "),
                keys.join(", ")
            );
            let set_based =
                set_based && rows.len() >= SET_BASED_MIN_ROWS && stages.set_based_allowed(tx, table, columns).await?;
            if set_based {
                stage::check_foreign_keys(tx, table, &stage).await?;
                tx.batch_execute("SET LOCAL session_replication_role = replica").await?;
            }
            let applied = tx.execute(sql.as_str(), &[]).await?;
            if set_based {
                tx.batch_execute("SET LOCAL session_replication_role = origin").await?;
                counts.set_based += applied;
            }
            vacated.rewritten(tx, table, &stage, columns, &applies).await?;
            if defer {
                counts.deferred += deferred_count(tx, table, &stage).await?;
            }
            counts.upserted += applied;
            Ok(())
        }
        (Statement::Delete { key, rows, .. }, path) => {
            let (guard, owned) = match path {
                Path::Merge { guard, owned, .. } => (guard, owned),
                Path::Straight => (TableGuard::None, None),
            };
            let Scratch { stages, vacated, held } = scratch;
            let stage = stages.get(tx, table, key).await?;
            stage::copy_rows(tx, &stage, key, rows).await?;
            if let Some((ownership, rule)) = owned {
                ownership::check(tx, table, &stage, key, rule, ownership, true).await?;
            }
            if let TableGuard::Decide(check, rule) = guard {
                counts.conflicts += conflicts::decide(tx, table, &stage, key, check, rule, false).await?;
            }
            let defer = matches!(guard, TableGuard::Defer);
            let matches: Vec<String> = key.iter().map(|c| format!("t.{0} = s.{0}", quote_ident(c))).collect();
            let filter = if defer { format!(" AND NOT {}", pending_local(table)) } else { String::new() };
            let sql = format!(
                "DELETE FROM {} t USING {stage} s WHERE {}{filter}",
                table.name.quoted(),
                matches.join(" AND ")
            );
            let deleted = tx.execute(sql.as_str(), &[]).await?;
            let applies = if defer { format!("NOT {}", pending_local(table)) } else { "true".to_string() };
            vacated.rewritten(tx, table, &stage, key, &applies).await?;
            held.rewritten(tx, table, &stage, key, &applies).await?;
            if defer {
                counts.deferred += deferred_count(tx, table, &stage).await?;
            }
            counts.deleted += deleted;
            Ok(())
        }
    }
}

/// [`pending_local_of`] the staged row `s`.
fn pending_local(table: &TableInfo) -> String {
    pending_local_of(table, "s")
}

async fn deferred_count(tx: &Transaction<'_>, table: &TableInfo, stage: &str) -> Result<u64> {
    let row = tx.query_one(&format!("SELECT count(*) FROM {stage} s WHERE {}", pending_local(table)), &[]).await?;
    Ok(row.get::<_, i64>(0) as u64)
}
