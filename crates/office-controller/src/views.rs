//! The office's objects as scripts see them: one set of serde types for the CLI's `--json` output and the
//! service's JSON API alike, times in RFC 3339 UTC everywhere, and one shape per object whether its agent is up
//! or down (absent facts are `null`, never missing members). Built from the records, never the records
//! themselves: a database row type does not leak onto the wire.

use std::time::Duration;

use agent_client::Retry;
use anyhow::Result;
use futures_util::StreamExt;
use jiff::Timestamp;
use protocol::cursor::Cursor;
use serde::Serialize;
use tokio_postgres::Client;

use crate::config::Config;
use crate::records::{self, Branch};
use crate::schedule::Schedule;
use crate::sync;

/// One branch as office staff and monitoring need it.
#[derive(Debug, Clone, Serialize)]
pub struct BranchState {
    /// The branch's name.
    pub name: String,
    /// Its number (its id range starts at `number × id_range`).
    pub number: i64,
    /// The agent's URL.
    pub url: String,
    /// The policy's name.
    pub policy: String,
    /// The first and last id of its range.
    pub id_range: [i64; 2],
    /// `in_sync`, `behind` (no success within two intervals), `failing` (the last attempt failed), `paused`, or
    /// `never_initialised`.
    pub state: &'static str,
    /// When `branch init` completed.
    pub initialised_at: Option<String>,
    /// The last successful sync.
    pub last_sync: Option<String>,
    /// When the last attempt ended.
    pub last_attempt: Option<String>,
    /// `ok`, `error` or `never`.
    pub last_result: &'static str,
    /// Seconds since the last successful sync.
    pub lag_seconds: Option<f64>,
    /// Office changes the shop has not applied yet.
    pub office_changes_waiting: i64,
    /// The last attempt's error and what to do about it.
    pub last_error: Option<ErrorView>,
    /// The agent, as it answered just now (when asked).
    pub agent: AgentView,
    /// When the service runs its jobs.
    pub schedule: ScheduleView,
    /// The branch's running or last job in `serve`.
    pub job: Option<JobView>,
}

/// An error with the operator's next step.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    /// What went wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
}

/// The agent's live status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentView {
    /// When it was asked; `null` when it was not.
    pub checked_at: Option<String>,
    /// Whether it answered.
    pub up: Option<bool>,
    /// Its version.
    pub version: Option<String>,
    /// Whether its database answered.
    pub database_ok: Option<bool>,
    /// Changes captured at the shop that the office has not confirmed.
    pub pending_changes: Option<i64>,
    /// Why it did not answer, or its database's error.
    pub error: Option<String>,
    /// The last fault it returned.
    pub last_error: Option<String>,
    /// When it returned that fault.
    pub last_error_at: Option<String>,
}

/// A branch's schedule in the service.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleView {
    /// Seconds between incremental syncs.
    pub interval_seconds: u64,
    /// Paused: no job at all.
    pub paused: bool,
    /// The recurring pull.
    pub pull: bool,
    /// The recurring push.
    pub push: bool,
    /// The next incremental slot.
    pub next_sync_at: String,
    /// The next daily complete sync.
    pub next_complete_sync_at: String,
    /// The next daily verify, if one is configured.
    pub next_verify_at: Option<String>,
}

/// A branch's job in `serve`: running (`finished_at` null) or the last one.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// `incremental`, `daily` or `verify`.
    pub job: String,
    /// The service process running it (`host:pid:nonce`).
    pub holder: String,
    /// When it started.
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Whether it succeeded.
    pub ok: Option<bool>,
}

/// One sync-log entry.
#[derive(Debug, Clone, Serialize)]
pub struct LogView {
    /// Its id.
    pub id: i64,
    /// When.
    pub at: String,
    /// The branch.
    pub branch: String,
    /// `schema.table`, or `*` for the whole exchange.
    pub table: String,
    /// `pull`, `push`, `sync`, `init` or `verify`.
    pub direction: String,
    /// Rows moved.
    pub rows: i64,
    /// Compressed bytes, when known.
    pub bytes: Option<i64>,
    /// `ok`, `error`, `fallback` or `drift`.
    pub result: String,
    /// What an operator should know.
    pub message: String,
}

