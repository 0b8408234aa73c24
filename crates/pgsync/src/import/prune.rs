//! Replacing uploads (`-- replace:`, the office's complete synchronisation): the keys each statement carried are
//! remembered in the transaction, and at the end the rows of the replaced tables that no chunk carried go.

use std::collections::BTreeSet;

use protocol::payload::TableName;
use protocol::sql::{name_hash, quote_ident};
use tokio_postgres::Transaction;

use super::pending::pending_local_of;
use super::report::ApplyReport;
use crate::catalog::{Catalog, TableInfo};
use crate::error::{Result, rejected};

/// The temporary table of keys a replacing upload carried for `table`.
async fn seen_table(tx: &Transaction<'_>, table: &TableInfo) -> Result<String> {
    let name = format!("branchsync_seen_{:016x}", name_hash(&table.name.to_string()));
    tx.batch_execute(&format!("CREATE TEMP TABLE IF NOT EXISTS {name} (pk text[]) ON COMMIT DROP")).await?;
    Ok(format!("pg_temp.{name}"))
}

/// Remembers the keys of the rows staged in `stage` as carried by the replacing upload.
pub(crate) async fn remember(tx: &Transaction<'_>, table: &TableInfo, stage: &str) -> Result<()> {
    let seen = seen_table(tx, table).await?;
    let key: Vec<String> = table.primary_key.iter().map(|c| format!("s.{}::text", quote_ident(c))).collect();
    tx.execute(&format!("INSERT INTO {seen} SELECT ARRAY[{}] FROM {stage} s", key.join(", ")), &[]).await?;
    Ok(())
}

/// After every chunk of a replacing upload: deletes the rows of `tables` whose keys the upload did not carry,
/// children first. In `deferred` tables a row with local changes the peer has not acknowledged stays (BRIEF
/// §4.4: the office sees the local version at its next pull, as for any incoming change) and counts as deferred.
pub(crate) async fn prune_unseen(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    tables: &BTreeSet<TableName>,
    deferred: &BTreeSet<TableName>,
) -> Result<ApplyReport> {
    let mut report = ApplyReport::default();
    for table in catalog.tables().iter().rev().filter(|t| tables.contains(&t.name)) {
        let seen = seen_table(tx, table).await?;
        let key: Vec<String> = table.primary_key.iter().map(|c| format!("t.{}::text", quote_ident(c))).collect();
        let unseen = format!("NOT EXISTS (SELECT 1 FROM {seen} k WHERE k.pk = ARRAY[{}])", key.join(", "));
        let defer = deferred.contains(&table.name);
        let kept = if defer { format!(" AND NOT {}", pending_local_of(table, "t")) } else { String::new() };
        let sql = format!("DELETE FROM {} t WHERE {unseen}{kept}", table.name.quoted());
        let pruned = tx.execute(sql.as_str(), &[]).await.map_err(|e| rejected(e.into(), 0, 0, Some(&table.name)))?;
        let counts = report.counts(&table.name);
        counts.pruned += pruned;
        if defer {
            let sql = format!("SELECT count(*) FROM {} t WHERE {unseen}", table.name.quoted());
            counts.deferred += tx.query_one(sql.as_str(), &[]).await?.get::<_, i64>(0) as u64;
        }
    }
    Ok(report)
}
