//! The office's client of the shop agent. dxr's own client never looks at the HTTP status (a 401 shows up as
//! an XML parse error), so this one speaks HTTP itself and uses dxr only for values: the controller can then
//! tell wrong credentials (do not retry) from a network failure (retry) from a fault (the agent refused).

use std::collections::BTreeMap;
use std::time::Duration;

use dxr::{FaultResponse, MethodCall, MethodResponse, Value};
use protocol::fault::FaultCode;
use protocol::methods;

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

/// One `diff` answer.
#[derive(Debug, Clone)]
pub struct DiffAnswer {
    /// A gzip payload chunk.
    pub data: Vec<u8>,
    /// The `since` of the next call.
    pub cursor: String,
    /// Whether more is waiting.
    pub more: bool,
}

/// What the office hands a shop with `configure`.
#[derive(Debug, Clone, Default)]
pub struct PolicySpec {
    /// The branch's name.
    pub branch: String,
    /// Office → shop tables.
    pub from_source: Vec<String>,
    /// Shop → office tables.
    pub from_target: Vec<String>,
    /// Both ways.
    pub both: Vec<String>,
    /// Office → shop once.
    pub initial: Vec<String>,
    /// Size of the branch's id range.
    pub id_range: i64,
}

/// A client of one agent.
#[derive(Debug, Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    url: String,
    user: String,
    password: String,
}

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
            .build()
            .map_err(|e| ClientError::Network { url: base_url.into(), detail: e.to_string() })?;
        let trimmed = base_url.trim_end_matches('/');
        let url = if trimmed.ends_with("/RPC2") { trimmed.to_string() } else { format!("{trimmed}/RPC2") };
        Ok(AgentClient { http, url, user: user.into(), password: password.into() })
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with `params` and returns the result value.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, ClientError> {
        let body = MethodCall { name: method.into(), params }
            .to_xml()
            .map_err(|e| ClientError::Protocol { method: method.into(), detail: e.to_string() })?;
        let network = |e: reqwest::Error| ClientError::Network { url: self.url.clone(), detail: chain(&e) };
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.user, Some(&self.password))
            .header("Content-Type", "text/xml")
            .body(format!("<?xml version=\"1.0\"?>\n{body}"))
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
        let text = response.text().await.map_err(network)?;
        if let Ok(ok) = MethodResponse::from_xml(&text) {
            return Ok(ok.value);
        }
        match FaultResponse::from_xml(&text) {
            Ok(f) => Err(ClientError::Fault {
                method: method.into(),
                code: f.fault.code(),
                message: f.fault.string().into(),
            }),
            // dxr's parse errors hold the whole body: say only how large it was.
            Err(_) => Err(ClientError::Protocol {
                method: method.into(),
                detail: format!("{} bytes that are not an XML-RPC response", text.len()),
            }),
        }
    }

    fn unexpected(method: &str, what: &str) -> ClientError {
        ClientError::Protocol { method: method.into(), detail: format!("expected {what}") }
    }

    /// `clean()`.
    pub async fn clean(&self) -> Result<(), ClientError> {
        self.call(methods::CLEAN, vec![]).await.map(|_| ())
    }

    /// `sql_prepare()`: a new upload session's sid.
    pub async fn sql_prepare(&self) -> Result<i64, ClientError> {
        let v = self.call(methods::SQL_PREPARE, vec![]).await?;
        protocol::values::int(&v).ok_or_else(|| Self::unexpected(methods::SQL_PREPARE, "an integer sid"))
    }

    /// `sql_create(sid, data)`.
    pub async fn sql_create(&self, sid: i64, data: Vec<u8>) -> Result<(), ClientError> {
        self.call(methods::SQL_CREATE, vec![Value::Long(sid), Value::Base64(data)]).await.map(|_| ())
    }

    /// `sql_finish(sid)`: the result struct (upserted, deleted, deferred, chunks).
    pub async fn sql_finish(&self, sid: i64) -> Result<BTreeMap<String, Value>, ClientError> {
        match self.call(methods::SQL_FINISH, vec![Value::Long(sid)]).await? {
            Value::Struct(s) => Ok(s),
            _ => Err(Self::unexpected(methods::SQL_FINISH, "a struct")),
        }
    }

    /// `setidstart(id)`.
    pub async fn setidstart(&self, id: i64) -> Result<(), ClientError> {
        self.call(methods::SETIDSTART, vec![Value::Long(id)]).await.map(|_| ())
    }

    /// `diff(since)`.
    pub async fn diff(&self, since: &str) -> Result<DiffAnswer, ClientError> {
        let v = self.call(methods::DIFF, vec![Value::String(since.into())]).await?;
        let Value::Struct(s) = v else { return Err(Self::unexpected(methods::DIFF, "a struct")) };
        match (s.get("data"), s.get("cursor"), s.get("more")) {
            (Some(Value::Base64(data)), Some(Value::String(cursor)), Some(Value::Boolean(more))) => {
                Ok(DiffAnswer { data: data.clone(), cursor: cursor.clone(), more: *more })
            }
            _ => Err(Self::unexpected(methods::DIFF, "members data (base64), cursor (string) and more (boolean)")),
        }
    }

    /// `configure(policy)`: the shop's schema fingerprint of the synced tables.
    pub async fn configure(&self, policy: &PolicySpec) -> Result<String, ClientError> {
        let list = |l: &[String]| Value::Array(l.iter().map(|t| Value::String(t.clone())).collect());
        let mut s = BTreeMap::new();
        s.insert("branch".to_string(), Value::String(policy.branch.clone()));
        s.insert("from_source".to_string(), list(&policy.from_source));
        s.insert("from_target".to_string(), list(&policy.from_target));
        s.insert("both".to_string(), list(&policy.both));
        s.insert("initial".to_string(), list(&policy.initial));
        s.insert("id_range".to_string(), Value::Long(policy.id_range));
        match self.call(methods::CONFIGURE, vec![Value::Struct(s)]).await? {
            Value::String(fp) => Ok(fp),
            _ => Err(Self::unexpected(methods::CONFIGURE, "a fingerprint string")),
        }
    }

    /// `verify()`: per table (`schema.name`), its row count and checksum.
    pub async fn verify(&self) -> Result<BTreeMap<String, (i64, String)>, ClientError> {
        let Value::Struct(tables) = self.call(methods::VERIFY, vec![]).await? else {
            return Err(Self::unexpected(methods::VERIFY, "a struct"));
        };
        let mut out = BTreeMap::new();
        for (table, v) in tables {
            let Value::Struct(m) = v else { return Err(Self::unexpected(methods::VERIFY, "a struct per table")) };
            match (m.get("rows").and_then(protocol::values::int), m.get("checksum")) {
                (Some(rows), Some(Value::String(sum))) => out.insert(table, (rows, sum.clone())),
                _ => return Err(Self::unexpected(methods::VERIFY, "rows and checksum per table")),
            };
        }
        Ok(out)
    }

    /// `status()`.
    pub async fn status(&self) -> Result<BTreeMap<String, Value>, ClientError> {
        match self.call(methods::STATUS, vec![]).await? {
            Value::Struct(s) => Ok(s),
            _ => Err(Self::unexpected(methods::STATUS, "a struct")),
        }
    }
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