/// One recorded conflict with both versions.
#[derive(Debug, Clone, Serialize)]
pub struct ConflictView {
    /// Its id.
    pub id: i64,
    /// When it was decided.
    pub at: String,
    /// The branch.
    pub branch: String,
    /// The table.
    pub table: String,
    /// The key, its columns joined by commas.
    pub key: String,
    /// The rule that decided.
    pub rule: String,
    /// `office` or `shop`.
    pub decision: String,
    /// The office's row; `null` when the office had deleted it.
    pub office_version: Option<serde_json::Value>,
    /// The shop's row; `null` when the shop had deleted it.
    pub shop_version: Option<serde_json::Value>,
}

/// What to do about a sync error, from its words.
pub fn hint(error: &str) -> String {
    let e = error.to_ascii_lowercase();
    let says = |words: &[&str]| words.iter().any(|w| e.contains(w));
    if says(&["run `", "branch set", "branch init", "branch reconfigure", "--rebind"]) {
        "follow the command the message names".into()
    } else if says(&["401", "credential", "authentication", "password"]) {
        "the agent refused the office's login: check the branch's password (`branch set NAME --password-file`) against the agent's users".into()
    } else if says(&["connect", "refused", "unreachable", "timed out", "timeout", "dns", "no answer"]) {
        "the agent is not reachable: check that shop-agent runs at the shop, its line, and the branch's URL".into()
    } else if says(&["database"]) && says(&["shop"]) {
        "the shop's database is down or refused the agent: check PostgreSQL at the shop".into()
    } else if says(&["another controller", "another service"]) {
        "another sync of this branch was running; the next slot retries".into()
    } else if says(&["deadline", "job_timeout"]) {
        "the sync ran out of time: what was applied stays; raise the deadline or check the line's speed".into()
    } else {
        "see the branch's sync log (`office-controller log --branch NAME`)".into()
    }
}

fn from_unix(seconds: i64) -> Option<String> {
    (seconds > 0).then(|| Timestamp::from_second(seconds).ok()).flatten().map(|t| t.to_string())
}

/// Asks the branch's agent for its status within `timeout`, without retries: a listing is not held up by a
/// shop that is down.
pub async fn agent_view(config: &Config, branch: &Branch, timeout: Duration) -> AgentView {
    let mut view = AgentView { checked_at: Some(Timestamp::now().to_string()), ..Default::default() };
    let agent = match sync::agent(branch, &config.sync) {
        Ok(agent) => agent.with_retry(Retry::NONE),
        Err(e) => {
            view.up = Some(false);
            view.error = Some(format!("{e:#}"));
            return view;
        }
    };
    match tokio::time::timeout(timeout, agent.status()).await {
        Ok(Ok(s)) => {
            view.up = Some(true);
            view.version = Some(s.version.clone());
            view.last_error = (!s.last_error.is_empty()).then(|| s.last_error.clone());
            view.last_error_at = from_unix(s.last_error_unix);
            match &s.database {
                Ok(db) => {
                    view.database_ok = Some(true);
                    view.pending_changes = Some(db.pending_changes);
                }
                Err(e) => {
                    view.database_ok = Some(false);
                    view.error = Some(e.clone());
                }
            }
        }
        Ok(Err(e)) => {
            view.up = Some(false);
            view.error = Some(e.to_string());
        }
        Err(_) => {
            view.up = Some(false);
            view.error = Some(format!("no answer within {} s", timeout.as_secs()));
        }
    }
    view
}

/// Every branch's state (or only `only`), the agents asked at most 16 at once when `live`.
pub async fn branch_states(
    config: &Config,
    office: &Client,
    schedule: &Schedule,
    live: bool,
    only: Option<&str>,
) -> Result<Vec<BranchState>> {
    let branches = match only {
        Some(name) => vec![records::find(office, name).await?],
        None => records::branches(office).await?,
    };
    let claims = records::claims(office).await?;
    let mut states = Vec::with_capacity(branches.len());
    for b in &branches {
        let cursor = b.push_cursor.as_deref().and_then(|c| c.parse::<Cursor>().ok());
        let waiting = pgsync::schema::pending_changes(office, cursor.as_ref(), Some(&b.name)).await?;
        let lag = records::lag_seconds(office, &b.name).await?;
        let job = claims.iter().find(|c| c.branch == b.name).map(|c| JobView {
            job: c.job.clone(),
            holder: c.holder.clone(),
            started_at: c.claimed_at.clone(),
            finished_at: c.finished_at.clone(),
            ok: c.ok,
        });
        states.push(state_of(b, schedule, lag, waiting, job));
    }
    if live {
        let timeout = Duration::from_secs(5);
        // A loop, not a closure: a closure returning a future that borrows its argument makes the caller's
        // future not general enough to be `Send` for the API's handlers.
        let mut asks = Vec::with_capacity(branches.len());
        for b in &branches {
            asks.push(agent_view(config, b, timeout));
        }
        let views: Vec<AgentView> = futures_util::stream::iter(asks).buffered(16).collect().await;
        for (state, view) in states.iter_mut().zip(views) {
            state.agent = view;
        }
    }
    Ok(states)
}

