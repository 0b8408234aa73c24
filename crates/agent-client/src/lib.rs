//! The office's client of the shop agent. dxr's own client never looks at the HTTP status (a 401 shows up as
//! an XML parse error), so this one speaks HTTP itself and uses dxr only for values: the controller can then
//! tell wrong credentials (do not retry) from a network failure (retry) from a fault (the agent refused).
//! Calls take and return the typed requests and answers of [`protocol::wire`], and transient failures are
//! retried here (backon: doubling pauses with jitter), so that no caller writes its own retry loop.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use dxr::{FaultResponse, MethodCall, MethodResponse};
use protocol::fault::FaultCode;
use protocol::policy::Assignment;
use protocol::wire::{self, Answer, Call, Value, WireError};

pub use protocol::wire::{AgentStatus, DiffAnswer, Finished, IdRange, TableSum};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The agent could not be reached, or the connection broke, or it timed out: worth retrying.
    #[error("cannot reach the agent at {url}: {detail}")]
    Network {
        /// The agent's URL.
        url: String,
        /// What happened.
        detail: String,
    },
    /// 401: wrong user or password. Retrying will not help.
    #[error("the agent refused the credentials (HTTP 401), check the branch's user and password")]
    Auth,
    /// Another HTTP status (413 for a body over the agent's limit, 5xx, ...).
    #[error("the agent answered HTTP {status}")]
    Http {
        /// The status code.
        status: u16,
    },
    /// The agent refused the call with a fault.
    #[error("the agent refused {method}: fault {code}: {message}")]
    Fault {
        /// The method.
        method: String,
        /// The fault code.
        code: i32,
        /// The fault string.
        message: String,
    },
    /// The answer is not what protocol v1 promises.
    #[error("unexpected answer to {method}: {detail}")]
    Protocol {
        /// The method.
        method: String,
        /// What was wrong.
        detail: String,
    },
}

impl ClientError {
    /// The fault code, when the agent answered with a fault.
    pub fn fault(&self) -> Option<FaultCode> {
        match self {
            ClientError::Fault { code, .. } => FaultCode::from_code(*code),
            _ => None,
        }
    }

    /// Whether retrying the same call may succeed (network trouble, 5xx, limits).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Network { .. } => true,
            ClientError::Http { status } => *status >= 500 || *status == 429,
            ClientError::Fault { code, .. } => {
                matches!(FaultCode::from_code(*code), Some(FaultCode::LimitExceeded | FaultCode::DatabaseUnavailable))
            }
            _ => false,
        }
    }
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        ClientError::Protocol { method: e.method.into(), detail: e.what().to_string() }
    }
}

/// How transient failures (network, agent busy) are retried: `retries` more attempts, the first after `backoff`,
/// each pause twice the one before, with random jitter so that many branches retrying at once
/// do not hit an agent or a line in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts after the first.
    pub retries: u32,
    /// The first pause.
    pub backoff: Duration,
}

impl Retry {
    /// No retries: every failure is returned at once.
    pub const NONE: Retry = Retry { retries: 0, backoff: Duration::ZERO };
}

/// A token no other upload of this or another controller process is likely to use.
fn upload_token() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}

/// A client of one agent.
#[derive(Debug, Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    url: String,
    user: String,
    password: String,
    retry: Retry,
    max_answer_bytes: usize,
}

/// The largest answer body a client reads unless told otherwise: a `diff` answer is one bounded chunk, so a
/// body far beyond this is a hostile or broken agent, not data.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 64 << 20;

impl AgentClient {
    /// A client of the agent at `base_url` (e.g. `http://shop1:8080`; `/RPC2` is appended unless present).
    pub fn new(base_url: &str, user: &str, password: &str, timeout: Duration) -> Result<AgentClient, ClientError> {
        Self::with_ca(base_url, user, password, timeout, None)
    }

