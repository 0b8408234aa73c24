//! The HTTP surface: `POST /RPC2` behind basic auth and a body limit, `GET /healthz` without auth, and
//! `GET /metrics` for office and monitor users. Credentials are checked from the headers before any of the body
//! is read; argon2 runs off the async workers, a bounded number at once, and repeated failures are refused
//! with 429 for a while (`throttle.rs`) without costing a hash.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::agent::Agent;
use crate::auth::{Caller, Credentials};
use crate::config::Role;
use crate::error::AgentError;
use crate::rpc;
use crate::throttle::{Settings, Throttle};

/// What the handlers share: the agent, and the gate in front of it.
struct Http {
    agent: Arc<Agent>,
    throttle: Throttle,
    /// Permits for argon2 verifications in flight.
    verifying: Arc<Semaphore>,
}

pub(crate) fn router(agent: Arc<Agent>) -> Router {
    let l = &agent.config.limits;
    let throttle = Throttle::new(Settings {
        per_address: l.auth_failures_per_address,
        per_user: l.auth_failures_per_user,
        window: Duration::from_secs(l.auth_failure_window_seconds),
        lockout: Duration::from_secs(l.auth_lockout_seconds),
    });
    let verifying = Arc::new(Semaphore::new(l.auth_concurrency));
    let http = Arc::new(Http { agent, throttle, verifying });
    Router::new()
        .route("/RPC2", post(rpc_endpoint))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(http)
}

fn unauthorized() -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"branchsync\", charset=\"UTF-8\""));
    response
}

fn too_many(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = (StatusCode::TOO_MANY_REQUESTS, "too many failed logins, retry later\n").into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

fn too_large(limit: usize) -> Response {
    (StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {limit} bytes\n")).into_response()
}

/// Why a login was refused.
enum Refusal {
    /// Missing or wrong credentials: 401.
    Denied,
    /// Too many failures: 429, retry after this long.
    Throttled(Duration),
}

impl Refusal {
    fn respond(self, agent: &Agent) -> Response {
        match self {
            Refusal::Denied => {
                agent.metrics.request("unauthenticated", "denied");
                unauthorized()
            }
            Refusal::Throttled(wait) => {
                agent.metrics.request("unauthenticated", "throttled");
                too_many(wait)
            }
        }
    }
}

impl Http {
    /// The caller, or why it is refused. Looks at the headers only.
    async fn authenticate(&self, peer: IpAddr, headers: &HeaderMap) -> Result<Caller, Refusal> {
        let refused = |wait| Err(Refusal::Throttled(wait));
        let denied = || Err(Refusal::Denied);
        if let Err(wait) = self.throttle.admit_address(peer, Instant::now()) {
            return refused(wait);
        }
        let header = headers.get(header::AUTHORIZATION);
        let Some(credentials) = Credentials::from_header(header.and_then(|v| v.to_str().ok())) else {
            // A request without credentials is how a client asks for the challenge; a garbled header is a guess.
            if header.is_some() {
                self.throttle.failed(peer, None, Instant::now());
            }
            return denied();
        };
        // A login verified before costs a hash lookup, never a place in the verification queue.
        if let Some(caller) = self.agent.auth.cached(&credentials) {
            self.throttle.succeeded(peer);
            return Ok(caller);
        }
        if !self.agent.auth.knows(credentials.name()) {
            self.throttle.failed(peer, None, Instant::now());
            return denied();
        }
        let user = credentials.name().to_string();
        if let Err(wait) = self.throttle.admit_unverified(peer, &user, Instant::now()) {
            self.throttle.failed(peer, Some(&user), Instant::now());
            return refused(wait);
        }
        let Ok(permit) = self.verifying.clone().acquire_owned().await else {
            return denied();
        };
        // While it waited, this address's other guesses may have locked it out: no hash for it then.
        let now = Instant::now();
        if let Err(wait) = self.throttle.admit_address(peer, now).and(self.throttle.admit_unverified(peer, &user, now))
        {
            return refused(wait);
        }
        let agent = self.agent.clone();
        // The permit moves into the blocking task, so a client that hangs up does not free a slot before its
        // hash is done: the number of hashes in flight stays bounded.
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            agent.auth.verify(&credentials)
        })
        .await
        .ok()
        .flatten();
        match verified {
            Some(caller) => {
                self.throttle.succeeded(peer);
                Ok(caller)
            }
            None => {
                tracing::info!(%peer, user, "login failed");
                self.throttle.failed(peer, Some(&user), Instant::now());
                denied()
            }
        }
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
        Err(refusal) => return refusal.respond(&http.agent),
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
        Err(refusal) => return refusal.respond(&http.agent),
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
