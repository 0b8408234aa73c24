//! Upload sessions in the shop database (`branchsync.upload_session`, `branchsync.upload_chunk`): every statement
//! on them lives here. A session's row is locked while a call works on it, its chunks are staged durably (an
//! agent restart loses nothing), and its result is stored with the data it describes, so that a retried
//! `sql_finish` answers the same [`Finished`] and applies nothing twice. An unfinished session never blocks the
//! shop for long: a refused chunk or a failed apply ends it, `sql_abort` ends it, and one left idle expires.

use pgsync::Imported;
use std::time::Duration;

use protocol::wire::{Finished, OpenSession};
use tokio_postgres::{GenericClient, Transaction};

use crate::error::AgentError;

/// Shop migration 4: when a session was last called (it expires after `limits.upload_idle_seconds` without a
/// call, not a day after it opened) and the caller's token (a retried `sql_prepare` gets the same session).
pub(crate) const MIGRATION: &str = "
ALTER TABLE branchsync.upload_session ADD COLUMN IF NOT EXISTS touched_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE branchsync.upload_session ADD COLUMN IF NOT EXISTS token text;
CREATE INDEX IF NOT EXISTS upload_session_token ON branchsync.upload_session (token) WHERE finished_at IS NULL;
";

/// Drops unfinished sessions that nobody will finish: idle longer than `idle`, and streamed ones whose live
/// transaction this agent process does not hold (`live`; after a restart, none). Returns how many went.
pub async fn expire(client: &impl GenericClient, idle: Duration, live: &[i64]) -> Result<u64, AgentError> {
    let n = client
        .execute(
            "DELETE FROM branchsync.upload_session WHERE finished_at IS NULL \
             AND (touched_at < now() - make_interval(secs => $1) OR (streamed AND sid <> ALL($2)))",
            &[&idle.as_secs_f64(), &live],
        )
        .await?;
    if n > 0 {
        tracing::info!(sessions = n, "expired abandoned upload sessions");
    }
    Ok(n)
}

/// Counts the unfinished sessions.
pub async fn open_count(client: &impl GenericClient) -> Result<i64, AgentError> {
    Ok(client.query_one("SELECT count(*) FROM branchsync.upload_session WHERE finished_at IS NULL", &[]).await?.get(0))
}

/// The unfinished sessions, oldest first, for `status`.
pub async fn list(client: &impl GenericClient) -> Result<Vec<OpenSession>, AgentError> {
    let rows = client
        .query(
            "SELECT sid, extract(epoch FROM now() - opened_at)::bigint, extract(epoch FROM now() - touched_at)::bigint, \
             chunks::bigint, streamed FROM branchsync.upload_session WHERE finished_at IS NULL ORDER BY opened_at, sid",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| OpenSession {
            sid: r.get(0),
            age_seconds: r.get(1),
            idle_seconds: r.get(2),
            chunks: r.get(3),
            streamed: r.get(4),
        })
        .collect())
}

/// The unfinished session a retried `sql_prepare` with `token` gets back: one with no chunk yet (a caller that
/// never received the sid cannot have sent any).
pub async fn by_token(client: &impl GenericClient, token: &str) -> Result<Option<(i64, bool)>, AgentError> {
    Ok(client
        .query_opt(
            "SELECT sid, streamed FROM branchsync.upload_session WHERE token = $1 AND finished_at IS NULL AND chunks = 0 \
             ORDER BY opened_at DESC LIMIT 1",
            &[&token],
        )
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// Opens a session and returns its sid: random, so that a sid from before a `clean` is very unlikely to name a
/// new session, and below 2^31 so that every client's `int` holds it.
pub async fn open(client: &impl GenericClient, streamed: bool, token: Option<&str>) -> Result<i64, AgentError> {
    let row = client
        .query_one(
            "INSERT INTO branchsync.upload_session (sid, streamed, token) \
             SELECT s, $1, $2 FROM (SELECT (floor(random() * 2147483646) + 1)::bigint AS s FROM generate_series(1, 8)) c \
             WHERE NOT EXISTS (SELECT 1 FROM branchsync.upload_session u WHERE u.sid = c.s) LIMIT 1 RETURNING sid",
            &[&streamed, &token],
        )
        .await?;
    Ok(row.get(0))
}

/// Ends an unfinished session, applying nothing: its row and staged chunks go. A finished session keeps its
/// stored result (a retried `sql_finish` still gets it). Returns whether a session ended.
pub async fn end(client: &impl GenericClient, sid: i64) -> Result<bool, AgentError> {
    Ok(client.execute("DELETE FROM branchsync.upload_session WHERE sid = $1 AND finished_at IS NULL", &[&sid]).await?
        > 0)
}

/// Whether a failed `sql_create` or `sql_finish` ends its session: every failure does (a refused chunk would be
/// refused again, a failed apply would fail again) except a database that could not be reached, after which the
/// same call may be retried, and a session that is not there.
pub fn ends_session(e: &AgentError) -> bool {
    use protocol::fault::FaultCode;
    !matches!(e.fault_code(), FaultCode::DatabaseUnavailable | FaultCode::UnknownSession)
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
        "UPDATE branchsync.upload_session SET staged_bytes = staged_bytes + $2, chunks = chunks + 1, touched_at = now() \
         WHERE sid = $1",
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
