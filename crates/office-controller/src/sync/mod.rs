//! The sync cycle of one branch, top-down in one place (BRIEF §4): take the branch's advisory lock, ask the
//! shop what it has applied of the office and check it is this branch's shop ([`check_shop`]), pull the shop's
//! changes ([`pull`]: the `diff` loop, each answer imported with conflicts decided and the pull cursor in one
//! transaction), push the office's changes since what the shop has applied ([`push`]: one upload session the
//! shop applies in one transaction with the office cursor), for `--full` pull every shop row again and compare
//! it, then record `branch_synchronization` and the sync log. `branch init` shares the upload. Nothing here
//! returns early without saying why in the report.

mod cycle;
mod progress;
mod pull;
mod push;
mod report;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use protocol::cursor::Cursor;
use protocol::wire::status::AgentStatus;
use tokio_postgres::Client;
use tracing::Instrument;

pub use cycle::{SyncOptions, agent, explain, office};
pub use progress::Progress;
pub use pull::highest_id;
pub use push::{Uploaded, upload};
pub use report::{BranchReport, Moved};

use crate::config::{Config, Policy};
use crate::records::{self, Branch, LogEntry};
use cycle::Cycle;

/// Syncs one branch and records the outcome; errors end up in the report and the branch's record, never in a
/// panic or an early exit of the other branches.
pub async fn sync_branch(
    config: &Config,
    branch: &Branch,
    policy: &Policy,
    options: SyncOptions,
    progress: &Progress,
) -> BranchReport {
    let span = tracing::info_span!("sync", branch = %branch.name, full = options.full, dry_run = options.dry_run);
    async {
        let started = Instant::now();
        let mut report = BranchReport { branch: branch.name.clone(), ..Default::default() };
        let deadline = Duration::from_secs(config.sync.deadline_seconds);
        // The branch's one office connection, kept for the records after a sync that went well.
        let mut connection = None;
        let dry_run = options.dry_run;
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
        if !dry_run
            && let Err(e) = record_outcome(config, connection.as_ref(), branch, &report, "sync").await
        {
            report.ok = false;
            report.error = Some(format!("{e:#}"));
        }
        progress.finish(&report);
        report
    }
    .instrument(span)
    .await
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
    let lock = office(config).await?;
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
    let status = agent.status().await.map_err(explain);
    report.agent_up = Some(status.is_ok());
    let status = status?;
    let identity_now = check_shop(branch, &policy.tables, &status, options.rebind)?;
    let applied =
        status.last_office_cursor().and_then(|c| c.parse::<Cursor>().ok()).and_then(|c| c.check_issuer(&identity).ok());
    let dry_run = options.dry_run;
    let mut cycle = Cycle { config, branch, policy, options, agent, office: Some(lock), report, progress };
    let complete = cycle.options.full;
    if !cycle.options.skip_pull {
        pull::run(&mut cycle, applied.as_ref(), false).await.context("pull")?;
    }
    let applied =
        if cycle.options.skip_push { applied } else { push::run(&mut cycle, applied).await.context("push")? };
    if complete {
        // `sync --full` is complete both ways: after the complete push, every row the shop holds is pulled
        // again and compared, so the office holds each of the shop's own rows exactly.
        pull::run(&mut cycle, applied.as_ref(), true).await.context("complete pull")?;
    }
    if !dry_run && !identity_now.is_empty() && branch.shop_identity.as_deref() != Some(identity_now.as_str()) {
        // Re-bound, or a branch initialised before identities were recorded: from now on this database is the shop.
        if let Some(office) = &cycle.office {
            records::set_shop_identity(office, &branch.name, &identity_now).await?;
        }
    }
    // What is left at the shop, for monitoring: asked once, briefly; a shop that does not answer now is no
    // failure of the sync that went well.
    if let Ok(Ok(after)) =
        tokio::time::timeout(Duration::from_secs(5), cycle.agent.clone().with_retry(agent_client::Retry::NONE).status())
            .await
        && let Ok(shop) = &after.database
    {
        cycle.report.shop_pending = Some(shop.pending_changes);
    }
    *connection = cycle.office.take();
    Ok(())
}

/// The branch the agent is configured as, when it is another than `branch`: the URL leads to another shop.
/// Every command that drives a shop asks this before it changes anything.
pub fn other_branch<'a>(branch: &Branch, status: &'a AgentStatus) -> Option<&'a str> {
    let configured = status.database.as_ref().ok()?.assignment.as_ref()?;
    (configured.branch != branch.name).then_some(configured.branch.as_str())
}

/// Checks that the agent behind the branch's URL is this branch's shop, configured with `policy`: another
/// branch's agent, an agent holding no policy, an older policy than the office's, or another database than
/// the one recorded (unless `rebind`) are refused before anything moves. Returns the shop database's identity
/// (empty when the agent does not report one).
pub fn check_shop(
    branch: &Branch,
    policy: &protocol::policy::Policy,
    status: &AgentStatus,
    rebind: bool,
) -> Result<String> {
    let Ok(shop) = status.database.as_ref() else { return Ok(String::new()) };
    let Some(assignment) = shop.assignment.as_ref() else {
        anyhow::bail!(
            "the agent at {} holds no policy (its database was cleaned or is a new one): run `branch init {} --force`; nothing was synced",
            branch.url,
            branch.name
        );
    };
    // A wrong URL must not sync another shop under this branch's name.
    if let Some(other) = other_branch(branch, status) {
        anyhow::bail!(
            "the agent at {} is configured as branch {other}, not {}: check the branch's URL (`branch set {} --url`); nothing was synced",
            branch.url,
            branch.name,
            branch.name
        );
    }
    if !assignment.policy.same_tables(policy) {
        anyhow::bail!(
            "the shop was configured with other tables than policy {} now lists: run `branch reconfigure {}`, which sends the new policy and loads the tables the shop now receives; nothing was synced",
            branch.policy,
            branch.name
        );
    }
    let identity_now = shop.database_identity.clone();
    if let Some(recorded) = &branch.shop_identity
        && !identity_now.is_empty()
        && *recorded != identity_now
        && !rebind
    {
        anyhow::bail!(
            "the shop database behind {} is not the one branch {} was initialised with (database {recorded}, now {identity_now}): \
             if it is this shop restored from a backup or moved to another server, run `sync {} --rebind`, which \
             keeps the office's rows and records what differs; otherwise correct the URL with `branch set {} --url`; nothing was synced",
            branch.url,
            branch.name,
            branch.name,
            branch.name
        );
    }
    Ok(identity_now)
}

/// Writes the sync log and the branch's record for a finished attempt. Uses `connection` when the caller still
/// has one.
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
    let entry = LogEntry {
        branch: &branch.name,
        table: "*",
        direction: what,
        rows: 0,
        bytes: Some(bytes),
        result,
        message: &message,
    };
    records::log(office, entry).await?;
    records::mark_attempt(office, &branch.name, report.error.as_ref().map(|_| message.as_str())).await
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
