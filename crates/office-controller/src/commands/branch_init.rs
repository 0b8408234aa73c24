//! `office-controller branch init NAME`: reachability and schema check, `clean`, `configure` (policy and id
//! range), full load of the `from_source`, `both` and `initial` tables, `setidstart` at the branch's range, the
//! branch's `BranchSynchronization` record, and the first sync, which gives the pull its cursor.

use std::time::Instant;

use anyhow::{Context, Result};
use pgsync::{Catalog, ExportOptions};
use protocol::payload::WriterConfig;

use crate::commands::Output;
use crate::commands::sync::conclude;
use crate::config::Config;
use crate::records;
use crate::sync::{self, BranchReport, Progress, explain};

/// What may make `branch init` erase a shop that holds data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InitOptions {
    /// Initialise a branch initialised before, or a shop with changes the office has not pulled (after pulling
    /// what can be pulled).
    pub force: bool,
    /// Take over an agent that is configured as another branch.
    pub rebind: bool,
}

/// Runs `branch init` on a branch never initialised, refusing a shop that holds data or is another branch.
pub async fn run(config: &Config, name: &str) -> Result<Output> {
    run_with(config, name, InitOptions::default()).await
}

/// Runs `branch init` with `options`.
pub async fn run_with(config: &Config, name: &str, options: InitOptions) -> Result<Output> {
    let office = sync::office(config).await?;
    let branch = records::find(&office, name).await?;
    let policy = config.policy(&branch.policy, &office).await?;
    let started = Instant::now();
    let mut report = BranchReport { branch: branch.name.clone(), ..Default::default() };
    let outcome: Result<()> = async {
        let agent = sync::agent(&branch, &config.sync)?;
        let status = agent.status().await.map_err(explain).context("the agent is not reachable")?;
        let shop = status.database.as_ref().map_err(|e| anyhow::anyhow!("the shop database is down: {e}"))?;
        if let Some(other) = sync::other_branch(&branch, &status)
            && !options.rebind
        {
            anyhow::bail!(
                "the agent at {} is configured as branch {other}, not {}: check the URL (`branch set {} --url`), since init would erase that shop; pass --rebind to take it over",
                branch.url,
                branch.name,
                branch.name
            );
        }
        let live = branch.initialised_at.is_some() || shop.pending_changes > 0 || shop.assignment.is_some();
        if live && !options.force {
            anyhow::bail!(
                "branch {} was initialised before or its shop holds data ({} changes the office has not pulled): init erases the shop's synced tables; run `sync {}` first, or pass --force (which pulls what it can first)",
                branch.name,
                shop.pending_changes,
                branch.name
            );
        }
        if live && branch.initialised_at.is_some() && shop.pending_changes > 0 {
            // Whatever the shop sold since the last sync reaches the office before the shop is erased.
            // The database about to be initialised is the one to pull from, whatever the branch recorded before.
            // It pulls with the tables the shop was configured with, which the office's policy may have changed.
            let options = sync::SyncOptions { rebind: true, ..Default::default() };
            let held = shop.assignment.as_ref().map_or_else(|| policy.clone(), |a| policy.with_tables(&a.policy));
            let pulled = sync::sync_branch(config, &branch, &held, options, &Progress::for_branch(&branch.name)).await;
            report.notes.push(match pulled.error {
                None => "pulled the shop's changes before erasing it".into(),
                Some(e) => format!("could not pull the shop's changes before erasing it: {e}"),
            });
        }
        agent.clean().await.map_err(explain).context("clean")?;
        let assignment = policy.assignment(&branch.name, branch.id_range);
        let theirs = agent.configure(&assignment).await.map_err(explain).context("configure")?;
        let ours = Catalog::load(&office, &policy.tables.all()).await?.fingerprint();
        if theirs != ours {
            // The upload below names the first table and column that differ.
            report.notes.push("the shop's schema fingerprint differs from the office's".into());
        }
        let catalog = Catalog::load(&office, &policy.tables.to_shop_initially()).await?;
        let export = ExportOptions {
            writer: WriterConfig { chunk_bytes: config.sync.chunk_bytes, ..Default::default() },
            ..Default::default()
        };
        let progress = Progress::for_branch(&branch.name);
        let mut shown = BranchReport::default();
        let mut on_chunk = |b: u64| {
            shown.bytes_pushed += b;
            progress.update(&branch.name, "full load", &shown);
        };
        let client = pgsync::connect(&config.database_url).await?;
        let up = sync::upload(&agent, client, catalog, export, false, &mut on_chunk).await.context("full load")?;
        report.bytes_pushed = up.bytes;
        for (table, n) in &up.per_table {
            report.add(table, "push", *n, 0);
        }
        // A branch initialised again keeps its older rows at the office: the shop's ids continue past them, so a
        // new sale never takes the id of one the office holds.
        let written = Catalog::load(&office, &policy.tables.to_office()).await?;
        let highest = sync::highest_id(&office, &written, branch.id_start(), branch.id_end()).await?;
        match highest {
            Some(above) => agent.setidstart_above(branch.id_start(), above).await,
            None => agent.setidstart(branch.id_start()).await,
        }
        .map_err(explain)
        .context("setidstart")?;
        // The database just loaded is the branch's shop from now on: a sync finding another behind the URL refuses.
        let loaded = agent.status().await.map_err(explain).context("status after the load")?;
        let identity = loaded.database.map(|s| s.database_identity).unwrap_or_default();
        records::mark_initialised(&office, &branch.name, &up.cursor, &identity).await?;
        records::set_history_from(&office, &branch.name, highest.map_or(branch.id_start(), |h| h + 1)).await?;
        // The first sync gives the pull its cursor. Without one the pull is a full export, which carries rows but
        // never deletes: what the shop deleted before its first sync would stay at the office. Right after the load
        // the shop holds only the office's own rows, which its export leaves out (no echo), so this moves nothing.
        let initialised = records::find(&office, &branch.name).await?;
        let first = sync::sync_branch(config, &initialised, &policy, sync::SyncOptions::default(), &progress).await;
        if let Some(e) = first.error {
            anyhow::bail!("the shop is loaded, but its first sync failed: {e}; run `sync {}`", branch.name);
        }
        Ok(())
    }
    .await;
    conclude(config, &branch, report, started, outcome, "init").await
}
