//! The header comments of a payload (`-- cursor:`, `-- replace:`, `-- table ...:`): metadata that `psql` ignores
//! but the receiver needs before the first statement, read on its own because it is line-based, not statements.

use std::collections::BTreeSet;

use super::error::{PayloadError, PayloadErrorKind, excerpt};
use super::lexer::Lexer;
use super::model::{ColumnDecl, Header, TableName};

fn header_error(message: String) -> PayloadError {
    PayloadError { statement: 0, kind: PayloadErrorKind::Syntax(message), excerpt: String::new() }
}

/// The `-- key: value` lines before the first statement.
pub(super) fn read_header(text: &str, allowed: &BTreeSet<TableName>) -> Result<Header, PayloadError> {
    let mut header = Header::default();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let Some(comment) = trimmed.strip_prefix("--") else { break };
        let comment = comment.trim();
        if let Some(value) = comment.strip_prefix("fingerprint:") {
            header.fingerprint = Some(value.trim().to_string());
        } else if let Some(value) = comment.strip_prefix("cursor:") {
            header.cursor = Some(value.trim().to_string());
        } else if let Some(rest) = comment.strip_prefix("replace:") {
            for item in rest.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let mut lx = Lexer { src: item, pos: 0 };
                let table = header_table(&mut lx)
                    .map_err(|m| header_error(format!("bad replace header `{}`: {m}", excerpt(comment))))?;
                if !allowed.contains(&table) {
                    return Err(PayloadError {
                        statement: 0,
                        kind: PayloadErrorKind::TableNotAllowed(table),
                        excerpt: excerpt(comment),
                    });
                }
                header.replace.push(table);
            }
        } else if let Some(rest) = comment.strip_prefix("table ") {
            header.tables.push(
                table_line(rest).map_err(|m| header_error(format!("bad table header `{}`: {m}", excerpt(comment))))?,
            );
        }
    }
    Ok(header)
}

/// `schema.name: "col" type, "col" type(1,2), ...`
fn table_line(rest: &str) -> Result<(TableName, Vec<ColumnDecl>), String> {
    let mut lx = Lexer { src: rest, pos: 0 };
    let name = header_table(&mut lx)?;
    let rest = rest[lx.pos..].trim_start().strip_prefix(':').ok_or("expected `:` after the table name")?;
    let mut columns = Vec::new();
    for item in split_top_level(rest) {
        let mut lx = Lexer { src: item, pos: 0 };
        let column = lx.ident().map_err(|_| format!("expected a column name in `{}`", item.trim()))?;
        let type_sql = item[lx.pos..].trim();
        if type_sql.is_empty() {
            return Err(format!("column {column} has no type"));
        }
        columns.push(ColumnDecl { name: column, type_sql: type_sql.to_string() });
    }
    if columns.is_empty() {
        return Err("no columns".into());
    }
    Ok((name, columns))
}

/// `schema.name` or `name` at the lexer's position.
fn header_table(lx: &mut Lexer<'_>) -> Result<TableName, String> {
    let first = lx.ident().map_err(|_| "expected a table name".to_string())?;
    if lx.peek_punct(b'.') {
        lx.pos += 1;
        Ok(TableName::new(first, lx.ident().map_err(|_| "expected a table name after the dot".to_string())?))
    } else {
        Ok(TableName::new("public", first))
    }
}

/// Splits at commas outside parentheses and double quotes.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut depth, mut quoted, mut start, mut parts) = (0i32, false, 0, Vec::new());
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth -= 1,
            b',' if !quoted && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !text[start..].trim().is_empty() {
        parts.push(&text[start..]);
    }
    parts
}
