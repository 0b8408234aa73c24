//! `status()`: what monitoring and the office need to know about this shop at a glance. Never fails because
//! the database is down: it says so instead.

use dxr::Value;

use crate::Agent;
use crate::error::AgentError;
use crate::methods::OFFICE_ORIGIN;
use crate::rpc::{Params, structure};
use crate::store::{self, keys};

/// Pending changes (not acknowledged by the office) and open upload sessions.
pub async fn gauges(agent: &Agent) -> Result<(i64, i64), AgentError> {
    let client = agent.db().await?;
    let acknowledged = store::get_state(&*client, keys::ACKNOWLEDGED).await?.and_then(|c| c.parse().ok());
    let pending = pgsync::schema::pending_changes(&*client, acknowledged.as_ref(), Some(OFFICE_ORIGIN)).await?;
    let open: i64 =
        client.query_one("SELECT count(*) FROM branchsync.upload_session WHERE finished_at IS NULL", &[]).await?.get(0);
    Ok((pending, open))
}

/// Handles `status()`.
pub async fn call(agent: &Agent, p: Params) -> Result<Value, AgentError> {
    p.expect(0)?;
    let mut members = vec![
        ("version", Value::String(env!("CARGO_PKG_VERSION").into())),
        ("protocol", Value::Integer(protocol::methods::PROTOCOL_VERSION)),
        ("uptime_seconds", Value::Long(agent.started.elapsed().as_secs() as i64)),
        ("last_exchange_unix", Value::Long(agent.metrics.last_exchange())),
    ];
    let last_error = agent.last_error.lock().ok().and_then(|e| e.clone()).unwrap_or_default();
    members.push(("last_error", Value::String(last_error)));
    match details(agent).await {
        Ok(mut more) => {
            members.push(("database_ok", Value::Boolean(true)));
            members.append(&mut more);
        }
        Err(e) => {
            members.push(("database_ok", Value::Boolean(false)));
            members.push(("database_error", Value::String(e.fault_string())));
            for key in ["branch", "policy", "last_office_cursor", "schema_fingerprint"] {
                members.push((key, Value::String(String::new())));
            }
            members.push(("pending_changes", Value::Long(0)));
        }
    }
    Ok(structure(members))
}

async fn details(agent: &Agent) -> Result<Vec<(&'static str, Value)>, AgentError> {
    let client = agent.db().await?;
    let (pending, open) = gauges(agent).await?;
    let policy = store::load_policy(&*client).await?;
    let cursor = pgsync::schema::peer_cursor(&*client, OFFICE_ORIGIN).await?.unwrap_or_default();
    let deferred: i64 = store::get_state(&*client, keys::DEFERRED).await?.and_then(|d| d.parse().ok()).unwrap_or(0);
    let (branch, policy_value, fingerprint) = match &policy {
        Some(p) => {
            let catalog = pgsync::Catalog::load(&*client, &p.all()).await?;
            let list = |l: &[protocol::payload::TableName]| {
                Value::Array(l.iter().map(|t| Value::String(t.to_string())).collect())
            };
            let value = structure(vec![
                ("from_source", list(&p.from_source)),
                ("from_target", list(&p.from_target)),
                ("both", list(&p.both)),
                ("initial", list(&p.initial)),
                ("id_range", Value::Long(p.id_range)),
            ]);
            (p.branch.clone(), value, catalog.fingerprint())
        }
        None => (String::new(), Value::String(String::new()), String::new()),
    };
    Ok(vec![
        ("branch", Value::String(branch)),
        ("policy", policy_value),
        ("schema_fingerprint", Value::String(fingerprint)),
        ("last_office_cursor", Value::String(cursor)),
        ("pending_changes", Value::Long(pending)),
        ("deferred_rows", Value::Long(deferred)),
        ("open_sessions", Value::Long(open)),
    ])
}
