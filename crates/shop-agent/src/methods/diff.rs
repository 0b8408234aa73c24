//! `diff(since)`: the shop's changes to the tables it sends, since the office's cursor, one bounded chunk per
//! answer, read in one snapshot that the agent holds open between the calls of a loop.
//!
//! The answer's `cursor` is the `since` of the next call. While `more` is true it is a continuation
//! (`SINCE~LOOP~N`: the loop and how many chunks the office has received); the last answer carries the real
//! cursor. A continuation the agent no longer knows (restart, expiry) restarts the loop from `SINCE`, so a lost
//! answer or an agent restart costs a resend, never a gap. A real `since` acknowledges everything before it:
//! those change-log rows are purged.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use pgsync::{ExportOptions, ExportSession};
use protocol::cursor::Cursor;
use protocol::payload::WriterConfig;
use protocol::wire::{Diff, DiffAnswer};

use crate::Agent;
use crate::error::AgentError;
use crate::methods::{OFFICE_ORIGIN, policy};
use crate::store::{self, keys};

/// The chunks an export task reads ahead, and the task (which hands the session back once complete).
type Producer = (mpsc::Receiver<Result<Vec<u8>, pgsync::Error>>, tokio::task::JoinHandle<Option<ExportSession>>);

/// Chunks the export reads ahead of the office: enough to keep both sides busy, few enough to bound memory.
const READ_AHEAD: usize = 3;

/// An open diff loop. Its export runs in a task of its own, a few chunks ahead of the office, so that the shop
/// reads while the office applies.
pub struct DiffLoop {
    since: String,
    /// The cursor the loop ends with (its export snapshot).
    cursor: String,
    /// Chunks read ahead; closed when the export is complete.
    chunks: mpsc::Receiver<Result<Vec<u8>, pgsync::Error>>,
    /// The export task, which hands the session back once complete.
    producer: Option<tokio::task::JoinHandle<Option<ExportSession>>>,
    /// Chunks handed out so far.
    delivered: u64,
    /// The chunk to hand out next, received ahead so that `more` is known.
    next: Option<Vec<u8>>,
    /// The last answer, resent if the office asks for it again.
    last: Option<(Vec<u8>, String, bool)>,
    touched: Instant,
}

impl Drop for DiffLoop {
    fn drop(&mut self) {
        // An abandoned loop stops reading; its connection closes and the snapshot goes with it.
        if let Some(producer) = self.producer.take() {
            producer.abort();
        }
    }
}

impl std::fmt::Debug for DiffLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiffLoop").field("since", &self.since).field("delivered", &self.delivered).finish()
    }
}

/// Starts the export task: every chunk into the channel, then the session back (none after an error, which
/// went into the channel instead).
fn produce(mut session: ExportSession) -> Producer {
    let (ready, chunks) = mpsc::channel(READ_AHEAD);
    let producer = tokio::spawn(async move {
        loop {
            match session.next_chunk().await {
                Ok(Some(chunk)) => {
                    if ready.send(Ok(chunk)).await.is_err() {
                        return None;
                    }
                }
                Ok(None) => return Some(session),
                Err(e) => {
                    let _ = ready.send(Err(e)).await;
                    return None;
                }
            }
        }
    });
    (chunks, producer)
}

fn continuation(since: &str, id: u64, delivered: u64) -> String {
    format!("{since}~{id}~{delivered}")
}

/// Splits `since` into the base cursor and an optional (loop, delivered) continuation.
fn split(since: &str) -> (String, Option<(u64, u64)>) {
    let mut parts = since.rsplitn(3, '~');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(id), Some(base)) => match (id.parse(), n.parse()) {
            (Ok(id), Ok(n)) => (base.to_string(), Some((id, n))),
            _ => (since.to_string(), None),
        },
        _ => (since.to_string(), None),
    }
}

