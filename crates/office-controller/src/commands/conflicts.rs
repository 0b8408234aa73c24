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
    let found = office
        .query(
            "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), branch, tbl, array_to_string(pk, ','), rule, decision, \
                    coalesce(office_version::text, 'deleted'), coalesce(shop_version::text, 'deleted') \
             FROM branchsync.conflict WHERE $1::text IS NULL OR branch = $1 ORDER BY id DESC LIMIT $2",
            &[&args.branch, &args.limit],
        )
        .await?;
    let rows: Vec<Vec<String>> = found.iter().map(|r| (0..8).map(|i| r.get::<_, String>(i)).collect()).collect();
    let json = json!(rows
        .iter()
        .map(|r| json!({"at": r[0], "branch": r[1], "table": r[2], "key": r[3], "rule": r[4], "decision": r[5], "office_version": r[6], "shop_version": r[7]}))
        .collect::<Vec<_>>());
    let brief: Vec<Vec<String>> = rows.iter().map(|r| r[..6].to_vec()).collect();
    Ok(Output::ok(table(&["time (UTC)", "branch", "table", "key", "rule", "decision"], &brief), json))
}
