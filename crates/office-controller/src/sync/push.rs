//! Push: the office's changes since the cursor the shop itself recorded with its last applied upload, less the
//! shop's own changes, as one upload session; and [`upload`], which `branch init` shares.

use agent_client::AgentClient;
use anyhow::{Context, Result, anyhow};
use pgsync::{Catalog, ExportOptions, ExportSession};
use protocol::cursor::Cursor;
use protocol::payload::{TableName, WriterConfig};
use tokio_postgres::Client;

use super::cycle::{Cycle, explain};
use crate::records;

/// Runs the push. `applied` is the office cursor the shop has applied. Returns the one it has applied after.
pub(super) async fn run(cycle: &mut Cycle<'_>, applied: Option<Cursor>) -> Result<Option<Cursor>> {
    let full = cycle.options.full;
    let before = applied.clone();
    let base = if full {
        None
    } else {
        if applied.is_none() {
            cycle.report.notes.push("the shop holds no office cursor of this database; pushing everything".into());
        }
        applied
    };
    // Tables `branch reconfigure` added to what the shop receives go whole until a push has sent them, the
    // others as changes.
    let receives = cycle.policy.tables.to_shop_initially();
    let whole: Vec<TableName> = cycle
        .branch
        .pending_whole
        .iter()
        .filter_map(|t| TableName::parse(t))
        .filter(|t| receives.contains(t))
        .collect();
    let mut tables = cycle.policy.tables.to_shop();
    tables.extend(whole.iter().filter(|t| !tables.contains(t)).cloned().collect::<Vec<_>>());
    let office = cycle.office.take().context("the branch's office connection is gone")?;
    let catalog = Catalog::load(&office, &tables).await?;
    let export = ExportOptions {
        since: base,
        exclude_origin: Some(cycle.branch.name.clone()),
        writer: WriterConfig { chunk_bytes: cycle.config.sync.chunk_bytes, ..Default::default() },
        replace: if full { cycle.policy.tables.from_source.clone() } else { Vec::new() },
        whole: whole.clone(),
        ..Default::default()
    };
    let mut shown = cycle.report.clone();
    let (branch, progress) = (&cycle.branch.name, cycle.progress);
    let mut on_chunk = |bytes: u64| {
        shown.bytes_pushed += bytes;
        progress.update(branch, "push", &shown);
    };
    // The export reads on the branch's connection (its advisory lock stays with the session) and hands it back.
    let up = upload(&cycle.agent, office, catalog, export, cycle.options.dry_run, &mut on_chunk).await?;
    cycle.report.bytes_pushed += up.bytes;
    for (table, n) in &up.per_table {
        cycle.report.add(table, "push", *n, 0);
    }
    if up.deferred > 0 {
        // The shop kept its older cursor: what it deferred stays unsent, for the next pull to decide.
        cycle.report.notes.push(format!(
            "the shop deferred {} rows it changed during the sync; they are decided and sent again on the next sync",
            up.deferred
        ));
    }
    let now_applied = if up.deferred == 0 && !cycle.options.dry_run {
        records::set_push_cursor(&up.office, &cycle.branch.name, &up.cursor).await?;
        up.cursor.parse::<Cursor>().ok()
    } else {
        before
    };
    if !cycle.options.dry_run && !cycle.branch.pending_whole.is_empty() {
        records::set_pending_whole(&up.office, &cycle.branch.name, &[]).await?;
        let names: Vec<String> = whole.iter().map(|t| t.to_string()).collect();
        cycle.report.notes.push(format!("sent whole the tables the shop newly receives: {}", names.join(", ")));
    }
    cycle.office = Some(up.office);
    Ok(now_applied)
}

/// What an upload sent.
#[derive(Debug)]
pub struct Uploaded {
    /// The office connection the export read on, handed back.
    pub office: Client,
    /// The export's cursor: what the shop has applied once the session finished.
    pub cursor: String,
    /// Rows per table.
    pub per_table: Vec<(TableName, u64)>,
    /// Compressed bytes.
    pub bytes: u64,
    /// Rows the shop deferred (it changed them itself and the office has not pulled that yet); the shop then
    /// keeps its older cursor, and so must the office's record of it.
    pub deferred: u64,
}

/// Exports from the office in one snapshot and uploads every chunk in one session, finished by the shop in one
/// transaction. When the snapshot holds nothing the shop lacks (no change since its cursor but its own), no
/// session is opened and the cursor still counts as acknowledged: the office may purge up to it, and the shop's
/// conflict window stays right since nothing it lacks was written. With `dry_run` nothing is sent. A push that
/// fails aborts its session, so that it holds none of the shop's session slots.
pub async fn upload(
    agent: &AgentClient,
    client: Client,
    catalog: Catalog,
    export: ExportOptions,
    dry_run: bool,
    on_chunk: &mut (dyn FnMut(u64) + Send),
) -> Result<Uploaded> {
    let session = ExportSession::begin(client, catalog, export).await?;
    if !session.has_news().await? {
        // Nothing the shop lacks: no session to open. The cursor is still the acknowledged one.
        let cursor = session.cursor().to_string();
        let per_table = session.table_rows().to_vec();
        return Ok(Uploaded { office: session.finish().await?, cursor, per_table, bytes: 0, deferred: 0 });
    }
    let sid = if dry_run { 0 } else { agent.sql_prepare().await.map_err(explain)? };
    let sent = send(agent, session, sid, dry_run, on_chunk).await;
    if sent.is_err()
        && !dry_run
        && let Err(e) = agent.sql_abort(sid).await
    {
        // Not fatal: the shop expires an idle session by itself.
        tracing::warn!(sid, error = %e, "could not abort the failed upload session");
    }
    sent
}

/// Sends every chunk of the export into session `sid` and finishes it.
async fn send(
    agent: &AgentClient,
    mut session: ExportSession,
    sid: i64,
    dry_run: bool,
    on_chunk: &mut (dyn FnMut(u64) + Send),
) -> Result<Uploaded> {
    // The export runs one chunk ahead of the upload, so reading and compressing overlap with the network and the
    // shop's staging instead of waiting for them.
    let (ready, mut chunks) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let producer = tokio::spawn(async move {
        while let Some(chunk) = session.next_chunk().await? {
            if ready.send(chunk).await.is_err() {
                break;
            }
        }
        Ok::<_, pgsync::Error>(session)
    });
    let mut bytes = 0u64;
    let mut sent: Result<()> = Ok(());
    while let Some(chunk) = chunks.recv().await {
        bytes += chunk.len() as u64;
        on_chunk(chunk.len() as u64);
        if !dry_run {
            // A retried chunk may be staged twice; applying it twice is harmless (upserts and deletes by key).
            if let Err(e) = agent.sql_create(sid, chunk).await {
                sent = Err(explain(e));
                break;
            }
        }
    }
    drop(chunks);
    let session = producer.await.map_err(|e| anyhow!("the export task failed: {e}"))??;
    sent?;
    let cursor = session.cursor().to_string();
    let per_table = session.table_rows().to_vec();
    let office = session.finish().await?;
    let deferred = if dry_run { 0 } else { agent.sql_finish(sid).await.map_err(explain)?.deferred.max(0) as u64 };
    Ok(Uploaded { office, cursor, per_table, bytes, deferred })
}
