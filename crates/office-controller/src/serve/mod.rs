//! `office-controller serve`: the long-running office service. The [`scheduler`] runs every initialised
//! branch's jobs on the `[schedule]`, each claimed in the office database ([`jobs`]) so that several services
//! share one office; the listener answers `/healthz`. Each sync is the same `sync::sync_branch` the CLI runs, so
//! the branch's advisory lock also keeps a CLI run and a service from syncing one branch at once.

mod api;
pub mod jobs;
pub mod metrics;
mod scheduler;
mod state;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::config::Config;
pub use state::Service;

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
