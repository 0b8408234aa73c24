//! `configure(policy)`: the office hands the shop its policy and id range. The shop keeps it in its own
//! database, captures changes on the tables it sends, stops capturing on tables it no longer sends, and from
//! then on accepts uploads only for the tables the office may write. Returns the schema fingerprint of the
//! synced tables so the office can compare it with its own.

use std::collections::BTreeSet;

use dxr::Value;
use protocol::payload::TableName;

use crate::Agent;
use crate::error::AgentError;
use crate::methods::policy;
use crate::rpc::Params;
use crate::store::{self, Policy};

fn tables(policy: &std::collections::BTreeMap<String, Value>, member: &str) -> Result<Vec<TableName>, AgentError> {
    let bad = || AgentError::BadParams(format!("configure: policy member {member} must be an array of table names"));
    match policy.get(member) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => TableName::parse(s)
                    .ok_or_else(|| AgentError::BadParams(format!("configure: {member}: {s:?} is not a table name"))),
                _ => Err(bad()),
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// Reads and checks the policy struct.
pub fn parse_policy(p: &Params) -> Result<Policy, AgentError> {
    let s = p.structure(0, "policy")?;
    for key in s.keys() {
        if !["branch", "from_source", "from_target", "both", "initial", "id_range"].contains(&key.as_str()) {
            return Err(AgentError::BadParams(format!(
                "configure: unknown policy member {:?}",
                key.chars().take(40).collect::<String>()
            )));
        }
    }
    let branch = match s.get("branch") {
        Some(Value::String(b)) if !b.trim().is_empty() && b.len() <= 200 => b.clone(),
        _ => return Err(AgentError::BadParams("configure: policy member branch must be a non-empty string".into())),
    };
    let id_range = s.get("id_range").and_then(protocol::values::int).filter(|r| *r > 0).ok_or_else(|| {
        AgentError::BadParams(
            "configure: policy member id_range must be a positive integer (i4, i8 or decimal string)".into(),
        )
    })?;
    let policy = Policy {
        branch,
        from_source: tables(s, "from_source")?,
        from_target: tables(s, "from_target")?,
        both: tables(s, "both")?,
        initial: tables(s, "initial")?,
        id_range,
    };
    let mut seen = BTreeSet::new();
    for t in policy.all() {
        if !seen.insert(t.clone()) {
            return Err(AgentError::BadParams(format!("configure: table {t} is in more than one list")));
        }
    }
    Ok(policy)
}

/// Handles `configure(policy)`.
pub async fn call(agent: &Agent, p: Params) -> Result<Value, AgentError> {
    p.expect(1)?;
    let new = parse_policy(&p)?;
    let mut client = agent.db().await?;
    // Missing tables, tables without primary key and foreign-key cycles are refused before anything changes.
    let catalog = pgsync::Catalog::load(&*client, &new.all()).await?;
    let old = policy(&*client).await.ok();
    let tx = client.transaction().await?;
    if let Some(old) = old {
        let still_sent: BTreeSet<TableName> = new.sends().into_iter().collect();
        let dropped: Vec<TableName> = old.sends().into_iter().filter(|t| !still_sent.contains(t)).collect();
        if !dropped.is_empty() {
            for table in pgsync::Catalog::load(&tx, &dropped).await.map(|c| c.tables().to_vec()).unwrap_or_default() {
                pgsync::schema::remove_capture(&tx, &table).await?;
            }
        }
    }
    for name in new.sends() {
        if let Some(table) = catalog.get(&name) {
            pgsync::schema::install_capture(&tx, table).await?;
        }
    }
    store::save_policy(&tx, &new).await?;
    tx.commit().await?;
    tracing::info!(branch = %new.branch, tables = new.all().len(), "policy configured");
    Ok(Value::String(catalog.fingerprint()))
}
