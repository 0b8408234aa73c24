//! The HTTP surface: `POST /RPC2` behind basic auth and a body limit, `GET /healthz` without auth, and
//! `GET /metrics` for office and monitor users.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tracing::Instrument;

use crate::agent::Agent;
use crate::auth::Caller;
use crate::config::Role;
use crate::error::AgentError;
use crate::rpc;

pub(crate) fn router(agent: Arc<Agent>) -> Router {
    let limit = agent.config.limits.request_body_bytes;
    Router::new()
        .route("/RPC2", post(rpc_endpoint))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(agent)
}

fn unauthorized() -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"branchsync\", charset=\"UTF-8\""));
    response
}

fn authenticate(agent: &Agent, headers: &HeaderMap) -> Option<Caller> {
    agent.auth.check(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

async fn rpc_endpoint(State(agent): State<Arc<Agent>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(caller) = authenticate(&agent, &headers) else {
        agent.metrics.request("unauthenticated", "denied");
        return unauthorized();
    };
    let received = body.len();
    let span =
        tracing::info_span!("rpc", method = tracing::field::Empty, user = %caller.name, sid = tracing::field::Empty);
    let (method, result) = async {
        let Ok(_permit) = agent.requests.try_acquire() else {
            let limit = agent.config.limits.concurrent_requests;
            return (
                String::new(),
                Err(AgentError::Limit(format!("more than {limit} requests at once, retry shortly"))),
            );
        };
        let call = match rpc::parse(&body) {
            Ok(call) => call,
            Err(e) => return (String::new(), Err(e)),
        };
        let method = call.name.to_string();
        tracing::Span::current().record("method", method.as_str());
        let seconds = agent.config.limits.request_seconds;
        let outcome = tokio::time::timeout(Duration::from_secs(seconds), rpc::dispatch(&agent, &caller, call)).await;
        let result = outcome.unwrap_or_else(|_| {
            Err(AgentError::Limit(format!("request took longer than {seconds} s, nothing was applied")))
        });
        (method, result)
    }
    .instrument(span.clone())
    .await;
    let outcome = if result.is_ok() { "ok" } else { "fault" };
    span.in_scope(|| match &result {
        Err(e) => {
            tracing::warn!(code = e.fault_code().code(), error = %e, "call refused");
            if let Ok(mut last) = agent.last_error.lock() {
                *last = Some(format!("{method}: {}", e.fault_string()));
            }
        }
        Ok(_) => tracing::info!("call served"),
    });
    let body = rpc::respond(result);
    agent.metrics.request(&method, outcome);
    agent.metrics.bytes(received, body.len());
    xml(body)
}

async fn healthz(State(agent): State<Arc<Agent>>) -> Response {
    let ok = match tokio::time::timeout(Duration::from_secs(5), agent.db()).await {
        Ok(Ok(client)) => client.simple_query("SELECT 1").await.is_ok(),
        _ => false,
    };
    if ok {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
    }
}

async fn metrics(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Response {
    let Some(caller) = authenticate(&agent, &headers) else {
        return unauthorized();
    };
    debug_assert!(matches!(caller.role, Role::Office | Role::Monitor));
    let (pending, open) = match crate::methods::status::gauges(&agent).await {
        Ok((p, o)) => (Some(p), Some(o)),
        Err(_) => (None, None),
    };
    let text = agent.metrics.render(pending, open, agent.started.elapsed().as_secs());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
