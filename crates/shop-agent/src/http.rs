//! The HTTP surface: `POST /RPC2` behind basic auth and a body limit, `GET /healthz` without auth, and
//! `GET /metrics` for office and monitor users. Credentials are checked from the headers before any of the body
//! is read by the shared login gate (`service::gate`: argon2 off the async workers, a bounded number at once,
//! repeated failures refused with 429 for a while).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tracing::Instrument;

use service::auth::{Authenticator, Caller};
use service::gate::{Gate, GateSettings, Refusal};
use service::throttle::Settings;

use crate::agent::Agent;
use crate::config::Role;
use crate::error::AgentError;
use crate::rpc;

/// What the handlers share: the agent, and the gate in front of it.
struct Http {
    agent: Arc<Agent>,
    gate: Gate<Role>,
}

pub(crate) fn router(agent: Arc<Agent>) -> Router {
    let l = &agent.config.limits;
    let settings = GateSettings {
        concurrency: l.auth_concurrency,
        throttle: Settings {
            per_address: l.auth_failures_per_address,
            per_user: l.auth_failures_per_user,
            window: Duration::from_secs(l.auth_failure_window_seconds),
            lockout: Duration::from_secs(l.auth_lockout_seconds),
        },
    };
    let users = agent.config.users.iter().map(|u| (u.name.clone(), u.password_hash.clone(), u.role));
    let gate = Gate::new(Authenticator::new(users), settings);
    let http = Arc::new(Http { agent, gate });
    Router::new()
        .route("/RPC2", post(rpc_endpoint))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(http)
}

fn too_large(limit: usize) -> Response {
    (StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {limit} bytes\n")).into_response()
}

impl Http {
    /// The caller, or the refusal's answer (counted in the agent's metrics).
    async fn authenticate(&self, peer: IpAddr, headers: &HeaderMap) -> Result<Caller<Role>, Response> {
        self.gate.authenticate(peer, headers).await.map_err(|refusal| {
            let result = match refusal {
                Refusal::Denied => "denied",
                Refusal::Throttled(_) => "throttled",
            };
            self.agent.metrics.request("unauthenticated", result);
            refusal.response()
        })
    }
}

/// Reads the body up to `limit` bytes; each frame must arrive within `idle`.
async fn read_body(mut body: Body, limit: usize, declared: Option<u64>, idle: Duration) -> Result<Bytes, Response> {
    let mut bytes = Vec::with_capacity(declared.map_or(0, |n| n.min(limit as u64) as usize));
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err((StatusCode::REQUEST_TIMEOUT, "request body stalled\n").into_response()),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err((StatusCode::BAD_REQUEST, "cannot read the request body\n").into_response()),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(too_large(limit));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(bytes))
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

async fn rpc_endpoint(
    State(http): State<Arc<Http>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let caller = match http.authenticate(peer.ip(), &headers).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    let agent = &http.agent;
    let limit = agent.config.limits.request_body_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let idle = Duration::from_secs(agent.config.limits.idle_seconds);
    let body = match read_body(body, limit, declared, idle).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
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
        let outcome = tokio::time::timeout(Duration::from_secs(seconds), rpc::dispatch(agent, &caller, call)).await;
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
                *last = Some((format!("{method}: {}", e.fault_string()), crate::metrics::unix_now()));
            }
        }
        Ok(_) => {
            tracing::info!("call served");
            // A later success of the sync's own calls clears the fault; monitoring's status polls do not.
            if method != protocol::methods::STATUS
                && let Ok(mut last) = agent.last_error.lock()
            {
                *last = None;
            }
        }
    });
    let body = rpc::respond(result);
    agent.metrics.request(&method, outcome);
    agent.metrics.bytes(received, body.len());
    xml(body)
}

async fn healthz(State(http): State<Arc<Http>>) -> Response {
    let agent = &http.agent;
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

async fn metrics(
    State(http): State<Arc<Http>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let caller = match http.authenticate(peer.ip(), &headers).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    let agent = &http.agent;
    debug_assert!(matches!(caller.role, Role::Office | Role::Monitor));
    let (pending, open) = match crate::methods::status::gauges(agent).await {
        Ok((p, o)) => (Some(p), Some(o)),
        Err(_) => (None, None),
    };
    let text = agent.metrics.render(pending, open, agent.started.elapsed().as_secs());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
