//! The service's JSON API under `/api/v1` (docs/api.md): the branches with their state, one branch, the sync
//! log, the conflicts, and the actions (sync now, complete sync, verify). Every request is authenticated at the
//! shared login gate (office users with argon2 hashes); `viewer` reads, `operator` also acts. The one place
//! where errors become HTTP answers is [`ApiError`]'s `IntoResponse`. One file per endpoint group.

mod actions;
mod branches;
mod log;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use service::auth::Caller;

use super::Service;
use crate::config::OfficeRole;
use crate::views::ErrorBody;

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// The request is malformed.
    BadRequest(String),
    /// The caller's role may not do this.
    Forbidden,
    /// No such branch.
    NotFound(String),
    /// Another job of the branch is running.
    Busy(String),
    /// The office database did not answer.
    Unavailable(anyhow::Error),
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Unavailable(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "this needs the operator role; ask for it in [[service.users]]".to_string(),
            ),
            ApiError::NotFound(name) => {
                (StatusCode::NOT_FOUND, "not_found", format!("no branch named {name}, see GET /api/v1/branches"))
            }
            ApiError::Busy(name) => (
                StatusCode::CONFLICT,
                "busy",
                format!("a job of branch {name} is running; try again when it is done (GET /api/v1/branches/{name})"),
            ),
            ApiError::Unavailable(e) => {
                tracing::warn!(error = %format!("{e:#}"), "api request failed");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("{e:#}"))
            }
        };
        (status, Json(ErrorBody { code, message })).into_response()
    }
}

/// The API's routes; every one behind the login gate.
pub(crate) fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/api/v1/branches", get(branches::list))
        .route("/api/v1/branches/{name}", get(branches::one))
        .route("/api/v1/branches/{name}/sync", post(actions::sync_now))
        .route("/api/v1/branches/{name}/complete-sync", post(actions::complete_sync))
        .route("/api/v1/branches/{name}/verify", post(actions::verify))
        .route("/api/v1/log", get(log::entries))
        .route("/api/v1/conflicts", get(log::conflicts))
        .route("/metrics", get(super::metrics::scrape))
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

/// Refuses a caller who may not act.
fn operator(caller: &Caller<OfficeRole>) -> Result<(), ApiError> {
    match caller.role {
        OfficeRole::Operator => Ok(()),
        OfficeRole::Viewer => Err(ApiError::Forbidden),
    }
}
