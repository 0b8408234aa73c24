//! `office-controller sync [NAME…|--all] [--full] [--dry-run]`: syncs branches concurrently within the
//! configured bound; one failing branch never stops the others. Ends with a summary table.

use std::sync::Arc;

use anyhow::{Result, bail};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::commands::Output;
use crate::config::Config;
use crate::output::table;
use crate::records;
use crate::sync::{self, BranchReport, Progress, SyncOptions};

/// Arguments of `sync`.
#[derive(Debug, Clone, clap::Args)]
pub struct SyncArgs {
    /// Branches to sync.
    pub branches: Vec<String>,
    /// Sync every branch.
    #[arg(long, conflicts_with = "branches")]
    pub all: bool,
    /// Complete synchronisation: afterwards the shop's from_source tables equal the office's exactly.
    #[arg(long)]
    pub full: bool,
    /// Read and count only; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Accept that the shop's database is not the one the branch was initialised with (restored from a backup,
    /// moved to another server) and record it.
    #[arg(long)]
    pub rebind: bool,
}

/// Runs `sync`.
pub async fn run(config: &Config, args: SyncArgs) -> Result<Output> {
    let office = sync::office(config).await?;
    let all = records::branches(&office).await?;
    let chosen: Vec<records::Branch> = if args.all {
        all
    } else if args.branches.is_empty() {
        bail!("name the branches to sync, or pass --all");
    } else {
        let mut chosen = Vec::new();
        for name in &args.branches {
            chosen.push(
                all.iter()
                    .find(|b| &b.name == name)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("no branch named {name}, see `office-controller branch list`"))?,
            );
        }
        chosen
    };
    let mut policies = std::collections::BTreeMap::new();
    for b in &chosen {
        if !policies.contains_key(&b.policy) {
            policies.insert(b.policy.clone(), config.policy(&b.policy, &office).await?);
        }
    }
    let options = SyncOptions { full: args.full, dry_run: args.dry_run, rebind: args.rebind, ..Default::default() };
    let multi = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(indicatif::MultiProgress::new);
    let bound = Arc::new(Semaphore::new(config.sync.concurrency));
    let config = Arc::new(config.clone());
    let policies = Arc::new(policies);
    let mut tasks = Vec::new();
    for branch in chosen {
        let (bound, config, policies, options) = (bound.clone(), config.clone(), policies.clone(), options.clone());
        let multi = multi.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = bound.acquire().await;
            let policy = &policies[&branch.policy];
            let progress = match &multi {
                Some(m) => Progress::line(m, &branch.name),
                None => Progress::quiet(),
            };
            sync::sync_branch(&config, &branch, policy, options, &progress).await
        }));
    }
    let mut reports = Vec::new();
    for task in tasks {
        match task.await {
            Ok(r) => reports.push(r),
            Err(e) => reports.push(BranchReport {
                branch: "?".into(),
                error: Some(format!("sync task failed: {e}")),
                ..Default::default()
            }),
        }
    }
    if !args.dry_run
        && let Err(e) = sync::purge_acknowledged(&config).await
    {
        tracing::warn!(error = %e, "purging the office change log failed");
    }
    Ok(render(&reports))
}

/// The summary table: rows each way per table, bytes, time, conflicts, errors.
pub fn render(reports: &[BranchReport]) -> Output {
    let mut rows = Vec::new();
    for r in reports {
        for (table, dirs) in &r.tables {
            let get = |d: &str| dirs.get(d).copied().unwrap_or_default();
            let (pull, push) = (get("pull"), get("push"));
            if pull.rows + push.rows + pull.conflicts > 0 {
                rows.push(vec![
                    r.branch.clone(),
                    table.clone(),
                    pull.rows.to_string(),
                    push.rows.to_string(),
                    pull.conflicts.to_string(),
                    String::new(),
                    String::new(),
                ]);
            }
        }
        let status = match &r.error {
            None => "ok".to_string(),
            Some(e) => format!("FAILED: {e}"),
        };
        rows.push(vec![
            r.branch.clone(),
            "(total)".into(),
            String::new(),
            String::new(),
            r.conflicts().to_string(),
            format!("{}/{} B, {:.2}s", r.bytes_pulled, r.bytes_pushed, r.seconds),
            status,
        ]);
    }
    let mut text = table(&["branch", "table", "pulled", "pushed", "conflicts", "bytes in/out, time", "result"], &rows);
    for r in reports {
        for note in &r.notes {
            text.push_str(&format!("note: {}: {note}\n", r.branch));
        }
    }
    let failed = reports.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        text.push_str(&format!(
            "{failed} of {} branches failed; see the result column, fix the cause and sync them again\n",
            reports.len()
        ));
    }
    Output { text, json: json!(reports), ok: failed == 0, exit_code: None }
}

/// Ends a branch command that ran syncs on its way (`branch init`, `branch reconfigure`): its time and outcome
/// in the report, the record and the sync log under `kind`, and the rendered summary.
pub async fn conclude(
    config: &Config,
    branch: &crate::records::Branch,
    mut report: BranchReport,
    started: std::time::Instant,
    outcome: Result<()>,
    kind: &str,
) -> Result<Output> {
    report.seconds = started.elapsed().as_secs_f64();
    report.ok = outcome.is_ok();
    report.error = outcome.as_ref().err().map(|e| format!("{e:#}"));
    sync::record_outcome(config, None, branch, &report, kind).await?;
    let mut out = render(std::slice::from_ref(&report));
    out.json = serde_json::json!(report);
    Ok(out)
}
