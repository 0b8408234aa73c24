//! `office-controller serve`: the long-running office service. The [`scheduler`] runs every initialised
//! branch's jobs on the `[schedule]`, each claimed in the office database ([`jobs`]) so that several services
//! share one office; the listener answers `/healthz`. Each sync is the same `sync::sync_branch` the CLI runs, so
//! the branch's advisory lock also keeps a CLI run and a service from syncing one branch at once.

mod api;
pub mod jobs;
pub mod metrics;
mod scheduler;

use std::future::Future;
use std::sync::{Arc, RwLock};

use std::time::Duration;

use anyhow::{Context, Result};
use jiff::Timestamp;
use service::auth::Authenticator;
use service::gate::{Gate, GateSettings};
use service::throttle::Settings;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::{Config, OfficeRole, ServiceConfig};
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
    /// The login gate of the API and `/metrics`.
    pub gate: Gate<OfficeRole>,
    /// Every job this service runs (scheduled or asked for), so that a shutdown waits for them.
    pub tasks: TaskTracker,
    /// What `/metrics` shows.
    pub metrics: metrics::Metrics,
}

fn users(config: &ServiceConfig) -> Authenticator<OfficeRole> {
    Authenticator::new(config.users.iter().map(|u| (u.name.clone(), u.password_hash.clone(), u.role)))
}

impl Service {
    /// A service for `config`.
    pub fn new(config: Config) -> Result<Service> {
        let schedule = Schedule::from_config(&config.schedule)?;
        let bound = Semaphore::new(config.sync.concurrency);
        let s = &config.service;
        let settings = GateSettings {
            concurrency: s.auth_concurrency,
            throttle: Settings {
                per_address: s.auth_failures_per_address,
                per_user: s.auth_failures_per_user,
                window: Duration::from_secs(s.auth_failure_window_seconds),
                lockout: Duration::from_secs(s.auth_lockout_seconds),
            },
        };
        let gate = Gate::new(users(s), settings);
        Ok(Service {
            current: RwLock::new((Arc::new(config), Arc::new(schedule))),
            holder: holder(),
            bound,
            started: Timestamp::now(),
            gate,
            tasks: TaskTracker::new(),
            metrics: metrics::Metrics::default(),
        })
    }

    /// Replaces the configuration (SIGHUP): the schedule and the users take effect at once, running jobs end
    /// with the configuration they started with. A configuration that does not check is refused whole.
    pub fn reload(&self, config: Config) -> Result<()> {
        let schedule = Schedule::from_config(&config.schedule)?;
        self.gate.replace_users(users(&config.service));
        match self.current.write() {
            Ok(mut c) => *c = (Arc::new(config), Arc::new(schedule)),
            Err(poisoned) => *poisoned.into_inner() = (Arc::new(config), Arc::new(schedule)),
        }
        Ok(())
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
    run_with_reload(config, listener, shutdown, tokio::sync::mpsc::unbounded_channel().1).await
}

/// [`run`], also taking each configuration sent on `reloads` (the binary sends one per SIGHUP).
pub async fn run_with_reload(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut reloads: tokio::sync::mpsc::UnboundedReceiver<Config>,
) -> Result<()> {
    let s = &config.service;
    let tls = match (&s.tls_cert, &s.tls_key) {
        (Some(cert), Some(key)) => Some(service::tls::acceptor(cert, key).context("cannot set up HTTPS ([service])")?),
        _ => None,
    };
    let limits = service::listener::ConnectionLimits {
        header_read: Duration::from_secs(s.header_read_seconds),
        idle: Duration::from_secs(s.idle_seconds),
        max_connections: s.max_connections,
    };
    let service = Arc::new(Service::new(config)?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .merge(api::router(service.clone()));
    tracing::info!(address = %listener.local_addr()?, tls = tls.is_some(), holder = %service.holder, "office service listening");
    let mut http_stop = stop_rx.clone();
    let http = tokio::spawn(async move {
        service::listener::serve(listener, tls, app, limits, async move {
            let _ = http_stop.wait_for(|s| *s).await;
        })
        .await
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    {
        let service = service.clone();
        tokio::spawn(async move {
            while let Some(config) = reloads.recv().await {
                match service.reload(config) {
                    Ok(()) => tracing::info!("configuration reloaded"),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "configuration not reloaded, the one in force stays")
                    }
                }
            }
        });
    }
    let renewing = {
        let service = service.clone();
        tokio::spawn(async move { jobs::renew(&service).await })
    };
    service::process::notify_ready();
    scheduler::run(service.clone(), stop_rx).await?;
    tracing::info!(running = service.tasks.len(), "office service stopping: waiting for running jobs");
    service.tasks.close();
    service.tasks.wait().await;
    renewing.abort();
    http.await.context("the HTTP listener task failed")?;
    Ok(())
}
