//! `office-controller log [--branch NAME] [--limit N]`: the sync log, newest first (time, branch, table,
//! direction, rows, bytes, result, message).

use anyhow::Result;
use serde_json::json;

use crate::commands::Output;
use crate::config::Config;
use crate::output::table;
use crate::sync;

/// Arguments of `log`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Only this branch.
    #[arg(long)]
    pub branch: Option<String>,
    /// At most this many rows.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
}

/// Runs `log`.
pub async fn run(config: &Config, args: LogArgs) -> Result<Output> {
    let office = sync::office(config).await?;
    let found = office
        .query(
            "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), branch, tbl, direction, rows, bytes, result, coalesce(message, '') \
             FROM branchsync.sync_log WHERE $1::text IS NULL OR branch = $1 ORDER BY id DESC LIMIT $2",
            &[&args.branch, &args.limit],
        )
        .await?;
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|r| {
            let bytes: Option<i64> = r.get(5);
            vec![
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get::<_, i64>(4).to_string(),
                bytes.map(|b| b.to_string()).unwrap_or_default(),
                r.get(6),
                r.get(7),
            ]
        })
        .collect();
    let json = json!(rows
        .iter()
        .map(|r| json!({"at": r[0], "branch": r[1], "table": r[2], "direction": r[3], "rows": r[4].parse::<i64>().unwrap_or(0),
                        "bytes": r[5].parse::<i64>().ok(), "result": r[6], "message": r[7]}))
        .collect::<Vec<_>>());
    Ok(Output::ok(
        table(&["time (UTC)", "branch", "table", "direction", "rows", "bytes", "result", "message"], &rows),
        json,
    ))
}
