//! The one error type of the PostgreSQL layer, with the SQLSTATEs that mean something to us mapped to variants.

use protocol::cursor::CursorError;
use protocol::payload::{PayloadError, TableName};
use protocol::schema::SchemaMismatch;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the PostgreSQL layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be reached or the connection broke.
    #[error("cannot reach the database, check that it runs and the connection string: {0}")]
    Unavailable(#[source] tokio_postgres::Error),
    /// Any other database error; [`Error::sqlstate`] tells which.
    #[error("database error: {0}")]
    Db(#[source] tokio_postgres::Error),
    /// A synced table does not exist.
    #[error("table {0} does not exist, create it or take it out of the policy")]
    MissingTable(TableName),
    /// A synced table has no primary key to match rows by.
    #[error("table {0} has no primary key, add one: rows are matched by primary key")]
    NoPrimaryKey(TableName),
    /// The synced tables' foreign keys form a cycle, so no apply order exists.
    #[error("foreign keys form a cycle between {0}, make one of them deferrable or take a table out of the policy")]
    ForeignKeyCycle(String),
    /// The sync schema is not installed in this database.
    #[error("the sync schema is not installed in this database, initialise it first")]
    NotInstalled,
    /// A payload chunk was refused by the reader.
    #[error("chunk {chunk}: {source}")]
    Payload {
        /// 1-based index of the chunk.
        chunk: usize,
        /// What the reader said.
        source: PayloadError,
    },
    /// A statement that read well but cannot be applied here (wrong key, bad value, constraint violation).
    #[error("chunk {chunk} statement {statement}: {message}")]
    Rejected {
        /// 1-based index of the chunk.
        chunk: usize,
        /// 1-based index of the statement in the chunk.
        statement: usize,
        /// The SQLSTATE, when the database refused it.
        sqlstate: Option<String>,
        /// What was wrong.
        message: String,
    },
    /// The sender's schema differs from ours.
    #[error(transparent)]
    Schema(#[from] SchemaMismatch),
    /// The cursor was malformed or issued by another database.
    #[error(transparent)]
    Cursor(#[from] CursorError),
}

impl Error {
    /// The SQLSTATE code behind this error, when the database raised it.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Db(e) | Error::Unavailable(e) => e.code().map(|c| c.code()),
            Error::Rejected { sqlstate, .. } => sqlstate.as_deref(),
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code().map(|c| c.code()) {
            // invalid_schema_name / undefined_table on our own schema: the sync schema is missing.
            Some("3F000") if e.to_string().contains("branchsync") => Error::NotInstalled,
            Some("42P01") if e.to_string().contains("branchsync.") => Error::NotInstalled,
            // Connection exceptions, admin shutdown, cannot connect now.
            Some(c) if c.starts_with("08") || c == "57P01" || c == "57P03" => Error::Unavailable(e),
            None if e.is_closed() || e.as_db_error().is_none() => Error::Unavailable(e),
            _ => Error::Db(e),
        }
    }
}
