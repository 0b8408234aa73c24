//! One job of one branch, wherever it was asked for (the scheduler, the API): claimed in the office database
//! first, so that several `serve` processes sharing the office never run one branch's job twice, run within
//! the job timeout, then released with its result. The sync itself is the CLI's `sync::sync_branch` (which also
//! takes the branch's advisory lock), the verify the CLI's `verify`.

use std::time::Duration;

use anyhow::Result;
use jiff::Timestamp;
use tracing::Instrument;

use crate::records::{self, Branch, LogEntry};
use crate::schedule::Schedule;
use crate::serve::state::Service;
use crate::sync::{self, Progress, SyncOptions};

/// What a job of one branch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// The recurring pull and push (each may be switched off per branch).
    Incremental,
    /// The daily complete sync (`sync --full`).
    Daily,
    /// `verify`, daily or asked for.
    Verify,
}

impl Job {
    /// The name recorded in the claim.
    pub fn name(self) -> &'static str {
        match self {
            Job::Incremental => "incremental",
            Job::Daily => "daily",
            Job::Verify => "verify",
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It ran: whether it succeeded, and its report (the `--json` output of the same CLI command).
    Ran {
        /// Whether it succeeded.
        ok: bool,
        /// The report.
        report: serde_json::Value,
    },
    /// Another service holds the branch's claim, or the job was no longer due when it was claimed.
    NotRun,
}

fn parse(t: &Option<String>) -> Option<Timestamp> {
    t.as_deref().and_then(|t| t.parse::<Timestamp>().ok())
}

/// Which of the daily jobs is due for `branch` at `now`; a branch that never ran one counts from the service's
/// start, so a new service does not run every daily job at once.
pub(crate) fn daily_job(schedule: &Schedule, branch: &Branch, started: Timestamp, now: Timestamp) -> Option<Job> {
    if schedule.daily_due(schedule.daily_at, parse(&branch.last_daily_at).or(Some(started)), now) {
        return Some(Job::Daily);
    }
    let verify = schedule.verify_at?;
    schedule.daily_due(verify, parse(&branch.last_verify_at).or(Some(started)), now).then_some(Job::Verify)
}

/// Whether a daily job is still due once claimed (the branch re-read): another service may have just run it.
pub(crate) fn still_due(schedule: &Schedule, branch: &Branch, job: Job, started: Timestamp) -> bool {
    match job {
        Job::Incremental => true,
        Job::Daily | Job::Verify => daily_job(schedule, branch, started, Timestamp::now()) == Some(job),
    }
}

/// Runs `job` of `branch` once, claimed for this service. `scheduled` jobs check again, once claimed, that the
/// daily job is still due, since another service may have run it a moment ago.
pub async fn run(
    service: &Service,
    branch: &Branch,
    job: Job,
    options: SyncOptions,
    scheduled: bool,
) -> Result<Outcome> {
    let span = tracing::info_span!("job", branch = %branch.name, kind = job.name());
    async {
        let Some(_running) = Running::enter(service, &branch.name) else {
            tracing::debug!("a job of the branch is running in this service");
            return Ok(Outcome::NotRun);
        };
        let (config, schedule) = service.current();
        let _permit = service.bound.acquire().await?;
        let office = sync::office(&config).await?;
        let lease = schedule.claim_lease.as_secs_f64();
        if !records::claim(&office, &branch.name, &service.holder, job.name(), lease).await? {
            tracing::debug!("claimed by another service");
            return Ok(Outcome::NotRun);
        }
        // From here the claim is released on every path, a failed job's included.
        let ran = claimed(service, &office, &branch.name, job, options, scheduled).await;
        let ok = matches!(ran, Ok(Outcome::Ran { ok: true, .. } | Outcome::NotRun));
        if let Err(e) = records::release(&office, &branch.name, &service.holder, ok).await {
            // Not renewed once this job is over: the claim lapses after the lease, or this service takes it back.
            tracing::warn!(error = %format!("{e:#}"), "cannot release the job's claim");
        }
        ran
    }
    .instrument(span)
    .await
}

/// The job once claimed: the branch read again, whether it is still due, the work within the job timeout.
async fn claimed(
    service: &Service,
    office: &tokio_postgres::Client,
    name: &str,
    job: Job,
    options: SyncOptions,
    scheduled: bool,
) -> Result<Outcome> {
    let (config, schedule) = service.current();
    let branch = records::find(office, name).await?;
    if scheduled && !still_due(&schedule, &branch, job, service.started) {
        return Ok(Outcome::NotRun);
    }
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(schedule.job_timeout, work(&config, office, &branch, job, options)).await;
    let mut synced = None;
    let (ok, report) = match outcome {
        Ok(Ok((ok, report, sync_report))) => {
            synced = sync_report;
            (ok, report)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "job failed");
            (false, serde_json::json!({"branch": branch.name, "error": format!("{e:#}")}))
        }
        Err(_) => {
            let message = format!(
                "the job ran longer than {} s ([schedule] job_timeout_seconds); what was applied stays",
                schedule.job_timeout.as_secs()
            );
            tracing::warn!("{message}");
            (false, serde_json::json!({"branch": branch.name, "error": message}))
        }
    };
    service.metrics.job(&branch.name, job.name(), ok, started.elapsed().as_secs_f64(), synced.as_ref());
    Ok(Outcome::Ran { ok, report })
}

