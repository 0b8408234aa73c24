//! `sql_prepare()`: opens an upload session and returns its sid (> 0, small enough for every client's `int`).
//! When every table the shop receives is empty (the initial load after `clean`), the session streams: its
//! chunks are applied as they arrive in one transaction held open until `sql_finish` (see [`crate::stream`]).

use dxr::Value;

use crate::Agent;
use crate::error::AgentError;
use crate::methods::policy;
use crate::rpc::Params;
use crate::stream;

/// Unfinished sessions older than this are abandoned by a controller that died; they are dropped.
const ABANDONED_AFTER: &str = "1 day";

/// Handles `sql_prepare()`.
pub async fn call(agent: &Agent, p: Params) -> Result<Value, AgentError> {
    p.expect(0)?;
    let client = agent.db().await?;
    let policy = policy(&*client).await?;
    client
        .execute(&format!("DELETE FROM branchsync.upload_session WHERE finished_at IS NULL AND opened_at < now() - interval '{ABANDONED_AFTER}'"), &[])
        .await?;
    let open: i64 =
        client.query_one("SELECT count(*) FROM branchsync.upload_session WHERE finished_at IS NULL", &[]).await?.get(0);
    let max = agent.config.limits.concurrent_sessions;
    if open as u64 >= max {
        return Err(AgentError::Limit(format!(
            "{open} upload sessions are open already (limit {max}), finish them or wait a day for them to expire"
        )));
    }
    // Random sids, so that a sid from before a `clean` is very unlikely to name a new session.
    let streamed = stream::should_stream(&client, &policy).await?;
    let row = client
        .query_one(
            "INSERT INTO branchsync.upload_session (sid, streamed) \
             SELECT s, $1 FROM (SELECT (floor(random() * 2147483646) + 1)::bigint AS s FROM generate_series(1, 8)) c \
             WHERE NOT EXISTS (SELECT 1 FROM branchsync.upload_session u WHERE u.sid = c.s) LIMIT 1 RETURNING sid",
            &[&streamed],
        )
        .await?;
    let sid: i64 = row.get(0);
    tracing::Span::current().record("sid", sid);
    if streamed {
        let catalog = pgsync::Catalog::load(&*client, &policy.all()).await?;
        stream::open(agent, sid, policy, catalog).await?;
        tracing::info!("upload into empty tables: streamed");
    }
    Ok(Value::Integer(sid as i32))
}
