//! `office-controller conflicts [--branch NAME] [--limit N]`: the recorded conflicts with both versions, the
//! rule and the decision, newest first.

use anyhow::Result;

use crate::commands::Output;
use crate::commands::log::LogArgs;
use crate::config::Config;
use crate::output::table;
use crate::{sync, views};

/// Runs `conflicts`.
pub async fn run(config: &Config, args: LogArgs) -> Result<Output> {
    let office = sync::office(config).await?;
    let found = views::conflict_views(pgsync::recorded_conflicts(&office, args.branch.as_deref(), args.limit).await?);
    let json = serde_json::to_value(&found)?;
    let brief: Vec<Vec<String>> = found
        .iter()
        .map(|c| {
            vec![c.at.clone(), c.branch.clone(), c.table.clone(), c.key.clone(), c.rule.clone(), c.decision.clone()]
        })
        .collect();
    Ok(Output::ok(table(&["time (UTC)", "branch", "table", "key", "rule", "decision"], &brief), json))
}
