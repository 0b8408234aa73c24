//! `office-controller branch reconfigure NAME`: hands an initialised shop the policy the office's configuration
//! now gives it, without `clean`: a sync with the tables the shop holds first (so nothing it changed is left
//! behind in a table it stops sending), then `configure` (capture on newly sent tables, whose rows so far are
//! sent too), `setidstart` (their sequences into the branch's range), change capture at the office on what it
//! now sends, and a sync that loads the tables the shop newly receives in full.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{Context, Result};
use pgsync::Catalog;
use protocol::payload::TableName;
use protocol::policy::Policy as TablePolicy;

use crate::commands::Output;
use crate::commands::sync::conclude;
use crate::config::Config;
use crate::records;
use crate::sync::{self, BranchReport, Progress, explain};

/// Runs `branch reconfigure`.
pub async fn run(config: &Config, name: &str) -> Result<Output> {
    let office = sync::office(config).await?;
    let branch = records::find(&office, name).await?;
    if branch.initialised_at.is_none() {
        anyhow::bail!("branch {name} is not initialised: run `branch init {name}`, which configures it");
    }
    let policy = config.policy(&branch.policy, &office).await?;
    let started = Instant::now();
    let mut report = BranchReport { branch: branch.name.clone(), ..Default::default() };
    let outcome: Result<()> = async {
        let agent = sync::agent(&branch, &config.sync)?;
        let status = agent.status().await.map_err(explain).context("the agent is not reachable")?;
        let shop = status.database.as_ref().map_err(|e| anyhow::anyhow!("the shop database is down: {e}"))?;
        let held = shop.assignment.as_ref().map(|a| a.policy.clone()).unwrap_or_default();
        // The same checks as a sync, against the tables the shop holds: right shop, right database.
        sync::check_shop(&branch, &held, &status, false)?;
        if held.same_tables(&policy.tables) {
            report.notes.push(format!("the shop already holds policy {} as configured; nothing to change", policy.name));
            return Ok(());
        }
        let progress = Progress::for_branch(&branch.name);
        let before = sync::sync_branch(config, &branch, &policy.with_tables(&held), sync::SyncOptions::default(), &progress)
            .await;
        if let Some(e) = before.error {
            anyhow::bail!("the sync before the change failed, nothing was changed: {e}");
        }
        report.absorb(&before);
        // Recorded before the shop changes: if anything below fails, any later sync still sends these whole.
        let mut load_whole: Vec<String> = newly_received(&held, &policy.tables).iter().map(|t| t.to_string()).collect();
        load_whole.extend(branch.pending_whole.iter().filter(|t| !load_whole.contains(t)).cloned().collect::<Vec<_>>());
        records::set_pending_whole(&office, &branch.name, &load_whole).await?;
        // The office captures the tables it now sends, as `init` does for the policies it knew then.
        crate::commands::init::prepare(&office, &policy, config.sync.id_range).await?;
        let theirs = agent
            .configure(&policy.assignment(&branch.name, branch.id_range))
            .await
            .map_err(explain)
            .context("configure")?;
        let ours = Catalog::load(&office, &policy.tables.all()).await?.fingerprint();
        if theirs != ours {
            report.notes.push("the shop's schema fingerprint differs from the office's".into());
        }
        agent.setidstart(branch.id_start()).await.map_err(explain).context("setidstart")?;
        let branch = records::find(&office, &branch.name).await?;
        let options = sync::SyncOptions::default();
        let after = sync::sync_branch(config, &branch, &policy, options, &progress).await;
        report.absorb(&after);
        if let Some(e) = after.error {
            anyhow::bail!(
                "the shop holds the new policy, but the sync that loads it failed: {e}; fix the cause and run `sync {}`, which finishes the load",
                branch.name
            );
        }
        Ok(())
    }
    .await;
    conclude(config, &branch, report, started, outcome, "reconfigure").await
}

/// The tables the shop receives under `new` and did not receive in every sync under `old`, which the office
/// therefore sends whole once: a table new to the shop, or one it received only at its initialisation. An
/// `initial` table that stays `initial` is not sent again.
pub fn newly_received(old: &TablePolicy, new: &TablePolicy) -> Vec<TableName> {
    let every_sync: BTreeSet<TableName> = old.to_shop().into_iter().collect();
    let once: BTreeSet<TableName> = old.initial.iter().cloned().collect();
    new.to_shop_initially()
        .into_iter()
        .filter(|t| {
            let stays_initial = once.contains(t) && new.initial.contains(t);
            !every_sync.contains(t) && !stays_initial
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> TableName {
        TableName::parse(name).unwrap()
    }

    #[test]
    fn newly_received_tables_are_those_not_sent_in_every_sync_before() {
        let old = TablePolicy {
            from_source: vec![t("product")],
            from_target: vec![t("sale")],
            both: vec![t("person")],
            initial: vec![t("parameter"), t("tax")],
        };
        let new = TablePolicy {
            from_source: vec![t("product"), t("category"), t("tax")],
            from_target: vec![t("sale")],
            both: vec![t("person"), t("note")],
            initial: vec![t("parameter"), t("region")],
        };
        // category and note are new, tax was sent once and is now sent in every sync, region is a new initial
        // table; parameter stays initial and product and person were sent all along.
        assert_eq!(newly_received(&old, &new), vec![t("category"), t("tax"), t("note"), t("region")]);
        assert!(newly_received(&new, &new).is_empty());
    }
}
