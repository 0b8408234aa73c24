//! `GET /api/v1/log` and `GET /api/v1/conflicts` (`?branch=NAME&limit=N`, newest first): the same objects as
//! `log --json` and `conflicts --json`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use crate::records;
use crate::serve::api::error::ApiError;
use crate::serve::state::Service;
use crate::sync;
use crate::views::{self, ConflictView, LogView};

/// Most rows one request returns.
const MAX_LIMIT: i64 = 1000;

/// Which rows.
#[derive(Debug, Deserialize)]
pub(super) struct Filter {
    branch: Option<String>,
    limit: Option<i64>,
}

impl Filter {
    fn limit(&self) -> Result<i64, ApiError> {
        match self.limit.unwrap_or(50) {
            n @ 1..=MAX_LIMIT => Ok(n),
            n => Err(ApiError::BadRequest(format!("limit {n} is out of range: ask for 1 to {MAX_LIMIT} rows"))),
        }
    }
}

pub(super) async fn entries(
    State(service): State<Arc<Service>>,
    Query(f): Query<Filter>,
) -> Result<Json<Vec<LogView>>, ApiError> {
    let office = sync::office(&service.current().0).await?;
    Ok(Json(views::log_views(records::read_log(&office, f.branch.as_deref(), f.limit()?).await?)))
}

pub(super) async fn conflicts(
    State(service): State<Arc<Service>>,
    Query(f): Query<Filter>,
) -> Result<Json<Vec<ConflictView>>, ApiError> {
    let office = sync::office(&service.current().0).await?;
    let found =
        pgsync::recorded_conflicts(&office, f.branch.as_deref(), f.limit()?).await.map_err(anyhow::Error::from)?;
    Ok(Json(views::conflict_views(found)))
}
