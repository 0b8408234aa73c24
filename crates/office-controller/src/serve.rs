//! `office-controller serve`: the long-running office service. It runs every initialised branch's syncs on the
//! `[schedule]` (incremental syncs at each branch's slot, the daily complete sync, back-off after failures) and
//! answers `/healthz` on its listener. Each job is the same `sync::sync_branch` the CLI runs, so the branch's
//! advisory lock keeps two controllers (or a CLI run) from syncing one branch at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, Result};
use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Config;
use crate::records;
use crate::schedule::Schedule;
use crate::sync::{self, Progress, SyncOptions};

/// What a job of one branch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Incremental,
    Daily,
}

/// The service's view of one branch between two looks at the office database.
#[derive(Debug, Default)]
struct Clock {
    next: Option<Timestamp>,
    failures: u32,
    running: bool,
}

/// Runs the service on `listener` until `shutdown` completes; then starts no new job and waits for the running
/// ones to end.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let schedule = Schedule::from_config(&config.schedule)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok\n" }));
    let mut http_stop = stop_rx.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    scheduler(Arc::new(config), schedule, stop_rx).await?;
    http.await.context("the HTTP listener task failed")?.context("the HTTP listener failed")?;
    Ok(())
}

/// The loop: once a second, every branch whose time has come gets its job, at most `[sync] concurrency` at once
/// and never two for one branch.
async fn scheduler(
    config: Arc<Config>,
    schedule: Schedule,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let started = Timestamp::now();
    let office = sync::office(&config).await?;
    let bound = Arc::new(Semaphore::new(config.sync.concurrency));
    let tracker = TaskTracker::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, Job, bool)>();
    let mut clocks: BTreeMap<String, Clock> = BTreeMap::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(interval_s = schedule.interval.as_secs(), "office service scheduling");
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            Some((name, job, ok)) = done_rx.recv() => {
                let now = Timestamp::now();
                let clock = clocks.entry(name.clone()).or_default();
                clock.running = false;
                if ok {
                    clock.failures = 0;
                    clock.next = Some(schedule.next_incremental(&name, now));
                    if job == Job::Daily {
                        records::set_last_daily(&office, &name).await?;
                    }
                } else {
                    clock.failures += 1;
                    let pause = schedule.backoff(&name, clock.failures, fastrand::f64());
                    clock.next = Some(now + pause);
                    tracing::warn!(branch = %name, failures = clock.failures, retry_in_s = pause.as_secs(), "sync failed, backing off");
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        let branches = match records::branches(&office).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the branches; trying again");
                continue;
            }
        };
        let now = Timestamp::now();
        for branch in branches.into_iter().filter(|b| b.initialised_at.is_some()) {
            let overrides = schedule.branch(&branch.name);
            if overrides.paused {
                continue;
            }
            let clock = clocks.entry(branch.name.clone()).or_default();
            if clock.running {
                continue;
            }
            let next = *clock.next.get_or_insert_with(|| schedule.next_incremental(&branch.name, now));
            let last_daily =
                branch.last_daily_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).or(Some(started));
            let daily = schedule.daily_due(schedule.daily_at, last_daily, now);
            let job = if daily && (clock.failures == 0 || now >= next) {
                Job::Daily
            } else if now >= next && (overrides.pull || overrides.push) {
                Job::Incremental
            } else {
                continue;
            };
            clock.running = true;
            let options = match job {
                Job::Daily => SyncOptions { full: true, ..Default::default() },
                Job::Incremental => {
                    SyncOptions { skip_pull: !overrides.pull, skip_push: !overrides.push, ..Default::default() }
                }
            };
            let (config, bound, done, timeout) = (config.clone(), bound.clone(), done_tx.clone(), schedule.job_timeout);
            let span = tracing::info_span!("job", branch = %branch.name, kind = ?job);
            tracker.spawn(
                async move {
                    let _permit = bound.acquire().await;
                    let ok = match run_job(&config, &branch, options, timeout).await {
                        Ok(ok) => ok,
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "job could not run");
                            false
                        }
                    };
                    let _ = done.send((branch.name.clone(), job, ok));
                }
                .instrument(span),
            );
        }
    }
    tracing::info!(running = tracker.len(), "office service stopping: waiting for running syncs");
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// One job: the branch's policy, then the sync within the job timeout. Returns whether it succeeded.
async fn run_job(
    config: &Config,
    branch: &records::Branch,
    options: SyncOptions,
    timeout: std::time::Duration,
) -> Result<bool> {
    let office = sync::office(config).await?;
    let policy = config.policy(&branch.policy, &office).await?;
    drop(office);
    let progress = Progress::quiet();
    let sync = sync::sync_branch(config, branch, &policy, options, &progress);
    match tokio::time::timeout(timeout, sync).await {
        Ok(report) => {
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
            Ok(report.ok)
        }
        Err(_) => {
            tracing::warn!(timeout_s = timeout.as_secs(), "job timed out ([schedule] job_timeout_seconds)");
            Ok(false)
        }
    }
}
