//! `office-controller status [BRANCH] [--check --warn 1h --crit 4h]`: every branch with its state, last sync,
//! lag, office changes waiting for it, last error with its hint, and the live status of its agent; or, with
//! `--check`, one line and the Nagios/Icinga exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) for monitoring.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::commands::Output;
use crate::config::Config;
use crate::output::table;
use crate::schedule::Schedule;
use crate::sync;
use crate::views::{self, BranchState};

/// Arguments of `status`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StatusArgs {
    /// Only this branch.
    pub name: Option<String>,
    /// A monitoring check: one line of output and the Nagios exit code.
    #[arg(long)]
    pub check: bool,
    /// With --check: WARNING when a branch's last successful sync is older than this (`90s`, `30m`, `1h`, `2d`).
    #[arg(long, default_value = "1h")]
    pub warn: String,
    /// With --check: CRITICAL when older than this, or when its agent does not answer.
    #[arg(long, default_value = "4h")]
    pub crit: String,
}

/// Runs `status` for every branch.
pub async fn run(config: &Config) -> Result<Output> {
    run_with(config, StatusArgs { warn: "1h".into(), crit: "4h".into(), ..Default::default() }).await
}

/// Runs `status` as `args` say.
pub async fn run_with(config: &Config, args: StatusArgs) -> Result<Output> {
    if args.check {
        return Ok(match check(config, &args).await {
            Ok(out) => out,
            // Monitoring must tell "cannot tell" from "down": 3, with the reason on the one line.
            Err(e) => Output {
                text: format!("BRANCHSYNC UNKNOWN - {}\n", format!("{e:#}").replace('\n', " ")),
                json: serde_json::json!({"status": "unknown", "error": format!("{e:#}")}),
                ok: false,
                exit_code: Some(3),
            },
        });
    }
    let states = states(config, args.name.as_deref()).await?;
    let rows: Vec<Vec<String>> = states
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.state.replace('_', " "),
                s.last_sync.clone().unwrap_or_else(|| "never".into()),
                s.lag_seconds.map(|l| format!("{l:.0}s")).unwrap_or_else(|| "never synced".into()),
                s.office_changes_waiting.to_string(),
                s.last_error.as_ref().map(|e| format!("{} ({})", e.message, e.hint)).unwrap_or_default(),
                agent_text(s),
            ]
        })
        .collect();
    Ok(Output::ok(
        table(&["branch", "state", "last sync", "lag", "waiting", "last error", "agent"], &rows),
        serde_json::to_value(&states)?,
    ))
}

async fn states(config: &Config, only: Option<&str>) -> Result<Vec<BranchState>> {
    let office = sync::office(config).await?;
    let schedule = Schedule::from_config(&config.schedule)?;
    views::branch_states(config, &office, &schedule, true, only).await
}

fn agent_text(s: &BranchState) -> String {
    let a = &s.agent;
    match (a.up, a.database_ok) {
        (Some(true), Some(true)) => format!("up, db ok, {} pending at shop", a.pending_changes.unwrap_or(0)),
        (Some(true), _) => format!("up, db DOWN: {}", a.error.clone().unwrap_or_default()),
        (Some(false), _) => format!("DOWN: {}", a.error.clone().unwrap_or_default()),
        (None, _) => "not asked".into(),
    }
}

/// `90s`, `30m`, `1h`, `2d`, or plain seconds.
fn duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 =
        number.parse().map_err(|_| anyhow::anyhow!("{text:?} is not a duration: write e.g. 90s, 30m, 1h or 2d"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => bail!("{text:?} is not a duration: write e.g. 90s, 30m, 1h or 2d"),
    };
    Ok(Duration::from_secs(seconds))
}

/// The monitoring check: the worst branch decides the code; paused and never-initialised branches are left out.
async fn check(config: &Config, args: &StatusArgs) -> Result<Output> {
    let (warn, crit) = (duration(&args.warn)?, duration(&args.crit)?);
    if warn > crit {
        bail!("--warn ({}) must not be longer than --crit ({})", args.warn, args.crit);
    }
    let states = states(config, args.name.as_deref()).await?;
    let watched: Vec<&BranchState> =
        states.iter().filter(|s| !matches!(s.state, "paused" | "never_initialised")).collect();
    let mut code = 0u8;
    let mut problems = Vec::new();
    let mut perf = Vec::new();
    for s in &watched {
        let lag = s.lag_seconds;
        let (level, why) = if s.agent.up == Some(false) {
            (2, format!("{} agent down ({})", s.name, s.agent.error.clone().unwrap_or_default()))
        } else {
            match lag {
                None => (2, format!("{} never synced", s.name)),
                Some(l) if l > crit.as_secs_f64() => (2, format!("{} last sync {} ago", s.name, ago(l))),
                Some(l) if l > warn.as_secs_f64() => (1, format!("{} last sync {} ago", s.name, ago(l))),
                _ => (0, String::new()),
            }
        };
        if level > 0 {
            problems.push(why);
        }
        code = code.max(level);
        perf.push(format!("'lag_{}'={:.0}s;{};{}", s.name, lag.unwrap_or(0.0), warn.as_secs(), crit.as_secs()));
    }
    let word = ["OK", "WARNING", "CRITICAL"][code as usize];
    let summary = if problems.is_empty() {
        format!("{} branch(es) synced within {}", watched.len(), args.warn)
    } else {
        problems.join("; ")
    };
    let line = format!("BRANCHSYNC {word} - {summary} | {}\n", perf.join(" "));
    Ok(Output {
        text: protocol::text::capped(&line.replace('\r', " "), 4000),
        json: serde_json::json!({"status": word.to_lowercase(), "problems": problems, "branches": states}),
        ok: code == 0,
        exit_code: Some(code),
    })
}

fn ago(seconds: f64) -> String {
    let s = seconds as u64;
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
