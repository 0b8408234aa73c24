//! `configure(policy)`: the office hands the shop its policy and id range. The shop keeps it in its own
//! database, captures changes on the tables it sends, stops capturing on tables it no longer sends, and from
//! then on accepts uploads only for the tables the office may write. Returns the schema fingerprint of the
//! synced tables so the office can compare it with its own.

use std::collections::BTreeSet;

use protocol::payload::TableName;
use protocol::wire::Configure;
use protocol::wire::configure::Fingerprint;

use crate::agent::Agent;
use crate::error::AgentError;
use crate::store;

/// Handles `configure(policy)`; the request was read and its lists checked by `protocol::wire::configure`.
pub async fn call(agent: &Agent, Configure(new): Configure) -> Result<Fingerprint, AgentError> {
    let mut client = agent.db().await?;
    // Missing tables, tables without primary key and foreign-key cycles are refused before anything changes.
    let catalog = pgsync::Catalog::load(&*client, &new.policy.all()).await?;
    pgsync::catalog::check_privileges(&*client, &new.policy.to_shop_initially(), &new.policy.to_office()).await?;
    let old = store::assignment(&*client).await.ok();
    let tx = client.transaction().await?;
    // Tables the shop starts to send that it kept for itself before: their rows so far go to the office too.
    // A table it received before holds the office's rows, which must not come back as the shop's.
    let mut newly_sent = BTreeSet::new();
    if let Some(old) = &old {
        let known: BTreeSet<TableName> =
            old.policy.to_office().into_iter().chain(old.policy.to_shop_initially()).collect();
        newly_sent = new.policy.to_office().into_iter().filter(|t| !known.contains(t)).collect();
    }
    if let Some(old) = old {
        let still_sent: BTreeSet<TableName> = new.policy.to_office().into_iter().collect();
        let dropped: Vec<TableName> = old.policy.to_office().into_iter().filter(|t| !still_sent.contains(t)).collect();
        if !dropped.is_empty() {
            for table in pgsync::Catalog::load(&tx, &dropped).await.map(|c| c.tables().to_vec()).unwrap_or_default() {
                pgsync::schema::remove_capture(&tx, &table).await?;
            }
        }
    }
    for name in new.policy.to_office() {
        if let Some(table) = catalog.get(&name) {
            pgsync::schema::install_capture(&tx, table).await?;
            if newly_sent.contains(&name) {
                let rows = pgsync::schema::capture_existing(&tx, table).await?;
                tracing::info!(table = %name, rows, "table newly sent: its rows so far are sent with the next sync");
            }
        }
    }
    store::save_policy(&tx, &new).await?;
    tx.commit().await?;
    tracing::info!(branch = %new.branch, tables = new.policy.all().len(), "policy configured");
    Ok(Fingerprint(catalog.fingerprint()))
}
