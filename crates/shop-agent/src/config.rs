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
            argon2::PasswordHash::new(&user.password_hash).map_err(|e| {
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
        {
            return Err(ConfigError::Invalid("every limit must be greater than zero".into()));
        }
        Ok(())
    }
}
