//! `verify()` (extension): per-table row counts and checksums of every synced table, computed by the shop
//! database, for the office's `verify` to compare with its own.

use dxr::Value;

use crate::Agent;
use crate::error::AgentError;
use crate::methods::policy;
use crate::rpc::{Params, structure};

/// Handles `verify()`.
pub async fn call(agent: &Agent, p: Params) -> Result<Value, AgentError> {
    p.expect(0)?;
    let client = agent.db().await?;
    let policy = policy(&*client).await?;
    let catalog = pgsync::Catalog::load(&*client, &policy.all()).await?;
    let sums = pgsync::checksums(&*client, catalog.tables()).await?;
    let tables = sums
        .into_iter()
        .map(|c| {
            (c.table.to_string(), structure(vec![("rows", Value::Long(c.rows)), ("checksum", Value::String(c.digest))]))
        })
        .collect();
    Ok(Value::Struct(tables))
}
