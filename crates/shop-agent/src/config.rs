//! The agent's configuration: a TOML file, every key overridable by an environment variable
//! `SHOP_AGENT__KEY` (nested keys joined by `__`, e.g. `SHOP_AGENT__LIMITS__REQUEST_SECONDS`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything the agent needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The shop database, as a libpq connection string or `postgresql://` URL.
    pub database_url: String,
    /// Who may call the agent.
    #[serde(default)]
    pub users: Vec<User>,
    /// PEM certificate chain for HTTPS; with `tls_key`.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS; with `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Bounds on what a caller may make the agent do.
    #[serde(default)]
    pub limits: Limits,
}

/// One user allowed to call the agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The basic-auth user name.
    pub name: String,
    /// An argon2 PHC string (`shop-agent hash-password` prints one); never a clear password.
    pub password_hash: String,
    /// What the user may call.
    pub role: Role,
}

/// What a user may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: the office controller.
    Office,
    /// `status` and `/metrics` only: monitoring.
    Monitor,
}

/// Bounds, each breach a clear fault (or HTTP 413 for the body).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub request_body_bytes: usize,
    /// Largest decompressed payload chunk, in bytes.
    pub chunk_decompressed_bytes: usize,
    /// Largest total of compressed chunks staged in one upload session, in bytes.
    pub session_staged_bytes: u64,
    /// Upload sessions open at once.
    pub concurrent_sessions: u64,
    /// Longest time one request may take, in seconds.
    pub request_seconds: u64,
    /// Requests served at once; more are refused with a fault.
    pub concurrent_requests: usize,
    /// Uncompressed size of each `diff` answer's payload, in bytes.
    pub diff_chunk_bytes: usize,
    /// How long an unfinished `diff` loop keeps its snapshot open without a call, in seconds.
    pub diff_idle_seconds: u64,
    /// How long a streamed upload (into empty tables) keeps its transaction open without a call, in seconds;
    /// then it is rolled back and the office must start the upload again.
    pub upload_idle_seconds: u64,
    /// Longest time a client may take to send a request's head (request line and headers), in seconds, counted
    /// from when the connection is ready for it; so it also closes a kept-alive connection that sends nothing for
    /// that long.
    pub header_read_seconds: u64,
    /// A connection on which no byte moves for this long, in seconds, while the agent is not working on one of
    /// its requests is closed: a request body that stalls, an answer the client stops reading.
    pub idle_seconds: u64,
    /// Connections open at once (TLS handshakes included); more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Password verifications (argon2, tens of milliseconds of CPU each) running at once; more wait. Logins
    /// verified before are served from a cache without waiting.
    pub auth_concurrency: usize,
    /// Failed logins from one address within `auth_failure_window_seconds` that lock the address out (HTTP 429)
    /// for `auth_lockout_seconds`, correct credentials included.
    pub auth_failures_per_address: u32,
    /// Failed logins for one user (from any addresses) within the window after which, for
    /// `auth_lockout_seconds`, that user's not yet verified logins are refused (HTTP 429) from addresses that
    /// have failed themselves; addresses without failures, such as the office's, are still checked at once.
    pub auth_failures_per_user: u32,
    /// The window failed logins are counted in, in seconds.
    pub auth_failure_window_seconds: u64,
    /// How long a lockout lasts, in seconds.
    pub auth_lockout_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_body_bytes: 16 << 20,
            chunk_decompressed_bytes: 32 << 20,
            session_staged_bytes: 2 << 30,
            concurrent_sessions: 4,
            request_seconds: 600,
            concurrent_requests: 32,
            diff_chunk_bytes: 1 << 20,
            diff_idle_seconds: 300,
            upload_idle_seconds: 600,
            header_read_seconds: 10,
            idle_seconds: 60,
            max_connections: 256,
            auth_concurrency: 2,
            auth_failures_per_address: 10,
            auth_failures_per_user: 30,
            auth_failure_window_seconds: 60,
            auth_lockout_seconds: 300,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

/// A commented default configuration, printed by `shop-agent print-default-config`.
pub const DEFAULT_CONFIG: &str = r#"# shop-agent configuration. Every key can also be set in the environment as SHOP_AGENT__KEY,
# nested keys joined by "__" (e.g. SHOP_AGENT__LIMITS__REQUEST_SECONDS=300).