/// Handles `diff(since)`.
pub async fn call(agent: &Agent, Diff { since }: Diff) -> Result<DiffAnswer, AgentError> {
    let (base, cont) = split(&since);
    let idle = Duration::from_secs(agent.config.limits.diff_idle_seconds);
    let mut diffs = agent.diffs.lock().await;
    diffs.retain(|_, l| l.touched.elapsed() < idle);
    if let Some((id, n)) = cont {
        if let Some(mut lp) = diffs.remove(&id).filter(|l| l.since == base) {
            if let Some((data, cursor, more)) = lp.last.clone().filter(|_| lp.delivered == n + 1) {
                lp.touched = Instant::now();
                diffs.insert(id, lp);
                return Ok(answer(data, cursor, more));
            }
            if lp.delivered == n {
                drop(diffs);
                return step(agent, id, lp).await;
            }
        }
        tracing::info!(
            loop_id = id,
            "unknown or out-of-step diff continuation, restarting the loop from its base cursor"
        );
    }
    // Bound the snapshots held open: the oldest loop goes first.
    while diffs.len() as u64 >= agent.config.limits.concurrent_sessions {
        let oldest = diffs.iter().min_by_key(|(_, l)| l.touched).map(|(k, _)| *k);
        match oldest {
            Some(k) => diffs.remove(&k),
            None => break,
        };
    }
    drop(diffs);
    let lp = begin(agent, &base).await?;
    let id = loop_id();
    step(agent, id, lp).await
}

fn loop_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let salt =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    (salt & 0xffff_ffff_0000) ^ NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

async fn begin(agent: &Agent, base: &str) -> Result<DiffLoop, AgentError> {
    let since = Cursor::parse_optional(base).map_err(pgsync::Error::from)?;
    let client = agent.db().await?;
    let policy = policy(&*client).await?;
    let catalog = pgsync::Catalog::load(&*client, &policy.policy.to_office()).await?;
    if let Some(cursor) = &since {
        // Refuse a foreign cursor before it acknowledges (and purges) anything.
        let identity = pgsync::schema::identity(&*client).await?;
        cursor.clone().check_issuer(&identity).map_err(pgsync::Error::from)?;
        store::set_state(&*client, keys::ACKNOWLEDGED, base).await?;
        // What the office acknowledged is purged in the background while the loop answers: nothing waits on it
        // (`status` counts only what the acknowledged cursor does not cover, purged or not); a failed purge is
        // done by the next acknowledgement.
        let acknowledged = cursor.clone();
        agent
            .in_background("purging acknowledged changes", move |client| async move {
                let purged = pgsync::schema::purge(&client, std::slice::from_ref(&acknowledged)).await;
                (client, purged.map(|_| ()).map_err(AgentError::from))
            })
            .await?;
    }
    let options = ExportOptions {
        since,
        exclude_origin: Some(OFFICE_ORIGIN.into()),
        writer: WriterConfig { chunk_bytes: agent.config.limits.diff_chunk_bytes, ..WriterConfig::default() },
        ..ExportOptions::default()
    };
    let session = ExportSession::begin(client.detach(), catalog, options).await?;
    let cursor = session.cursor().to_string();
    let (mut chunks, producer) = produce(session);
    let first = chunks.recv().await.transpose()?;
    Ok(DiffLoop {
        since: base.to_string(),
        cursor,
        chunks,
        producer: Some(producer),
        delivered: 0,
        next: first,
        last: None,
        touched: Instant::now(),
    })
}

/// Hands out the chunk received ahead once the one after it has arrived (so that `more` is known).
async fn step(agent: &Agent, id: u64, mut lp: DiffLoop) -> Result<DiffAnswer, AgentError> {
    let data = lp.next.take().unwrap_or_default();
    lp.next = lp.chunks.recv().await.transpose()?;
    lp.delivered += 1;
    let more = lp.next.is_some();
    if more {
        let cursor = continuation(&lp.since, id, lp.delivered);
        lp.last = Some((data.clone(), cursor.clone(), true));
        lp.touched = Instant::now();
        agent.diffs.lock().await.insert(id, lp);
        Ok(answer(data, cursor, true))
    } else {
        let session = match lp.producer.take() {
            Some(producer) => producer
                .await
                .map_err(|e| AgentError::Internal(format!("the diff export stopped ({e}), call diff again")))?,
            None => None,
        };
        if let Some(s) = session
            && let Ok(client) = s.finish().await
        {
            agent.give_back(client);
        }
        agent.metrics.exchanged();
        Ok(answer(data, lp.cursor.clone(), false))
    }
}

fn answer(data: Vec<u8>, cursor: String, more: bool) -> DiffAnswer {
    DiffAnswer { data, cursor, more }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_split_back() {
        assert_eq!(split(""), (String::new(), None));
        assert_eq!(split("bs1/1/2/ab/3:4:"), ("bs1/1/2/ab/3:4:".into(), None));
        assert_eq!(split(&continuation("", 7, 2)), (String::new(), Some((7, 2))));
        assert_eq!(split(&continuation("bs1/1/2/ab/3:4:", 9, 1)), ("bs1/1/2/ab/3:4:".into(), Some((9, 1))));
    }
}