    /// As [`new`](Self::new), additionally trusting the PEM certificate `ca_pem` for HTTPS (a shop's own CA or
    /// self-signed certificate).
    pub fn with_ca(
        base_url: &str,
        user: &str,
        password: &str,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<AgentClient, ClientError> {
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| ClientError::Network {
                url: base_url.into(),
                detail: format!("bad CA certificate: {e}"),
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10).min(timeout))
            // Below the agent's idle and header-read timeouts (10 s by default), so that a call never goes out on
            // a kept-alive connection the agent is closing.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Network { url: base_url.into(), detail: e.to_string() })?;
        let trimmed = base_url.trim_end_matches('/');
        let url = if trimmed.ends_with("/RPC2") { trimmed.to_string() } else { format!("{trimmed}/RPC2") };
        Ok(AgentClient {
            http,
            url,
            user: user.into(),
            password: password.into(),
            retry: Retry::NONE,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
        })
    }

    /// The same client, retrying transient failures as `retry` says.
    pub fn with_retry(mut self, retry: Retry) -> AgentClient {
        self.retry = retry;
        self
    }

    /// The same client reading answer bodies of at most `bytes`; a larger one is refused before it is read
    /// whole, so that memory stays bounded whatever the agent sends.
    pub fn with_answer_limit(mut self, bytes: usize) -> AgentClient {
        self.max_answer_bytes = bytes;
        self
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls the method of `request`, retrying transient failures, and reads its typed answer.
    pub async fn request<C: Call>(&self, request: C) -> Result<C::Answer, ClientError> {
        let body = encode(C::METHOD, request.into_params())?;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.backoff)
            .with_factor(2.0)
            .with_max_delay(self.retry.backoff.saturating_mul(1 << self.retry.retries.min(16)))
            .with_max_times(self.retry.retries as usize)
            .with_jitter();
        let value = (|| self.post(C::METHOD, &body))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(ClientError::is_transient)
            .notify(|e, pause| tracing::info!(error = %e, method = C::METHOD, ?pause, "transient failure, retrying"))
            .await?;
        Ok(C::Answer::from_value(C::METHOD, value)?)
    }