# Address and port to listen on. Use 0.0.0.0:8080 to accept the office from the network.
listen = "127.0.0.1:8080"

# The shop database (libpq key=value string or postgresql:// URL).
database_url = "host=/var/run/postgresql dbname=shop user=branchsync"

# HTTPS: both a PEM certificate chain and its PEM private key. Without them the agent speaks plain HTTP.
# tls_cert = "/etc/branchsync/agent.crt"
# tls_key = "/etc/branchsync/agent.key"

# Users, checked by HTTP basic auth on every call. Make a hash with: echo -n 'secret' | shop-agent hash-password
# role "office" may call everything; role "monitor" may call only status and read /metrics.
[[users]]
name = "office"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$REPLACE_ME$REPLACE_ME"
role = "office"

[[users]]
name = "monitor"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$REPLACE_ME$REPLACE_ME"
role = "monitor"

[limits]
request_body_bytes = 16777216        # largest HTTP request body (413 above)
chunk_decompressed_bytes = 33554432  # largest decompressed payload chunk (gzip bombs are refused)
session_staged_bytes = 2147483648    # largest total staged in one upload session
concurrent_sessions = 4              # upload sessions open at once
request_seconds = 600                # longest time one request may take
concurrent_requests = 32             # requests served at once
diff_chunk_bytes = 1048576           # uncompressed size of each diff answer (smaller: the office applies one while the next is read)
diff_idle_seconds = 300              # an abandoned diff loop releases its snapshot after this
upload_idle_seconds = 600            # an abandoned streamed upload (initial load) is rolled back after this
header_read_seconds = 10             # a request's head (request line and headers) must arrive within this; also ends idle keep-alive
idle_seconds = 60                    # a stalled request body or an unread answer (nothing moving) closes the connection
max_connections = 256                # connections open at once; more are closed at once (the office needs a few)
auth_concurrency = 2                 # password hashes (argon2) checked at once; known good logins skip the check
auth_failures_per_address = 10       # failed logins from one address within the window that lock it out (429)
auth_failures_per_user = 30          # failed logins for one user that make addresses which failed wait (429)
auth_failure_window_seconds = 60     # the window failed logins are counted in
auth_lockout_seconds = 300           # how long a lockout lasts
"#;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be read or parsed.
    #[error("cannot read the configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: config::ConfigError,
    },
    /// The values are inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads `path`, applies `SHOP_AGENT__*` environment overrides, and checks the result.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read = |source| ConfigError::Read { path: path.to_owned(), source };
        let config: Config = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("SHOP_AGENT").prefix_separator("__").separator("__").try_parsing(true),
            )
            .build()
            .map_err(read)?
            .try_deserialize()
            .map_err(read)?;
        config.check()?;
        Ok(config)
    }

    /// Checks what serde cannot: password hashes parse, TLS files come in pairs, limits are positive.
    pub fn check(&self) -> Result<(), ConfigError> {
        for user in &self.users {
            service::auth::check_hash(&user.password_hash).map_err(|e| {
                ConfigError::Invalid(format!("user {}: password_hash is not an argon2 PHC string ({e}), make one with `shop-agent hash-password`", user.name))
            })?;
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid("set both tls_cert and tls_key, or neither".into()));
        }
        let l = &self.limits;
        if l.request_body_bytes == 0
            || l.chunk_decompressed_bytes == 0
            || l.concurrent_requests == 0
            || l.request_seconds == 0
            || l.concurrent_sessions == 0
            || l.upload_idle_seconds == 0
            || l.header_read_seconds == 0
            || l.idle_seconds == 0
            || l.max_connections == 0
            || l.auth_concurrency == 0
            || l.auth_failures_per_address == 0
            || l.auth_failures_per_user == 0
            || l.auth_failure_window_seconds == 0
        {
            return Err(ConfigError::Invalid("every limit must be greater than zero".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_default_configuration_reads_and_documents_the_defaults() {
        let config: Config = config::Config::builder()
            .add_source(config::File::from_str(DEFAULT_CONFIG, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        // Limits has no PartialEq (nothing else needs it); its Debug form names every field and value.
        assert_eq!(format!("{:?}", config.limits), format!("{:?}", Limits::default()));
    }
}
