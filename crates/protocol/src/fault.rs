//! Stable XML-RPC fault codes (documented in `docs/protocol.md`). Numbers never change meaning once released.

/// A fault code and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum FaultCode {
    /// Arguments missing, extra or of the wrong type.
    BadParams = 100,
    /// The caller's role may not call this method.
    NotAllowed = 101,
    /// No such method.
    UnknownMethod = 102,
    /// The sid names no open session.
    UnknownSession = 200,
    /// A payload chunk was refused; the message names the statement.
    PayloadRefused = 300,
    /// The sender's schema differs; the message names the table and column.
    SchemaMismatch = 301,
    /// The cursor belongs to another database or is malformed: fall back to a full exchange.
    CursorRefused = 400,
    /// The requested id start is outside the branch's range or would move a sequence backwards.
    IdRangeConflict = 500,
    /// The shop has not been configured with a policy yet.
    NotConfigured = 501,
    /// The policy names a table the agent's role may not write or capture; the message names it.
    NotWritable = 502,
    /// The sync schema holds objects branchsync did not create (user tables put there by `search_path`); the
    /// message names them and nothing was erased.
    SchemaOccupied = 503,
    /// A configured limit was exceeded; the message names it.
    LimitExceeded = 600,
    /// The shop database cannot be reached.
    DatabaseUnavailable = 700,
    /// Anything else; the agent's log has the details.
    Internal = 900,
}

impl FaultCode {
    /// Every code, for documentation and tests.
    pub const ALL: [FaultCode; 14] = [
        FaultCode::BadParams,
        FaultCode::NotAllowed,
        FaultCode::UnknownMethod,
        FaultCode::UnknownSession,
        FaultCode::PayloadRefused,
        FaultCode::SchemaMismatch,
        FaultCode::CursorRefused,
        FaultCode::IdRangeConflict,
        FaultCode::NotConfigured,
        FaultCode::NotWritable,
        FaultCode::SchemaOccupied,
        FaultCode::LimitExceeded,
        FaultCode::DatabaseUnavailable,
        FaultCode::Internal,
    ];

    /// The number on the wire.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The code for a number received on the wire.
    pub fn from_code(code: i32) -> Option<FaultCode> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}
