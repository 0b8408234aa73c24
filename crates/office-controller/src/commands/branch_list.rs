//! `office-controller branch list`: every branch with its number, policy, agent and last sync.

use anyhow::Result;
use serde_json::json;

use crate::commands::Output;
use crate::config::Config;
use crate::output::table;
use crate::{records, sync};

/// Runs `branch list`.
pub async fn run(config: &Config) -> Result<Output> {
    let office = sync::office(config).await?;
    let branches = records::branches(&office).await?;
    let rows: Vec<Vec<String>> = branches
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.number.to_string(),
                b.policy.clone(),
                b.url.clone(),
                b.initialised_at.clone().unwrap_or_else(|| "not initialised".into()),
                b.timestamp.clone().unwrap_or_else(|| "never".into()),
            ]
        })
        .collect();
    let json =
        json!(branches
        .iter()
        .map(|b| json!({"branch": b.name, "number": b.number, "policy": b.policy, "url": b.url, "user": b.username,
                        "initialised_at": b.initialised_at, "last_sync": b.timestamp, "last_error": b.last_error}))
        .collect::<Vec<_>>());
    Ok(Output::ok(table(&["branch", "number", "policy", "url", "initialised", "last sync"], &rows), json))
}
