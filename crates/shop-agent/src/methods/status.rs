//! `status()`: what monitoring and the office need to know about this shop at a glance. Never fails because
//! the database is down: it says so instead.

use protocol::wire::status::ShopState;
use protocol::wire::{AgentStatus, Status};

use crate::agent::Agent;
use crate::error::AgentError;
use crate::sessions;
use crate::store::{self, keys};

/// Pending changes (not acknowledged by the office) and open upload sessions (abandoned ones expired first).
pub async fn gauges(agent: &Agent) -> Result<(i64, i64), AgentError> {
    let client = agent.db().await?;
    let acknowledged = store::get_state(&*client, keys::ACKNOWLEDGED).await?.and_then(|c| c.parse().ok());
    let pending = pgsync::schema::pending_changes(&*client, acknowledged.as_ref(), Some(store::OFFICE_ORIGIN)).await?;
    let idle = std::time::Duration::from_secs(agent.config.limits.upload_idle_seconds);
    sessions::expire(&*client, idle, &agent.streams.live()).await?;
    let open = sessions::open_count(&*client).await?;
    Ok((pending, open))
}

/// Handles `status()`.
pub async fn call(agent: &Agent, _: Status) -> Result<AgentStatus, AgentError> {
    let (mut last_error, mut last_error_unix) =
        agent.last_error.lock().ok().and_then(|e| e.clone()).unwrap_or_default();
    let database = match shop_state(agent).await {
        Ok((state, problem)) => {
            // A damaged policy record is not a database that is down: say what is wrong instead.
            if let Some(problem) = problem {
                last_error = problem;
                last_error_unix = crate::metrics::unix_now();
            }
            Ok(state)
        }
        Err(e) => Err(e.fault_string()),
    };
    Ok(AgentStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: protocol::methods::PROTOCOL_VERSION.into(),
        uptime_seconds: agent.started.elapsed().as_secs() as i64,
        last_exchange_unix: agent.metrics.last_exchange(),
        last_error,
        last_error_unix,
        database,
    })
}

/// The shop database's side of the status, and what is wrong with the stored policy if it does not read.
async fn shop_state(agent: &Agent) -> Result<(ShopState, Option<String>), AgentError> {
    let client = agent.db().await?;
    let (pending_changes, open_sessions) = gauges(agent).await?;
    let (assignment, problem) = match store::load_policy(&*client).await {
        Ok(assignment) => (assignment, None),
        Err(e @ AgentError::Internal(_)) => (None, Some(format!("status: {}", e.fault_string()))),
        Err(e) => return Err(e),
    };
    let last_office_cursor = pgsync::peer_cursor::read(&*client, store::OFFICE_ORIGIN).await?.unwrap_or_default();
    let deferred_rows = store::get_state(&*client, keys::DEFERRED).await?.and_then(|d| d.parse().ok()).unwrap_or(0);
    let sessions = sessions::list(&*client).await?;
    let schema_fingerprint = match &assignment {
        Some(a) => pgsync::Catalog::load(&*client, &a.policy.all()).await?.fingerprint(),
        None => String::new(),
    };
    let database_identity = match pgsync::schema::identity(&*client).await {
        Ok(identity) => identity.to_string(),
        Err(pgsync::Error::NotInstalled) => String::new(),
        Err(e) => return Err(e.into()),
    };
    let state = ShopState {
        assignment,
        database_identity,
        schema_fingerprint,
        last_office_cursor,
        pending_changes,
        deferred_rows,
        open_sessions,
        sessions,
    };
    Ok((state, problem))
}
