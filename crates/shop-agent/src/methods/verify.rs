//! `verify()` (extension): per-table row counts and checksums of every synced table, computed by the shop
//! database, with the changes of each still on their way to the office, for the office's `verify` to compare
//! with its own.

use std::collections::BTreeMap;

use protocol::wire::{TableSum, Verify};

use crate::agent::Agent;
use crate::error::AgentError;
use crate::store::{self, keys};

/// Handles `verify()`.
pub async fn call(agent: &Agent, Verify { from_id }: Verify) -> Result<BTreeMap<String, TableSum>, AgentError> {
    let client = agent.db().await?;
    let policy = store::assignment(&*client).await?;
    let catalog = pgsync::Catalog::load(&*client, &policy.policy.all()).await?;
    let mut sums = Vec::with_capacity(catalog.tables().len());
    for table in catalog.tables() {
        // The same rows the office sums: a shop-written table from `from_id` of its id-range column on.
        let column = match from_id {
            Some(_) if policy.policy.from_target.contains(&table.name) => {
                catalog.range_column(table, &policy.policy.from_target)
            }
            _ => None,
        };
        let range = column.as_deref().zip(from_id).map(|(c, from)| (c, from, i64::MAX));
        sums.push(pgsync::checksum_where(&*client, table, range).await?);
    }
    let acknowledged = store::get_state(&*client, keys::ACKNOWLEDGED).await?.and_then(|c| c.parse().ok());
    let pending = pgsync::schema::pending_by_table(&*client, acknowledged.as_ref(), Some(store::OFFICE_ORIGIN)).await?;
    Ok(sums
        .into_iter()
        .map(|c| {
            let waiting = pending.get(&c.table.to_string()).copied().unwrap_or(0);
            (c.table.to_string(), TableSum { rows: c.rows, checksum: c.digest, pending: Some(waiting) })
        })
        .collect())
}
