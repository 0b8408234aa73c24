//! The agent's one error type. Each variant maps to exactly one stable fault code in [`crate::rpc`], the only
//! place where errors become XML-RPC faults.

use protocol::fault::FaultCode;

/// Everything a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Arguments missing, extra or of the wrong type.
    #[error("{0}")]
    BadParams(String),
    /// The caller's role may not call this method.
    #[error("user {user} may not call {method}, use an office user")]
    NotAllowed {
        /// The user.
        user: String,
        /// The method.
        method: String,
    },
    /// No such method.
    #[error("unknown method {0}, see the protocol document for the list")]
    UnknownMethod(String),
    /// The request is not an XML-RPC method call.
    #[error("the request body is not an XML-RPC method call")]
    NotXmlRpc,
    /// The sid names no open session.
    #[error("no upload session {0}, call sql_prepare first")]
    UnknownSession(i64),
    /// A streamed session's transaction is gone (agent restart, idle timeout, a chunk that failed to apply):
    /// nothing of it was applied.
    #[error(
        "upload session {0} was rolled back (agent restart, idle timeout or an earlier chunk refused), nothing of it was applied: start the upload again with sql_prepare"
    )]
    SessionLost(i64),
    /// The session was already finished by an earlier `sql_finish`; it takes no more chunks.
    #[error("upload session {0} is finished, open a new one with sql_prepare")]
    SessionFinished(i64),
    /// A payload chunk was refused by the reader.
    #[error("chunk refused: {0}")]
    Payload(#[from] protocol::payload::PayloadError),
    /// The shop has no policy yet.
    #[error("the shop has no policy yet, call configure first")]
    NotConfigured,
    /// An id start outside the branch's range or a sequence beyond it.
    #[error("{0}")]
    IdRange(String),
    /// A configured limit was exceeded.
    #[error("{0}")]
    Limit(String),
    /// A failure inside the agent itself (a background task that stopped).
    #[error("{0}")]
    Internal(String),
    /// Errors of the PostgreSQL layer.
    #[error(transparent)]
    Sync(#[from] pgsync::Error),
}

impl From<protocol::wire::WireError> for AgentError {
    fn from(e: protocol::wire::WireError) -> Self {
        AgentError::BadParams(e.to_string())
    }
}

impl From<tokio_postgres::Error> for AgentError {
    fn from(e: tokio_postgres::Error) -> Self {
        AgentError::Sync(e.into())
    }
}

impl AgentError {
    /// The stable fault code of this error.
    pub fn fault_code(&self) -> FaultCode {
        use pgsync::Error as S;
        match self {
            AgentError::BadParams(_) | AgentError::NotXmlRpc => FaultCode::BadParams,
            AgentError::NotAllowed { .. } => FaultCode::NotAllowed,
            AgentError::UnknownMethod(_) => FaultCode::UnknownMethod,
            AgentError::UnknownSession(_) | AgentError::SessionFinished(_) | AgentError::SessionLost(_) => {
                FaultCode::UnknownSession
            }
            AgentError::Payload(_) => FaultCode::PayloadRefused,
            AgentError::NotConfigured => FaultCode::NotConfigured,
            AgentError::IdRange(_) => FaultCode::IdRangeConflict,
            AgentError::Limit(_) => FaultCode::LimitExceeded,
            AgentError::Internal(_) => FaultCode::Internal,
            AgentError::Sync(e) => match e {
                S::Payload { .. } | S::Rejected { .. } | S::NotOwned { .. } => FaultCode::PayloadRefused,
                S::Schema(_) | S::MissingTable(_) | S::NoPrimaryKey(_) | S::ForeignKeyCycle(_) => {
                    FaultCode::SchemaMismatch
                }
                S::Cursor(_) => FaultCode::CursorRefused,
                S::NotWritable { .. } => FaultCode::NotWritable,
                S::SchemaOccupied(_) => FaultCode::SchemaOccupied,
                S::Unavailable(_) => FaultCode::DatabaseUnavailable,
                S::NotInstalled => FaultCode::NotConfigured,
                S::Internal(_) => FaultCode::Internal,
                S::Db(_) => FaultCode::Internal,
            },
        }
    }

    /// The fault string: short, never the request echoed, never internal details for internal errors (those go
    /// to the log).
    pub fn fault_string(&self) -> String {
        let text = match self {
            AgentError::Sync(pgsync::Error::Db(e)) => {
                format!("database error {}, see the agent log", e.code().map(|c| c.code()).unwrap_or("unknown"))
            }
            other => other.to_string(),
        };
        protocol::text::capped(&text, protocol::text::MAX_FAULT_CHARS)
    }
}
