//! `sql_create(sid, data)`: receives one gzip payload chunk, validates it at once (grammar, tables the office
//! may write, schema), and stages it durably in the shop database, so an agent restart before `sql_finish`
//! loses nothing. Nothing is applied yet. A streamed session's chunk (an upload into empty tables) is checked
//! the same way and queued for its apply task instead (see [`crate::stream`]).

use dxr::Value;
use protocol::payload::{ReadLimits, read_payload};

use crate::Agent;
use crate::error::AgentError;
use crate::methods::policy;
use crate::rpc::Params;
use crate::stream;

/// Handles `sql_create(sid, data)`.
pub async fn call(agent: &Agent, p: Params) -> Result<Value, AgentError> {
    p.expect(2)?;
    let sid = p.int(0, "sid")?;
    tracing::Span::current().record("sid", sid);
    let data = p.base64(1, "data")?;
    if let Some(stream) = agent.streams.get(sid) {
        stream::chunk(agent, &stream, data).await?;
        return Ok(Value::Nil);
    }
    let mut client = agent.db().await?;
    let policy = policy(&*client).await?;
    let limits = ReadLimits {
        max_decompressed_bytes: agent.config.limits.chunk_decompressed_bytes,
        allowed_tables: policy.receives(),
    };
    let payload = read_payload(data, &limits)?;
    let catalog = pgsync::Catalog::load(&*client, &policy.all()).await?;
    let tx = client.transaction().await?;
    let row = tx.query_opt("SELECT staged_bytes, chunks, finished_at IS NOT NULL, streamed FROM branchsync.upload_session WHERE sid = $1 FOR UPDATE", &[&sid]).await?;
    let Some(row) = row else { return Err(AgentError::UnknownSession(sid)) };
    let (staged, chunks, finished, streamed): (i64, i32, bool, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
    if finished {
        return Err(AgentError::SessionFinished(sid));
    }
    if streamed {
        return Err(AgentError::SessionLost(sid));
    }
    pgsync::validate(&catalog, &payload, chunks as usize + 1)?;
    let max = agent.config.limits.session_staged_bytes;
    if staged as u64 + data.len() as u64 > max {
        return Err(AgentError::Limit(format!(
            "session {sid} would stage more than {max} bytes, split the upload into several sessions"
        )));
    }
    tx.execute(
        "INSERT INTO branchsync.upload_chunk (sid, seq, data) VALUES ($1, $2, $3)",
        &[&sid, &(chunks + 1), &data],
    )
    .await?;
    tx.execute(
        "UPDATE branchsync.upload_session SET staged_bytes = staged_bytes + $2, chunks = chunks + 1 WHERE sid = $1",
        &[&sid, &(data.len() as i64)],
    )
    .await?;
    tx.commit().await?;
    Ok(Value::Nil)
}
