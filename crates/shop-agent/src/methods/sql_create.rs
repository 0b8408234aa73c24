//! `sql_create(sid, data)`: receives one gzip payload chunk, validates it at once (grammar, tables the office
//! may write, schema), and stages it durably in the shop database, so an agent restart before `sql_finish`
//! loses nothing. Nothing is applied yet. A refused chunk ends its session at once (nothing of it is applied;
//! the office starts the upload again). A streamed session's chunk (an upload into empty tables) is checked
//! the same way and queued for its apply task instead (see [`crate::stream`]).

use protocol::payload::{ReadLimits, read_payload};
use protocol::wire::{Nothing, SqlCreate};

use crate::agent::Agent;
use crate::error::AgentError;
use crate::store;
use crate::{sessions, stream};

/// Handles `sql_create(sid, data)`.
pub async fn call(agent: &Agent, SqlCreate { sid, data }: SqlCreate) -> Result<Nothing, AgentError> {
    tracing::Span::current().record("sid", sid);
    if let Some(stream) = agent.streams.get(sid) {
        stream::chunk(&agent.streams, &agent.config.limits, &stream, &data).await?;
        return Ok(Nothing);
    }
    let mut client = agent.db().await?;
    let staged = stage(agent, &mut client, sid, &data).await;
    if let Err(e) = &staged
        && sessions::ends_session(e)
        && sessions::end(&*client, sid).await?
    {
        tracing::info!(sid, error = %e, "upload session ended by its refused chunk");
    }
    staged.map(|()| Nothing)
}

/// Reads, checks and stages one chunk in its own transaction.
async fn stage(agent: &Agent, client: &mut tokio_postgres::Client, sid: i64, data: &[u8]) -> Result<(), AgentError> {
    let policy = store::assignment(&*client).await?;
    let limits = ReadLimits {
        max_decompressed_bytes: agent.config.limits.chunk_decompressed_bytes,
        allowed_tables: policy.policy.shop_receives(),
    };
    let payload = read_payload(data, &limits)?;
    let catalog = pgsync::Catalog::load(&*client, &policy.policy.all()).await?;
    let tx = client.transaction().await?;
    let session = sessions::lock(&tx, sid).await?;
    if session.finished.is_some() {
        return Err(AgentError::SessionFinished(sid));
    }
    if session.streamed {
        return Err(AgentError::SessionLost(sid));
    }
    pgsync::validate(&catalog, &payload, session.chunks as usize + 1)?;
    let max = agent.config.limits.session_staged_bytes;
    if session.staged_bytes as u64 + data.len() as u64 > max {
        return Err(AgentError::Limit(format!(
            "session {sid} would stage more than {max} bytes, split the upload into several sessions"
        )));
    }
    sessions::stage(&tx, &session, data).await?;
    tx.commit().await?;
    Ok(())
}
