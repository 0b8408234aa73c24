//! `GET /metrics` (viewers): the service's metrics, with every branch's last success and result read from the
//! office's records at each scrape.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::records;
use crate::serve::api::error::ApiError;
use crate::serve::state::Service;
use crate::sync;

pub(super) async fn scrape(State(service): State<Arc<Service>>) -> Result<Response, ApiError> {
    let office = sync::office(&service.current().0).await?;
    let branches = records::branches(&office).await?;
    let text = service
        .metrics
        .render(&branches)
        .map_err(|e| ApiError::Unavailable(anyhow::anyhow!("cannot encode the metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}
