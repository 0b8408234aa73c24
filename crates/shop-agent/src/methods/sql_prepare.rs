//! `sql_prepare([token])`: opens an upload session and returns its sid (> 0, small enough for every client's
//! `int`); with a token a retry after a lost answer gets the same session back. Abandoned sessions are expired
//! first, so that only live ones count against `limits.concurrent_sessions`.
//! When every table the shop receives is empty (the initial load after `clean`), the session streams: its
//! chunks are applied as they arrive in one transaction held open until `sql_finish` (see [`crate::stream`]).

use std::time::Duration;

use protocol::wire::SqlPrepare;
use protocol::wire::sql_prepare::Sid;

use crate::agent::Agent;
use crate::error::AgentError;
use crate::store;
use crate::{sessions, stream};

/// Handles `sql_prepare()`.
pub async fn call(agent: &Agent, SqlPrepare { token }: SqlPrepare) -> Result<Sid, AgentError> {
    let client = agent.db().await?;
    let policy = store::assignment(&*client).await?;
    let idle = Duration::from_secs(agent.config.limits.upload_idle_seconds);
    sessions::expire(&*client, idle, &agent.streams.live()).await?;
    if let Some(token) = &token
        && let Some((sid, _)) = sessions::by_token(&*client, token).await?
    {
        tracing::info!(sid, "sql_prepare retried, the same session");
        return Ok(Sid(sid));
    }
    let open = sessions::open_count(&*client).await?;
    let max = agent.config.limits.concurrent_sessions;
    if open as u64 >= max {
        return Err(AgentError::Limit(format!(
            "{open} upload sessions are open already (limit {max}): finish or sql_abort them, or wait {} s for an idle one to expire",
            idle.as_secs()
        )));
    }
    let streamed = stream::should_stream(&client, &policy).await?;
    let sid = sessions::open(&*client, streamed, token.as_deref()).await?;
    tracing::Span::current().record("sid", sid);
    if streamed {
        let catalog = pgsync::Catalog::load(&*client, &policy.policy.all()).await?;
        let (url, limits) = (&agent.config.database_url, &agent.config.limits);
        stream::open(&agent.streams, &agent.tasks, url, limits, sid, policy, catalog).await?;
        tracing::info!("upload into empty tables: streamed");
    }
    Ok(Sid(sid))
}
