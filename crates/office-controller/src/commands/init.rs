//! `office-controller init`: installs the office's sync schema, its records, and change capture on every table
//! the office sends under any policy; caps the office's own id sequences below branch 1's range.

use anyhow::{Context, Result};
use serde_json::json;

use crate::commands::Output;
use crate::config::{Config, Policy};
use crate::{records, sync};

/// Runs `init`.
pub async fn run(config: &Config) -> Result<Output> {
    let office = sync::office(config).await?;
    pgsync::schema::install(&office).await?;
    records::install(&office).await?;
    let mut captured = std::collections::BTreeSet::new();
    let mut capped = Vec::new();
    for name in config.policies.keys() {
        let policy = config.policy(name, &office).await?;
        let (tables, sequences) = prepare(&office, &policy, config.sync.id_range).await?;
        captured.extend(tables);
        capped.extend(sequences);
    }
    let tables: Vec<String> = captured.iter().map(|t| t.to_string()).collect();
    let text = format!("office sync schema ready; capturing changes on {}\n", tables.join(", "));
    Ok(Output::ok(text, json!({"captured": tables, "capped_sequences": capped})))
}

/// Readies the office for one policy: change capture on every table it sends under it, and its own sequences
/// of `both` tables capped below branch 1's range. Idempotent: `branch reconfigure` runs it for a changed
/// policy. Returns the tables captured and the sequences capped.
pub async fn prepare(
    office: &tokio_postgres::Client,
    policy: &Policy,
    id_range: i64,
) -> Result<(Vec<protocol::payload::TableName>, Vec<String>)> {
    let mut captured = Vec::new();
    let mut capped = Vec::new();
    let catalog = pgsync::Catalog::load(office, &policy.tables.to_shop_initially()).await?;
    for table in catalog.tables() {
        pgsync::schema::install_capture(office, table)
            .await
            .with_context(|| format!("cannot capture changes on {}", table.name))?;
        captured.push(table.name.clone());
    }
    // The office is branch 0: its sequences of `both` tables stay below branch 1's first id.
    for table in pgsync::Catalog::load(office, &policy.tables.both).await?.tables() {
        for (_, sequence) in &table.sequences {
            let max = id_range - 1;
            let last: i64 = office.query_one(&format!("SELECT last_value FROM {sequence}"), &[]).await?.get(0);
            if last <= max {
                office.batch_execute(&format!("ALTER SEQUENCE {sequence} MAXVALUE {max}")).await?;
                capped.push(sequence.clone());
            }
        }
    }
    Ok((captured, capped))
}
