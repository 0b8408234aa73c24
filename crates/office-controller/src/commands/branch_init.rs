//! `office-controller branch init NAME`: reachability and schema check, `clean`, `configure` (policy and id
//! range), full load of the `from_source`, `both` and `initial` tables, `setidstart` at the branch's range, and
//! the branch's `BranchSynchronization` record.

use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use pgsync::{Catalog, ExportOptions};
use protocol::payload::WriterConfig;
use serde_json::json;

use crate::commands::Output;
use crate::commands::sync::render;
use crate::config::Config;
use crate::sync::{self, BranchReport, retry};
use crate::{records, sync::record_outcome};

/// Runs `branch init`.
pub async fn run(config: &Config, name: &str) -> Result<Output> {
    let office = sync::office(config).await?;
    let branch = records::find(&office, name).await?;
    let policy = config.policy(&branch.policy, &office).await?;
    let started = Instant::now();
    let mut report = BranchReport { branch: branch.name.clone(), ..Default::default() };
    let outcome: Result<()> = async {
        let agent = sync::agent(&branch, &config.sync)?;
        let explain = |e: agent_client::ClientError| anyhow!("{e}");
        retry(&config.sync, || agent.status()).await.map_err(explain).context("the agent is not reachable")?;
        retry(&config.sync, || agent.clean()).await.map_err(explain).context("clean")?;
        let spec = policy.spec(&branch.name, branch.id_range);
        let theirs = retry(&config.sync, || agent.configure(&spec)).await.map_err(explain).context("configure")?;
        let ours = Catalog::load(&office, &policy.all()).await?.fingerprint();
        if theirs != ours {
            // The upload below names the first table and column that differ.
            report.notes.push("the shop's schema fingerprint differs from the office's".into());
        }
        let catalog = Catalog::load(&office, &policy.initial_load()).await?;
        let export = ExportOptions { writer: WriterConfig { chunk_bytes: config.sync.chunk_bytes, ..Default::default() }, ..Default::default() };
        let (_, cursor, per_table, bytes) = {
            let progress = crate::commands::sync::progress_for(&branch.name);
            let mut shown = BranchReport::default();
            let mut on_chunk = |b: u64| {
                shown.bytes_pushed += b;
                progress.update_public(&branch.name, "full load", &shown);
            };
            let client = pgsync::connect(&config.database_url).await?;
            sync::upload(config, &agent, client, catalog, export, false, &mut on_chunk).await.context("full load")?
        };
        report.bytes_pushed = bytes;
        for (table, n) in per_table {
            report.tables.entry(table.to_string()).or_default().entry("push").or_default().rows += n;
        }
        retry(&config.sync, || agent.setidstart(branch.id_start())).await.map_err(explain).context("setidstart")?;
        office
            .execute(
                "UPDATE branchsync.branch_synchronization SET push_cursor = $2, pull_cursor = NULL, initialised_at = now() WHERE branch = $1",
                &[&branch.name, &cursor],
            )
            .await?;
        Ok(())
    }
    .await;
    report.seconds = started.elapsed().as_secs_f64();
    report.ok = outcome.is_ok();
    report.error = outcome.as_ref().err().map(|e| format!("{e:#}"));
    record_outcome(config, None, &branch, &report, "init").await?;
    let mut out = render(std::slice::from_ref(&report));
    out.json = json!(report);
    Ok(out)
}
