//! `office-controller branch remove NAME`: forgets a branch (its log and conflicts stay for the record).

use anyhow::{Result, bail};
use serde_json::json;

use crate::commands::Output;
use crate::config::Config;
use crate::{records, sync};

/// Runs `branch remove`.
pub async fn run(config: &Config, name: &str) -> Result<Output> {
    let office = sync::office(config).await?;
    if !records::remove(&office, name).await? {
        bail!("no branch named {name}, see `office-controller branch list`");
    }
    Ok(Output::ok(format!("branch {name} removed\n"), json!({"removed": name})))
}
