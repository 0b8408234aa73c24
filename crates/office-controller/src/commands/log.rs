//! `office-controller log [--branch NAME] [--limit N]`: the sync log, newest first (time, branch, table,
//! direction, rows, bytes, result, message).

use anyhow::Result;

use crate::commands::Output;
use crate::config::Config;
use crate::output::table;
use crate::{records, sync, views};

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
    let found = views::log_views(records::read_log(&office, args.branch.as_deref(), args.limit).await?);
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|r| {
            vec![
                r.at.clone(),
                r.branch.clone(),
                r.table.clone(),
                r.direction.clone(),
                r.rows.to_string(),
                r.bytes.map(|b| b.to_string()).unwrap_or_default(),
                r.result.clone(),
                r.message.clone(),
            ]
        })
        .collect();
    let json = serde_json::to_value(&found)?;
    Ok(Output::ok(
        table(&["time (UTC)", "branch", "table", "direction", "rows", "bytes", "result", "message"], &rows),
        json,
    ))
}
