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
    let id_start = store::get_state(&tx, store::ID_START).await?.and_then(|v| v.parse::<i64>().ok());
    for name in new.policy.to_office() {
        if let Some(table) = catalog.get(&name) {
            pgsync::schema::install_capture(&tx, table).await?;
            if newly_sent.contains(&name) {
                if let Some(start) = id_start {
                    outside_range(&tx, table, start, new.id_range).await?;
                }
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

/// Refuses a table the shop starts to send while it holds rows whose own id column lies outside the branch's
/// range: the office would refuse them as another branch's, and the branch would be stuck. Renumbering them
/// while the table is still the shop's alone sends nothing.
async fn outside_range(
    tx: &tokio_postgres::Transaction<'_>,
    table: &pgsync::TableInfo,
    start: i64,
    range: i64,
) -> Result<(), AgentError> {
    let end = start.saturating_add(range - 1);
    for (column, _) in &table.sequences {
        let c = protocol::sql::quote_ident(column);
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {c}::bigint < $1::bigint OR {c}::bigint > $2::bigint",
            table.name.quoted()
        );
        let outside: i64 = tx.query_one(sql.as_str(), &[&start, &end]).await?.get(0);
        if outside > 0 {
            return Err(AgentError::IdRange(format!(
                "table {} holds {outside} rows whose {column} lies outside this branch's id range {start}..{end}, which the office would refuse: renumber them into the range (for example UPDATE {} SET {c} = {c} + {start} WHERE {c} < {start}) and configure again; nothing was changed",
                table.name,
                table.name.quoted()
            )));
        }
    }
    Ok(())
}