    /// Calls `method` with raw `params`, once, and returns the raw result value: for tests and tools that send
    /// what protocol v1 does not.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, ClientError> {
        self.post(method, &encode(method, params)?).await
    }

    async fn post(&self, method: &str, body: &str) -> Result<Value, ClientError> {
        let network = |e: reqwest::Error| ClientError::Network { url: self.url.clone(), detail: chain(&e) };
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.user, Some(&self.password))
            .header("Content-Type", "text/xml")
            .body(body.to_string())
            .send()
            .await
            .map_err(network)?;
        let status = response.status().as_u16();
        if status == 401 {
            return Err(ClientError::Auth);
        }
        if status != 200 {
            return Err(ClientError::Http { status });
        }
        let text = self.read_body(method, response).await?;
        if let Ok(ok) = MethodResponse::from_xml(&text) {
            return Ok(ok.value);
        }
        match FaultResponse::from_xml(&text) {
            Ok(f) => Err(ClientError::Fault {
                method: method.into(),
                code: f.fault.code(),
                // A peer's text: capped before anyone logs, stores or renders it.
                message: protocol::text::capped(f.fault.string(), protocol::text::MAX_FAULT_CHARS),
            }),
            // dxr's parse errors hold the whole body: say only how large it was.
            Err(_) => Err(ClientError::Protocol {
                method: method.into(),
                detail: format!("{} bytes that are not an XML-RPC response", text.len()),
            }),
        }
    }

    /// Reads an answer body chunk by chunk, refusing it once it passes the limit.
    async fn read_body(&self, method: &str, mut response: reqwest::Response) -> Result<String, ClientError> {
        let too_large = |n: u64| ClientError::Protocol {
            method: method.into(),
            detail: format!("an answer of {n} bytes or more, over the limit of {} bytes", self.max_answer_bytes),
        };
        if let Some(n) = response.content_length()
            && n > self.max_answer_bytes as u64
        {
            return Err(too_large(n));
        }
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|e| ClientError::Network { url: self.url.clone(), detail: chain(&e) })?
        {
            if body.len() + chunk.len() > self.max_answer_bytes {
                return Err(too_large((body.len() + chunk.len()) as u64));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body)
            .map_err(|_| ClientError::Protocol { method: method.into(), detail: "an answer that is not UTF-8".into() })
    }

    /// `clean()`.
    pub async fn clean(&self) -> Result<(), ClientError> {
        self.request(wire::Clean).await.map(|_| ())
    }

    /// `sql_prepare(token)`: a new upload session's sid. The token is new for every call of this method and the
    /// same for its retries, so that a retry after a lost answer gets the session the first attempt opened
    /// instead of leaving it behind.
    pub async fn sql_prepare(&self) -> Result<i64, ClientError> {
        self.request(wire::SqlPrepare { token: Some(upload_token()) }).await.map(|sid| sid.0)
    }

    /// `sql_abort(sid)`: ends an unfinished upload session, applying nothing of it.
    pub async fn sql_abort(&self, sid: i64) -> Result<(), ClientError> {
        self.request(wire::SqlAbort { sid }).await.map(|_| ())
    }

    /// `sql_create(sid, data)`.
    pub async fn sql_create(&self, sid: i64, data: Vec<u8>) -> Result<(), ClientError> {
        self.request(wire::SqlCreate { sid, data }).await.map(|_| ())
    }

    /// `sql_finish(sid)`: what the upload applied.
    pub async fn sql_finish(&self, sid: i64) -> Result<Finished, ClientError> {
        self.request(wire::SqlFinish { sid }).await
    }

    /// `setidstart(id)`.
    pub async fn setidstart(&self, id: i64) -> Result<IdRange, ClientError> {
        self.request(wire::SetIdStart { id, above: None }).await
    }

    /// `setidstart(id, above)`: also moves every sequence above `above`, the highest id of the branch's range
    /// the office holds.
    pub async fn setidstart_above(&self, id: i64, above: i64) -> Result<IdRange, ClientError> {
        self.request(wire::SetIdStart { id, above: Some(above) }).await
    }

    /// `diff(since)`.
    pub async fn diff(&self, since: &str) -> Result<DiffAnswer, ClientError> {
        self.request(wire::Diff { since: since.into() }).await
    }

    /// `confirm(cursor)`: the office has committed everything up to this final cursor of a `diff` loop.
    pub async fn confirm(&self, cursor: &str) -> Result<(), ClientError> {
        self.request(wire::Confirm { cursor: cursor.into() }).await.map(|_| ())
    }

    /// `configure(policy)`: the shop's schema fingerprint of the synced tables.
    pub async fn configure(&self, assignment: &Assignment) -> Result<String, ClientError> {
        self.request(wire::Configure(assignment.clone())).await.map(|fp| fp.0)
    }

    /// `verify([from_id])`: per table (`schema.name`), its row count, checksum and pending changes; the
    /// shop-written tables from `from_id` of their id-range column on.
    pub async fn verify(&self, from_id: Option<i64>) -> Result<BTreeMap<String, TableSum>, ClientError> {
        self.request(wire::Verify { from_id }).await
    }

    /// `status()`.
    pub async fn status(&self) -> Result<AgentStatus, ClientError> {
        self.request(wire::Status).await
    }
}

/// The request body of a call.
fn encode(method: &str, params: Vec<Value>) -> Result<String, ClientError> {
    let body = MethodCall { name: method.into(), params }
        .to_xml()
        .map_err(|e| ClientError::Protocol { method: method.into(), detail: e.to_string() })?;
    Ok(format!("<?xml version=\"1.0\"?>\n{body}"))
}

/// An error with its causes, since reqwest's own message rarely says what went wrong (TLS, refused, timeout).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
