//! The scheduler: twice a second, every initialised branch whose time has come gets its job (the daily complete
//! sync, the daily verify, or the incremental sync at its slot), never two at once for one branch in this
//! process, and through a claim in the office database never two across processes. Failures back off per
//! branch; a job another service holds waits for the branch's next slot.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use jiff::Timestamp;
use tokio::sync::mpsc;

use crate::records;
use crate::serve::jobs::{self, Job, Outcome, daily_job};
use crate::serve::state::Service;
use crate::sync::{self, SyncOptions};

/// The scheduler's view of one branch between two looks at the office database.
#[derive(Debug, Default)]
struct Clock {
    /// The next incremental slot.
    next: Option<Timestamp>,
    /// Nothing runs before this (after a failure: the back-off; after another service's claim: the next slot).
    hold: Option<Timestamp>,
    failures: u32,
    running: bool,
}

/// How a spawned job came back.
enum Done {
    Ok,
    Failed,
    NotRun,
}

/// Runs the loop until `stop`; then starts no new job and waits for the running ones.
pub(super) async fn run(service: Arc<Service>, mut stop: tokio::sync::watch::Receiver<bool>) -> Result<()> {
    let office = sync::office(&service.current().0).await?;
    let tracker = service.tasks.clone();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, Done)>();
    let mut clocks: BTreeMap<String, Clock> = BTreeMap::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(holder = %service.holder, interval_s = service.current().1.interval.as_secs(), "office service scheduling");
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            Some((name, done)) = done_rx.recv() => {
                let schedule = service.current().1;
                let now = Timestamp::now();
                let clock = clocks.entry(name.clone()).or_default();
                clock.running = false;
                match done {
                    Done::Ok => {
                        clock.failures = 0;
                        clock.next = Some(schedule.next_incremental(&name, now));
                        clock.hold = None;
                    }
                    Done::NotRun => {
                        let next = schedule.next_incremental(&name, now);
                        clock.next = Some(next);
                        clock.hold = Some(next);
                    }
                    Done::Failed => {
                        clock.failures += 1;
                        let pause = schedule.backoff(&name, clock.failures, fastrand::f64());
                        clock.next = Some(now + pause);
                        clock.hold = clock.next;
                        tracing::warn!(branch = %name, failures = clock.failures, retry_in_s = pause.as_secs(), "job failed, backing off");
                    }
                }
                continue;
            }
            _ = tick.tick() => service::process::notify_watchdog(),
        }
        let branches = match records::branches(&office).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the branches; trying again");
                continue;
            }
        };
        let schedule = service.current().1;
        let now = Timestamp::now();
        for branch in branches.into_iter().filter(|b| b.initialised_at.is_some()) {
            let overrides = schedule.branch(&branch.name);
            let clock = clocks.entry(branch.name.clone()).or_default();
            if overrides.paused || clock.running || clock.hold.is_some_and(|h| now < h) {
                continue;
            }
            let next = *clock.next.get_or_insert_with(|| schedule.next_incremental(&branch.name, now));
            let job = match daily_job(&schedule, &branch, service.started, now) {
                Some(job) => job,
                None if now >= next && (overrides.pull || overrides.push) => Job::Incremental,
                None => continue,
            };
            clock.running = true;
            let options = match job {
                Job::Incremental => {
                    SyncOptions { skip_pull: !overrides.pull, skip_push: !overrides.push, ..Default::default() }
                }
                _ => SyncOptions::default(),
            };
            let (service, done) = (service.clone(), done_tx.clone());
            // A random start within a quarter interval (at most a second): services sharing the office take
            // turns at a slot instead of the same one always winning it.
            let jitter = (schedule.interval_of(&branch.name) / 4).min(std::time::Duration::from_secs(1));
            tracker.spawn(async move {
                tokio::time::sleep(jitter.mul_f64(fastrand::f64())).await;
                let done_as = match jobs::run(&service, &branch, job, options, true).await {
                    Ok(Outcome::Ran { ok: true, .. }) => Done::Ok,
                    Ok(Outcome::Ran { ok: false, .. }) => Done::Failed,
                    Ok(Outcome::NotRun) => Done::NotRun,
                    Err(e) => {
                        tracing::warn!(branch = %branch.name, error = %format!("{e:#}"), "job could not run");
                        Done::Failed
                    }
                };
                let _ = done.send((branch.name.clone(), done_as));
            });
        }
    }
    Ok(())
}
