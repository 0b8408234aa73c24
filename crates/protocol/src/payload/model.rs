//! What a payload holds once read: tables, declared columns, the header, statements and their rows, and what a
//! reader accepts. The writer produces, and the reader yields, exactly these types.

use std::collections::BTreeSet;
use std::fmt;

use super::rows::Rows;
use crate::sql::quote_ident;

/// The first line of every payload the writer produces; readers accept payloads without it.
pub const MAGIC_LINE: &str = "-- branchsync payload v1";

/// A schema-qualified table name, always stored as PostgreSQL sees it (unquoted names folded to lower case).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    /// The schema; `public` when the payload names the table without one.
    pub schema: String,
    /// The table itself.
    pub name: String,
}

impl TableName {
    /// A table name from its two parts, taken verbatim.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self { schema: schema.into(), name: name.into() }
    }

    /// Parses `schema.table` or `table` (schema `public`) as written in configuration files: bare parts only,
    /// folded to lower case, as PostgreSQL folds unquoted identifiers.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let (schema, name) = match text.split_once('.') {
            Some((s, n)) => (s, n),
            None => ("public", text),
        };
        (valid(schema) && valid(name)).then(|| Self::new(schema.to_ascii_lowercase(), name.to_ascii_lowercase()))
    }

    /// The name quoted for use in SQL: `"schema"."table"`.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A column as the sender's header declares it: the name and the type as `format_type` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDecl {
    /// Column name, unquoted.
    pub name: String,
    /// Type as PostgreSQL's `format_type` prints it, e.g. `numeric(12,2)` or `timestamp with time zone`.
    pub type_sql: String,
}

/// What the header comments of a payload say. Every field is optional for hand-written payloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// `-- fingerprint: HEX`: the sender's fingerprint of all its synced tables.
    pub fingerprint: Option<String>,
    /// `-- cursor: TEXT`: the sender's cursor that applying this payload brings the receiver to.
    pub cursor: Option<String>,
    /// `-- table schema.name: "col" type, ...`: the sender's columns of each table the payload touches.
    pub tables: Vec<(TableName, Vec<ColumnDecl>)>,
    /// `-- replace: schema.name, ...`: after the whole upload is applied, the receiver deletes the rows of these
    /// tables whose keys the upload did not carry (the office's "complete" synchronisation). `psql` ignores it.
    pub replace: Vec<TableName>,
}

/// One operation, in payload order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `INSERT INTO t (cols) VALUES (...), ... ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c, ...` or
    /// `... DO NOTHING`. Also what a `COPY t (cols) FROM STDIN` block means: its rows are upserted on the
    /// table's primary key, so that a full load converges whatever the receiver held before.
    Upsert {
        /// Target table.
        table: TableName,
        /// The inserted columns, in order.
        columns: Vec<String>,
        /// The `ON CONFLICT` columns; empty for a `COPY` block (the receiver uses the primary key).
        conflict: Vec<String>,
        /// The columns that `DO UPDATE SET` assigns from `EXCLUDED`; empty for `DO NOTHING`. For a `COPY`
        /// block, every column.
        update: Vec<String>,
        /// The rows, one value per column each.
        rows: Rows,
    },
    /// `DELETE FROM t WHERE k = v [AND k2 = v2 ...]`, `DELETE FROM t WHERE k IN (v, ...)` or
    /// `DELETE FROM t WHERE (k1, k2) IN ((v, v), ...)`.
    Delete {
        /// Target table.
        table: TableName,
        /// The key columns, in order.
        key: Vec<String>,
        /// The deleted rows' keys, one value per key column each.
        rows: Rows,
    },
}

impl Statement {
    /// The table the statement writes.
    pub fn table(&self) -> &TableName {
        match self {
            Statement::Upsert { table, .. } | Statement::Delete { table, .. } => table,
        }
    }
}

/// A payload read back and validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    /// Header comments.
    pub header: Header,
    /// Statements in payload order.
    pub statements: Vec<Statement>,
}

/// What a reader accepts.
#[derive(Debug, Clone)]
pub struct ReadLimits {
    /// Largest decompressed size of one chunk, in bytes; a larger one is refused as a gzip bomb.
    pub max_decompressed_bytes: usize,
    /// The tables the sender may write; every other table is refused.
    pub allowed_tables: BTreeSet<TableName>,
}
