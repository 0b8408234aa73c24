//! The shop agent as a library: [`run`] serves Stoq's six sync commands plus `configure` and `status` over
//! XML-RPC at `POST /RPC2`, `GET /healthz` and `GET /metrics`, until the shutdown future completes. The binary
//! and the tests start exactly this function.

pub mod agent;
pub mod config;
mod diffs;
pub mod error;
mod http;
pub mod issued;
pub mod methods;
pub mod metrics;
pub mod migrations;
pub mod rpc;
pub mod sessions;
pub mod store;
pub mod stream;
mod upload;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

pub use agent::{Agent, Pooled};
pub use config::Config;
pub use error::AgentError;

/// Serves the agent on `listener` until `shutdown` completes, then lets in-flight requests finish: an
/// in-flight `sql_finish` commits or rolls back, never half.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let agent = std::sync::Arc::new(Agent::new(config));
    if let Err(e) = agent.db().await {
        tracing::warn!(error = %e, "shop database not reachable at start, will retry on each request");
    }
    let tls = match (&agent.config.tls_cert, &agent.config.tls_key) {
        (Some(cert), Some(key)) => Some(service::tls::acceptor(cert, key)?),
        _ => None,
    };
    let router = http::router(agent.clone());
    tracing::info!(address = %listener.local_addr()?, tls = tls.is_some(), "shop agent listening");
    let l = &agent.config.limits;
    let limits = service::listener::ConnectionLimits {
        header_read: Duration::from_secs(l.header_read_seconds),
        idle: Duration::from_secs(l.idle_seconds),
        max_connections: l.max_connections,
    };
    service::process::notify_ready();
    service::process::spawn_watchdog();
    service::listener::serve(listener, tls, router, limits, shutdown).await;
    // Unfinished streamed uploads and open diff loops end with the agent, as they would with its process; their
    // tasks roll back and stop, and the agent waits for them (and for background purges) a little while.
    agent.streams.abandon_all();
    agent.diffs.lock().await.clear();
    agent.tasks.close();
    if tokio::time::timeout(Duration::from_secs(10), agent.tasks.wait()).await.is_err() {
        tracing::warn!("background tasks still running at shutdown; their transactions roll back with the process");
    }
    Ok(())
}
