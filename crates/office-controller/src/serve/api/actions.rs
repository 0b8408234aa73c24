//! The actions, operators only: `POST /api/v1/branches/{name}/sync` (an incremental sync now),
//! `/complete-sync` (the complete sync of `sync --full`) and `/verify`. Each runs as the scheduler's jobs do,
//! claimed in the office database, so it never runs beside another job of the branch in any service: 409 then.
//! By default the job is started and the answer is 202; `?wait=true` waits for it and returns its report.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use service::auth::Caller;

use crate::config::OfficeRole;
use crate::records;
use crate::serve::api::error::{ApiError, operator};
use crate::serve::jobs::{self, Job, Outcome};
use crate::serve::state::Service;
use crate::sync::{self, SyncOptions};
use crate::views::ActionView;

/// The actions' query.
#[derive(Debug, Deserialize)]
pub(super) struct Wait {
    wait: Option<bool>,
}

/// `POST /api/v1/branches/{name}/{action}`, the action one of `sync`, `complete-sync`, `verify`.
pub(super) async fn action(
    State(service): State<Arc<Service>>,
    Extension(caller): Extension<Caller<OfficeRole>>,
    Path((name, action)): Path<(String, String)>,
    Query(q): Query<Wait>,
) -> Result<Response, ApiError> {
    let job = match action.as_str() {
        "sync" => Job::Incremental,
        "complete-sync" => Job::Daily,
        "verify" => Job::Verify,
        other => {
            return Err(ApiError::BadRequest(format!("no action {other:?}: POST sync, complete-sync or verify")));
        }
    };
    act(service, caller, name, job, q.wait.unwrap_or(false)).await
}

async fn act(
    service: Arc<Service>,
    caller: Caller<OfficeRole>,
    name: String,
    job: Job,
    wait: bool,
) -> Result<Response, ApiError> {
    operator(&caller)?;
    let office = sync::office(&service.current().0).await?;
    let Some(branch) = records::find_opt(&office, &name).await? else { return Err(ApiError::NotFound(name)) };
    if branch.initialised_at.is_none() {
        return Err(ApiError::BadRequest(format!(
            "branch {name} is not initialised, run `office-controller branch init {name}`"
        )));
    }
    let (_, schedule) = service.current();
    if records::claims(&office).await?.iter().any(|c| {
        c.branch == name && c.finished_at.is_none() && !claim_expired(&c.renewed_seconds_ago, schedule.claim_lease)
    }) {
        return Err(ApiError::Busy(name));
    }
    drop(office);
    tracing::info!(user = %caller.name, branch = %name, job = job.name(), "action asked for");
    let running = {
        let service = service.clone();
        let branch = branch.clone();
        // On the service's tracker, so that a shutdown waits for it like for a scheduled job.
        service
            .tasks
            .clone()
            .spawn(async move { jobs::run(&service, &branch, job, SyncOptions::default(), false).await })
    };
    let view = |accepted, ok, report| ActionView { branch: name.clone(), job: job.name(), accepted, ok, report };
    if !wait {
        return Ok((StatusCode::ACCEPTED, Json(view(true, None, None))).into_response());
    }
    match running.await {
        Ok(Ok(Outcome::Ran { ok, report })) => Ok(Json(view(true, Some(ok), Some(report))).into_response()),
        Ok(Ok(Outcome::NotRun)) => Err(ApiError::Busy(name)),
        Ok(Err(e)) => Err(ApiError::Unavailable(e)),
        Err(e) => Err(ApiError::Unavailable(anyhow::anyhow!("the job stopped: {e}"))),
    }
}

fn claim_expired(renewed_seconds_ago: &f64, lease: std::time::Duration) -> bool {
    *renewed_seconds_ago > lease.as_secs_f64()
}
