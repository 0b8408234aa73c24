//! `verify()` (extension): per-table row counts and checksums of every synced table, computed by the shop
//! database, for the office's `verify` to compare with its own.

use std::collections::BTreeMap;

use protocol::wire::{TableSum, Verify};

use crate::agent::Agent;
use crate::error::AgentError;
use crate::store;

/// Handles `verify()`.
pub async fn call(agent: &Agent, _: Verify) -> Result<BTreeMap<String, TableSum>, AgentError> {
    let client = agent.db().await?;
    let policy = store::assignment(&*client).await?;
    let catalog = pgsync::Catalog::load(&*client, &policy.policy.all()).await?;
    let sums = pgsync::checksums(&*client, catalog.tables()).await?;
    Ok(sums.into_iter().map(|c| (c.table.to_string(), TableSum { rows: c.rows, checksum: c.digest })).collect())
}
