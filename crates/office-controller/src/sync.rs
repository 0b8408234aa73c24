//! The sync cycle of one branch, top-down in one place (BRIEF §4): take the branch's advisory lock, pull the
//! shop's changes (the `diff` loop, each chunk applied with conflicts decided and the pull cursor in one
//! transaction), push the office's changes since what the shop has applied (one upload session applied by the
//! shop in one transaction with the office cursor), record `branch_synchronization` and the sync log.
//! `branch init` shares the upload path. Nothing here returns early without saying why in the report.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use agent_client::{AgentClient, ClientError, DiffAnswer};
use anyhow::{Context, Result, anyhow};
use pgsync::{ApplyOptions, Catalog, ConflictCheck, ExportOptions, ExportSession};
use protocol::cursor::Cursor;
use protocol::fault::FaultCode;
use protocol::payload::{ReadLimits, TableName, WriterConfig, read_payload};
use tokio_postgres::Client;

use crate::config::{Config, Policy, SyncConfig};
use crate::records::{self, Branch, LogEntry};

/// How a sync runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    /// Push a complete image of the office's tables; the shop deletes `from_source` rows the office lacks.
    pub full: bool,
    /// Read and count, change nothing on either side.
    pub dry_run: bool,
}

/// Rows moved for one table in one direction.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Moved {
    /// Rows upserted or deleted.
    pub rows: u64,
    /// Conflicts decided.
    pub conflicts: u64,
}

/// What happened to one branch.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BranchReport {
    /// The branch.
    pub branch: String,
    /// Whether everything went well.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// Per `(table, direction)`.
    pub tables: BTreeMap<String, BTreeMap<&'static str, Moved>>,
    /// Compressed payload bytes from the shop.
    pub bytes_pulled: u64,
    /// Compressed payload bytes to the shop.
    pub bytes_pushed: u64,
    /// Wall time.
    pub seconds: f64,
    /// Things worth knowing (fallbacks, skipped work).
    pub notes: Vec<String>,
}

impl BranchReport {
    fn add(&mut self, table: &TableName, direction: &'static str, rows: u64, conflicts: u64) {
        let moved = self.tables.entry(table.to_string()).or_default().entry(direction).or_default();
        moved.rows += rows;
        moved.conflicts += conflicts;
    }

    /// Total conflicts.
    pub fn conflicts(&self) -> u64 {
        self.tables.values().flat_map(|d| d.values()).map(|m| m.conflicts).sum()
    }
}

/// Progress of one branch's transfer: a live line when stderr is a terminal (indicatif), otherwise a log line
/// (`-v`) at most every five seconds, so a long initial load never runs without a word.
#[derive(Clone)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last: std::sync::Arc<std::sync::Mutex<Instant>>,
}

impl Progress {
    /// Log lines only.
    pub fn quiet() -> Progress {
        Progress { bar: None, last: std::sync::Arc::new(std::sync::Mutex::new(Instant::now())) }
    }

    /// A live line in `multi`.
    pub fn line(multi: &indicatif::MultiProgress, branch: &str) -> Progress {
        let bar = multi.add(indicatif::ProgressBar::new_spinner());
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {prefix:<12} {msg} [{elapsed}]") {
            bar.set_style(style);
        }
        bar.set_prefix(branch.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar: Some(bar), ..Progress::quiet() }
    }

    /// Shows where a transfer stands.
    pub fn update_public(&self, branch: &str, phase: &str, report: &BranchReport) {
        self.update(branch, phase, report);
    }

    fn update(&self, branch: &str, phase: &str, report: &BranchReport) {
        let rows = |d: &str| report.tables.values().filter_map(|t| t.get(d)).map(|m| m.rows).sum::<u64>();
        let message = format!(
            "{phase}: pulled {} rows / {} B, pushed {} rows / {} B",
            rows("pull"),
            report.bytes_pulled,
            rows("push"),
            report.bytes_pushed
        );
        match &self.bar {
            Some(bar) => bar.set_message(message),
            None => {
                if let Ok(mut last) = self.last.lock()
                    && last.elapsed() >= Duration::from_secs(5)
                {
                    *last = Instant::now();
                    tracing::info!(branch, "{message}");
                }
            }
        }
    }

    /// Ends the line with the outcome.
    pub fn finish(&self, report: &BranchReport) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message(if report.ok { "done".to_string() } else { "FAILED".to_string() });
        }
    }
}

