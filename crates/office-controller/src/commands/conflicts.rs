//! `office-controller conflicts [--branch NAME] [--limit N]`: the recorded conflicts with both versions, the
//! rule and the decision, newest first.

use anyhow::Result;
use serde_json::json;

use crate::commands::Output;
use crate::commands::log::LogArgs;
use crate::config::Config;
use crate::output::table;
use crate::sync;

/// Runs `conflicts`.
pub async fn run(config: &Config, args: LogArgs) -> Result<Output> {
    let office = sync::office(config).await?;
    let found = pgsync::recorded_conflicts(&office, args.branch.as_deref(), args.limit).await?;
    let json = json!(found
        .iter()
        .map(|c| json!({"at": c.at, "branch": c.branch, "table": c.table, "key": c.key, "rule": c.rule, "decision": c.decision, "office_version": c.office_version, "shop_version": c.shop_version}))
        .collect::<Vec<_>>());
    let brief: Vec<Vec<String>> = found
        .iter()
        .map(|c| {
            vec![c.at.clone(), c.branch.clone(), c.table.clone(), c.key.clone(), c.rule.clone(), c.decision.clone()]
        })
        .collect();
    Ok(Output::ok(table(&["time (UTC)", "branch", "table", "key", "rule", "decision"], &brief), json))
}
