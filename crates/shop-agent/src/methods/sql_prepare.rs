//! `sql_prepare()`: opens an upload session and returns its sid (> 0, small enough for every client's `int`).
//! When every table the shop receives is empty (the initial load after `clean`), the session streams: its
//! chunks are applied as they arrive in one transaction held open until `sql_finish` (see [`crate::stream`]).

use protocol::wire::SqlPrepare;
use protocol::wire::sql_prepare::Sid;

use crate::agent::Agent;
use crate::error::AgentError;
use crate::store;
use crate::{sessions, stream};

/// Handles `sql_prepare()`.
pub async fn call(agent: &Agent, _: SqlPrepare) -> Result<Sid, AgentError> {
    let client = agent.db().await?;
    let policy = store::assignment(&*client).await?;
    let open = sessions::open_count(&*client, true).await?;
    let max = agent.config.limits.concurrent_sessions;
    if open as u64 >= max {
        return Err(AgentError::Limit(format!(
            "{open} upload sessions are open already (limit {max}), finish them or wait a day for them to expire"
        )));
    }
    let streamed = stream::should_stream(&client, &policy).await?;
    let sid = sessions::open(&*client, streamed).await?;
    tracing::Span::current().record("sid", sid);
    if streamed {
        let catalog = pgsync::Catalog::load(&*client, &policy.policy.all()).await?;
        let (url, limits) = (&agent.config.database_url, &agent.config.limits);
        stream::open(&agent.streams, &agent.tasks, url, limits, sid, policy, catalog).await?;
        tracing::info!("upload into empty tables: streamed");
    }
    Ok(Sid(sid))
}
