//! `sql_finish(sid)`: applies every staged chunk of the session, in order, in one transaction, together with
//! the office cursor the payload carries and the session's own "finished" mark. Called again for the same sid
//! it returns the stored result and applies nothing twice.

use dxr::Value;
use protocol::payload::{ReadLimits, read_payload};

use crate::Agent;
use crate::error::AgentError;
use crate::methods::policy;
use crate::rpc::{Params, structure};
use crate::stream;

fn result_value(stored: &str) -> Value {
    let mut parts = stored.split(',').map(|n| n.parse::<i64>().unwrap_or(0));
    let mut next = || Value::Long(parts.next().unwrap_or(0));
    structure(vec![("upserted", next()), ("deleted", next()), ("deferred", next()), ("chunks", next())])
}

/// Handles `sql_finish(sid)`.
pub async fn call(agent: &Agent, p: Params) -> Result<Value, AgentError> {
    p.expect(1)?;
    let sid = p.int(0, "sid")?;
    tracing::Span::current().record("sid", sid);
    if let Some(stream) = agent.streams.get(sid) {
        let stored = stream::finish(agent, &stream).await?;
        agent.metrics.exchanged();
        return Ok(result_value(&stored));
    }
    let mut client = agent.db().await?;
    let policy = policy(&*client).await?;
    let catalog = pgsync::Catalog::load(&*client, &policy.all()).await?;
    let limits = ReadLimits {
        max_decompressed_bytes: agent.config.limits.chunk_decompressed_bytes,
        allowed_tables: policy.receives(),
    };
    let tx = client.transaction().await?;
    // The row lock serialises concurrent finishes of one session: the second waits, then sees it finished.
    let row = tx
        .query_opt("SELECT chunks, result, streamed FROM branchsync.upload_session WHERE sid = $1 FOR UPDATE", &[&sid])
        .await?;
    let Some(row) = row else { return Err(AgentError::UnknownSession(sid)) };
    let (chunks, result, streamed): (i32, Option<String>, bool) = (row.get(0), row.get(1), row.get(2));
    if let Some(result) = result {
        return Ok(result_value(&result));
    }
    if streamed {
        return Err(AgentError::SessionLost(sid));
    }
    let mut applier = stream::Applier::begin(&tx, &catalog, &policy).await?;
    // One chunk in memory at a time: memory does not grow with the size of the upload.
    for seq in 1..=chunks {
        let data: Vec<u8> = tx
            .query_one("SELECT data FROM branchsync.upload_chunk WHERE sid = $1 AND seq = $2", &[&sid, &seq])
            .await?
            .get(0);
        let payload = read_payload(&data, &limits)?;
        applier.chunk(&tx, &catalog, seq as usize, &payload).await?;
    }
    let stored = applier.finish(&tx, &catalog, sid, chunks as usize).await?;
    tx.commit().await?;
    agent.metrics.exchanged();
    Ok(result_value(&stored))
}
