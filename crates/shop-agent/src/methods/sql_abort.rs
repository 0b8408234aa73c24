//! `sql_abort(sid)` (extension, protocol v2): ends an unfinished upload session at once, applying nothing of it.
//! A streamed session's transaction rolls back. Aborting a finished or unknown session changes nothing (the
//! office calls it after any failed push, whatever the state of the session).

use protocol::wire::{Nothing, SqlAbort};

use crate::agent::Agent;
use crate::error::AgentError;
use crate::sessions;

/// Handles `sql_abort(sid)`.
pub async fn call(agent: &Agent, SqlAbort { sid }: SqlAbort) -> Result<Nothing, AgentError> {
    tracing::Span::current().record("sid", sid);
    if let Some(stream) = agent.streams.get(sid) {
        // Forgotten, its task rolls back and drops the session row once this call lets go of it.
        agent.streams.remove(sid);
        drop(stream);
    }
    let client = agent.db().await?;
    if sessions::end(&*client, sid).await? {
        tracing::info!(sid, "upload session aborted");
    }
    Ok(Nothing)
}
