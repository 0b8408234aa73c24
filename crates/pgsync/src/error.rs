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
    /// The role may not do what syncing a table needs (write the rows the peer sends, or capture changes).
    #[error("this database role may not {need} table {table}: grant it, or take the table out of the policy")]
    NotWritable {
        /// The table.
        table: TableName,
        /// What it may not do (`write`, `capture changes on`).
        need: &'static str,
    },
    /// The sync schema is not installed in this database.
    #[error("the sync schema is not installed in this database, initialise it first")]
    NotInstalled,
    /// Something this build relies on did not hold (a bug, or a database answering what no supported version
    /// answers); the message says what.
    #[error("internal error: {0}; report it with the log")]
    Internal(String),
    /// A payload chunk was refused by the reader.
    #[error("chunk {chunk}: {source}")]
    Payload {
        /// 1-based index of the chunk.
        chunk: usize,
        /// What the reader said.
        source: PayloadError,
    },
    /// A statement that read well but cannot be applied here (wrong key, bad value, constraint violation). Until
    /// the sender's data or the receiver's rows change, every sync of the channel stops here, so the table is
    /// named whenever it is known, and the message carries the database's detail, which names the row's values.
    #[error(
        "chunk {chunk} statement {statement}{}{}: {message}; nothing of it was applied: change the row at the sender or the constraint at the receiver, then sync again",
        in_table(table.as_ref()),
        sqlstate.as_ref().map(|c| format!(", SQLSTATE {c}")).unwrap_or_default()
    )]
    Rejected {
        /// 1-based index of the chunk.
        chunk: usize,
        /// 1-based index of the statement in the chunk.
        statement: usize,
        /// The SQLSTATE, when the database refused it.
        sqlstate: Option<String>,
        /// The table the statement writes, when known.
        table: Option<TableName>,
        /// What was wrong.
        message: String,
    },
    /// A branch sent a row that is not its own (another branch's, or the office's): nothing was applied.
    #[error(
        "branch sent a row of {table} with key ({key}) that is not its own: {why}; nothing of it was applied, check the shop for tampering or a wrong id range"
    )]
    NotOwned {
        /// The table.
        table: TableName,
        /// The row's key, as text.
        key: String,
        /// Why it is not the branch's.
        why: String,
    },
    /// The sync schema holds objects that branchsync did not create: erasing it would drop them.
    #[error(
        "the sync schema branchsync holds objects branchsync did not create ({}): move them to another schema (ALTER TABLE ... SET SCHEMA public), nothing was erased",
        .0.join(", ")
    )]
    SchemaOccupied(Vec<String>),
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
            // Connection exceptions, admin shutdown, cannot connect now.
            Some(c) if c.starts_with("08") || c == "57P01" || c == "57P03" => Error::Unavailable(e),
            None if e.is_closed() || e.as_db_error().is_none() => Error::Unavailable(e),
            _ => Error::Db(e),
        }
    }
}

/// A database error while applying a statement is the statement's fault when it is about the data (class 22
/// data exceptions, class 23 constraint violations, 21000 a key twice in one statement); otherwise it is ours.
/// `in_table` is the table the statement writes, named in the error so the operator knows where the channel is
/// stuck.
pub(crate) fn rejected(e: Error, chunk: usize, statement: usize, in_table: Option<&TableName>) -> Error {
    match &e {
        Error::Db(db) => {
            let code = db.code().map(|c| c.code().to_string());
            let about_data =
                code.as_deref().is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c == "21000");
            if about_data {
                Error::Rejected { chunk, statement, sqlstate: code, table: in_table.cloned(), message: db_message(db) }
            } else {
                e
            }
        }
        Error::Rejected { chunk: 0, statement: 0, sqlstate, table, message } => Error::Rejected {
            chunk,
            statement,
            sqlstate: sqlstate.clone(),
            table: table.clone().or_else(|| in_table.cloned()),
            message: message.clone(),
        },
        _ => e,
    }
}

/// The database's message with its detail, which names the offending values (`Key (code)=(C9) already
/// exists.`), so that the operator sees what collides.
pub(crate) fn db_message(db: &tokio_postgres::Error) -> String {
    match db.as_db_error() {
        Some(d) => match d.detail() {
            Some(detail) => format!("{} ({detail})", d.message()),
            None => d.message().to_string(),
        },
        None => db.to_string(),
    }
}

/// `Rejected`'s table, as its message names it.
fn in_table(table: Option<&TableName>) -> String {
    table.map(|t| format!(", table {t}")).unwrap_or_default()
}