fn state_of(b: &Branch, schedule: &Schedule, lag: Option<f64>, waiting: i64, job: Option<JobView>) -> BranchState {
    let overrides = schedule.branch(&b.name);
    let interval = schedule.interval_of(&b.name);
    let now = Timestamp::now();
    let failed = b.last_error.is_some();
    let state = if b.initialised_at.is_none() {
        "never_initialised"
    } else if overrides.paused {
        "paused"
    } else if failed {
        "failing"
    } else if lag.is_none_or(|l| l > 2.0 * interval.as_secs_f64()) {
        "behind"
    } else {
        "in_sync"
    };
    BranchState {
        name: b.name.clone(),
        number: b.number,
        url: b.url.clone(),
        policy: b.policy.clone(),
        id_range: [b.id_start(), b.id_end()],
        state,
        initialised_at: b.initialised_at.clone(),
        last_sync: b.timestamp.clone(),
        last_attempt: b.last_attempt.clone(),
        last_result: match (&b.last_attempt, failed) {
            (_, true) => "error",
            (Some(_), false) => "ok",
            (None, false) if b.timestamp.is_some() => "ok",
            (None, false) => "never",
        },
        lag_seconds: lag.map(|l| l.max(0.0)),
        office_changes_waiting: waiting,
        last_error: b.last_error.as_ref().map(|m| ErrorView { message: m.clone(), hint: hint(m) }),
        agent: AgentView::default(),
        schedule: ScheduleView {
            interval_seconds: interval.as_secs(),
            paused: overrides.paused,
            pull: overrides.pull,
            push: overrides.push,
            next_sync_at: schedule.next_incremental(&b.name, now).to_string(),
            next_complete_sync_at: schedule.next_daily(now).to_string(),
            next_verify_at: schedule.verify_at.map(|at| schedule.next_at(at, now).to_string()),
        },
        job,
    }
}

/// The sync log's entries.
pub fn log_views(rows: Vec<records::LogRow>) -> Vec<LogView> {
    rows.into_iter()
        .map(|r| LogView {
            id: r.id,
            at: r.at,
            branch: r.branch,
            table: r.table,
            direction: r.direction,
            rows: r.rows,
            bytes: r.bytes,
            result: r.result,
            message: r.message,
        })
        .collect()
}

/// The recorded conflicts, each version parsed back into JSON.
pub fn conflict_views(rows: Vec<pgsync::RecordedConflict>) -> Vec<ConflictView> {
    let version =
        |v: &str| (v != "deleted").then(|| serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.into())));
    rows.into_iter()
        .map(|c| ConflictView {
            id: c.id,
            office_version: version(&c.office_version),
            shop_version: version(&c.shop_version),
            at: c.at,
            branch: c.branch,
            table: c.table,
            key: c.key,
            rule: c.rule,
            decision: c.decision,
        })
        .collect()
}

/// What an action of the API (sync now, complete sync, verify) did.
#[derive(Debug, Clone, Serialize)]
pub struct ActionView {
    /// The branch.
    pub branch: String,
    /// `incremental`, `daily` (the complete sync) or `verify`.
    pub job: &'static str,
    /// Started (or, when waited for, run) by this request; false when another job of the branch was running.
    pub accepted: bool,
    /// When waited for: whether it succeeded.
    pub ok: Option<bool>,
    /// When waited for: the report, as the CLI's `--json` prints it.
    pub report: Option<serde_json::Value>,
}

/// An API error's body.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `busy`, `unavailable` or `internal`.
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
}
