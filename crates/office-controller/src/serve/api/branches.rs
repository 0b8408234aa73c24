//! `GET /api/v1/branches` (every branch's state; `?live=false` leaves the agents unasked) and
//! `GET /api/v1/branches/{name}`: the same `BranchState` objects as `status --json`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use crate::records;
use crate::serve::api::error::ApiError;
use crate::serve::state::Service;
use crate::sync;
use crate::views::{self, BranchState};

/// The list's query.
#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    /// Ask every agent for its live status (the default).
    live: Option<bool>,
}

pub(super) async fn list(
    State(service): State<Arc<Service>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<BranchState>>, ApiError> {
    let (config, schedule) = service.current();
    let office = sync::office(&config).await?;
    Ok(Json(views::branch_states(&config, &office, &schedule, q.live.unwrap_or(true), None).await?))
}

pub(super) async fn one(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
) -> Result<Json<BranchState>, ApiError> {
    let (config, schedule) = service.current();
    let office = sync::office(&config).await?;
    if records::find_opt(&office, &name).await?.is_none() {
        return Err(ApiError::NotFound(name));
    }
    let mut states = views::branch_states(&config, &office, &schedule, true, Some(&name)).await?;
    states.pop().map(Json).ok_or(ApiError::NotFound(name))
}
