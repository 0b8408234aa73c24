//! The rows of one statement, held as `COPY` text format lines: the form PostgreSQL's `COPY FROM` reads, so a
//! receiver hands a statement's rows to the database as they are instead of decoding and re-encoding each value.

use super::copy::{Value, decode_copy_field, push_copy_row};

/// Rows of equal width in `COPY` text format, one newline-terminated line each. Every line is valid by
/// construction: pushed from values, or checked by the reader before it is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    text: String,
    len: usize,
}

impl Rows {
    /// No rows.
    pub fn new() -> Rows {
        Rows::default()
    }

    /// Appends a row of values, escaping them.
    pub fn push(&mut self, row: &[Value]) {
        push_copy_row(&mut self.text, row);
        self.text.push('\n');
        self.len += 1;
    }

    /// Appends a line the reader has checked (without its newline).
    pub(crate) fn push_checked_line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        self.len += 1;
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rows as `COPY` text format, one newline-terminated line per row.
    pub fn copy_text(&self) -> &str {
        &self.text
    }

    /// The rows decoded into values (tests and tools; the apply path uses [`copy_text`](Self::copy_text)).
    pub fn iter(&self) -> impl Iterator<Item = Vec<Value>> + '_ {
        self.text.lines().map(|line| line.split('\t').map(|f| decode_copy_field(f).unwrap_or(None)).collect())
    }

    /// The rows decoded into values.
    pub fn to_vec(&self) -> Vec<Vec<Value>> {
        self.iter().collect()
    }
}

impl From<Vec<Vec<Value>>> for Rows {
    fn from(rows: Vec<Vec<Value>>) -> Rows {
        let mut out = Rows::new();
        for row in &rows {
            out.push(row);
        }
        out
    }
}
