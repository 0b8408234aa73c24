//! `office-controller verify NAME`: per-table row counts and checksums on both sides, drift listed by table.
//! Tables the shop writes (`from_target`) hold every branch's rows at the office, so there only the rows in the
//! branch's id range are compared.

use anyhow::Result;
use pgsync::Catalog;
use serde_json::json;

use crate::commands::Output;
use crate::config::Config;
use crate::output::table;
use crate::{records, sync};

/// Runs `verify`.
pub async fn run(config: &Config, name: &str) -> Result<Output> {
    let office = sync::office(config).await?;
    let branch = records::find(&office, name).await?;
    let policy = config.policy(&branch.policy, &office).await?;
    let agent = sync::agent(&branch, &config.sync)?;
    let theirs = agent.verify().await.map_err(sync::explain)?;
    let catalog = Catalog::load(&office, &policy.tables.all()).await?;
    let end = branch.id_start() + branch.id_range - 1;
    let mut rows = Vec::new();
    let mut report = Vec::new();
    let mut drift = 0;
    for table in catalog.tables() {
        let range = if policy.tables.from_target.contains(&table.name) {
            match catalog.range_column(table, &policy.tables.from_target) {
                Some(c) => Some(c),
                None => {
                    rows.push(vec![
                        table.name.to_string(),
                        "-".into(),
                        "-".into(),
                        "not comparable: no id-range column".into(),
                    ]);
                    continue;
                }
            }
        } else {
            None
        };
        let ours =
            pgsync::checksum_where(&office, table, range.as_deref().map(|c| (c, branch.id_start(), end))).await?;
        let (shop_rows, shop_sum) =
            theirs.get(&table.name.to_string()).map(|s| (s.rows, s.checksum.clone())).unwrap_or((-1, String::new()));
        let equal = shop_rows == ours.rows && shop_sum == ours.digest;
        if !equal {
            drift += 1;
        }
        rows.push(vec![
            table.name.to_string(),
            ours.rows.to_string(),
            shop_rows.to_string(),
            if equal { "ok".into() } else { "DRIFT".into() },
        ]);
        report.push(
            json!({"table": table.name.to_string(), "office_rows": ours.rows, "shop_rows": shop_rows, "equal": equal}),
        );
    }
    let mut text = table(&["table", "office rows", "shop rows", "result"], &rows);
    if drift > 0 {
        text.push_str(&format!("{drift} tables differ on branch {name}; `office-controller sync --full {name}` repairs the office's tables at the shop\n"));
    } else {
        text.push_str(&format!("branch {name} equals the office\n"));
    }
    Ok(Output { text, json: json!({"branch": name, "tables": report, "drift": drift}), ok: drift == 0 })
}