/// Connects to the office database.
pub async fn office(config: &Config) -> Result<Client> {
    pgsync::connect(&config.database_url).await.context("cannot connect to the office database (database_url)")
}

/// A client of the branch's agent.
pub fn agent(branch: &Branch, sync: &SyncConfig) -> Result<AgentClient> {
    let password = branch.password()?;
    AgentClient::new(&branch.url, &branch.username, &password, Duration::from_secs(sync.timeout_seconds))
        .map_err(|e| anyhow!("{e}"))
}

/// Runs `call` again after transient failures (network, agent busy), with doubling pauses; authentication
/// failures and refusals are returned at once.
pub async fn retry<T, F, Fut>(sync: &SyncConfig, mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut pause = Duration::from_millis(sync.backoff_ms);
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if e.is_transient() && attempt < sync.retries => {
                attempt += 1;
                tracing::info!(error = %e, attempt, "transient failure, retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            other => return other,
        }
    }
}

/// Explains a client error in the words an operator needs.
fn explain(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Auth => anyhow!("{e}; not retried"),
        other => anyhow!("{other}"),
    }
}

/// Syncs one branch and records the outcome; errors end up in the report and the branch's record, never in a
/// panic or an early exit of the other branches.
pub async fn sync_branch(
    config: &Config,
    branch: &Branch,
    policy: &Policy,
    options: SyncOptions,
    progress: &Progress,
) -> BranchReport {
    let started = Instant::now();
    let span = tracing::info_span!("sync", branch = %branch.name, full = options.full, dry_run = options.dry_run);
    let _guard = span.enter();
    let mut report = BranchReport { branch: branch.name.clone(), ..Default::default() };
    let deadline = Duration::from_secs(config.sync.deadline_seconds);
    // The branch's one office connection, kept for the records after a sync that went well.
    let mut connection = None;
    let run = run_sync(config, branch, policy, options, &mut report, progress, &mut connection);
    let outcome = match tokio::time::timeout(deadline, run).await {
        Ok(outcome) => outcome,
        Err(_) => Err(anyhow!(
            "gave up after the deadline of {} s ([sync] deadline_seconds); what was applied stays, the next sync goes on from there",
            deadline.as_secs()
        )),
    };
    report.seconds = started.elapsed().as_secs_f64();
    report.ok = outcome.is_ok();
    report.error = outcome.as_ref().err().map(|e| format!("{e:#}"));
    if !options.dry_run
        && let Err(e) = record_outcome(config, connection.as_ref(), branch, &report, "sync").await
    {
        report.ok = false;
        report.error = Some(format!("{e:#}"));
    }
    progress.finish(&report);
    report
}

async fn run_sync(
    config: &Config,
    branch: &Branch,
    policy: &Policy,
    options: SyncOptions,
    report: &mut BranchReport,
    progress: &Progress,
    connection: &mut Option<Client>,
) -> Result<()> {
    if branch.initialised_at.is_none() {
        anyhow::bail!("branch {} is not initialised, run `office-controller branch init {}`", branch.name, branch.name);
    }
    // One sync per branch at a time, across controllers: a session lock that dies with this connection.
    let mut lock = office(config).await?;
    let locked: bool = lock
        .query_one("SELECT pg_try_advisory_lock(hashtext('branchsync'), $1::int)", &[&(branch.number as i32)])
        .await?
        .get(0);
    if !locked {
        anyhow::bail!("another controller is syncing branch {} right now, try again when it is done", branch.name);
    }
    let agent = agent(branch, &config.sync)?;
    // What the shop has applied of the office, by its own record (committed with the data, so right even when the
    // office died before recording its push): the base of the conflict check and of the push.
    let identity = pgsync::schema::identity(&lock).await?;
    let status = retry(&config.sync, || agent.status()).await.map_err(explain)?;
    let applied = match status.get("last_office_cursor") {
        Some(dxr::Value::String(c)) => c.parse::<Cursor>().ok().and_then(|c| c.check_issuer(&identity).ok()),
        _ => None,
    };
    // The lock's connection also carries the pull's and the push's office work: one connection per branch.
    pull(config, &mut lock, branch, policy, &agent, applied.as_ref(), options, report, progress)
        .await
        .context("pull")?;
    let lock = push(config, lock, branch, policy, &agent, applied, options, report, progress).await.context("push")?;
    *connection = Some(lock);
    Ok(())
}

