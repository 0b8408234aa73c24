//! `office-controller status`: every branch with its last sync, lag, office changes waiting for it, last error,
//! and the live status of its agent.

use std::time::Duration;

use agent_client::Retry;
use anyhow::Result;
use protocol::cursor::Cursor;
use serde_json::json;

use crate::commands::Output;
use crate::config::Config;
use crate::output::table;
use crate::{records, sync};

/// Runs `status`.
pub async fn run(config: &Config) -> Result<Output> {
    let office = sync::office(config).await?;
    let branches = records::branches(&office).await?;
    let mut rows = Vec::new();
    let mut report = Vec::new();
    for b in &branches {
        let cursor = b.push_cursor.as_deref().and_then(|c| c.parse::<Cursor>().ok());
        let waiting = pgsync::schema::pending_changes(&office, cursor.as_ref(), Some(&b.name)).await?;
        let lag = records::lag_seconds(&office, &b.name).await?;
        // The live status must not hold up the whole listing: a short timeout, no retries.
        let live = match sync::agent(b, &config.sync) {
            Ok(agent) => {
                match tokio::time::timeout(Duration::from_secs(5), agent.with_retry(Retry::NONE).status()).await {
                    Ok(Ok(s)) => {
                        let pending = s.database.as_ref().map(|d| d.pending_changes).unwrap_or(0);
                        let db = s.database.is_ok();
                        (
                            format!("up, db {}, {pending} pending at shop", if db { "ok" } else { "DOWN" }),
                            json!({"up": true, "database_ok": db, "pending_changes": pending}),
                        )
                    }
                    Ok(Err(e)) => (format!("error: {e}"), json!({"up": false, "error": e.to_string()})),
                    Err(_) => ("no answer in 5 s".to_string(), json!({"up": false, "error": "timeout"})),
                }
            }
            Err(e) => (format!("{e}"), json!({"up": false, "error": e.to_string()})),
        };
        let lag_text = lag.map(|s| format!("{:.0}s", s)).unwrap_or_else(|| "never synced".into());
        rows.push(vec![
            b.name.clone(),
            b.timestamp.clone().unwrap_or_else(|| "never".into()),
            lag_text,
            waiting.to_string(),
            b.last_error.clone().unwrap_or_default(),
            live.0,
        ]);
        report.push(
            json!({"branch": b.name, "last_sync": b.timestamp, "lag_seconds": lag, "office_changes_waiting": waiting,
                           "last_error": b.last_error, "agent": live.1}),
        );
    }
    Ok(Output::ok(table(&["branch", "last sync", "lag", "waiting", "last error", "agent"], &rows), json!(report)))
}
