//! `office-controller verify NAME | --all`: per-table row counts and checksums on both sides, each table told
//! apart as in sync, in flight (a side holds changes of it the other has not received yet: they arrive with the
//! next sync) or drifted (the sides differ and nothing is on its way), with the command that repairs drift.
//! Tables the shop writes (`from_target`) hold every branch's rows at the office, so there only the rows of the
//! branch's id range from where its shop's history starts (its initialisation) are compared, on both sides;
//! `initial` tables are sent once and then belong to each side, so they are not compared.

use anyhow::Result;
use pgsync::Catalog;
use protocol::cursor::Cursor;
use serde_json::json;

use crate::commands::Output;
use crate::config::Config;
use crate::output::table;
use crate::records::{self, Branch};
use crate::sync;

/// Arguments of `verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The branch.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Every initialised branch.
    #[arg(long)]
    pub all: bool,
}

/// Runs `verify` for one branch.
pub async fn run(config: &Config, name: &str) -> Result<Output> {
    run_with(config, VerifyArgs { name: Some(name.into()), all: false }).await
}

/// Runs `verify` for the branches `args` names.
pub async fn run_with(config: &Config, args: VerifyArgs) -> Result<Output> {
    let office = sync::office(config).await?;
    let branches: Vec<Branch> = match &args.name {
        Some(name) if !args.all => vec![records::find(&office, name).await?],
        _ => records::branches(&office).await?.into_iter().filter(|b| b.initialised_at.is_some()).collect(),
    };
    let mut text = String::new();
    let mut reports = Vec::new();
    let mut ok = true;
    for branch in &branches {
        let out = match branch_verdict(config, &office, branch).await {
            Ok(out) => out,
            Err(e) => Output {
                text: format!("branch {}: cannot verify: {e:#}\n", branch.name),
                json: json!({"branch": branch.name, "error": format!("{e:#}")}),
                ok: false,
                exit_code: None,
            },
        };
        ok &= out.ok;
        if args.all {
            text.push_str(&format!("{}:\n", branch.name));
        }
        text.push_str(&out.text);
        reports.push(out.json);
    }
    if args.all {
        if branches.is_empty() {
            text.push_str("no initialised branch to verify\n");
        }
        let drift: i64 = reports.iter().filter_map(|r| r["drift"].as_i64()).sum();
        return Ok(Output { text, json: json!({"branches": reports, "drift": drift}), ok, exit_code: None });
    }
    let json = reports.pop().unwrap_or(serde_json::Value::Null);
    Ok(Output { text, json, ok, exit_code: None })
}

/// What one table's comparison found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InSync,
    InFlight,
    Drift,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::InSync => "in sync",
            State::InFlight => "in flight",
            State::Drift => "DRIFT",
        }
    }
}

async fn branch_verdict(config: &Config, office: &tokio_postgres::Client, branch: &Branch) -> Result<Output> {
    let name = &branch.name;
    if branch.initialised_at.is_none() {
        anyhow::bail!("branch {name} is not initialised, run `office-controller branch init {name}`");
    }
    let policy = config.policy(&branch.policy, office).await?;
    let agent = sync::agent(branch, &config.sync)?;
    let from = branch.history_from.unwrap_or(branch.id_start());
    let theirs = agent.verify(Some(from)).await.map_err(sync::explain)?;
    // Office changes the shop has not applied: those of other origins after the cursor it applied.
    let applied = branch.push_cursor.as_deref().and_then(|c| c.parse::<Cursor>().ok());
    let office_pending = pgsync::schema::pending_by_table(office, applied.as_ref(), Some(name)).await?;
    let catalog = Catalog::load(office, &policy.tables.all()).await?;
    let end = branch.id_end();
    let (mut rows, mut report) = (Vec::new(), Vec::new());
    let (mut drift, mut in_flight) = (0, 0);
    for table in catalog.tables() {
        let key = table.name.to_string();
        let shop_written = policy.tables.from_target.contains(&table.name);
        let why_not = if policy.tables.initial.contains(&table.name) {
            Some("sent once at initialisation, then each side's own")
        } else if shop_written && catalog.range_column(table, &policy.tables.from_target).is_none() {
            Some("no id-range column")
        } else {
            None
        };
        if let Some(why) = why_not {
            rows.push(vec![key.clone(), "-".into(), "-".into(), format!("not compared: {why}")]);
            report.push(json!({"table": key, "state": "not_compared", "why": why, "equal": true}));
            continue;
        }
        let range = if shop_written { catalog.range_column(table, &policy.tables.from_target) } else { None };
        let ours = pgsync::checksum_where(office, table, range.as_deref().map(|c| (c, from, end))).await?;
        let sum = theirs.get(&key);
        let (shop_rows, shop_sum) = sum.map(|s| (s.rows, s.checksum.as_str())).unwrap_or((-1, ""));
        let toward_shop = if shop_written { 0 } else { office_pending.get(&key).copied().unwrap_or(0) };
        let toward_office = sum.and_then(|s| s.pending).unwrap_or(0);
        let state = if shop_rows == ours.rows && shop_sum == ours.digest {
            State::InSync
        } else if toward_shop > 0 || toward_office > 0 {
            in_flight += 1;
            State::InFlight
        } else {
            drift += 1;
            State::Drift
        };
        let result = match state {
            State::InFlight => {
                format!(
                    "in flight: {toward_shop} changes to the shop, {toward_office} to the office; the next sync brings them"
                )
            }
            State::Drift => format!("DRIFT: `sync --full {name}` repairs it"),
            State::InSync => state.name().into(),
        };
        rows.push(vec![key.clone(), ours.rows.to_string(), shop_rows.to_string(), result]);
        report.push(json!({
            "table": key,
            "office_rows": ours.rows,
            "shop_rows": shop_rows,
            "state": state.name().to_lowercase().replace(' ', "_"),
            "equal": state == State::InSync,
            "pending_to_shop": toward_shop,
            "pending_to_office": toward_office,
            "repair": (state == State::Drift).then(|| format!("office-controller sync --full {name}")),
        }));
    }
    let mut text = table(&["table", "office rows", "shop rows", "result"], &rows);
    if drift > 0 {
        text.push_str(&format!(
            "{drift} tables differ on branch {name} with nothing on its way: `office-controller sync --full {name}` \
             makes the shop's catalogue equal the office's and pulls every row of the shop again, comparing it\n"
        ));
    } else if in_flight > 0 {
        text.push_str(&format!(
            "branch {name} has no drift; {in_flight} tables have changes on their way, compare again after `sync {name}`\n"
        ));
    } else {
        text.push_str(&format!("branch {name} equals the office\n"));
    }
    if from > branch.id_start() {
        text.push_str(&format!(
            "(rows the shop sent before id {from} are compared no more: the shop was initialised again or restored)\n"
        ));
    }
    Ok(Output {
        text,
        json: json!({"branch": name, "tables": report, "drift": drift, "in_flight": in_flight, "history_from": from}),
        ok: drift == 0,
        exit_code: None,
    })
}