/// Pull: `diff` loops from the recorded pull cursor until one brings nothing (each loop's start acknowledges
/// the previous one, so the shop purges and stops deferring what the office has). Each chunk is applied with
/// its conflicts decided, and the last chunk of a loop together with the new pull cursor.
#[allow(clippy::too_many_arguments)]
async fn pull(
    config: &Config,
    office: &mut Client,
    branch: &Branch,
    policy: &Policy,
    agent: &AgentClient,
    applied: Option<&Cursor>,
    options: SyncOptions,
    report: &mut BranchReport,
    progress: &Progress,
) -> Result<()> {
    let tables = policy.pulled();
    let catalog = Catalog::load(&*office, &tables).await?;
    let limits = ReadLimits { max_decompressed_bytes: 1 << 30, allowed_tables: tables.iter().cloned().collect() };
    let check = ConflictCheck {
        branch: branch.name.clone(),
        unsent_since: applied.map(|c| c.snapshot.clone()),
        rules: policy.rules.clone(),
        newer_column: policy.newer_column.clone(),
    };
    let set_based = may_set_replication_role(office).await?;
    if !set_based {
        tracing::debug!("foreign keys checked per row: the office role may not set session_replication_role");
    }
    let take = Take { catalog: &catalog, limits: &limits, check: &check, branch, options, set_based };
    let mut since = branch.pull_cursor.clone().unwrap_or_default();
    for _ in 0..3 {
        let mut cursor = since.clone();
        let mut loop_rows = 0u64;
        let mut prefetched: Option<DiffAnswer> = None;
        loop {
            let answer = match prefetched.take() {
                Some(answer) => answer,
                None => match retry(&config.sync, || agent.diff(&cursor)).await {
                    Err(e) if e.fault() == Some(FaultCode::CursorRefused) && !cursor.is_empty() => {
                        report.notes.push(format!("pull cursor refused by the shop ({e}); fell back to a full pull"));
                        if !options.dry_run {
                            let message = "cursor refused, full pull";
                            let entry = LogEntry {
                                branch: &branch.name,
                                table: "*",
                                direction: "pull",
                                rows: 0,
                                bytes: None,
                                result: "fallback",
                                message,
                            };
                            records::log(&*office, entry).await?;
                        }
                        cursor.clear();
                        since.clear();
                        continue;
                    }
                    other => other.map_err(explain)?,
                },
            };
            report.bytes_pulled += answer.data.len() as u64;
            // The shop reads its next chunk while the office applies this one: a continuation only says what the
            // office has received, and the pull cursor moves only with the last chunk of the loop.
            let following = async {
                if answer.more { Some(retry(&config.sync, || agent.diff(&answer.cursor)).await) } else { None }
            };
            let (applied, following) = tokio::join!(take.apply(office, &answer, report), following);
            loop_rows += applied?;
            prefetched = following.transpose().map_err(explain)?;
            progress.update(&branch.name, "pull", report);
            cursor = answer.cursor;
            if !answer.more {
                break;
            }
        }
        since = cursor;
        if loop_rows == 0 {
            break;
        }
    }
    Ok(())
}

