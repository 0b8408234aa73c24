//! The service's JSON API under `/api/v1` (docs/api.md): the branches with their state, one branch, the sync
//! log, the conflicts, and the actions (sync now, complete sync, verify). Every request is authenticated at the
//! shared login gate (office users with argon2 hashes); `viewer` reads, `operator` also acts. The one place
//! where errors become HTTP answers is `error.rs`. One file per endpoint group.

mod actions;
mod branches;
pub(crate) mod error;
mod log;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};

use crate::serve::state::Service;

/// The API's routes; every one behind the login gate.
pub(crate) fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/api/v1/branches", get(branches::list))
        .route("/api/v1/branches/{name}", get(branches::one))
        .route("/api/v1/branches/{name}/{action}", post(actions::action))
        .route("/api/v1/log", get(log::entries))
        .route("/api/v1/conflicts", get(log::conflicts))
        .route("/metrics", get(metrics::scrape))
        .layer(axum::middleware::from_fn_with_state(service.clone(), authenticate))
        .with_state(service)
}

/// The gate: the caller goes into the request's extensions, or the request is refused (401, 429).
async fn authenticate(
    State(service): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    match service.gate.authenticate(peer.ip(), request.headers()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refusal) => refusal.response(),
    }
}
