//! Reads payload chunks back into typed statements. This is the security boundary of the sync: the sender is
//! not trusted, so only the grammar of `docs/payload-grammar.md` is accepted, for the whole chunk or not at
//! all, and every refusal names the statement at fault.
//!
//! Refusal classes, kept consistent so that tests and fault mapping can rely on them:
//! - `Syntax`: the text cannot be read (lexical errors, NUL, adjacent string literals, header lines, COPY
//!   data layout, a missing `\.`);
//! - `Forbidden`: a statement kind outside the grammar, named by its first keyword, including `COPY TO`,
//!   `COPY FROM PROGRAM`, `COPY FROM FILE` and psql meta-commands;
//! - `NotLiteral`: an expression where a literal value belongs;
//! - `Malformed`: a known statement with a clause or shape outside the grammar.

use std::collections::BTreeSet;
use std::io::Read;

use super::lexer::{self, Exotic, Lexer, Tok, Token};
use super::{ColumnDecl, Header, Payload, PayloadError, PayloadErrorKind, ReadLimits, Statement, TableName, Value};

use PayloadErrorKind::{Malformed, NotLiteral, Syntax};

/// Most columns one list may name: PostgreSQL tables hold at most 1600, and the bound keeps hostile lists cheap.
const MAX_COLUMNS: usize = 1600;

/// Decompresses one gzip chunk (a single member) within `limits` and reads it with [`read_sql`].
///
/// Refuses broken or truncated gzip and bytes after the member (`BadGzip`), more than
/// `max_decompressed_bytes` of text (`TooLarge`, found after decompressing at most one byte more than the
/// limit, whatever the stream claims), and text that is not UTF-8 (`NotUtf8`); all with statement 0.
pub fn read_payload(gz: &[u8], limits: &ReadLimits) -> Result<Payload, PayloadError> {
    let chunk_error = |kind| PayloadError { statement: 0, kind, excerpt: String::new() };
    let limit = limits.max_decompressed_bytes;
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    // The buffered decoder over a slice consumes exactly the member, so what is left over is trailing garbage.
    let mut decoder = flate2::bufread::GzDecoder::new(gz).take(cap);
    let mut text = Vec::new();
    if decoder.read_to_end(&mut text).is_err() {
        return Err(chunk_error(PayloadErrorKind::BadGzip));
    }
    if text.len() > limit {
        return Err(chunk_error(PayloadErrorKind::TooLarge { limit }));
    }
    if !decoder.into_inner().into_inner().is_empty() {
        return Err(chunk_error(PayloadErrorKind::BadGzip));
    }
    let text = std::str::from_utf8(&text).map_err(|_| chunk_error(PayloadErrorKind::NotUtf8))?;
    read_sql(text, &limits.allowed_tables)
}

/// Reads decompressed payload text: the header comments, then every statement, each checked against the
/// grammar and against `allowed`, the tables the sender may write. The first refusal ends the reading.
pub fn read_sql(text: &str, allowed: &BTreeSet<TableName>) -> Result<Payload, PayloadError> {
    if text.as_bytes().contains(&0) {
        let at = text.bytes().position(|b| b == 0).unwrap_or_default();
        return Err(PayloadError {
            statement: 0,
            kind: Syntax(format!("nul character at byte {at}")),
            excerpt: String::new(),
        });
    }
    let (header, body) = read_header(text)?;
    let mut parser = Parser { src: text, lexer: Lexer::new(text, body), peeked: None, allowed };
    let mut statements = Vec::new();
    let mut index = 0;
    loop {
        // Between statements nothing is peeked, so the lexer is read directly to learn where an error is.
        let first = match parser.lexer.next_token() {
            Ok(tok) => tok,
            Err(e) => {
                return Err(PayloadError { statement: index + 1, kind: e.kind, excerpt: statement_excerpt(text, e.pos) });
            }
        };
        match first.kind {
            Tok::Eof => break,
            Tok::Semicolon => continue,
            _ => index += 1,
        }
        match parser.statement(first) {
            Ok(statement) => statements.push(statement),
            Err(kind) => {
                return Err(PayloadError { statement: index, kind, excerpt: statement_excerpt(text, first.start) });
            }
        }
    }
    Ok(Payload { header, statements })
}

/// The excerpt of the statement that starts at `start`.
fn statement_excerpt(src: &str, start: usize) -> String {
    lexer::excerpt(src, start, lexer::excerpt_end(src, start), lexer::EXCERPT_CHARS)
}

/// Reads the header comments before the first statement; returns the header and where the statements begin.
/// A broken block comment ends the header: the statement reader then reports it.
fn read_header(src: &str) -> Result<(Header, usize), PayloadError> {
    let bytes = src.as_bytes();
    let mut header = Header::default();
    let mut seen = BTreeSet::new();
    let mut pos = 0;
    loop {
        while bytes.get(pos).is_some_and(|&c| lexer::is_space(c)) {
            pos += 1;
        }
        match (bytes.get(pos), bytes.get(pos + 1)) {
            (Some(b'-'), Some(b'-')) => {
                let end = lexer::line_comment_end(bytes, pos);
                let line = src.get(pos + 2..end).unwrap_or_default();
                header_line(line, &mut header, &mut seen).map_err(|message| PayloadError {
                    statement: 0,
                    kind: Syntax(message),
                    excerpt: lexer::excerpt(src, pos, end, lexer::EXCERPT_CHARS),
                })?;
                pos = end;
            }
            (Some(b'/'), Some(b'*')) => match lexer::block_comment_end(bytes, pos) {
                Ok(end) => pos = end,
                Err(_) => return Ok((header, pos)),
            },
            _ => return Ok((header, pos)),
        }
    }
}

/// One header comment line (the text after `--`). Lines that do not start with a known key are free text.
fn header_line(line: &str, header: &mut Header, seen: &mut BTreeSet<TableName>) -> Result<(), String> {
    let body = line.trim_start_matches([' ', '\t']);
    if let Some(value) = body.strip_prefix("fingerprint:") {
        set_once(&mut header.fingerprint, value, "fingerprint")
    } else if let Some(value) = body.strip_prefix("cursor:") {
        set_once(&mut header.cursor, value, "cursor")
    } else if let Some(rest) = body.strip_prefix("table").filter(|rest| rest.starts_with([' ', '\t'])) {
        let (table, columns) = table_line(rest)?;
        if !seen.insert(table.clone()) {
            return Err(format!("second table header line for {table}"));
        }
        header.tables.push((table, columns));
        Ok(())
    } else {
        Ok(())
    }
}

fn set_once(slot: &mut Option<String>, value: &str, key: &str) -> Result<(), String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("empty {key} header line"));
    }
    if slot.is_some() {
        return Err(format!("second {key} header line"));
    }
    *slot = Some(value.to_owned());
    Ok(())
}

/// `SCHEMA.NAME: "col" type, ...` (the text after `table`).
fn table_line(rest: &str) -> Result<(TableName, Vec<ColumnDecl>), String> {
    let lex_message = |e: lexer::LexError| match e.kind {
        Syntax(message) => message,
        other => other.to_string(),
    };
    let mut lx = Lexer::new(rest, 0);
    let name_error = || "expected a table name after `table` in a table header line".to_owned();
    let tok = lx.next_token().map_err(lex_message)?;
    let first = lexer::ident_text(rest, &tok).ok_or_else(name_error)?;
    let mut tok = lx.next_token().map_err(lex_message)?;
    let table = if tok.kind == Tok::Dot {
        let second = lx.next_token().map_err(lex_message)?;
        let second = lexer::ident_text(rest, &second).ok_or_else(name_error)?;
        tok = lx.next_token().map_err(lex_message)?;
        TableName::new(first, second)
    } else {
        TableName::new("public", first)
    };
    if tok.kind != Tok::Colon {
        return Err("expected `:` after the table name in a table header line".into());
    }
    let columns = column_decls(rest.get(tok.end..).unwrap_or_default())?;
    Ok((table, columns))
}

/// The column list of a table header line: items split at commas outside parentheses and double quotes, each
/// a name and the type text.
fn column_decls(text: &str) -> Result<Vec<ColumnDecl>, String> {
    let mut items = Vec::new();
    let (mut depth, mut quoted, mut item_start) = (0usize, false, 0);
    for (i, c) in text.bytes().enumerate() {
        match c {
            b'"' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth = depth.checked_sub(1).ok_or("unbalanced `)` in a table header line")?,
            b',' if !quoted && depth == 0 => {
                items.push(&text[item_start..i]);
                item_start = i + 1;
            }
            _ => {}
        }
    }
    if quoted || depth != 0 {
        return Err("unbalanced quotes or parentheses in a table header line".into());
    }
    items.push(&text[item_start..]);
    if items.len() == 1 && items[0].trim().is_empty() {
        return Err("a table header line needs at least one column".into());
    }
    if items.len() > MAX_COLUMNS {
        return Err(format!("a table header line names more than {MAX_COLUMNS} columns"));
    }
    let columns = items.into_iter().map(column_decl).collect::<Result<Vec<_>, _>>()?;
    if let Some(dup) = first_duplicate(columns.iter().map(|c| c.name.as_str())) {
        return Err(format!("column `{dup}` appears twice in a table header line"));
    }
    Ok(columns)
}

/// `name type` or `"name" type`.
fn column_decl(item: &str) -> Result<ColumnDecl, String> {
    let item = item.trim();
    let bytes = item.as_bytes();
    let (name, end) = match bytes.first() {
        Some(b'"') => {
            let mut i = 1;
            loop {
                match bytes.get(i) {
                    Some(b'"') if bytes.get(i + 1) == Some(&b'"') => i += 2,
                    Some(b'"') => break,
                    Some(_) => i += 1,
                    None => return Err("unterminated quoted column name in a table header line".into()),
                }
            }
            (item[1..i].replace("\"\"", "\""), i + 1)
        }
        Some(&c) if c.is_ascii_alphabetic() || c == b'_' => {
            let end = bytes
                .iter()
                .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b'$'))
                .unwrap_or(bytes.len());
            (item[..end].to_ascii_lowercase(), end)
        }
        _ => return Err("expected a column name in a table header line".into()),
    };
    if name.is_empty() || name.len() > lexer::MAX_IDENT_BYTES {
        return Err("a column name in a table header line is empty or too long".into());
    }
    let rest = &item[end..];
    let type_sql = rest.trim();
    if !rest.starts_with([' ', '\t']) || type_sql.is_empty() {
        return Err(format!("expected a type after column `{name}` in a table header line"));
    }
    Ok(ColumnDecl { name, type_sql: type_sql.to_owned() })
}