/// Whether the office role may set `session_replication_role` (a superuser, or granted `SET ON PARAMETER` since
/// PostgreSQL 15): then pulled rows have their foreign keys checked per statement rather than per row.
async fn may_set_replication_role(office: &Client) -> Result<bool> {
    let row = office
        .query_one(
            "SELECT rolsuper, current_setting('server_version_num')::int >= 150000 FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let (superuser, v15): (bool, bool) = (row.get(0), row.get(1));
    if superuser || !v15 {
        return Ok(superuser);
    }
    Ok(office.query_one("SELECT has_parameter_privilege('session_replication_role', 'SET')", &[]).await?.get(0))
}

/// How the office takes one `diff` answer in.
struct Take<'a> {
    catalog: &'a Catalog,
    limits: &'a ReadLimits,
    check: &'a ConflictCheck,
    branch: &'a Branch,
    options: SyncOptions,
    set_based: bool,
}

impl Take<'_> {
    /// Applies one answer with its conflicts decided, in one transaction that also records the pull cursor when
    /// the answer is the last of its loop. Returns the rows it moved (counted only, with `dry_run`).
    async fn apply(&self, office: &mut Client, answer: &DiffAnswer, report: &mut BranchReport) -> Result<u64> {
        let payload = read_payload(&answer.data, self.limits)
            .map_err(|e| anyhow!("the shop sent a chunk the office refuses: {e}"))?;
        let mut rows = 0;
        if self.options.dry_run {
            for s in &payload.statements {
                let n = match s {
                    protocol::payload::Statement::Upsert { rows, .. }
                    | protocol::payload::Statement::Delete { rows, .. } => rows.len() as u64,
                };
                report.add(s.table(), "pull", n, 0);
                rows += n;
            }
            return Ok(rows);
        }
        let tx = office.transaction().await?;
        let apply = ApplyOptions {
            origin: self.branch.name.clone(),
            conflicts: Some(self.check.clone()),
            set_based_foreign_keys: self.set_based,
            ..Default::default()
        };
        let started = Instant::now();
        let applied = pgsync::apply_in(&tx, self.catalog, std::slice::from_ref(&payload), &apply).await?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            bytes = answer.data.len(),
            set_based = applied.tables.iter().map(|(_, c)| c.set_based).sum::<u64>(),
            upserted = applied.upserted(),
            "pulled chunk applied"
        );
        if !answer.more {
            tx.execute(
                "UPDATE branchsync.branch_synchronization SET pull_cursor = $2 WHERE branch = $1",
                &[&self.branch.name, &answer.cursor],
            )
            .await?;
        }
        tx.commit().await?;
        for (table, c) in &applied.tables {
            report.add(table, "pull", c.upserted + c.deleted + c.conflicts, c.conflicts);
            rows += c.upserted + c.deleted + c.conflicts;
        }
        Ok(rows)
    }
}

/// Push: the office's changes since `applied`, the cursor the shop itself recorded with its last applied upload,
/// less the shop's own changes, as one upload session.
#[allow(clippy::too_many_arguments)]
async fn push(
    config: &Config,
    office: Client,
    branch: &Branch,
    policy: &Policy,
    agent: &AgentClient,
    applied: Option<Cursor>,
    options: SyncOptions,
    report: &mut BranchReport,
    progress: &Progress,
) -> Result<Client> {
    let base = if options.full {
        None
    } else {
        if applied.is_none() {
            report.notes.push("the shop holds no office cursor of this database; pushing everything".into());
        }
        applied
    };
    let tables = policy.pushed();
    let catalog = Catalog::load(&office, &tables).await?;
    let export = ExportOptions {
        since: base,
        exclude_origin: Some(branch.name.clone()),
        writer: WriterConfig { chunk_bytes: config.sync.chunk_bytes, ..Default::default() },
        replace: if options.full { policy.from_source.clone() } else { Vec::new() },
        ..Default::default()
    };
    let mut shown = report.clone();
    let mut on_chunk = |bytes: u64| {
        shown.bytes_pushed += bytes;
        progress.update(&branch.name, "push", &shown);
    };
    // The export reads on the branch's connection (its advisory lock stays with the session) and hands it back.
    let (office, cursor, per_table, bytes) =
        upload(config, agent, office, catalog, export, options.dry_run, &mut on_chunk).await?;
    report.bytes_pushed += bytes;
    for (table, n) in per_table {
        report.add(&table, "push", n, 0);
    }
    if !options.dry_run {
        office
            .execute(
                "UPDATE branchsync.branch_synchronization SET push_cursor = $2 WHERE branch = $1",
                &[&branch.name, &cursor],
            )
            .await?;
    }
    Ok(office)
}

