//! `sql_finish(sid)`: applies every staged chunk of the session, in order, in one transaction, together with
//! the office cursor the payload carries and the session's own "finished" mark. Called again for the same sid
//! it returns the stored result and applies nothing twice. A failed apply rolls back and ends the session.

use protocol::payload::{ReadLimits, read_payload};
use protocol::wire::{Finished, SqlFinish};

use crate::agent::Agent;
use crate::error::AgentError;
use crate::store;
use crate::{sessions, stream, upload};

/// Handles `sql_finish(sid)`.
pub async fn call(agent: &Agent, SqlFinish { sid }: SqlFinish) -> Result<Finished, AgentError> {
    tracing::Span::current().record("sid", sid);
    if let Some(stream) = agent.streams.get(sid) {
        let finished = stream::finish(&agent.streams, &stream).await?;
        agent.metrics.exchanged();
        return Ok(finished);
    }
    let mut client = agent.db().await?;
    let applied = apply(agent, &mut client, sid).await;
    if let Err(e) = &applied
        && sessions::ends_session(e)
        && sessions::end(&*client, sid).await?
    {
        tracing::info!(sid, error = %e, "upload session ended by its failed apply, nothing of it applied");
    }
    let finished = applied?;
    agent.metrics.exchanged();
    Ok(finished)
}

/// Applies the staged chunks, or returns the stored result of a finished session.
async fn apply(agent: &Agent, client: &mut tokio_postgres::Client, sid: i64) -> Result<Finished, AgentError> {
    let policy = store::assignment(&*client).await?;
    let catalog = pgsync::Catalog::load(&*client, &policy.policy.all()).await?;
    let limits = ReadLimits {
        max_decompressed_bytes: agent.config.limits.chunk_decompressed_bytes,
        allowed_tables: policy.policy.shop_receives(),
    };
    let tx = client.transaction().await?;
    // The row lock serialises concurrent finishes of one session: the second waits, then sees it finished.
    let session = sessions::lock(&tx, sid).await?;
    if let Some(finished) = session.finished {
        return Ok(finished);
    }
    if session.streamed {
        return Err(AgentError::SessionLost(sid));
    }
    let mut import = upload::begin(&tx, &catalog, &policy).await?;
    // One chunk in memory at a time: memory does not grow with the size of the upload.
    for seq in 1..=session.chunks {
        let data = sessions::staged_chunk(&tx, sid, seq).await?;
        let payload = read_payload(&data, &limits)?;
        import.chunk(&tx, &payload).await?;
    }
    let finished = upload::finish(&tx, import, sid).await?;
    tx.commit().await?;
    Ok(finished)
}
