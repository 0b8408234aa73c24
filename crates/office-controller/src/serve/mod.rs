//! `office-controller serve`: the long-running office service. The [`scheduler`] runs every initialised
//! branch's jobs on the `[schedule]`, each claimed in the office database ([`jobs`]) so that several services
//! share one office; the listener answers `/healthz`. Each sync is the same `sync::sync_branch` the CLI runs, so
//! the branch's advisory lock also keeps a CLI run and a service from syncing one branch at once.

pub mod jobs;
mod scheduler;

use std::future::Future;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::schedule::Schedule;

/// What the service's parts share: the configuration (replaced whole on reload), who this process is in the
/// claims, and the bound on jobs running at once.
#[derive(Debug)]
pub struct Service {
    current: RwLock<(Arc<Config>, Arc<Schedule>)>,
    /// This process in the claims: `host:pid:nonce`.
    pub holder: String,
    /// At most `[sync] concurrency` jobs at once.
    pub bound: Semaphore,
    /// When the service started.
    pub started: Timestamp,
}

impl Service {
    /// A service for `config`.
    pub fn new(config: Config) -> Result<Service> {
        let schedule = Schedule::from_config(&config.schedule)?;
        let bound = Semaphore::new(config.sync.concurrency);
        Ok(Service {
            current: RwLock::new((Arc::new(config), Arc::new(schedule))),
            holder: holder(),
            bound,
            started: Timestamp::now(),
        })
    }

    /// The configuration and schedule in force.
    pub fn current(&self) -> (Arc<Config>, Arc<Schedule>) {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// This process's name in the claims.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}:{:04x}", std::process::id(), fastrand::u16(..))
}

/// Runs the service on `listener` until `shutdown` completes; then starts no new job and waits for the running
/// ones to end.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let service = Arc::new(Service::new(config)?);
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
    let renewing = {
        let service = service.clone();
        tokio::spawn(async move { jobs::renew(&service).await })
    };
    scheduler::run(service, stop_rx).await?;
    renewing.abort();
    http.await.context("the HTTP listener task failed")?.context("the HTTP listener failed")?;
    Ok(())
}