/// Exports from the office in one snapshot and uploads every chunk in one session, finished by the shop in one
/// transaction. When the snapshot holds nothing the shop lacks (no change since its cursor but its own), no
/// session is opened and the cursor still counts as acknowledged: the office may purge up to it, and the shop's
/// conflict window stays right since nothing it lacks was written. Returns the connection, the export's cursor,
/// rows per table and compressed bytes. With `dry_run` nothing is sent.
pub async fn upload(
    config: &Config,
    agent: &AgentClient,
    client: Client,
    catalog: Catalog,
    export: ExportOptions,
    dry_run: bool,
    on_chunk: &mut (dyn FnMut(u64) + Send),
) -> Result<(Client, String, Vec<(TableName, u64)>, u64)> {
    let mut session = ExportSession::begin(client, catalog, export).await?;
    if !session.has_news().await? {
        // Nothing the shop lacks: no session to open. The cursor is still the acknowledged one.
        let cursor = session.cursor().to_string();
        let per_table = session.table_rows().to_vec();
        return Ok((session.finish().await?, cursor, per_table, 0));
    }
    let sid = if dry_run { 0 } else { retry(&config.sync, || agent.sql_prepare()).await.map_err(explain)? };
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
            if let Err(e) = retry(&config.sync, || agent.sql_create(sid, chunk.clone())).await {
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
    let client = session.finish().await?;
    if !dry_run {
        retry(&config.sync, || agent.sql_finish(sid)).await.map_err(explain)?;
    }
    Ok((client, cursor, per_table, bytes))
}

/// Writes the sync log and the branch's record for a finished attempt.
/// Uses `connection` when the caller still has one.
pub async fn record_outcome(
    config: &Config,
    connection: Option<&Client>,
    branch: &Branch,
    report: &BranchReport,
    what: &str,
) -> Result<()> {
    let fresh;
    let office: &Client = match connection {
        Some(c) => c,
        None => {
            fresh = office(config).await?;
            &fresh
        }
    };
    for (table, directions) in &report.tables {
        for (direction, moved) in directions {
            let message = if moved.conflicts > 0 { format!("{} conflicts", moved.conflicts) } else { String::new() };
            let entry = LogEntry {
                branch: &branch.name,
                table,
                direction,
                rows: moved.rows as i64,
                bytes: None,
                result: "ok",
                message: &message,
            };
            records::log(office, entry).await?;
        }
    }
    let (result, message) = match &report.error {
        None => ("ok", report.notes.join("; ")),
        Some(e) => ("error", e.clone()),
    };
    let bytes = (report.bytes_pulled + report.bytes_pushed) as i64;
    records::log(
        office,
        LogEntry {
            branch: &branch.name,
            table: "*",
            direction: what,
            rows: 0,
            bytes: Some(bytes),
            result,
            message: &message,
        },
    )
    .await?;
    if report.error.is_none() {
        office
            .execute(
                "UPDATE branchsync.branch_synchronization SET timestamp = now(), last_attempt = now(), last_error = NULL WHERE branch = $1",
                &[&branch.name],
            )
            .await?;
    } else {
        office
            .execute(
                "UPDATE branchsync.branch_synchronization SET last_attempt = now(), last_error = $2 WHERE branch = $1",
                &[&branch.name, &message],
            )
            .await?;
    }
    Ok(())
}

/// After a run: deletes the office change-log rows that every branch has acknowledged (applied and recorded).
pub async fn purge_acknowledged(config: &Config) -> Result<u64> {
    let office = office(config).await?;
    let branches = records::branches(&office).await?;
    let mut cursors = Vec::new();
    for b in &branches {
        match b.push_cursor.as_deref().and_then(|c| c.parse::<Cursor>().ok()) {
            Some(c) => cursors.push(c),
            // A branch that has applied nothing acknowledges nothing.
            None => return Ok(0),
        }
    }
    Ok(pgsync::schema::purge(&office, &cursors).await?)
}
