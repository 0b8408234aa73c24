//! `clean()`: erases the data of the shop's synced tables and all sync state, and reinstalls the sync schema,
//! in one transaction. Shop-local tables are untouched. The policy goes too: `configure` comes next. A sync
//! schema that holds anything branchsync did not create is refused (fault 503) and nothing is erased.

use protocol::wire::{Clean, Nothing};

use crate::agent::Agent;
use crate::error::AgentError;
use crate::store;

/// Handles `clean()`.
pub async fn call(agent: &Agent, _: Clean) -> Result<Nothing, AgentError> {
    // A streamed upload holds locks on the tables erased below: roll it back first.
    agent.streams.abandon_all();
    let mut client = agent.db().await?;
    // Even a stored policy that no longer reads whole names the tables to erase: `clean` is how it is repaired.
    let synced = store::stored_tables(&*client).await?;
    let tx = client.transaction().await?;
    // The schema is dropped whole below: refuse while it holds anything that is not ours.
    let foreign = pgsync::schema::foreign_objects(&tx, crate::migrations::TABLES).await?;
    if !foreign.is_empty() {
        return Err(pgsync::Error::SchemaOccupied(foreign).into());
    }
    // Dropping the schema first removes the capture triggers, so the erase below is not captured.
    pgsync::schema::reinstall(&tx).await?;
    if !synced.is_empty() {
        let catalog = pgsync::Catalog::load(&tx, &synced).await?;
        for table in catalog.tables().iter().rev() {
            tx.batch_execute(&format!("DELETE FROM {}", table.name.quoted())).await?;
        }
    }
    crate::migrations::install_shop_tables(&tx).await?;
    tx.commit().await?;
    agent.diffs.lock().await.clear();
    agent.schema_reinstalled().await;
    tracing::info!("shop cleaned");
    Ok(Nothing)
}
