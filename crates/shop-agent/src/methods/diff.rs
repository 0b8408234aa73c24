//! `diff(since)`: the shop's changes to the tables it sends, since the office's cursor, one bounded chunk per
//! answer, read in one snapshot that the agent holds open between the calls of a loop.
//!
//! The answer's `cursor` is the `since` of the next call. While `more` is true it is a continuation
//! (`SINCE~LOOP~N`: the loop and how many chunks the office has received); the last answer carries the real
//! cursor, recorded as issued before it is handed out. A continuation the agent no longer knows (restart, expiry)
//! restarts the loop from `SINCE`, so a lost answer or an agent restart costs a resend, never a gap. A `since`
//! acknowledges nothing (protocol v2): only `confirm` of an issued cursor purges.

use std::time::{Duration, Instant};

use pgsync::{ExportOptions, ExportSession};
use protocol::cursor::Cursor;
use protocol::payload::WriterConfig;
use protocol::wire::{Diff, DiffAnswer};

use crate::agent::Agent;
use crate::diffs::{DiffLoop, continuation, loop_id, produce, split};
use crate::error::AgentError;
use crate::issued;
use crate::store;

/// Handles `diff(since)`.
pub async fn call(agent: &Agent, Diff { since }: Diff) -> Result<DiffAnswer, AgentError> {
    let (base, cont) = split(&since);
    let idle = Duration::from_secs(agent.config.limits.diff_idle_seconds);
    let mut diffs = agent.diffs.lock().await;
    diffs.retain(|_, l| l.touched.elapsed() < idle);
    if let Some((id, n)) = cont {
        if let Some(mut lp) = diffs.remove(&id).filter(|l| l.since == base) {
            if let Some(last) = lp.last.clone().filter(|_| lp.delivered == n + 1) {
                lp.touched = Instant::now();
                diffs.insert(id, lp);
                return Ok(last);
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

async fn begin(agent: &Agent, base: &str) -> Result<DiffLoop, AgentError> {
    let since = Cursor::parse_optional(base).map_err(pgsync::Error::from)?;
    let client = agent.db().await?;
    let policy = store::assignment(&*client).await?;
    let catalog = pgsync::Catalog::load(&*client, &policy.policy.to_office()).await?;
    if let Some(cursor) = &since {
        // Served only from a cursor this shop issued: a forged one is refused before anything is read. Nothing
        // is acknowledged here; that is `confirm`'s.
        let identity = pgsync::schema::identity(&*client).await?;
        cursor.clone().check_issuer(&identity).map_err(pgsync::Error::from)?;
        issued::check_since(&*client, cursor).await?;
    }
    let options = ExportOptions {
        since,
        exclude_origin: Some(store::OFFICE_ORIGIN.into()),
        writer: WriterConfig { chunk_bytes: agent.config.limits.diff_chunk_bytes, ..WriterConfig::default() },
        ..ExportOptions::default()
    };
    let session = ExportSession::begin(client.detach(), catalog, options).await?;
    let cursor = session.cursor().clone();
    let (mut chunks, producer) = produce(&agent.tasks, session);
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
        let answer = DiffAnswer { data, cursor, more: true };
        lp.last = Some(answer.clone());
        lp.touched = Instant::now();
        agent.diffs.lock().await.insert(id, lp);
        Ok(answer)
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
        // Kept before it is handed out, so that the office may go on from it and confirm it.
        issued::record(&*agent.db().await?, &lp.cursor).await?;
        agent.metrics.exchanged();
        Ok(DiffAnswer { data, cursor: lp.cursor.to_string(), more: false })
    }
}
