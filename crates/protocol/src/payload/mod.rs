//! The payload format (BRIEF §3): gzip-compressed SQL scripts that `psql` could run, read back only in the
//! statement forms that the writer itself produces.
//!
//! The grammar is public (see `docs/payload-grammar.md`), so the reader accepts those forms however a person formats
//! them. The reader is the security boundary of the whole system: it yields typed operations, and the side that
//! applies them builds its own SQL from them, so nothing of the payload's text is ever executed.

mod copy;
mod envelope;
mod error;
mod header;
mod lexer;
mod model;
mod rows;
mod statements;
mod writer;

#[cfg(test)]
mod tests;

pub use copy::{Value, decode_copy_field, escape_copy, push_copy_row};
pub use envelope::read_payload;
pub use error::{PayloadError, PayloadErrorKind};
pub use model::{ColumnDecl, Header, MAGIC_LINE, Payload, ReadLimits, Statement, TableName};
pub use rows::Rows;
pub use statements::read_sql;
pub use writer::{ChunkWriter, WriterConfig};

pub use crate::sql::quote_ident;
