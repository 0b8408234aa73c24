//! `sql_finish(sid)`: applies every staged chunk of the session, in order, in one transaction, together with
//! the office cursor the payload carries and the session's own "finished" mark. Called again for the same sid
//! it returns the stored result and applies nothing twice.

use dxr::Value;
use pgsync::{ApplyOptions, ApplyReport};
use protocol::payload::{ReadLimits, read_payload};

use crate::Agent;
use crate::error::AgentError;
use crate::methods::{OFFICE_ORIGIN, policy};
use crate::rpc::{Params, structure};
use crate::store::{self, keys};

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
    let mut client = agent.db().await?;
    let policy = policy(&*client).await?;
    let catalog = pgsync::Catalog::load(&*client, &policy.all()).await?;
    let limits = ReadLimits {
        max_decompressed_bytes: agent.config.limits.chunk_decompressed_bytes,
        allowed_tables: policy.receives(),
    };
    let tx = client.transaction().await?;
    // The row lock serialises concurrent finishes of one session: the second waits, then sees it finished.
    let row =
        tx.query_opt("SELECT chunks, result FROM branchsync.upload_session WHERE sid = $1 FOR UPDATE", &[&sid]).await?;
    let Some(row) = row else { return Err(AgentError::UnknownSession(sid)) };
    let (chunks, result): (i32, Option<String>) = (row.get(0), row.get(1));
    if let Some(result) = result {
        return Ok(result_value(&result));
    }
    // Tables empty now take the upload's rows straight in (the initial load after `clean`).
    let fresh = pgsync::empty_tables(&tx, &catalog.subset(&policy.receives())).await?;
    let mut report = ApplyReport::default();
    let mut cursor = None;
    let mut replaced = std::collections::BTreeSet::new();
    // One chunk in memory at a time: memory does not grow with the size of the upload.
    for seq in 1..=chunks {
        let data: Vec<u8> = tx
            .query_one("SELECT data FROM branchsync.upload_chunk WHERE sid = $1 AND seq = $2", &[&sid, &seq])
            .await?
            .get(0);
        let payload = read_payload(&data, &limits)?;
        if payload.header.cursor.is_some() {
            cursor = payload.header.cursor.clone();
        }
        replaced.extend(payload.header.replace.iter().cloned());
        let options = ApplyOptions {
            origin: OFFICE_ORIGIN.into(),
            defer_tables: policy.both.iter().cloned().collect(),
            record_cursor: if seq == chunks { cursor.clone() } else { None },
            fresh_tables: fresh.clone(),
            ..ApplyOptions::default()
        };
        let part = pgsync::apply_in(&tx, &catalog, std::slice::from_ref(&payload), &options)
            .await
            .map_err(|e| renumber(e, seq as usize))?;
        report.merge(part);
    }
    report.merge(pgsync::prune_unseen(&tx, &catalog, &replaced).await?);
    let stored = format!(
        "{},{},{},{}",
        report.upserted(),
        report.deleted() + report.tables.iter().map(|(_, c)| c.pruned).sum::<u64>(),
        report.deferred(),
        chunks
    );
    tx.execute(
        "UPDATE branchsync.upload_session SET finished_at = now(), result = $2 WHERE sid = $1",
        &[&sid, &stored],
    )
    .await?;
    tx.execute("DELETE FROM branchsync.upload_chunk WHERE sid = $1", &[&sid]).await?;
    store::set_state(&tx, keys::DEFERRED, &report.deferred().to_string()).await?;
    tx.commit().await?;
    agent.metrics.exchanged();
    tracing::info!(
        upserted = report.upserted(),
        deleted = report.deleted(),
        deferred = report.deferred(),
        "upload applied"
    );
    Ok(result_value(&stored))
}

/// `apply_in` numbers chunks within its call; here each call holds one chunk of the session.
fn renumber(e: pgsync::Error, seq: usize) -> pgsync::Error {
    match e {
        pgsync::Error::Rejected { statement, sqlstate, message, .. } => {
            pgsync::Error::Rejected { chunk: seq, statement, sqlstate, message }
        }
        pgsync::Error::Payload { source, .. } => pgsync::Error::Payload { chunk: seq, source },
        other => other,
    }
}
