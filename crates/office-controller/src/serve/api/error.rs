//! The one place where the API's errors become HTTP answers (`{"code", "message"}` with the status), and the
//! role check of the actions.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use service::auth::Caller;

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

/// Refuses a caller who may not act.
pub(crate) fn operator(caller: &Caller<OfficeRole>) -> Result<(), ApiError> {
    match caller.role {
        OfficeRole::Operator => Ok(()),
        OfficeRole::Viewer => Err(ApiError::Forbidden),
    }
}
