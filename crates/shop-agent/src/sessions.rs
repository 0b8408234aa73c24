//! Upload sessions in the shop database (`branchsync.upload_session`, `branchsync.upload_chunk`): every statement
//! on them lives here. A session's row is locked while a call works on it, its chunks are staged durably (an
//! agent restart loses nothing), and its result is stored with the data it describes, so that a retried
//! `sql_finish` answers the same [`Finished`] and applies nothing twice.

use pgsync::Imported;
use protocol::wire::Finished;
use tokio_postgres::{GenericClient, Transaction};

use crate::error::AgentError;

/// Unfinished sessions older than this are abandoned by a controller that died; they are dropped.
const ABANDONED_AFTER: &str = "1 day";

/// Drops abandoned sessions and counts the open ones.
pub async fn open_count(client: &impl GenericClient, drop_abandoned: bool) -> Result<i64, AgentError> {
    if drop_abandoned {
        client
            .execute(
                &format!(
                    "DELETE FROM branchsync.upload_session WHERE finished_at IS NULL AND opened_at < now() - interval '{ABANDONED_AFTER}'"
                ),
                &[],
            )
            .await?;
    }
    Ok(client.query_one("SELECT count(*) FROM branchsync.upload_session WHERE finished_at IS NULL", &[]).await?.get(0))
}

/// Opens a session and returns its sid: random, so that a sid from before a `clean` is very unlikely to name a
/// new session, and below 2^31 so that every client's `int` holds it.
pub async fn open(client: &impl GenericClient, streamed: bool) -> Result<i64, AgentError> {
    let row = client
        .query_one(
            "INSERT INTO branchsync.upload_session (sid, streamed) \
             SELECT s, $1 FROM (SELECT (floor(random() * 2147483646) + 1)::bigint AS s FROM generate_series(1, 8)) c \
             WHERE NOT EXISTS (SELECT 1 FROM branchsync.upload_session u WHERE u.sid = c.s) LIMIT 1 RETURNING sid",
            &[&streamed],
        )
        .await?;
    Ok(row.get(0))
}

/// A session's row, locked until the caller's transaction ends (concurrent calls of one session wait, then see
/// what the first did).
#[derive(Debug, Clone)]
pub struct Locked {
    /// The session.
    pub sid: i64,
    /// Compressed bytes staged so far.
    pub staged_bytes: i64,
    /// Chunks staged so far.
    pub chunks: i32,
    /// The stored result, once finished.
    pub finished: Option<Finished>,
    /// Whether the session streams (its chunks are not staged).
    pub streamed: bool,
}

/// Locks session `sid`; [`AgentError::UnknownSession`] when there is none.
pub async fn lock(tx: &Transaction<'_>, sid: i64) -> Result<Locked, AgentError> {
    let row = tx
        .query_opt(
            "SELECT staged_bytes, chunks, result, streamed FROM branchsync.upload_session WHERE sid = $1 FOR UPDATE",
            &[&sid],
        )
        .await?;
    let Some(row) = row else { return Err(AgentError::UnknownSession(sid)) };
    let result: Option<String> = row.get(2);
    Ok(Locked {
        sid,
        staged_bytes: row.get(0),
        chunks: row.get(1),
        finished: result.as_deref().map(decode).transpose()?,
        streamed: row.get(3),
    })
}

/// Stages the next chunk of a locked session.
pub async fn stage(tx: &Transaction<'_>, session: &Locked, data: &[u8]) -> Result<(), AgentError> {
    let seq = session.chunks + 1;
    tx.execute(
        "INSERT INTO branchsync.upload_chunk (sid, seq, data) VALUES ($1, $2, $3)",
        &[&session.sid, &seq, &data],
    )
    .await?;
    tx.execute(
        "UPDATE branchsync.upload_session SET staged_bytes = staged_bytes + $2, chunks = chunks + 1 WHERE sid = $1",
        &[&session.sid, &(data.len() as i64)],
    )
    .await?;
    Ok(())
}

/// Staged chunk `seq` (1-based) of a session.
pub async fn staged_chunk(tx: &Transaction<'_>, sid: i64, seq: i32) -> Result<Vec<u8>, AgentError> {
    Ok(tx
        .query_one("SELECT data FROM branchsync.upload_chunk WHERE sid = $1 AND seq = $2", &[&sid, &seq])
        .await?
        .get(0))
}

/// Marks the session finished with what the import did and drops its staged chunks, in the transaction that
/// applied them. Returns the answer stored for retried finishes.
pub async fn conclude(tx: &Transaction<'_>, sid: i64, imported: &Imported) -> Result<Finished, AgentError> {
    let r = &imported.report;
    let finished = Finished {
        upserted: r.upserted() as i64,
        deleted: (r.deleted() + r.pruned()) as i64,
        deferred: r.deferred() as i64,
        chunks: imported.chunks as i64,
    };
    tx.execute(
        "UPDATE branchsync.upload_session SET finished_at = now(), result = $2, chunks = $3 WHERE sid = $1",
        &[&sid, &encode(&finished), &(imported.chunks as i32)],
    )
    .await?;
    tx.execute("DELETE FROM branchsync.upload_chunk WHERE sid = $1", &[&sid]).await?;
    Ok(finished)
}

/// A stored result as the `result` column holds it: `upserted,deleted,deferred,chunks`.
fn encode(f: &Finished) -> String {
    format!("{},{},{},{}", f.upserted, f.deleted, f.deferred, f.chunks)
}

fn decode(stored: &str) -> Result<Finished, AgentError> {
    let n: Vec<i64> = stored.split(',').map(|n| n.parse::<i64>()).collect::<Result<_, _>>().map_err(|_| bad(stored))?;
    match n[..] {
        [upserted, deleted, deferred, chunks] => Ok(Finished { upserted, deleted, deferred, chunks }),
        _ => Err(bad(stored)),
    }
}

fn bad(stored: &str) -> AgentError {
    AgentError::Internal(format!(
        "upload session result {:?} is not what this agent stores, open a new session",
        stored.chars().take(40).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_results_read_back() {
        let f = Finished { upserted: 5, deleted: 2, deferred: 1, chunks: 3 };
        assert_eq!(decode(&encode(&f)).unwrap(), f);
        assert!(decode("1,2,3").is_err());
        assert!(decode("a,b,c,d").is_err());
    }
}
