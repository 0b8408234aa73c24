//! The login gate in front of every authenticated endpoint of both services: basic auth checked from the
//! headers before any of the body is read, argon2 run off the async workers with a bounded number at once, and
//! repeated failures refused with 429 for a while ([`crate::throttle`]) without costing a hash. The users can
//! be replaced while the service runs (a configuration reload).

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::auth::{Authenticator, Caller, Credentials};
use crate::throttle::{Settings, Throttle};

/// The gate's bounds.
#[derive(Debug, Clone, Copy)]
pub struct GateSettings {
    /// Argon2 verifications in flight at once.
    pub concurrency: usize,
    /// The failed-login thresholds.
    pub throttle: Settings,
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Missing or wrong credentials: 401.
    Denied,
    /// Too many failures: 429, retry after this long.
    Throttled(Duration),
}

impl Refusal {
    /// The HTTP answer: 401 with the basic-auth challenge, or 429 with `Retry-After`.
    pub fn response(self) -> Response {
        match self {
            Refusal::Denied => unauthorized(),
            Refusal::Throttled(wait) => too_many(wait),
        }
    }
}

/// 401 with the basic-auth challenge.
pub fn unauthorized() -> Response {
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

/// The users, the throttle and the bound on verifications.
#[derive(Debug)]
pub struct Gate<R> {
    users: RwLock<Arc<Authenticator<R>>>,
    throttle: Throttle,
    verifying: Arc<Semaphore>,
}

impl<R: Copy + Send + Sync + 'static> Gate<R> {
    /// A gate for `users`.
    pub fn new(users: Authenticator<R>, settings: GateSettings) -> Gate<R> {
        Gate {
            users: RwLock::new(Arc::new(users)),
            throttle: Throttle::new(settings.throttle),
            verifying: Arc::new(Semaphore::new(settings.concurrency.max(1))),
        }
    }

    /// Replaces the users (a reload); logins verified before are checked again against the new hashes.
    pub fn replace_users(&self, users: Authenticator<R>) {
        match self.users.write() {
            Ok(mut u) => *u = Arc::new(users),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(users),
        }
    }

    fn users(&self) -> Arc<Authenticator<R>> {
        match self.users.read() {
            Ok(u) => u.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The caller, or why it is refused. Looks at the headers only.
    pub async fn authenticate(&self, peer: IpAddr, headers: &HeaderMap) -> Result<Caller<R>, Refusal> {
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
        let users = self.users();
        // A login verified before costs a hash lookup, never a place in the verification queue.
        if let Some(caller) = users.cached(&credentials) {
            self.throttle.succeeded(peer);
            return Ok(caller);
        }
        if !users.knows(credentials.name()) {
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
        // The permit moves into the blocking task, so a client that hangs up does not free a slot before its
        // hash is done: the number of hashes in flight stays bounded.
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            users.verify(&credentials)
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