/// A branch's place in `Service::running` while its job runs here.
struct Running<'a> {
    service: &'a Service,
    branch: String,
}

impl<'a> Running<'a> {
    fn enter(service: &'a Service, branch: &str) -> Option<Running<'a>> {
        let mut running = service.running.lock().unwrap_or_else(|p| p.into_inner());
        running.insert(branch.to_string()).then(|| Running { service, branch: branch.to_string() })
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.service.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.branch);
    }
}

async fn work(
    config: &crate::config::Config,
    office: &tokio_postgres::Client,
    branch: &Branch,
    job: Job,
    options: SyncOptions,
) -> Result<(bool, serde_json::Value, Option<sync::BranchReport>)> {
    match job {
        Job::Incremental | Job::Daily => {
            let policy = config.policy(&branch.policy, office).await?;
            let options = SyncOptions { full: options.full || job == Job::Daily, ..options };
            let report = sync::sync_branch(config, branch, &policy, options, &Progress::quiet()).await;
            if let Some(e) = &report.error {
                tracing::warn!(error = %e, "sync failed");
            } else {
                tracing::info!(
                    pulled = report.rows("pull"),
                    pushed = report.rows("push"),
                    seconds = report.seconds,
                    "synced"
                );
            }
            if report.ok && job == Job::Daily {
                records::set_last_daily(office, &branch.name).await?;
            }
            Ok((report.ok, serde_json::to_value(&report)?, Some(report)))
        }
        Job::Verify => {
            let out = crate::commands::verify::run(config, &branch.name).await?;
            let drift = out.json["drift"].as_i64().unwrap_or(0);
            let message =
                if out.ok { "in sync".to_string() } else { format!("{drift} table(s) drifted: {}", out.text) };
            let result = if out.ok { "ok" } else { "drift" };
            let entry = LogEntry {
                branch: &branch.name,
                table: "*",
                direction: "verify",
                rows: 0,
                bytes: None,
                result,
                message: &message,
            };
            records::log(office, entry).await?;
            records::set_last_verify(office, &branch.name).await?;
            Ok((out.ok, out.json, None))
        }
    }
}

/// Renews this service's running claims every quarter lease, for as long as the service runs jobs (it is
/// aborted once the last has ended), so that only a service that died (or lost the office database for a whole
/// lease) has its jobs taken over.
pub async fn renew(service: &Service) {
    let mut office = None;
    loop {
        let (config, schedule) = service.current();
        tokio::time::sleep((schedule.claim_lease / 4).max(Duration::from_millis(500))).await;
        if office.is_none() {
            office = sync::office(&config).await.ok();
        }
        let running: Vec<String> = service.running.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        if let Some(client) = &office
            && let Err(e) = records::renew_claims(client, &service.holder, &running).await
        {
            tracing::warn!(error = %format!("{e:#}"), at = %Timestamp::now(), "cannot renew the claims; reconnecting");
            office = None;
        }
    }
}
