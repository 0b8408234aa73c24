//! Why a payload was refused: the statement, the class of refusal (stable for tests and fault mapping) and a
//! short excerpt for the operator, never the whole chunk.

use super::model::TableName;

/// Why a payload was refused. `statement` is the 1-based index of the offending statement in the chunk (0 when
/// the chunk as a whole is at fault: broken gzip, too large, not UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("statement {statement}: {kind} (near `{excerpt}`)")]
pub struct PayloadError {
    /// 1-based statement index, 0 for the chunk as a whole.
    pub statement: usize,
    /// What is wrong.
    pub kind: PayloadErrorKind,
    /// At most 80 characters of the offending statement's text, for the operator.
    pub excerpt: String,
}

/// The `excerpt` of a [`PayloadError`]: whitespace runs folded to one space, at most 80 characters.
pub(crate) fn excerpt(text: &str) -> String {
    let mut out = String::new();
    let mut space = false;
    for ch in text.chars() {
        if ch.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        if out.chars().count() >= 80 {
            break;
        }
        out.push(ch);
    }
    out
}

/// The classes of refusal, stable for tests and fault mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadErrorKind {
    /// The gzip stream is broken or truncated.
    #[error("broken gzip data, resend the chunk")]
    BadGzip,
    /// The chunk decompresses to more than the limit.
    #[error("decompressed chunk exceeds {limit} bytes, send smaller chunks")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The decompressed text is not UTF-8.
    #[error("payload is not valid utf-8")]
    NotUtf8,
    /// A token the grammar does not know, an unterminated literal or comment.
    #[error("cannot read the statement: {0}")]
    Syntax(String),
    /// A statement form outside the grammar (DDL, SET, transaction control, SELECT, ...).
    #[error("statement kind `{0}` is not allowed, only INSERT ... ON CONFLICT, DELETE and COPY FROM STDIN are")]
    Forbidden(String),
    /// A table outside the allowed set.
    #[error("table {0} may not be written by this sender")]
    TableNotAllowed(TableName),
    /// Something other than a literal where a value belongs (function call, sub-select, cast, operator, ...).
    #[error("only literal values are allowed: {0}")]
    NotLiteral(String),
    /// Shape errors: value count differs from column count, duplicate columns, `SET` not from `EXCLUDED`, ...
    #[error("malformed statement: {0}")]
    Malformed(String),
}