/// The first name that appears twice, found by sorting (lists can be long, hostile ones too).
fn first_duplicate<'s>(names: impl Iterator<Item = &'s str>) -> Option<&'s str> {
    let mut sorted: Vec<&str> = names.collect();
    sorted.sort_unstable();
    sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

type Parse<T> = Result<T, PayloadErrorKind>;

/// The statement reader: a lexer with one token of lookahead.
struct Parser<'a> {
    src: &'a str,
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    allowed: &'a BTreeSet<TableName>,
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Parse<Token> {
        match self.peeked.take() {
            Some(tok) => Ok(tok),
            None => Ok(self.lexer.next_token()?),
        }
    }

    fn peek(&mut self) -> Parse<Token> {
        if let Some(tok) = self.peeked {
            return Ok(tok);
        }
        let tok = self.lexer.next_token()?;
        self.peeked = Some(tok);
        Ok(tok)
    }

    fn kw(&self, tok: &Token, kw: &str) -> bool {
        lexer::is_keyword(self.src, tok, kw)
    }

    fn text(&self, tok: &Token) -> &'a str {
        lexer::text(self.src, tok)
    }

    /// A token for a message.
    fn show(&self, tok: &Token) -> String {
        if tok.kind == Tok::Eof {
            "the end of the text".into()
        } else {
            format!("`{}`", lexer::excerpt(self.src, tok.start, tok.end, 24))
        }
    }

    fn malformed(&self, expected: &str, tok: &Token) -> PayloadErrorKind {
        Malformed(format!("expected {expected}, found {}", self.show(tok)))
    }

    fn expect_keyword(&mut self, kw: &str, expected: &str) -> Parse<()> {
        let tok = self.next()?;
        if self.kw(&tok, kw) { Ok(()) } else { Err(self.malformed(expected, &tok)) }
    }

    fn is_equals(&self, tok: &Token) -> bool {
        tok.kind == Tok::Op && self.text(tok) == "="
    }

    /// One statement whose first token is `first`, through its `;` (or the end of the text).
    fn statement(&mut self, first: Token) -> Parse<Statement> {
        if first.kind != Tok::Word {
            return Err(Syntax(format!(
                "a statement must start with INSERT, DELETE or COPY, found {}",
                self.show(&first)
            )));
        }
        if self.kw(&first, "insert") {
            self.insert()
        } else if self.kw(&first, "delete") {
            self.delete()
        } else if self.kw(&first, "copy") {
            self.copy()
        } else {
            Err(PayloadErrorKind::Forbidden(self.text(&first).to_ascii_uppercase()))
        }
    }

    /// A name from a `Word` or `QuotedIdent` token.
    fn name(&self, tok: &Token, expected: &str) -> Parse<String> {
        if let Some(name) = lexer::ident_text(self.src, tok) {
            return Ok(name);
        }
        if tok.kind == Tok::Exotic(Exotic::UnicodeIdent) {
            return Err(Syntax("U&\"...\" identifiers are not supported".into()));
        }
        Err(self.malformed(expected, tok))
    }

    /// `table` or `schema.table`, refused at once unless the sender may write it.
    fn table_name(&mut self) -> Parse<TableName> {
        let tok = self.next()?;
        let first = self.name(&tok, "a table name")?;
        let table = if self.peek()?.kind == Tok::Dot {
            self.next()?;
            let tok = self.next()?;
            let second = self.name(&tok, "a table name after `.`")?;
            if self.peek()?.kind == Tok::Dot {
                return Err(Malformed("a table name has at most two parts, schema.table".into()));
            }
            TableName::new(first, second)
        } else {
            TableName::new("public", first)
        };
        if !self.allowed.contains(&table) {
            return Err(PayloadErrorKind::TableNotAllowed(table));
        }
        Ok(table)
    }

    /// `col, ...)` after its `(`: non-empty, plain names, no duplicates.
    fn column_list(&mut self, what: &str) -> Parse<Vec<String>> {
        let mut columns = Vec::new();
        loop {
            let tok = self.next()?;
            if tok.kind == Tok::RParen && columns.is_empty() {
                return Err(Malformed(format!("the {what} list is empty")));
            }
            columns.push(self.name(&tok, &format!("a name in the {what} list"))?);
            if columns.len() > MAX_COLUMNS {
                return Err(Malformed(format!("the {what} list names more than {MAX_COLUMNS} columns")));
            }
            let tok = self.next()?;
            match tok.kind {
                Tok::Comma => {}
                Tok::RParen => break,
                _ => return Err(self.malformed(&format!("`,` or `)` in the {what} list"), &tok)),
            }
        }
        if let Some(dup) = first_duplicate(columns.iter().map(String::as_str)) {
            return Err(Malformed(format!("column `{dup}` appears twice in the {what} list")));
        }
        Ok(columns)
    }

    /// A literal value.
    fn value(&mut self) -> Parse<Value> {
        let tok = self.next()?;
        match tok.kind {
            Tok::Str => Ok(Some(lexer::standard_string_value(self.src, &tok))),
            Tok::EStr => lexer::escape_string_value(self.src, &tok).map(Some).map_err(Syntax),
            Tok::Number => Ok(Some(self.text(&tok).to_owned())),
            Tok::Op => {
                let op = self.text(&tok);
                if op == "-" || op == "+" {
                    let number = self.next()?;
                    if number.kind == Tok::Number {
                        let digits = self.text(&number);
                        return Ok(Some(if op == "-" { format!("-{digits}") } else { digits.to_owned() }));
                    }
                    return Err(NotLiteral(format!("a sign may only precede a number, found {}", self.show(&number))));
                }
                Err(NotLiteral(format!("operator `{op}` is not allowed")))
            }
            Tok::Word => {
                if self.kw(&tok, "null") {
                    return Ok(None);
                }
                if self.kw(&tok, "true") {
                    return Ok(Some("true".into()));
                }
                if self.kw(&tok, "false") {
                    return Ok(Some("false".into()));
                }
                let word = self.text(&tok).to_owned();
                let next = self.peek().ok().map(|t| t.kind);
                Err(NotLiteral(match next {
                    Some(Tok::LParen) => format!("function call `{word}(...)` is not allowed"),
                    Some(Tok::Str | Tok::EStr) => format!("typed literal `{word} '...'` is not allowed"),
                    Some(Tok::LBracket) => format!("`{word}[...]` is not allowed"),
                    _ => format!("`{word}` is not a literal"),
                }))
            }
            Tok::QuotedIdent => Err(NotLiteral(format!("identifier {} is not a literal", self.show(&tok)))),
            Tok::LParen => {
                let next = self.peek().ok();
                let query = next.is_some_and(|t| ["select", "values", "with", "table"].iter().any(|k| self.kw(&t, k)));
                Err(NotLiteral(if query { "sub-selects are not allowed" } else { "parenthesised expressions are not allowed" }.into()))
            }
            Tok::Exotic(kind) => Err(NotLiteral(
                match kind {
                    Exotic::Dollar => "dollar quoting and parameters are not allowed",
                    Exotic::UnicodeStr => "U&'...' strings are not allowed",
                    Exotic::UnicodeIdent => "U&\"...\" identifiers are not literals",
                    Exotic::BitStr => "bit strings B'...' are not allowed",
                    Exotic::HexStr => "bit strings X'...' are not allowed",
                    Exotic::NationalStr => "N'...' strings are not allowed",
                }
                .into(),
            )),
            Tok::LBracket => Err(NotLiteral("array constructors are not allowed".into())),
            Tok::Colon => Err(NotLiteral("psql variables (`:name`) are not allowed".into())),
            Tok::Comma | Tok::RParen => Err(Malformed("a value is missing".into())),
            _ => Err(self.malformed("a value", &tok)),
        }
    }

    /// Why `tok`, found right after a value, is refused.
    fn after_value(&self, tok: &Token, expected: &str) -> PayloadErrorKind {
        const EXPRESSION_WORDS: [&str; 13] =
            ["collate", "at", "is", "isnull", "notnull", "like", "ilike", "similar", "between", "not", "in", "overlaps", "escape"];
        match tok.kind {
            Tok::Cast => NotLiteral("casts (`::`) are not allowed".into()),
            Tok::Op => NotLiteral(format!("operator {} is not allowed", self.show(tok))),
            Tok::LBracket => NotLiteral("subscripts are not allowed".into()),
            Tok::Str | Tok::EStr => Syntax("two adjacent string literals".into()),
            Tok::Word if EXPRESSION_WORDS.iter().any(|k| self.kw(tok, k)) => {
                NotLiteral(format!("{} expressions are not allowed", self.text(tok).to_ascii_uppercase()))
            }
            _ => self.malformed(expected, tok),
        }
    }

    /// `v, ...)` after its `(`: exactly `width` values; key values may not be NULL.
    fn row(&mut self, width: usize, row_no: usize, key: bool) -> Parse<Vec<Value>> {
        let mut row = Vec::with_capacity(width);
        loop {
            let value = self.value()?;
            if key && value.is_none() {
                return Err(Malformed("NULL cannot be a key value".into()));
            }
            row.push(value);
            let tok = self.next()?;
            match tok.kind {
                Tok::Comma => {}
                Tok::RParen => break,
                _ => return Err(self.after_value(&tok, "`,` or `)` after a value")),
            }
        }
        if row.len() != width {
            let what = if key { "key columns" } else { "columns" };
            return Err(Malformed(format!("row {row_no} has {} values for {width} {what}", row.len())));
        }
        Ok(row)
    }

    /// Why a statement may not end at `tok`, or nothing if it may.
    fn end_of_statement(&self, tok: &Token, expected: &str) -> Parse<()> {
        match tok.kind {
            Tok::Semicolon | Tok::Eof => Ok(()),
            _ if self.kw(tok, "returning") => Err(Malformed("RETURNING is not allowed".into())),
            _ => Err(self.malformed(expected, tok)),
        }
    }

    /// What `tok`, found where an INSERT needed `expected`, means.
    fn insert_clause_error(&self, tok: &Token, expected: &str, alias_possible: bool) -> PayloadErrorKind {
        let message = if self.kw(tok, "default") {
            "DEFAULT VALUES is not allowed"
        } else if self.kw(tok, "overriding") {
            "OVERRIDING is not allowed"
        } else if ["select", "with", "table"].iter().any(|k| self.kw(tok, k)) || tok.kind == Tok::LParen {
            "INSERT ... SELECT is not allowed"
        } else if self.kw(tok, "values") {
            "INSERT needs a column list"
        } else if self.kw(tok, "returning") {
            "RETURNING is not allowed"
        } else if alias_possible && (self.kw(tok, "as") || matches!(tok.kind, Tok::Word | Tok::QuotedIdent)) {
            "table aliases are not allowed"
        } else {
            return self.malformed(expected, tok);
        };
        Malformed(message.into())
    }

    /// `INSERT INTO t (cols) VALUES (...), ... ON CONFLICT (cols) DO NOTHING | DO UPDATE SET c = EXCLUDED.c, ...`
    fn insert(&mut self) -> Parse<Statement> {
        self.expect_keyword("into", "INTO after INSERT")?;
        let table = self.table_name()?;
        let tok = self.next()?;
        if tok.kind != Tok::LParen {
            return Err(self.insert_clause_error(&tok, "a column list after the table name", true));
        }
        let columns = self.column_list("column")?;
        let tok = self.next()?;
        if !self.kw(&tok, "values") {
            return Err(self.insert_clause_error(&tok, "VALUES after the column list", false));
        }
        let mut rows = Vec::new();
        let tok = loop {
            let tok = self.next()?;
            if tok.kind != Tok::LParen {
                return Err(self.malformed("`(` starting a row of values", &tok));
            }
            rows.push(self.row(columns.len(), rows.len() + 1, false)?);
            let tok = self.next()?;
            if tok.kind != Tok::Comma {
                break tok;
            }
        };
        if matches!(tok.kind, Tok::Semicolon | Tok::Eof) {
            return Err(Malformed("INSERT without ON CONFLICT is not allowed".into()));
        }
        if self.kw(&tok, "returning") {
            return Err(Malformed("RETURNING is not allowed".into()));
        }
        if !self.kw(&tok, "on") {
            return Err(self.after_value(&tok, "ON CONFLICT after the rows"));
        }
        self.expect_keyword("conflict", "CONFLICT after ON")?;
        let tok = self.next()?;
        if self.kw(&tok, "on") {
            return Err(Malformed("ON CONFLICT ON CONSTRAINT is not allowed, name the conflict columns".into()));
        }
        if tok.kind != Tok::LParen {
            return Err(self.malformed("the conflict columns in parentheses after ON CONFLICT", &tok));
        }
        let conflict = self.column_list("conflict column")?;
        let mut known: Vec<&str> = columns.iter().map(String::as_str).collect();
        known.sort_unstable();
        if let Some(c) = conflict.iter().find(|c| known.binary_search(&c.as_str()).is_err()) {
            return Err(Malformed(format!("conflict column `{c}` is not among the inserted columns")));
        }
        let tok = self.next()?;
        if self.kw(&tok, "where") {
            return Err(Malformed("a WHERE clause on the conflict target is not allowed".into()));
        }
        if !self.kw(&tok, "do") {
            return Err(self.malformed("DO after the conflict columns", &tok));
        }
        let tok = self.next()?;
        let (update, tok) = if self.kw(&tok, "nothing") {
            (Vec::new(), self.next()?)
        } else if self.kw(&tok, "update") {
            self.expect_keyword("set", "SET after DO UPDATE")?;
            self.assignments(&known)?
        } else {
            return Err(self.malformed("NOTHING or UPDATE after DO", &tok));
        };
        if self.kw(&tok, "where") {
            return Err(Malformed("DO UPDATE ... WHERE is not allowed".into()));
        }
        self.end_of_statement(&tok, "`;` after the ON CONFLICT clause")?;
        Ok(Statement::Upsert { table, columns, conflict, update, rows })
    }

    /// `c = EXCLUDED.c, ...` after `SET`; returns the targets and the token after the last assignment.
    fn assignments(&mut self, known: &[&str]) -> Parse<(Vec<String>, Token)> {
        let mut update = Vec::new();
        loop {
            let tok = self.next()?;
            if tok.kind == Tok::LParen {
                return Err(Malformed("multi-column SET (a, b) = ... is not allowed".into()));
            }
            let target = self.name(&tok, "a column name after SET")?;
            if known.binary_search(&target.as_str()).is_err() {
                return Err(Malformed(format!("SET column `{target}` is not among the inserted columns")));
            }
            let tok = self.next()?;
            if !self.is_equals(&tok) {
                return Err(self.malformed(&format!("`=` after SET column `{target}`"), &tok));
            }
            let not_excluded = || Malformed(format!("SET column `{target}` must be assigned EXCLUDED.{target}"));
            let from = self.next()?;
            if lexer::ident_text(self.src, &from).as_deref() != Some("excluded") || self.next()?.kind != Tok::Dot {
                return Err(not_excluded());
            }
            let source = self.next()?;
            if lexer::ident_text(self.src, &source).as_deref() != Some(target.as_str()) {
                return Err(not_excluded());
            }
            let tok = self.next()?;
            if !matches!(tok.kind, Tok::Comma | Tok::Semicolon | Tok::Eof) && !self.kw(&tok, "where") {
                if self.kw(&tok, "returning") {
                    return Err(Malformed("RETURNING is not allowed".into()));
                }
                return Err(not_excluded());
            }
            update.push(target);
            if tok.kind != Tok::Comma {
                if let Some(dup) = first_duplicate(update.iter().map(String::as_str)) {
                    return Err(Malformed(format!("column `{dup}` is assigned twice")));
                }
                return Ok((update, tok));
            }
        }
    }

    /// `DELETE FROM t WHERE k = v [AND k2 = v2 ...]`, `... WHERE k IN (v, ...)` or
    /// `... WHERE (k1, k2) IN ((v, v), ...)`.
    fn delete(&mut self) -> Parse<Statement> {
        self.expect_keyword("from", "FROM after DELETE")?;
        let tok = self.peek()?;
        if self.kw(&tok, "only") {
            return Err(Malformed("DELETE FROM ONLY is not allowed".into()));
        }
        let table = self.table_name()?;
        let tok = self.next()?;
        if !self.kw(&tok, "where") {
            return Err(Malformed(
                if matches!(tok.kind, Tok::Semicolon | Tok::Eof) {
                    "DELETE without WHERE is not allowed"
                } else if self.kw(&tok, "using") {
                    "DELETE ... USING is not allowed"
                } else if self.kw(&tok, "returning") {
                    "RETURNING is not allowed"
                } else if matches!(tok.kind, Tok::Word | Tok::QuotedIdent) {
                    "table aliases are not allowed"
                } else {
                    return Err(self.malformed("WHERE after the table name", &tok));
                }
                .into(),
            ));
        }
        let tok = self.next()?;
        let (key, rows, end) = if tok.kind == Tok::LParen {
            self.delete_tuples()?
        } else {
            if self.kw(&tok, "current") && self.peek().is_ok_and(|t| self.kw(&t, "of")) {
                return Err(Malformed("WHERE CURRENT OF is not allowed".into()));
            }
            let column = self.name(&tok, "a key column after WHERE")?;
            let op = self.next()?;
            if self.is_equals(&op) {
                self.delete_equalities(column)?
            } else if self.kw(&op, "in") {
                self.delete_in(column)?
            } else {
                return Err(Malformed(format!("only `=` or IN may follow a key column, found {}", self.show(&op))));
            }
        };
        match end.kind {
            Tok::Semicolon | Tok::Eof => Ok(Statement::Delete { table, key, rows }),
            _ if self.kw(&end, "or") => Err(Malformed("OR is not allowed, use IN".into())),
            _ if self.kw(&end, "and") => Err(Malformed("IN cannot be combined with other conditions".into())),
            _ if self.kw(&end, "returning") => Err(Malformed("RETURNING is not allowed".into())),
            _ => Err(self.after_value(&end, "`;` after the WHERE clause")),
        }
    }

    /// `= v [AND k = v ...]` after the first key column; returns key, the one row, and the token after it.
    fn delete_equalities(&mut self, first: String) -> Parse<(Vec<String>, Vec<Vec<Value>>, Token)> {
        let mut key = vec![first];
        let mut row = vec![self.key_value()?];
        loop {
            let tok = self.next()?;
            if !self.kw(&tok, "and") {
                if let Some(dup) = first_duplicate(key.iter().map(String::as_str)) {
                    return Err(Malformed(format!("key column `{dup}` appears twice")));
                }
                return Ok((key, vec![row], tok));
            }
            let tok = self.next()?;
            key.push(self.name(&tok, "a key column after AND")?);
            let op = self.next()?;
            if !self.is_equals(&op) {
                return Err(Malformed(format!("only `=` may follow a key column after AND, found {}", self.show(&op))));
            }
            row.push(self.key_value()?);
            if key.len() > MAX_COLUMNS {
                return Err(Malformed(format!("more than {MAX_COLUMNS} key columns")));
            }
        }
    }

    /// `(v, ...)` after `k IN`.
    fn delete_in(&mut self, column: String) -> Parse<(Vec<String>, Vec<Vec<Value>>, Token)> {
        let tok = self.next()?;
        if tok.kind != Tok::LParen {
            return Err(self.malformed("`(` after IN", &tok));
        }
        let mut rows = Vec::new();
        loop {
            rows.push(vec![self.key_value()?]);
            let tok = self.next()?;
            match tok.kind {
                Tok::Comma => {}
                Tok::RParen => break,
                _ => return Err(self.after_value(&tok, "`,` or `)` in the IN list")),
            }
        }
        Ok((vec![column], rows, self.next()?))
    }

    /// `k1, k2) IN ((v, v), ...)` after `WHERE (`.
    fn delete_tuples(&mut self) -> Parse<(Vec<String>, Vec<Vec<Value>>, Token)> {
        let key = self.column_list("key column")?;
        self.expect_keyword("in", "IN after the parenthesised key columns")?;
        let tok = self.next()?;
        if tok.kind != Tok::LParen {
            return Err(self.malformed("`(` after IN", &tok));
        }
        let mut rows = Vec::new();
        loop {
            let tok = self.next()?;
            if tok.kind != Tok::LParen {
                let expected = format!("`(` starting a row of {} key values", key.len());
                return Err(self.malformed(&expected, &tok));
            }
            rows.push(self.row(key.len(), rows.len() + 1, true)?);
            let tok = self.next()?;
            match tok.kind {
                Tok::Comma => {}
                Tok::RParen => break,
                _ => return Err(self.malformed("`,` or `)` between rows", &tok)),
            }
        }
        Ok((key, rows, self.next()?))
    }

    fn key_value(&mut self) -> Parse<Value> {
        match self.value()? {
            None => Err(Malformed("NULL cannot be a key value".into())),
            value => Ok(value),
        }
    }

    /// `COPY t (cols) FROM STDIN;`, a line break, data lines, `\.`.
    fn copy(&mut self) -> Parse<Statement> {
        let copy_to = || PayloadErrorKind::Forbidden("COPY TO".into());
        if self.peek()?.kind == Tok::LParen {
            // `COPY (query) TO ...`
            return Err(copy_to());
        }
        let table = self.table_name()?;
        let tok = self.next()?;
        if self.kw(&tok, "to") {
            return Err(copy_to());
        }
        if tok.kind != Tok::LParen {
            if self.kw(&tok, "from") {
                return Err(Malformed("COPY needs a column list".into()));
            }
            return Err(self.malformed("a column list after the table name", &tok));
        }
        let columns = self.column_list("column")?;
        let tok = self.next()?;
        if self.kw(&tok, "to") {
            return Err(copy_to());
        }
        if !self.kw(&tok, "from") {
            return Err(self.malformed("FROM STDIN after the column list", &tok));
        }
        let tok = self.next()?;
        if self.kw(&tok, "program") {
            return Err(PayloadErrorKind::Forbidden("COPY FROM PROGRAM".into()));
        }
        if matches!(tok.kind, Tok::Str | Tok::EStr | Tok::Exotic(_)) {
            return Err(PayloadErrorKind::Forbidden("COPY FROM FILE".into()));
        }
        if !self.kw(&tok, "stdin") {
            return Err(self.malformed("STDIN after FROM", &tok));
        }
        let tok = self.next()?;
        match tok.kind {
            Tok::Semicolon => {}
            Tok::Eof => return Err(Malformed("COPY ... FROM STDIN must end with `;`, then its data".into())),
            Tok::Word | Tok::LParen => return Err(Malformed("COPY options are not allowed".into())),
            _ => return Err(self.malformed("`;` after FROM STDIN", &tok)),
        }
        let data = self.copy_line_break(self.lexer.pos())?;
        let (rows, end) = self.copy_data(data, columns.len())?;
        self.lexer.set_pos(end);
        let update = columns.clone();
        Ok(Statement::Upsert { table, columns, conflict: Vec::new(), update, rows })
    }

    /// After `COPY ... FROM STDIN;` only spaces or tabs may follow on the line: psql would run anything else on
    /// it as SQL once the data is copied. Returns where the data starts.
    fn copy_line_break(&self, pos: usize) -> Parse<usize> {
        let bytes = self.src.as_bytes();
        let mut i = pos;
        while matches!(bytes.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        match (bytes.get(i), bytes.get(i + 1)) {
            (Some(b'\n'), _) => Ok(i + 1),
            (Some(b'\r'), Some(b'\n')) => Ok(i + 2),
            (None, _) => Err(Syntax("COPY data does not end with a `\\.` line".into())),
            _ => Err(Syntax("nothing may follow `COPY ... FROM STDIN;` on its line, the data starts on the next".into())),
        }
    }

    /// The data lines from `pos` through the `\.` line: the rows and where the text goes on. Every line of a
    /// block ends the same way (`\n`, or `\r\n` throughout, as the first line sets, as PostgreSQL requires).
    fn copy_data(&self, mut pos: usize, width: usize) -> Parse<(Vec<Vec<Value>>, usize)> {
        let bytes = self.src.as_bytes();
        let missing_end = || Syntax("COPY data does not end with a `\\.` line".into());
        let mut rows = Vec::new();
        let mut crlf = None;
        let mut line_no = 0;
        loop {
            if pos >= bytes.len() {
                return Err(missing_end());
            }
            line_no += 1;
            let newline = bytes[pos..].iter().position(|&c| c == b'\n').map(|i| pos + i);
            let (mut end, next) = newline.map_or((bytes.len(), bytes.len()), |i| (i, i + 1));
            if newline.is_some() {
                let cr = end > pos && bytes[end - 1] == b'\r';
                if *crlf.get_or_insert(cr) != cr {
                    return Err(Malformed(format!("line {line_no} of the COPY data ends differently from the first")));
                }
                if cr {
                    end -= 1;
                }
            }
            if &bytes[pos..end] == b"\\." {
                return Ok((rows, next));
            }
            if newline.is_none() {
                return Err(missing_end());
            }
            rows.push(self.copy_line(pos, end, width, line_no)?);
            pos = next;
        }
    }

    /// One data line `src[start..end]` (without its line break): TAB-separated fields.
    fn copy_line(&self, start: usize, end: usize, width: usize, line_no: usize) -> Parse<Vec<Value>> {
        let bytes = self.src.as_bytes();
        let bare_cr = || {
            Malformed(format!("line {line_no} of the COPY data holds a carriage return, write it as `\\r`"))
        };
        let mut row = Vec::with_capacity(width);
        let (mut field, mut escaped, mut i) = (start, false, start);
        loop {
            if i == end || bytes[i] == b'\t' {
                if row.len() == width {
                    return Err(Malformed(format!("line {line_no} of the COPY data has more than {width} fields")));
                }
                row.push(self.copy_field(field, i, escaped, line_no)?);
                if i == end {
                    break;
                }
                (field, escaped, i) = (i + 1, false, i + 1);
                continue;
            }
            match bytes[i] {
                b'\\' => {
                    escaped = true;
                    // The escaped byte never separates fields or ends the line: `\<TAB>` is a tab in the data.
                    match bytes.get(i + 1) {
                        _ if i + 1 >= end => {
                            return Err(Malformed(format!("line {line_no} of the COPY data ends with a backslash")));
                        }
                        Some(b'\r') => return Err(bare_cr()),
                        _ => i += 2,
                    }
                }
                b'\r' => return Err(bare_cr()),
                _ => i += 1,
            }
        }
        if row.len() != width {
            return Err(Malformed(format!("line {line_no} of the COPY data has {} fields for {width} columns", row.len())));
        }
        Ok(row)
    }

    /// One field `src[start..end]` of COPY text format: `\N` is NULL, backslash escapes decoded.
    fn copy_field(&self, start: usize, end: usize, escaped: bool, line_no: usize) -> Parse<Value> {
        let raw = self.src.as_bytes().get(start..end).unwrap_or_default();
        if raw == b"\\N" {
            return Ok(None);
        }
        if !escaped {
            return Ok(Some(self.src.get(start..end).unwrap_or_default().to_owned()));
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let c = raw[i];
            if c != b'\\' {
                out.push(c);
                i += 1;
                continue;
            }
            let Some(&e) = raw.get(i + 1) else {
                return Err(Malformed(format!("line {line_no} of the COPY data ends with a backslash")));
            };
            i += 2;
            let byte = match e {
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'v' => 0x0b,
                b'0'..=b'7' => {
                    let (v, used) = lexer::radix_digits(&raw[i..], 8, 2);
                    i += used;
                    ((u32::from(e - b'0') << (3 * used)) | v) as u8
                }
                b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                    let (v, used) = lexer::radix_digits(&raw[i..], 16, 2);
                    i += used;
                    v as u8
                }
                // PostgreSQL versions disagree on what `\.` inside a line means; a period needs no escape.
                b'.' => return Err(Malformed(format!("line {line_no} of the COPY data holds `\\.` inside a line"))),
                other => other,
            };
            if byte == 0 {
                return Err(Syntax(format!("line {line_no} of the COPY data holds a nul character")));
            }
            out.push(byte);
        }
        String::from_utf8(out)
            .map(Some)
            .map_err(|_| Syntax(format!("line {line_no} of the COPY data decodes to invalid utf-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use PayloadErrorKind::{BadGzip, Forbidden, NotUtf8, TableNotAllowed, TooLarge};

    fn allowed() -> BTreeSet<TableName> {
        [
            TableName::new("public", "product"),
            TableName::new("public", "person"),
            TableName::new("public", "t"),
            TableName::new("shop", "Sale Item"),
        ]
        .into_iter()
        .collect()
    }

    fn ok(sql: &str) -> Payload {
        match read_sql(sql, &allowed()) {
            Ok(payload) => payload,
            Err(e) => panic!("refused: {e}\n{sql}"),
        }
    }

    fn err(sql: &str) -> PayloadError {
        match read_sql(sql, &allowed()) {
            Ok(payload) => panic!("accepted: {payload:?}\n{sql}"),
            Err(e) => e,
        }
    }

    /// The refusal as (statement, kind class) for assertions that do not care about message text.
    fn class(sql: &str) -> (usize, &'static str) {
        let e = err(sql);
        let name = match e.kind {
            BadGzip => "BadGzip",
            TooLarge { .. } => "TooLarge",
            NotUtf8 => "NotUtf8",
            Syntax(_) => "Syntax",
            Forbidden(_) => "Forbidden",
            TableNotAllowed(_) => "TableNotAllowed",
            NotLiteral(_) => "NotLiteral",
            Malformed(_) => "Malformed",
        };
        (e.statement, name)
    }

    fn s(v: &str) -> Value {
        Some(v.to_owned())
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| (*c).to_owned()).collect()
    }

    fn t(name: &str) -> TableName {
        TableName::new("public", name)
    }

    fn gz(text: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text).expect("compress");
        enc.finish().expect("compress")
    }

    fn limits(max: usize) -> ReadLimits {
        ReadLimits { max_decompressed_bytes: max, allowed_tables: allowed() }
    }

    /// One statement's single value, read through an upsert of column `a`.
    fn value_of(literal: &str) -> Value {
        let sql = format!("INSERT INTO t (a) VALUES ({literal}) ON CONFLICT (a) DO NOTHING");
        match ok(&sql).statements.as_slice() {
            [Statement::Upsert { rows, .. }] => rows[0][0].clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn value_class(literal: &str) -> (usize, &'static str) {
        class(&format!("INSERT INTO t (a) VALUES ({literal}) ON CONFLICT (a) DO NOTHING"))
    }

    const INSERT_OK: &str = "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING";

    // ---- a valid payload with every form ----

    const FULL: &str = "-- branchsync payload v1\n\
        -- fingerprint: 0123abcd  \n\
        /* a block comment in the header */\n\
        -- cursor: 42:7:1,3\n\
        -- table public.product: \"id\" bigint, \"name\" text, \"price\" numeric(12,2), tags text[], \"c\" \"char\"\n\
        -- table shop.\"Sale Item\": \"Id\" bigint, \"a,b\" timestamp with time zone\n\
        -- some free text: ignored\n\
        \n\
        INSERT INTO public.product (id, \"name\", price) VALUES\n\
          (1, 'Tea', 2.50),\n\
          (2, 'Coffee /* not a comment */', -3e2)\n\
        ON CONFLICT (id) DO UPDATE SET \"name\" = EXCLUDED.\"name\", price = excluded.price;\n\
        -- fingerprint: after the first statement this is a plain comment\n\
        insert   into   PRODUCT(ID)values(3)on conflict(id)do nothing ;\n\
        InSeRt /* odd */ INTO shop . \"Sale Item\" (\"Id\") VALUES (NULL) ON CONFLICT (\"Id\") DO UPDATE SET \"Id\" = \"excluded\".\"Id\";\n\
        DELETE FROM product WHERE id = 4;\n\
        delete from person where id = 5 and branch = 'x';\n\
        DELETE FROM product WHERE id IN (6, 7, 8);\n\
        DELETE FROM person WHERE (id, branch) IN ((9, 'a'), (10, 'b'));\n\
        DELETE FROM person WHERE (id) IN ((11), (12));\n\
        COPY product (id, name) FROM stdin;\n\
        13\tSoap\n\
        14\t\\N\n\
        \\.\n\
        DELETE FROM product WHERE id = 15\n";

    #[test]
    fn valid_payload_with_every_form() {
        let payload = ok(FULL);
        assert_eq!(payload.header.fingerprint.as_deref(), Some("0123abcd"));
        assert_eq!(payload.header.cursor.as_deref(), Some("42:7:1,3"));
        let decl = |n: &str, ty: &str| ColumnDecl { name: n.into(), type_sql: ty.into() };
        assert_eq!(
            payload.header.tables,
            vec![
                (
                    t("product"),
                    vec![
                        decl("id", "bigint"),
                        decl("name", "text"),
                        decl("price", "numeric(12,2)"),
                        decl("tags", "text[]"),
                        decl("c", "\"char\""),
                    ]
                ),
                (
                    TableName::new("shop", "Sale Item"),
                    vec![decl("Id", "bigint"), decl("a,b", "timestamp with time zone")]
                ),
            ]
        );
        let expected = vec![
            Statement::Upsert {
                table: t("product"),
                columns: names(&["id", "name", "price"]),
                conflict: names(&["id"]),
                update: names(&["name", "price"]),
                rows: vec![
                    vec![s("1"), s("Tea"), s("2.50")],
                    vec![s("2"), s("Coffee /* not a comment */"), s("-3e2")],
                ],
            },
            Statement::Upsert {
                table: t("product"),
                columns: names(&["id"]),
                conflict: names(&["id"]),
                update: vec![],
                rows: vec![vec![s("3")]],
            },
            Statement::Upsert {
                table: TableName::new("shop", "Sale Item"),
                columns: names(&["Id"]),
                conflict: names(&["Id"]),
                update: names(&["Id"]),
                rows: vec![vec![None]],
            },
            Statement::Delete { table: t("product"), key: names(&["id"]), rows: vec![vec![s("4")]] },
            Statement::Delete { table: t("person"), key: names(&["id", "branch"]), rows: vec![vec![s("5"), s("x")]] },
            Statement::Delete {
                table: t("product"),
                key: names(&["id"]),
                rows: vec![vec![s("6")], vec![s("7")], vec![s("8")]],
            },
            Statement::Delete {
                table: t("person"),
                key: names(&["id", "branch"]),
                rows: vec![vec![s("9"), s("a")], vec![s("10"), s("b")]],
            },
            Statement::Delete { table: t("person"), key: names(&["id"]), rows: vec![vec![s("11")], vec![s("12")]] },
            Statement::Upsert {
                table: t("product"),
                columns: names(&["id", "name"]),
                conflict: vec![],
                update: names(&["id", "name"]),
                rows: vec![vec![s("13"), s("Soap")], vec![s("14"), None]],
            },
            Statement::Delete { table: t("product"), key: names(&["id"]), rows: vec![vec![s("15")]] },
        ];
        assert_eq!(payload.statements, expected);
    }

    #[test]
    fn payload_through_gzip() {
        let payload = read_payload(&gz(FULL.as_bytes()), &limits(1 << 20)).expect("reads");
        assert_eq!(payload, ok(FULL));
    }

    #[test]
    fn empty_payloads_are_empty() {
        assert_eq!(ok(""), Payload::default());
        assert_eq!(ok(" ;; -- nothing\n/* at all */ ;"), Payload::default());
        assert_eq!(read_payload(&gz(b""), &limits(10)).expect("reads"), Payload::default());
    }

    // ---- header ----

    #[test]
    fn header_lines() {
        let p = ok("--fingerprint:abc\n--   cursor:   x y  \n-- table t: \"weird \"\"name\"\"\" double precision\n");
        assert_eq!(p.header.fingerprint.as_deref(), Some("abc"));
        assert_eq!(p.header.cursor.as_deref(), Some("x y"));
        assert_eq!(
            p.header.tables,
            vec![(t("t"), vec![ColumnDecl { name: "weird \"name\"".into(), type_sql: "double precision".into() }])]
        );
        // Bare names fold to lower case; CRLF line ends are not part of the value.
        let p = ok("-- table Public.T: ID integer\r\n-- fingerprint: f\r\n");
        assert_eq!(p.header.tables[0].0, t("t"));
        assert_eq!(p.header.tables[0].1[0].name, "id");
        assert_eq!(p.header.fingerprint.as_deref(), Some("f"));
        // Keys are lower case; anything else is free text.
        let p = ok("-- Fingerprint: x\n-- tables: y\n-- tablets\n");
        assert_eq!(p.header, Header::default());
    }

    #[test]
    fn header_lines_after_the_first_statement_are_comments() {
        let p = ok(&format!("{INSERT_OK};\n-- fingerprint: late\n-- table t: garbage(\n"));
        assert_eq!(p.header, Header::default());
    }

    #[test]
    fn malformed_header_lines() {
        for bad in [
            "-- fingerprint:\n",
            "-- fingerprint:   \n",
            "-- cursor: a\n-- cursor: b\n",
            "-- fingerprint: a\n-- fingerprint: a\n",
            "-- table t \"id\" bigint\n",
            "-- table : \"id\" bigint\n",
            "-- table t:\n",
            "-- table t: \"id\"\n",
            "-- table t: id\n",
            "-- table t: \"id\" numeric(12,2\n",
            "-- table t: \"id\" numeric)\n",
            "-- table t: \"id bigint\n",
            "-- table t: \"\" bigint\n",
            "-- table t: id bigint, , b text\n",
            "-- table t: id bigint, ID text\n",
            "-- table t: id bigint\n-- table public.t: id bigint\n",
            "-- table a.b.c: id bigint\n",
            "-- table t:: id bigint\n",
            "-- table 'x': id bigint\n",
            "-- table t: 1d bigint\n",
        ] {
            assert_eq!(class(&format!("{bad}{INSERT_OK}")), (0, "Syntax"), "{bad}");
        }
        let e = err("\n  -- fingerprint:\n");
        assert_eq!(e.excerpt, "-- fingerprint:");
    }

    // ---- identifiers ----

    #[test]
    fn quoted_identifiers() {
        let mut set = allowed();
        set.insert(TableName::new("My \"Schema\"", "Tab"));
        let sql = "INSERT INTO \"My \"\"Schema\"\"\".\"Tab\" (\"Mixed Case\", \"q\"\"uote\", plain, \"excluded\")
            VALUES ('a', 'b', 'c', 'd') ON CONFLICT (\"Mixed Case\")
            DO UPDATE SET \"q\"\"uote\" = EXCLUDED.\"q\"\"uote\", PLAIN = \"excluded\".plain, \"excluded\" = excluded.\"excluded\"";
        let p = read_sql(sql, &set).expect("reads");
        assert_eq!(
            p.statements,
            vec![Statement::Upsert {
                table: TableName::new("My \"Schema\"", "Tab"),
                columns: names(&["Mixed Case", "q\"uote", "plain", "excluded"]),
                conflict: names(&["Mixed Case"]),
                update: names(&["q\"uote", "plain", "excluded"]),
                rows: vec![vec![s("a"), s("b"), s("c"), s("d")]],
            }]
        );
    }

    #[test]
    fn identifier_edge_cases() {
        // Case matters inside quotes: "Product" is not product.
        assert!(matches!(err("DELETE FROM \"Product\" WHERE id = 1").kind, TableNotAllowed(_)));
        assert_eq!(class("DELETE FROM product WHERE \"\" = 1"), (1, "Syntax"));
        assert_eq!(class("DELETE FROM U&\"product\" WHERE id = 1"), (1, "Syntax"));
        assert_eq!(class(&format!("DELETE FROM product WHERE {} = 1", "a".repeat(64))), (1, "Syntax"));
        assert_eq!(class(&format!("DELETE FROM product WHERE \"{}\" = 1", "a".repeat(64))), (1, "Syntax"));
        assert_eq!(ok(&format!("DELETE FROM product WHERE {} = 1", "a".repeat(63))).statements.len(), 1);
        assert_eq!(class("DELETE FROM product WHERE café = 1"), (1, "Syntax"));
        assert_eq!(class("DELETE FROM product WHERE \"unterminated = 1"), (1, "Syntax"));
        assert_eq!(class("DELETE FROM x.y.product WHERE id = 1"), (1, "TableNotAllowed"));
        assert_eq!(class("DELETE FROM public.product.id WHERE id = 1"), (1, "Malformed"));
        let p = ok("DELETE FROM product WHERE a$1 = 1 AND _B = 2");
        assert_eq!(p.statements[0], Statement::Delete {
            table: t("product"),
            key: names(&["a$1", "_b"]),
            rows: vec![vec![s("1"), s("2")]],
        });
    }

    // ---- literals ----

    #[test]
    fn standard_strings() {
        assert_eq!(value_of("'it''s'"), s("it's"));
        assert_eq!(value_of("''"), s(""));
        assert_eq!(value_of("''''"), s("'"));
        assert_eq!(value_of(r"'a\b\'"), s(r"a\b\"));
        assert_eq!(value_of("'two\nlines; -- not a comment'"), s("two\nlines; -- not a comment"));
        assert_eq!(value_of("'ünïcødé 🙂'"), s("ünïcødé 🙂"));
        assert_eq!(value_class("'unterminated"), (1, "Syntax"));
    }

    #[test]
    fn escape_strings() {
        assert_eq!(value_of(r#"E'\b\f\n\r\t\\\'\"'"#), s("\u{8}\u{c}\n\r\t\\'\""));
        assert_eq!(value_of(r"e'a''b'"), s("a'b"));
        assert_eq!(value_of(r"E'\101\7\07\0101\477'"), s("A\u{7}\u{7}\u{8}1\u{3f}"));
        assert_eq!(value_of(r"E'\x41\x4\x4g\xz'"), s("A\u{4}\u{4}gxz"));
        assert_eq!(value_of(r"E'\u00e9\U0001F600\uD83D\uDE00'"), s("é😀😀"));
        assert_eq!(value_of(r"E'\q\%\é'"), s("q%é"));
        assert_eq!(value_of("E'\\\nx'"), s("\nx"));
        assert_eq!(value_of("E'plain'"), s("plain"));
        for bad in [
            r"E'\u12'",
            r"E'\U0001F60'",
            r"E'\uD83D'",
            r"E'\uD83Dx'",
            r"E'\uDE00'",
            r"E'\U00110000'",
            r"E'\u0000'",
            r"E'\0'",
            r"E'\x00'",
            r"E'\000'",
            r"E'\xff'",
            r"E'\303'",
            r"E'unterminated\'",
        ] {
            assert_eq!(value_class(bad), (1, "Syntax"), "{bad}");
        }
    }

    #[test]
    fn numbers() {
        for (literal, text) in [
            ("123", "123"),
            ("-1.5", "-1.5"),
            (".5", ".5"),
            ("5.", "5."),
            ("1e10", "1e10"),
            ("1.5E-3", "1.5E-3"),
            ("2e+3", "2e+3"),
            ("-.5", "-.5"),
            ("+7", "7"),
            ("- 5", "-5"),
            ("-/* c */5", "-5"),
            ("007", "007"),
        ] {
            assert_eq!(value_of(literal), s(text), "{literal}");
        }
        for bad in ["1abc", "0x1F", "1_000", "1e", "1e+", "1.2.3", "5..", "1$", "1é"] {
            assert_eq!(value_class(bad), (1, "Syntax"), "{bad}");
        }
        assert_eq!(value_class("- -5"), (1, "NotLiteral"));
        assert_eq!(value_class("--5"), (1, "Malformed"), "a comment: the value is missing");
    }

    #[test]
    fn keyword_literals() {
        assert_eq!(value_of("NULL"), None);
        assert_eq!(value_of("null"), None);
        assert_eq!(value_of("True"), s("true"));
        assert_eq!(value_of("fALSE"), s("false"));
    }

    #[test]
    fn adjacent_string_literals() {
        assert_eq!(value_class("'a' 'b'"), (1, "Syntax"));
        assert_eq!(value_class("'a'\n'b'"), (1, "Syntax"));
        assert_eq!(value_class("'a' -- c\n 'b'"), (1, "Syntax"));
        assert_eq!(value_class("E'a'\nE'b'"), (1, "Syntax"));
        assert_eq!(class("DELETE FROM product WHERE id = 'a'\n'b'"), (1, "Syntax"));
    }

    #[test]
    fn only_literals_in_value_position() {
        for bad in [
            "now()",
            "pg_sleep(10)",
            "current_timestamp",
            "now",
            "DEFAULT",
            "(SELECT 1)",
            "(select secret from pg_authid)",
            "(1)",
            "'1'::int",
            "1::text",
            "CAST('1' AS int)",
            "1+1",
            "1 + 1",
            "'a'||'b'",
            "-'5'",
            "+NULL",
            "ARRAY[1,2]",
            "$1",
            "$$x$$",
            "$tag$x$tag$",
            "U&'x'",
            "u&'x'",
            "B'101'",
            "X'1F'",
            "N'x'",
            "date '2020-01-01'",
            "\"quoted\"",
            "'a' COLLATE \"C\"",
            "'x' IS NULL",
            "'{1}'[1]",
            ":var",
            ":'var'",
            "1 = 1",
        ] {
            assert_eq!(value_class(bad), (1, "NotLiteral"), "{bad}");
        }
    }

    // ---- hostile statements ----

    #[test]
    fn forbidden_statement_kinds() {
        for (sql, kw) in [
            ("CREATE TABLE x (a int)", "CREATE"),
            ("create function f() returns int as 'select 1' language sql", "CREATE"),
            ("DROP TABLE product", "DROP"),
            ("ALTER TABLE product ADD COLUMN x int", "ALTER"),
            ("TRUNCATE product", "TRUNCATE"),
            ("GRANT ALL ON product TO public", "GRANT"),
            ("REVOKE ALL ON product FROM public", "REVOKE"),
            ("COMMENT ON TABLE product IS 'x'", "COMMENT"),
            ("SET session_replication_role = replica", "SET"),
            ("set local search_path = evil", "SET"),
            ("RESET ALL", "RESET"),
            ("BEGIN", "BEGIN"),
            ("START TRANSACTION", "START"),
            ("COMMIT", "COMMIT"),
            ("END", "END"),
            ("ROLLBACK", "ROLLBACK"),
            ("SAVEPOINT a", "SAVEPOINT"),
            ("RELEASE a", "RELEASE"),
            ("SELECT pg_sleep(10)", "SELECT"),
            ("select * from product", "SELECT"),
            ("UPDATE product SET price = 0", "UPDATE"),
            ("MERGE INTO product USING x ON true WHEN MATCHED THEN DELETE", "MERGE"),
            ("WITH x AS (DELETE FROM product) SELECT 1", "WITH"),
            ("VALUES (1)", "VALUES"),
            ("TABLE product", "TABLE"),
            ("DO $$BEGIN PERFORM 1; END$$", "DO"),
            ("CALL p()", "CALL"),
            ("EXECUTE p", "EXECUTE"),
            ("PREPARE p AS SELECT 1", "PREPARE"),
            ("LOCK product", "LOCK"),
            ("VACUUM FULL", "VACUUM"),
            ("NOTIFY c", "NOTIFY"),
            ("LISTEN c", "LISTEN"),
            ("CHECKPOINT", "CHECKPOINT"),
            ("REINDEX TABLE product", "REINDEX"),
            ("LOAD 'evil.so'", "LOAD"),
            ("REPLACE INTO product VALUES (1)", "REPLACE"),
            ("COPY product (id) TO STDOUT", "COPY TO"),
            ("COPY product TO '/tmp/x'", "COPY TO"),
            ("COPY (SELECT * FROM pg_authid) TO '/tmp/x'", "COPY TO"),
            ("COPY product (id) FROM PROGRAM 'rm -rf /'", "COPY FROM PROGRAM"),
            ("COPY product (id) FROM '/etc/passwd'", "COPY FROM FILE"),
            ("COPY product (id) FROM E'/etc/passwd'", "COPY FROM FILE"),
        ] {
            // Alone, and as the second statement after a valid one.
            assert_eq!(err(sql).kind, Forbidden(kw.into()), "{sql}");
            let e = err(&format!("{INSERT_OK};\n{sql};\n{INSERT_OK}"));
            assert_eq!((e.statement, e.kind), (2, Forbidden(kw.into())), "{sql}");
        }
    }

    #[test]
    fn statements_must_start_with_a_keyword() {
        for sql in ["(SELECT 1)", "'x'", "\"INSERT\" INTO t", "1", "-", "$$x$$", ".x"] {
            assert_eq!(class(sql), (1, "Syntax"), "{sql}");
        }
    }

    #[test]
    fn other_tables_are_refused_before_values() {
        assert_eq!(err("INSERT INTO secret (a) VALUES (1) ON CONFLICT (a) DO NOTHING").kind, TableNotAllowed(t("secret")));
        assert_eq!(
            err("INSERT INTO pg_catalog.pg_authid (a) VALUES (now()) ON CONFLICT (a) DO NOTHING").kind,
            TableNotAllowed(TableName::new("pg_catalog", "pg_authid"))
        );
        assert_eq!(err("DELETE FROM secret WHERE id = now()").kind, TableNotAllowed(t("secret")));
        assert_eq!(err("COPY secret (a) FROM PROGRAM 'x'").kind, TableNotAllowed(t("secret")));
        assert_eq!(err("DELETE FROM shop.sale_item WHERE a = 1").kind, TableNotAllowed(TableName::new("shop", "sale_item")));
    }

    #[test]
    fn statements_hidden_behind_quotes() {
        // '' is a quote: one string.
        assert_eq!(value_of("'a'';DROP TABLE x;--'"), s("a';DROP TABLE x;--"));
        // Backslash is not an escape in a standard string: the string ends after the backslash.
        let e = err(r"INSERT INTO t (a) VALUES ('a\') ON CONFLICT (a) DO NOTHING; DROP TABLE x; --')");
        assert_eq!((e.statement, e.kind), (2, Forbidden("DROP".into())));
        let p = ok(r"INSERT INTO t (a) VALUES ('a\') ON CONFLICT (a) DO NOTHING; -- '); DROP TABLE x; --");
        assert_eq!(p.statements.len(), 1);
        // In an escape string \' is a quote, then '' is one too.
        assert_eq!(value_of(r"E'\'''; DROP TABLE x; --'"), s("''; DROP TABLE x; --"));
        // E'\'' is the string "'", so what follows is a statement.
        let e = err(r"INSERT INTO t (a) VALUES (E'\'') ON CONFLICT (a) DO NOTHING; DROP TABLE x; --'");
        assert_eq!((e.statement, e.kind), (2, Forbidden("DROP".into())));
        assert_eq!(value_of(r"E'\''"), s("'"));
        // A double quote in a name hides nothing either.
        let e = err("DELETE FROM t WHERE \"a\"\"; DROP TABLE x; --\" = 1");
        assert_eq!(e.statement, 1);
        assert!(matches!(e.kind, Syntax(_)), "{e:?}");
    }

    #[test]
    fn statements_hidden_behind_comments() {
        assert_eq!(ok(&format!("{INSERT_OK} /* ; DROP TABLE x */")).statements.len(), 1);
        assert_eq!(ok(&format!("{INSERT_OK} /* /* */ ; DROP TABLE x */")).statements.len(), 1);
        let e = err(&format!("{INSERT_OK} /* */ ; DROP TABLE x"));
        assert_eq!((e.statement, e.kind), (2, Forbidden("DROP".into())));
        let e = err(&format!("{INSERT_OK} /* /* */ */ ; DROP TABLE x"));
        assert_eq!((e.statement, e.kind), (2, Forbidden("DROP".into())));
        // PostgreSQL ends a -- comment at a carriage return too.
        let e = err(&format!("{INSERT_OK}; -- c\rDROP TABLE x"));
        assert_eq!((e.statement, e.kind), (2, Forbidden("DROP".into())));
        // An unterminated comment is refused, attributed to where the next statement would be.
        assert_eq!(class(&format!("{INSERT_OK}; /* /* */ DROP TABLE x")), (2, "Syntax"));
        assert_eq!(class("/* open"), (1, "Syntax"));
        // Comments between any tokens.
        let p = ok("INSERT/**/INTO/**/t/**/(/**/a/**/)/**/VALUES/**/(/**/1/**/)--x\nON CONFLICT(a)DO/**/NOTHING");
        assert_eq!(p.statements.len(), 1);
    }

    #[test]
    fn psql_meta_commands() {
        for (sql, cmd) in [
            ("\\! rm -rf /", "\\!"),
            ("\\i /etc/passwd", "\\i"),
            ("\\connect other", "\\connect"),
            ("\\copy product from 'x'", "\\copy"),
            ("\\set ON_ERROR_STOP off", "\\set"),
        ] {
            let e = err(sql);
            assert_eq!((e.statement, e.kind), (1, Forbidden(cmd.into())), "{sql}");
            let e = err(&format!("{INSERT_OK};\n{sql}\n"));
            assert_eq!((e.statement, e.kind), (2, Forbidden(cmd.into())), "{sql}");
        }
        // Anywhere outside quotes: psql runs it mid-statement too.
        let e = err("INSERT INTO t (a) VALUES (1) \\gexec");
        assert_eq!((e.statement, e.kind), (1, Forbidden("\\gexec".into())));
        let e = err(&format!("{INSERT_OK}; \\! id"));
        assert_eq!((e.statement, e.kind), (2, Forbidden("\\!".into())));
        // Inside literals and comments a backslash is just text.
        assert_eq!(ok(&format!("-- \\! id\n{INSERT_OK} /* \\! id */")).statements.len(), 1);
    }

    // ---- INSERT shape ----

    #[test]
    fn insert_shapes_refused() {
        for sql in [
            "INSERT INTO t (a) VALUES (1)",
            "INSERT INTO t (a) VALUES (1);",
            "INSERT INTO t (a) VALUES (1) RETURNING a",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING RETURNING *",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = EXCLUDED.a RETURNING a",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT ON CONSTRAINT t_pkey DO NOTHING",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) WHERE a > 0 DO NOTHING",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = EXCLUDED.a WHERE t.a < 5",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 'literal'",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 1",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = now()",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = t.a",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = EXCLUDED.a + 1",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = \"EXCLUDED\".a",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = EXCLUDED.\"A\"",
            "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.a",
            "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET c = EXCLUDED.c",
            "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b, b = EXCLUDED.b",
            "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET (b) = (EXCLUDED.b)",
            "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET b = DEFAULT",
            "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE b = EXCLUDED.b",
            "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (c) DO NOTHING",
            "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT () DO NOTHING",
            "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a, a) DO NOTHING",
            "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (lower(a)) DO NOTHING",
            "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a COLLATE \"C\") DO NOTHING",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING extra",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t AS x (a) VALUES (1) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t x (a) VALUES (1) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a) OVERRIDING SYSTEM VALUE VALUES (1) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t DEFAULT VALUES ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t VALUES (1) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a) SELECT 1 ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a) (SELECT 1) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a) TABLE t ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t () VALUES () ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a, A) VALUES (1, 2) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a, b) VALUES (1) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a) VALUES (1, 2) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a) VALUES (1), (1, 2) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a) VALUES () ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a) VALUES (1,) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a) VALUES ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a) VALUES (1), ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a.b) VALUES (1) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a[1]) VALUES (1) ON CONFLICT (a) DO NOTHING",
            "INSERT t (a) VALUES (1) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING; extra",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = EXCLUDED.a,",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET",
            "INSERT INTO t (a) VALUES (1 2) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a) VALUES (1; DROP TABLE x) ON CONFLICT (a) DO NOTHING",
        ] {
            let (statement, kind) = class(sql);
            assert_eq!(statement, 1, "{sql}");
            if sql.ends_with("; extra") {
                assert_eq!(kind, "Forbidden", "{sql}");
            } else if sql.contains("now()") {
                assert_eq!(kind, "Malformed", "SET is not a value position: {sql}");
            } else {
                assert!(["Malformed", "NotLiteral"].contains(&kind), "{sql}: {kind}");
            }
        }
        assert_eq!(class("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING; extra"), (2, "Forbidden"));
        assert_eq!(class("INSERT INTO t (a) VALUES (1)").1, "Malformed");
        assert_eq!(class("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 'literal'").1, "Malformed");
        assert_eq!(class("INSERT INTO t (a) VALUES (1) RETURNING a").1, "Malformed");
        assert_eq!(class("INSERT INTO t (a) VALUES (1 2) ON CONFLICT (a) DO NOTHING").1, "Malformed");
        assert_eq!(class("INSERT INTO t (a) VALUES (1 + 2) ON CONFLICT (a) DO NOTHING").1, "NotLiteral");
    }

    #[test]
    fn insert_forms_accepted() {
        let p = ok("insert into T (A, b) values (1, 'x'), (2, NULL) on conflict (b, a) do update set b = excluded.b");
        assert_eq!(
            p.statements,
            vec![Statement::Upsert {
                table: t("t"),
                columns: names(&["a", "b"]),
                conflict: names(&["b", "a"]),
                update: names(&["b"]),
                rows: vec![vec![s("1"), s("x")], vec![s("2"), None]],
            }]
        );
        // Whitespace and line breaks anywhere, dotted names spaced out.
        let p = ok("INSERT\n\tINTO\r\n public\n.\nt\n(\na\n)\nVALUES\n(\n1\n)\nON\nCONFLICT\n(\na\n)\nDO\nUPDATE\nSET\na\n=\nEXCLUDED\n.\na\n;");
        assert_eq!(p.statements.len(), 1);
    }

    // ---- DELETE shape ----

    #[test]
    fn delete_shapes_refused() {
        for sql in [
            "DELETE FROM product",
            "DELETE FROM product;",
            "DELETE product WHERE id = 1",
            "DELETE FROM ONLY product WHERE id = 1",
            "DELETE FROM product p WHERE id = 1",
            "DELETE FROM product AS p WHERE id = 1",
            "DELETE FROM product USING person WHERE id = 1",
            "DELETE FROM product RETURNING *",
            "DELETE FROM product WHERE id = 1 RETURNING *",
            "DELETE FROM product WHERE id = 1 OR id = 2",
            "DELETE FROM product WHERE id = 1 OR true",
            "DELETE FROM product WHERE id <> 1",
            "DELETE FROM product WHERE id > 1",
            "DELETE FROM product WHERE id IS NULL",
            "DELETE FROM product WHERE id = NULL",
            "DELETE FROM product WHERE id IN (1, NULL)",
            "DELETE FROM product WHERE (id, b) IN ((1, NULL))",
            "DELETE FROM product WHERE id NOT IN (1)",
            "DELETE FROM product WHERE CURRENT OF c",
            "DELETE FROM product WHERE id = 1 AND id = 2",
            "DELETE FROM product WHERE id = 1 AND ID = 2",
            "DELETE FROM product WHERE id = 1 AND (b = 2)",
            "DELETE FROM product WHERE id = 1 AND b > 2",
            "DELETE FROM product WHERE (id = 1)",
            "DELETE FROM product WHERE 1 = id",
            "DELETE FROM product WHERE true",
            "DELETE FROM product WHERE id IN ()",
            "DELETE FROM product WHERE id IN 1",
            "DELETE FROM product WHERE id IN (1) AND b = 2",
            "DELETE FROM product WHERE id = 1 AND b IN (2)",
            "DELETE FROM product WHERE (id, b) IN ((1, 2), (3))",
            "DELETE FROM product WHERE (id, b) IN ((1, 2, 3))",
            "DELETE FROM product WHERE (id, b) IN (1, 2)",
            "DELETE FROM product WHERE (id, b) = (1, 2)",
            "DELETE FROM product WHERE (id, id) IN ((1, 2))",
            "DELETE FROM product WHERE (id) IN (1, 2)",
            "DELETE FROM product WHERE () IN (())",
            "DELETE FROM product WHERE id IN (SELECT id FROM person)",
            "DELETE FROM product WHERE id = (SELECT 1)",
            "DELETE FROM product WHERE id = 1::int",
            "DELETE FROM product WHERE id = 1 extra",
            "DELETE FROM product WHERE id = 1 AND",
            "DELETE FROM product WHERE id =",
            "DELETE FROM product WHERE",
        ] {
            let (statement, kind) = class(sql);
            assert_eq!(statement, 1, "{sql}");
            assert!(["Malformed", "NotLiteral"].contains(&kind), "{sql}: {kind}");
        }
        for sql in [
            "DELETE FROM product",
            "DELETE FROM product WHERE id = NULL",
            "DELETE FROM product WHERE id = 1 OR id = 2",
            "DELETE FROM ONLY product WHERE id = 1",
            "DELETE FROM product p WHERE id = 1",
            "DELETE FROM product WHERE (id, b) IN ((1, 2), (3))",
        ] {
            assert_eq!(class(sql), (1, "Malformed"), "{sql}");
        }
        assert_eq!(class("DELETE FROM product WHERE id = now()"), (1, "NotLiteral"));
        assert_eq!(class("DELETE FROM product WHERE id IN (SELECT id FROM person)"), (1, "NotLiteral"));
    }

    #[test]
    fn delete_forms_accepted() {
        let p = ok("delete from product where (\"Id\", b) in ((1, 'x')); DELETE FROM product WHERE id IN (-1)");
        assert_eq!(
            p.statements,
            vec![
                Statement::Delete { table: t("product"), key: names(&["Id", "b"]), rows: vec![vec![s("1"), s("x")]] },
                Statement::Delete { table: t("product"), key: names(&["id"]), rows: vec![vec![s("-1")]] },
            ]
        );
    }

    // ---- COPY ----

    #[test]
    fn copy_with_every_escape_and_null() {
        let sql = "COPY t (a, b, c) FROM STDIN;  \t\n\
            \\b\\f\\n\\r\\t\\v\\\\\t\\N\t\n\
            \\101\\7\\07\\0101\\477\t\\x41\\x4\\x4g\\xz\t\\q\\N\\'\\\"\n\
            tab\\\there\t\u{e9}\u{1F600}\t\\303\\251\n\
            \\\\N\t\\N\\N\tx\n\
            \\.\n\
            DELETE FROM t WHERE a = 1;";
        let p = ok(sql);
        assert_eq!(
            p.statements[0],
            Statement::Upsert {
                table: t("t"),
                columns: names(&["a", "b", "c"]),
                conflict: vec![],
                update: names(&["a", "b", "c"]),
                rows: vec![
                    vec![s("\u{8}\u{c}\n\r\t\u{b}\\"), None, s("")],
                    vec![s("A\u{7}\u{7}\u{8}1\u{3f}"), s("A\u{4}\u{4}gxz"), s("qN'\"")],
                    vec![s("tab\there"), s("é😀"), s("é")],
                    vec![s("\\N"), s("NN"), s("x")],
                ],
            }
        );
        assert_eq!(p.statements.len(), 2);
    }

    #[test]
    fn copy_edge_forms() {
        // Empty block, odd case, the marker at the very end without a line break.
        let p = ok("copy T (A) from StdIn;\n\\.");
        assert_eq!(
            p.statements,
            vec![Statement::Upsert {
                table: t("t"),
                columns: names(&["a"]),
                conflict: vec![],
                update: names(&["a"]),
                rows: vec![],
            }]
        );
        // One column: an empty line is an empty string; SQL-looking data is data.
        let p = ok("COPY t (a) FROM STDIN;\n\nDROP TABLE x; -- '\n\\.\n");
        let Statement::Upsert { rows, .. } = &p.statements[0] else { panic!("upsert") };
        assert_eq!(rows, &vec![vec![s("")], vec![s("DROP TABLE x; -- '")]]);
        // CRLF throughout.
        let p = ok("COPY t (a, b) FROM STDIN;\r\n1\tx\r\n2\ty\r\n\\.\r\nDELETE FROM t WHERE a = 1");
        let Statement::Upsert { rows, .. } = &p.statements[0] else { panic!("upsert") };
        assert_eq!(rows, &vec![vec![s("1"), s("x")], vec![s("2"), s("y")]]);
        assert_eq!(p.statements.len(), 2);
        // Statements after the block are read as statements again.
        let e = err("COPY t (a) FROM STDIN;\n1\n\\.\nDROP TABLE x;");
        assert_eq!((e.statement, e.kind), (2, Forbidden("DROP".into())));
    }

    #[test]
    fn copy_refusals() {
        for (sql, expected) in [
            ("COPY t FROM STDIN;\n1\n\\.\n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN WITH (FORMAT csv);\n1\n\\.\n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN CSV;\n1\n\\.\n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN (FORMAT binary);\n1\n\\.\n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN\n1\n\\.\n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN", (1, "Malformed")),
            ("COPY t (a) FROM STDOUT;\n1\n\\.\n", (1, "Malformed")),
            ("COPY t (a, a) FROM STDIN;\n1\t2\n\\.\n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN; DROP TABLE x;\n1\n\\.\n", (1, "Syntax")),
            ("COPY t (a) FROM STDIN; -- comment\n1\n\\.\n", (1, "Syntax")),
            ("COPY t (a) FROM STDIN;", (1, "Syntax")),
            ("COPY t (a) FROM STDIN;\n", (1, "Syntax")),
            ("COPY t (a) FROM STDIN;\n1\n", (1, "Syntax")),
            ("COPY t (a) FROM STDIN;\n1\n\\.x\n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN;\n1\n\\. \n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN;\n1\n \\.\n", (1, "Syntax")),
            ("COPY t (a) FROM STDIN;\n1", (1, "Syntax")),
            ("COPY t (a, b) FROM STDIN;\n1\n\\.\n", (1, "Malformed")),
            ("COPY t (a, b) FROM STDIN;\n1\t2\t3\n\\.\n", (1, "Malformed")),
            ("COPY t (a, b) FROM STDIN;\n1\t2\n1\n\\.\n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN;\na\rb\n\\.\n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN;\na\\\rb\n\\.\n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN;\n1\r\n2\n\\.\n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN;\n1\n2\r\n\\.\n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN;\nab\\\ncd\n\\.\n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN;\nab\\.cd\n\\.\n", (1, "Malformed")),
            ("COPY t (a) FROM STDIN;\nab\\0\n\\.\n", (1, "Syntax")),
            ("COPY t (a) FROM STDIN;\nab\\x00\n\\.\n", (1, "Syntax")),
            ("COPY t (a) FROM STDIN;\n\\xff\n\\.\n", (1, "Syntax")),
            ("COPY t (a) FROM STDIN;\n\\303\n\\.\n", (1, "Syntax")),
            ("COPY secret (a) FROM STDIN;\n1\n\\.\n", (1, "TableNotAllowed")),
            ("COPY t (a) FROM STDIN;\n\\.\n\\! id\n", (2, "Forbidden")),
        ] {
            assert_eq!(class(sql), expected, "{sql:?}");
        }
        let e = err(&format!("{INSERT_OK};\nCOPY t (a) FROM STDIN;\n1\n"));
        assert_eq!((e.statement, &e.excerpt[..]), (2, "COPY t (a) FROM STDIN"));
    }

    // ---- statement counting and excerpts ----

    #[test]
    fn statement_numbering_skips_empty_statements() {
        let e = err(&format!(";;{INSERT_OK};;; ;\n;{INSERT_OK}\n;DROP TABLE x"));
        assert_eq!((e.statement, e.kind), (3, Forbidden("DROP".into())));
        assert_eq!(ok(&format!("{INSERT_OK};{INSERT_OK}")).statements.len(), 2);
    }

    #[test]
    fn excerpts() {
        let e = err(&format!("{INSERT_OK};\n  /* c */  DROP\n\n   TABLE\tx   ;  SELECT 1"));
        assert_eq!(e.excerpt, "DROP TABLE x");
        let long = format!("DELETE FROM product WHERE id IN ({}now())", "1, ".repeat(100));
        let e = err(&long);
        assert_eq!(e.excerpt.chars().count(), 80);
        assert!(long.starts_with(&e.excerpt));
        let e = err("SELECT 'a\u{1b}[2J'");
        assert_eq!(e.excerpt, "SELECT 'a\u{FFFD}[2J'");
        let e = err("SELECT 'unterminated\n\n   still'");
        assert_eq!(e.excerpt, "SELECT 'unterminated still'");
        assert_eq!(err("\\! rm -rf /").excerpt, "\\! rm -rf /");
        assert!(format!("{}", err("DROP TABLE x")).contains("DROP TABLE x"));
    }

    #[test]
    fn nul_and_odd_characters() {
        assert_eq!(class(&format!("{INSERT_OK};\0")), (0, "Syntax"));
        assert_eq!(class("INSERT INTO t (a) VALUES ('a\0b') ON CONFLICT (a) DO NOTHING"), (0, "Syntax"));
        assert_eq!(class("-- comment \0\n"), (0, "Syntax"));
        assert_eq!(class("\u{feff}INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING"), (1, "Syntax"));
        assert_eq!(class("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING {"), (1, "Malformed"));
        assert_eq!(class("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING `"), (1, "Malformed"));
        assert_eq!(class("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING é"), (1, "Syntax"));
    }

    // ---- gzip and size ----

    #[test]
    fn gzip_refusals() {
        let good = gz(INSERT_OK.as_bytes());
        assert_eq!(read_payload(&good, &limits(1 << 20)).expect("reads").statements.len(), 1);
        let kind = |bytes: &[u8]| read_payload(bytes, &limits(1 << 20)).map_err(|e| (e.statement, e.kind));
        assert_eq!(kind(b""), Err((0, BadGzip)));
        assert_eq!(kind(INSERT_OK.as_bytes()), Err((0, BadGzip)));
        for cut in 0..good.len() {
            assert_eq!(kind(&good[..cut]), Err((0, BadGzip)), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"garbage");
        assert_eq!(kind(&trailing), Err((0, BadGzip)));
        let mut two_members = good.clone();
        two_members.extend_from_slice(&good);
        assert_eq!(kind(&two_members), Err((0, BadGzip)));
        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 1;
        assert_eq!(kind(&bad_crc), Err((0, BadGzip)));
        let mut bad_body = good.clone();
        bad_body[12] ^= 0xff;
        assert!(kind(&bad_body).is_err());
        assert_eq!(kind(&gz(b"INSERT \xff\xfe")), Err((0, NotUtf8)));
        assert_eq!(kind(&gz(b"\xc3")), Err((0, NotUtf8)));
    }

    #[test]
    fn size_limit() {
        let text = INSERT_OK.as_bytes();
        let data = gz(text);
        assert!(read_payload(&data, &limits(text.len())).is_ok());
        let e = read_payload(&data, &limits(text.len() - 1)).expect_err("too large");
        assert_eq!((e.statement, e.kind), (0, TooLarge { limit: text.len() - 1 }));
        assert!(read_payload(&gz(b""), &limits(0)).is_ok());
    }

    #[test]
    fn gzip_bomb_is_refused_with_bounded_work() {
        // 1 GiB of zeros, compressed (about 1 MiB); the reader stops one byte past the limit.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let block = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            enc.write_all(&block).expect("compress");
        }
        let bomb = enc.finish().expect("compress");
        assert!(bomb.len() < 4 << 20);
        let e = read_payload(&bomb, &limits(4 << 20)).expect_err("bomb");
        assert_eq!((e.statement, e.kind), (0, TooLarge { limit: 4 << 20 }));
    }

    // ---- never panic ----

    /// A small deterministic generator, so that failures reproduce.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn every_prefix_of_a_valid_payload_is_handled() {
        let set = allowed();
        for cut in 0..=FULL.len() {
            if FULL.is_char_boundary(cut) {
                let _ = read_sql(&FULL[..cut], &set);
            }
        }
        let data = gz(FULL.as_bytes());
        let lim = limits(1 << 20);
        for cut in 0..data.len() {
            assert!(read_payload(&data[..cut], &lim).is_err());
        }
    }

    #[test]
    fn random_input_never_panics() {
        let set = allowed();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let pieces: &[&str] = &[
            "INSERT", "INTO", "t", "product", "(", ")", ",", ";", "'", "''", "\"", "E'", "\\", "\\.", "\\N", "\n",
            "\r", "\t", " ", "--", "/*", "*/", "$", "$$", "U&", "x'", "1", ".5", "1e", "-", "+", "=", "::", ":",
            "VALUES", "ON", "CONFLICT", "DO", "UPDATE", "SET", "NOTHING", "EXCLUDED", ".", "DELETE", "FROM",
            "WHERE", "AND", "IN", "COPY", "STDIN", "NULL", "é", "😀", "\\x", "\\u", "\\U", "\\0", "[", "]",
            "-- table ", "-- fingerprint:", "-- cursor:", "public.t:", "a int,", "\\.\n", "\\uD83D",
        ];
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..rng.below(40) {
                text.push_str(pieces[rng.below(pieces.len())]);
            }
            let _ = read_sql(&text, &set);
        }
        // Random byte flips in a valid payload, then through gzip too.
        let lim = limits(1 << 20);
        for _ in 0..3_000 {
            let mut bytes = FULL.as_bytes().to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next() as u8;
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = read_sql(&text, &set);
            let mut data = gz(&bytes);
            let at = rng.below(data.len());
            data[at] ^= 1 << rng.below(8);
            let _ = read_payload(&data, &lim);
        }
    }

    #[test]
    fn many_rows() {
        let mut sql = String::from("INSERT INTO product (id, name, price, active) VALUES\n");
        for i in 0..10_000 {
            if i > 0 {
                sql.push_str(",\n");
            }
            sql.push_str(&format!("({i}, 'name ''{i}''', {i}.25, {})", if i % 2 == 0 { "TRUE" } else { "NULL" }));
        }
        sql.push_str("\nON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, price = EXCLUDED.price;\n");
        let p = ok(&sql);
        let Statement::Upsert { rows, .. } = &p.statements[0] else { panic!("upsert") };
        assert_eq!(rows.len(), 10_000);
        assert_eq!(rows[9_999], vec![s("9999"), s("name '9999'"), s("9999.25"), None]);
    }
}
