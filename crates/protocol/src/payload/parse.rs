//! Reads a payload chunk back into typed statements, accepting only the grammar of `docs/payload-grammar.md`.
//!
//! This is the security boundary: whatever the sender wrote, the receiver only ever gets upserts and deletes by
//! key of allowed tables, with literal values. The text is never executed; the applier builds its own SQL from
//! what this module yields. The tokenizer follows PostgreSQL's lexical rules (with `standard_conforming_strings`
//! on) closely enough that a script means the same here and in `psql`, and refuses whatever it cannot read
//! with certainty.

use std::collections::BTreeSet;
use std::io::Read;

use flate2::bufread::GzDecoder;

use super::{
    ColumnDecl, Header, Payload, PayloadError, PayloadErrorKind, ReadLimits, Rows, Statement, TableName, Value,
};

/// Decompresses one chunk within the limits and reads it.
pub fn read_payload(gz: &[u8], limits: &ReadLimits) -> Result<Payload, PayloadError> {
    let whole = |kind| PayloadError { statement: 0, kind, excerpt: String::new() };
    let mut decoder = GzDecoder::new(gz);
    let mut text = Vec::new();
    let cap = limits.max_decompressed_bytes as u64;
    (&mut decoder).take(cap + 1).read_to_end(&mut text).map_err(|_| whole(PayloadErrorKind::BadGzip))?;
    if text.len() as u64 > cap {
        return Err(whole(PayloadErrorKind::TooLarge { limit: limits.max_decompressed_bytes }));
    }
    // A single gzip member is the whole chunk: anything after it is not ours to ignore. (The bufread decoder
    // over a slice leaves exactly the unread rest in it.)
    if !decoder.into_inner().is_empty() {
        return Err(whole(PayloadErrorKind::BadGzip));
    }
    // Check the trailer ourselves as well, so integrity does not rest on a decoder detail.
    let mut crc = flate2::Crc::new();
    crc.update(&text);
    let trailer = gz.len().checked_sub(8).map(|i| &gz[i..]).ok_or_else(|| whole(PayloadErrorKind::BadGzip))?;
    let expected_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let expected_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    if crc.sum() != expected_crc || text.len() as u32 != expected_len {
        return Err(whole(PayloadErrorKind::BadGzip));
    }
    let text = String::from_utf8(text).map_err(|_| whole(PayloadErrorKind::NotUtf8))?;
    read_sql(&text, &limits.allowed_tables)
}

/// Reads decompressed payload text, refusing any table outside `allowed`.
pub fn read_sql(text: &str, allowed: &BTreeSet<TableName>) -> Result<Payload, PayloadError> {
    if text.contains('\0') {
        return Err(PayloadError {
            statement: 0,
            kind: PayloadErrorKind::Syntax("NUL character".into()),
            excerpt: String::new(),
        });
    }
    let header = read_header(text, allowed)?;
    let mut parser = Parser { lx: Lexer { src: text, pos: 0 }, allowed, index: 0, start: 0 };
    let mut statements = Vec::new();
    loop {
        let tok = parser.lx.peek().map_err(|k| parser.error(k))?;
        match tok.kind {
            Kind::Eof => break,
            Kind::Punct(b';') => {
                parser.lx.next().map_err(|k| parser.error(k))?;
            }
            _ => {
                parser.index += 1;
                parser.start = tok.start;
                let statement = parser.statement().map_err(|k| parser.error(k))?;
                statements.push(statement);
            }
        }
    }
    Ok(Payload { header, statements })
}

// ---------------------------------------------------------------------------------------------------------
// Header comments.

fn header_error(message: String) -> PayloadError {
    PayloadError { statement: 0, kind: PayloadErrorKind::Syntax(message), excerpt: String::new() }
}

/// The `-- key: value` lines before the first statement.
fn read_header(text: &str, allowed: &BTreeSet<TableName>) -> Result<Header, PayloadError> {
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

// ---------------------------------------------------------------------------------------------------------
// Tokens.

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A bare word: keyword or unquoted identifier, as written.
    Word(String),
    /// A quoted identifier, unescaped.
    Quoted(String),
    /// A string literal, unescaped.
    Str(String),
    /// A numeric constant, as written.
    Num(String),
    /// One of `( ) , ; . =`.
    Punct(u8),
    /// Any other operator character, `$` (parameters, dollar quoting) or a prefixed literal (`X'..'`).
    Other(String),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    start: usize,
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::Word(w) => format!("`{}`", excerpt(w)),
            Kind::Quoted(q) => format!("identifier \"{}\"", excerpt(q)),
            Kind::Str(_) => "a string".into(),
            Kind::Num(n) => format!("number {}", excerpt(n)),
            Kind::Punct(p) => format!("`{}`", *p as char),
            Kind::Other(o) => format!("`{}`", excerpt(o)),
            Kind::Eof => "the end of the payload".into(),
        }
    }

    fn is_word(&self, keyword: &str) -> bool {
        matches!(self, Kind::Word(w) if w.eq_ignore_ascii_case(keyword))
    }
}

fn syntax(message: impl Into<String>) -> PayloadErrorKind {
    PayloadErrorKind::Syntax(message.into())
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    fn bytes(&self) -> &[u8] {
        self.src.as_bytes()
    }

    fn at(&self, i: usize) -> Option<u8> {
        self.bytes().get(i).copied()
    }

    /// Skips whitespace and comments (`--` to the end of the line, nested `/* */`).
    fn skip(&mut self) -> Result<(), PayloadErrorKind> {
        loop {
            match (self.at(self.pos), self.at(self.pos + 1)) {
                (Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c'), _) => self.pos += 1,
                (Some(b'-'), Some(b'-')) => {
                    // PostgreSQL ends a `--` comment at a carriage return as well as at a newline.
                    while let Some(b) = self.at(self.pos) {
                        self.pos += 1;
                        if b == b'\n' || b == b'\r' {
                            break;
                        }
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    let mut depth = 0usize;
                    loop {
                        match (self.at(self.pos), self.at(self.pos + 1)) {
                            (Some(b'/'), Some(b'*')) => {
                                depth += 1;
                                self.pos += 2;
                            }
                            (Some(b'*'), Some(b'/')) => {
                                depth -= 1;
                                self.pos += 2;
                                if depth == 0 {
                                    break;
                                }
                            }
                            (Some(_), _) => self.pos += 1,
                            (None, _) => return Err(syntax("unterminated /* comment")),
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn peek(&mut self) -> Result<Token, PayloadErrorKind> {
        let saved = self.pos;
        let tok = self.next();
        self.pos = saved;
        tok
    }

    fn peek_punct(&self, p: u8) -> bool {
        self.at(self.pos) == Some(p)
    }

    fn next(&mut self) -> Result<Token, PayloadErrorKind> {
        self.skip()?;
        let start = self.pos;
        let Some(b) = self.at(start) else { return Ok(Token { kind: Kind::Eof, start }) };
        let kind = match b {
            b'\'' => {
                self.pos += 1;
                Kind::Str(self.standard_string()?)
            }
            b'"' => Kind::Quoted(self.quoted_ident()?),
            b'(' | b')' | b',' | b';' | b'.' | b'='
                if !(b == b'.' && self.at(start + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                self.pos += 1;
                Kind::Punct(b)
            }
            b'0'..=b'9' | b'.' => Kind::Num(self.number()?),
            b'\\' => return Err(PayloadErrorKind::Forbidden("\\ (psql meta-command)".into())),
            _ if is_ident_start(b) => {
                let mut end = start;
                while self.at(end).is_some_and(is_ident_char) {
                    end += 1;
                }
                let word = &self.src[start..end];
                self.pos = end;
                if self.at(end) == Some(b'\'') {
                    if word.eq_ignore_ascii_case("e") {
                        self.pos += 1;
                        Kind::Str(self.escape_string()?)
                    } else {
                        // B'..', X'..', N'..', U&'..' and typed literals like date '...' are not plain literals.
                        Kind::Other(format!("{word}'...'"))
                    }
                } else if word.eq_ignore_ascii_case("u") && self.at(end) == Some(b'&') {
                    Kind::Other("U&".into())
                } else {
                    Kind::Word(word.to_string())
                }
            }
            _ => {
                // Operators and anything else: one character (a full char, so slicing stays on boundaries).
                let ch = self.src[start..].chars().next().unwrap_or('?');
                self.pos += ch.len_utf8();
                Kind::Other(ch.to_string())
            }
        };
        Ok(Token { kind, start })
    }

    /// An identifier, bare (folded to lower case) or quoted.
    fn ident(&mut self) -> Result<String, PayloadErrorKind> {
        let tok = self.next()?;
        match tok.kind {
            Kind::Word(w) => Ok(w.to_ascii_lowercase()),
            Kind::Quoted(q) => Ok(q),
            other => Err(PayloadErrorKind::Malformed(format!("expected a name, found {}", other.describe()))),
        }
    }

    /// The rest of a `'...'` string whose opening quote was consumed; backslashes are ordinary characters.
    fn standard_string(&mut self) -> Result<String, PayloadErrorKind> {
        let mut out = String::new();
        loop {
            let rest = &self.src[self.pos..];
            let Some(q) = rest.find('\'') else { return Err(syntax("unterminated string")) };
            out.push_str(&rest[..q]);
            self.pos += q + 1;
            if self.at(self.pos) == Some(b'\'') {
                out.push('\'');
                self.pos += 1;
            } else {
                return Ok(out);
            }
        }
    }

    /// The rest of an `E'...'` string whose opening quote was consumed.
    fn escape_string(&mut self) -> Result<String, PayloadErrorKind> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.at(self.pos) else { return Err(syntax("unterminated string")) };
            self.pos += 1;
            match b {
                b'\'' if self.at(self.pos) == Some(b'\'') => {
                    out.push(b'\'');
                    self.pos += 1;
                }
                b'\'' => break,
                b'\\' => {
                    let Some(c) = self.at(self.pos) else { return Err(syntax("unterminated string")) };
                    self.pos += 1;
                    match c {
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'0'..=b'7' => {
                            let mut v = (c - b'0') as u32;
                            for _ in 0..2 {
                                match self.at(self.pos) {
                                    Some(d @ b'0'..=b'7') => {
                                        v = v * 8 + (d - b'0') as u32;
                                        self.pos += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push((v & 0xff) as u8);
                        }
                        b'x' if self.at(self.pos).is_some_and(|d| d.is_ascii_hexdigit()) => {
                            let mut v = 0u32;
                            for _ in 0..2 {
                                match self.at(self.pos) {
                                    Some(d) if d.is_ascii_hexdigit() => {
                                        v = v * 16 + (d as char).to_digit(16).unwrap_or(0);
                                        self.pos += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push(v as u8);
                        }
                        b'u' | b'U' => {
                            let n = if c == b'u' { 4 } else { 8 };
                            let digits =
                                self.src.get(self.pos..self.pos + n).ok_or_else(|| syntax("short unicode escape"))?;
                            if !digits.bytes().all(|d| d.is_ascii_hexdigit()) {
                                return Err(syntax("bad unicode escape"));
                            }
                            let v = u32::from_str_radix(digits, 16).map_err(|_| syntax("bad unicode escape"))?;
                            let ch = char::from_u32(v).ok_or_else(|| syntax("bad unicode escape"))?;
                            self.pos += n;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
        let text = String::from_utf8(out).map_err(|_| syntax("escape string is not valid utf-8"))?;
        if text.contains('\0') {
            return Err(syntax("escape string holds a NUL character"));
        }
        Ok(text)
    }

    fn quoted_ident(&mut self) -> Result<String, PayloadErrorKind> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.src[self.pos..];
            let Some(q) = rest.find('"') else { return Err(syntax("unterminated quoted identifier")) };
            out.push_str(&rest[..q]);
            self.pos += q + 1;
            if self.at(self.pos) == Some(b'"') {
                out.push('"');
                self.pos += 1;
            } else if out.is_empty() {
                return Err(syntax("empty quoted identifier"));
            } else {
                return Ok(out);
            }
        }
    }

    /// `123`, `1.5`, `.5`, `5.`, `1e10`, `1.5E-3`.
    fn number(&mut self) -> Result<String, PayloadErrorKind> {
        let start = self.pos;
        let digits = |lx: &mut Self| {
            let s = lx.pos;
            while lx.at(lx.pos).is_some_and(|d| d.is_ascii_digit()) {
                lx.pos += 1;
            }
            lx.pos > s
        };
        let int = digits(self);
        let mut frac = false;
        if self.at(self.pos) == Some(b'.') {
            self.pos += 1;
            frac = digits(self);
        }
        if !int && !frac {
            return Err(syntax("bad number"));
        }
        if matches!(self.at(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.at(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(syntax("bad exponent"));
            }
        }
        if self.at(self.pos).is_some_and(|b| is_ident_char(b) || b == b'.') {
            return Err(syntax("junk after a number"));
        }
        Ok(self.src[start..self.pos].to_string())
    }
}

// ---------------------------------------------------------------------------------------------------------
// Statements.

/// PostgreSQL's own limit of columns per table; also bounds the duplicate checks of name lists.
const MAX_COLUMNS: usize = 1600;

struct Parser<'a> {
    lx: Lexer<'a>,
    allowed: &'a BTreeSet<TableName>,
    index: usize,
    start: usize,
}

fn excerpt(text: &str) -> String {
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

fn malformed(message: impl Into<String>) -> PayloadErrorKind {
    PayloadErrorKind::Malformed(message.into())
}

impl Parser<'_> {
    fn error(&self, kind: PayloadErrorKind) -> PayloadError {
        let from = self.start.min(self.lx.src.len());
        let end = (from + 400).min(self.lx.src.len());
        let mut end_ok = end;
        while !self.lx.src.is_char_boundary(end_ok) {
            end_ok -= 1;
        }
        PayloadError { statement: self.index, kind, excerpt: excerpt(&self.lx.src[from..end_ok]) }
    }

    fn next(&mut self) -> Result<Kind, PayloadErrorKind> {
        Ok(self.lx.next()?.kind)
    }

    fn expect_word(&mut self, keyword: &str) -> Result<(), PayloadErrorKind> {
        match self.next()? {
            k if k.is_word(keyword) => Ok(()),
            other => Err(malformed(format!("expected {}, found {}", keyword.to_ascii_uppercase(), other.describe()))),
        }
    }

    fn expect_punct(&mut self, p: u8) -> Result<(), PayloadErrorKind> {
        match self.next()? {
            Kind::Punct(q) if q == p => Ok(()),
            other => Err(malformed(format!("expected `{}`, found {}", p as char, other.describe()))),
        }
    }

    /// The end of a statement: `;` or the end of the payload.
    fn expect_end(&mut self) -> Result<(), PayloadErrorKind> {
        match self.next()? {
            Kind::Punct(b';') | Kind::Eof => Ok(()),
            other => Err(malformed(format!("expected the end of the statement, found {}", other.describe()))),
        }
    }

    fn statement(&mut self) -> Result<Statement, PayloadErrorKind> {
        match self.next()? {
            k if k.is_word("insert") => self.insert(),
            k if k.is_word("delete") => self.delete(),
            k if k.is_word("copy") => self.copy(),
            Kind::Word(w) => Err(PayloadErrorKind::Forbidden(w.to_ascii_uppercase())),
            other => Err(PayloadErrorKind::Forbidden(other.describe())),
        }
    }

    /// `[schema.]table`, checked against the allowed set at once.
    fn table(&mut self) -> Result<TableName, PayloadErrorKind> {
        let first = self.lx.ident()?;
        let name = if self.lx.peek()?.kind == Kind::Punct(b'.') {
            self.next()?;
            TableName::new(first, self.lx.ident()?)
        } else {
            TableName::new("public", first)
        };
        if self.lx.peek()?.kind == Kind::Punct(b'.') {
            return Err(malformed("table names have at most two parts, schema.table"));
        }
        if !self.allowed.contains(&name) {
            return Err(PayloadErrorKind::TableNotAllowed(name));
        }
        Ok(name)
    }

    /// `(name, ...)`: non-empty, no duplicates.
    fn name_list(&mut self) -> Result<Vec<String>, PayloadErrorKind> {
        self.expect_punct(b'(')?;
        let mut names = Vec::new();
        loop {
            if names.len() >= MAX_COLUMNS {
                return Err(malformed(format!("more than {MAX_COLUMNS} columns, PostgreSQL's own limit")));
            }
            let name = self.lx.ident()?;
            if names.contains(&name) {
                return Err(malformed(format!("column {name} is named twice")));
            }
            names.push(name);
            match self.next()? {
                Kind::Punct(b',') => continue,
                Kind::Punct(b')') => return Ok(names),
                other => return Err(malformed(format!("expected `,` or `)`, found {}", other.describe()))),
            }
        }
    }

    /// The literal starting at the next token: string, number (with an optional sign), NULL, TRUE or FALSE.
    /// What may follow it is for the caller to check.
    fn literal(&mut self) -> Result<Value, PayloadErrorKind> {
        Ok(match self.next()? {
            Kind::Str(s) => Some(s),
            Kind::Num(n) => Some(n),
            Kind::Other(sign) if sign == "-" || sign == "+" => match self.next()? {
                Kind::Num(n) if sign == "-" => Some(format!("-{n}")),
                Kind::Num(n) => Some(n),
                other => {
                    return Err(PayloadErrorKind::NotLiteral(format!("operator {sign} before {}", other.describe())));
                }
            },
            k if k.is_word("null") => None,
            k if k.is_word("true") => Some("true".into()),
            k if k.is_word("false") => Some("false".into()),
            Kind::Word(w) => {
                return Err(PayloadErrorKind::NotLiteral(if self.lx.peek()?.kind == Kind::Punct(b'(') {
                    format!("function call {}(...)", excerpt(&w))
                } else {
                    format!("identifier or keyword {}", excerpt(&w))
                }));
            }
            Kind::Punct(b'(') => {
                return Err(PayloadErrorKind::NotLiteral("parenthesised expression or sub-select".into()));
            }
            other => return Err(PayloadErrorKind::NotLiteral(other.describe())),
        })
    }

    /// A literal in a row, which ends at `,` or `)`.
    fn value(&mut self) -> Result<Value, PayloadErrorKind> {
        let value = self.literal()?;
        // What follows a value must end it; anything else would make it an expression.
        match self.lx.peek()?.kind {
            Kind::Punct(b',' | b')') => Ok(value),
            Kind::Other(op) if op == ":" => Err(PayloadErrorKind::NotLiteral("cast".into())),
            Kind::Other(op) => Err(PayloadErrorKind::NotLiteral(format!("operator {op}"))),
            Kind::Str(_) => Err(syntax("two string literals in a row")),
            other => Err(PayloadErrorKind::NotLiteral(format!("expression continuing with {}", other.describe()))),
        }
    }

    /// `(v, ...)`
    fn tuple(&mut self) -> Result<Vec<Value>, PayloadErrorKind> {
        self.expect_punct(b'(')?;
        let mut values = Vec::new();
        loop {
            values.push(self.value()?);
            match self.next()? {
                Kind::Punct(b',') => continue,
                Kind::Punct(b')') => return Ok(values),
                other => return Err(malformed(format!("expected `,` or `)`, found {}", other.describe()))),
            }
        }
    }

    fn insert(&mut self) -> Result<Statement, PayloadErrorKind> {
        self.expect_word("into")?;
        let table = self.table()?;
        if self.lx.peek()?.kind != Kind::Punct(b'(') {
            return Err(malformed(
                "INSERT needs a column list right after the table name (no alias, no DEFAULT VALUES)",
            ));
        }
        let columns = self.name_list()?;
        if !self.lx.peek()?.kind.is_word("values") {
            return Err(malformed("INSERT takes VALUES only"));
        }
        self.next()?;
        let mut rows = Rows::new();
        loop {
            let row = self.tuple()?;
            if row.len() != columns.len() {
                return Err(malformed(format!(
                    "row {} has {} values for {} columns",
                    rows.len() + 1,
                    row.len(),
                    columns.len()
                )));
            }
            rows.push(&row);
            if self.lx.peek()?.kind == Kind::Punct(b',') {
                self.next()?;
            } else {
                break;
            }
        }
        if !self.lx.peek()?.kind.is_word("on") {
            return Err(malformed("INSERT needs ON CONFLICT (primary key) DO UPDATE SET ... or DO NOTHING"));
        }
        self.next()?;
        self.expect_word("conflict")?;
        if self.lx.peek()?.kind != Kind::Punct(b'(') {
            return Err(malformed("ON CONFLICT needs the key columns in parentheses (no ON CONSTRAINT)"));
        }
        let conflict = self.name_list()?;
        if let Some(c) = conflict.iter().find(|c| !columns.contains(c)) {
            return Err(malformed(format!("conflict column {c} is not inserted")));
        }
        self.expect_word("do")?;
        let mut update = Vec::new();
        match self.next()? {
            k if k.is_word("nothing") => {}
            k if k.is_word("update") => {
                self.expect_word("set")?;
                loop {
                    if update.len() >= MAX_COLUMNS {
                        return Err(malformed(format!("more than {MAX_COLUMNS} SET columns")));
                    }
                    let target = self.lx.ident()?;
                    self.expect_punct(b'=')?;
                    let source = self.lx.ident()?;
                    if source != "excluded" {
                        return Err(malformed(format!("SET {target} must take EXCLUDED.{target}")));
                    }
                    self.expect_punct(b'.')?;
                    let from = self.lx.ident()?;
                    if from != target {
                        return Err(malformed(format!(
                            "SET {target} must take EXCLUDED.{target}, not EXCLUDED.{from}"
                        )));
                    }
                    if !columns.contains(&target) {
                        return Err(malformed(format!("SET column {target} is not inserted")));
                    }
                    if update.contains(&target) {
                        return Err(malformed(format!("column {target} is set twice")));
                    }
                    update.push(target);
                    if self.lx.peek()?.kind == Kind::Punct(b',') {
                        self.next()?;
                    } else {
                        break;
                    }
                }
            }
            other => return Err(malformed(format!("expected NOTHING or UPDATE, found {}", other.describe()))),
        }
        self.expect_end()?;
        Ok(Statement::Upsert { table, columns, conflict, update, rows })
    }

    fn delete(&mut self) -> Result<Statement, PayloadErrorKind> {
        self.expect_word("from")?;
        if self.lx.peek()?.kind.is_word("only") {
            return Err(malformed("DELETE FROM ONLY is not part of the grammar"));
        }
        let table = self.table()?;
        if !self.lx.peek()?.kind.is_word("where") {
            return Err(malformed("DELETE needs WHERE on the key columns (no alias, no USING)"));
        }
        self.next()?;
        let (key, rows) = if self.lx.peek()?.kind == Kind::Punct(b'(') {
            // (k1, k2) IN ((v, v), ...)
            let key = self.name_list()?;
            self.expect_word("in")?;
            self.expect_punct(b'(')?;
            let mut rows = Vec::new();
            loop {
                let row = self.tuple()?;
                if row.len() != key.len() {
                    return Err(malformed(format!(
                        "key {} has {} values for {} columns",
                        rows.len() + 1,
                        row.len(),
                        key.len()
                    )));
                }
                rows.push(row);
                match self.next()? {
                    Kind::Punct(b',') => continue,
                    Kind::Punct(b')') => break,
                    other => return Err(malformed(format!("expected `,` or `)`, found {}", other.describe()))),
                }
            }
            (key, rows)
        } else {
            let first = self.lx.ident()?;
            match self.next()? {
                k if k.is_word("in") => {
                    let values = self.tuple()?;
                    (vec![first], values.into_iter().map(|v| vec![v]).collect())
                }
                Kind::Punct(b'=') => {
                    let mut key = vec![first];
                    let mut row = vec![self.value_in_condition()?];
                    while self.lx.peek()?.kind.is_word("and") {
                        if key.len() >= MAX_COLUMNS {
                            return Err(malformed(format!("more than {MAX_COLUMNS} key columns")));
                        }
                        self.next()?;
                        let column = self.lx.ident()?;
                        if key.contains(&column) {
                            return Err(malformed(format!("column {column} is compared twice")));
                        }
                        self.expect_punct(b'=')?;
                        key.push(column);
                        row.push(self.value_in_condition()?);
                    }
                    (key, vec![row])
                }
                other => return Err(malformed(format!("expected = or IN, found {}", other.describe()))),
            }
        };
        if rows.iter().flatten().any(Option::is_none) {
            return Err(malformed("a key value is NULL, which matches no row"));
        }
        self.expect_end()?;
        Ok(Statement::Delete { table, key, rows: Rows::from(rows) })
    }

    /// A value in `k = v AND ...`, which ends at AND, `;` or the end rather than at `,` or `)`.
    fn value_in_condition(&mut self) -> Result<Value, PayloadErrorKind> {
        let value = self.literal()?;
        match self.lx.peek()?.kind {
            Kind::Punct(b';') | Kind::Eof => Ok(value),
            k if k.is_word("and") => Ok(value),
            k if k.is_word("or") => Err(malformed("OR is not part of the grammar")),
            Kind::Word(w) => Err(malformed(format!("unexpected {} after the condition", excerpt(&w)))),
            Kind::Other(op) if op == ":" => Err(PayloadErrorKind::NotLiteral("cast".into())),
            other => Err(PayloadErrorKind::NotLiteral(format!("expression continuing with {}", other.describe()))),
        }
    }

    fn copy(&mut self) -> Result<Statement, PayloadErrorKind> {
        if self.lx.peek()?.kind == Kind::Punct(b'(') {
            return Err(PayloadErrorKind::Forbidden("COPY (query)".into()));
        }
        let table = self.table()?;
        if self.lx.peek()?.kind != Kind::Punct(b'(') {
            return Err(malformed("COPY needs a column list right after the table name"));
        }
        let columns = self.name_list()?;
        match self.next()? {
            k if k.is_word("from") => {}
            k if k.is_word("to") => return Err(PayloadErrorKind::Forbidden("COPY TO".into())),
            other => return Err(malformed(format!("expected FROM STDIN, found {}", other.describe()))),
        }
        match self.next()? {
            k if k.is_word("stdin") => {}
            other => return Err(PayloadErrorKind::Forbidden(format!("COPY FROM {} (only STDIN)", other.describe()))),
        }
        self.expect_punct(b';')?;
        // The data starts on the next line; nothing else may follow on this one.
        let bytes = self.lx.bytes();
        let mut pos = self.lx.pos;
        while matches!(bytes.get(pos), Some(b' ' | b'\t' | b'\r')) {
            pos += 1;
        }
        match bytes.get(pos) {
            Some(b'\n') => pos += 1,
            _ => return Err(malformed("COPY ... FROM STDIN; must end its line, the data follows on the next lines")),
        }
        let mut rows = Rows::new();
        loop {
            let rest = &self.lx.src[pos..];
            let Some(nl) = rest.find('\n') else {
                let last = rest;
                if last == "\\." {
                    self.lx.pos = self.lx.src.len();
                    break;
                }
                return Err(syntax("COPY data does not end with a line `\\.`"));
            };
            let line = &rest[..nl];
            pos += nl + 1;
            if line == "\\." || line == "\\.\r" {
                self.lx.pos = pos;
                break;
            }
            check_copy_line(line, columns.len()).map_err(|m| malformed(format!("COPY row {}: {m}", rows.len() + 1)))?;
            rows.push_checked_line(line);
        }
        let update = columns.clone();
        Ok(Statement::Upsert { table, columns, conflict: Vec::new(), update, rows })
    }
}

/// Checks one line of COPY text format: exactly `width` fields, each one that [`decode_copy_field`] accepts.
/// Only fields with a backslash are decoded; the others are checked in place, without allocating.
fn check_copy_line(line: &str, width: usize) -> Result<(), String> {
    let mut fields = 0;
    for field in line.split('\t') {
        fields += 1;
        if field.contains('\\') {
            decode_copy_field(field)?;
        } else if field.contains('\r') {
            return Err("unescaped carriage return".into());
        }
    }
    if fields != width {
        return Err(format!("{fields} fields for {width} columns"));
    }
    Ok(())
}

/// Decodes one field of COPY text format: `\N` is NULL; escapes as PostgreSQL reads them; the result must be
/// UTF-8 without NUL.
pub(crate) fn decode_copy_field(field: &str) -> Result<Value, String> {
    if field == "\\N" {
        return Ok(None);
    }
    if !field.contains('\\') {
        if field.contains('\r') {
            return Err("unescaped carriage return".into());
        }
        return Ok(Some(field.to_string()));
    }
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                i += 1;
                let Some(&c) = b.get(i) else { return Err("backslash at the end of a field".into()) };
                i += 1;
                match c {
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(11),
                    // PostgreSQL ends COPY data at `\.`, even inside a line: refuse rather than read on.
                    b'.' => return Err("`\\.` inside a data line".into()),
                    b'0'..=b'7' => {
                        let mut v = (c - b'0') as u32;
                        for _ in 0..2 {
                            match b.get(i) {
                                Some(d @ b'0'..=b'7') => {
                                    v = v * 8 + (d - b'0') as u32;
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push((v & 0xff) as u8);
                    }
                    b'x' if b.get(i).is_some_and(|d| d.is_ascii_hexdigit()) => {
                        let mut v = 0u32;
                        for _ in 0..2 {
                            match b.get(i) {
                                Some(d) if d.is_ascii_hexdigit() => {
                                    v = v * 16 + (*d as char).to_digit(16).unwrap_or(0);
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(v as u8);
                    }
                    other => out.push(other),
                }
            }
            b'\r' => return Err("unescaped carriage return".into()),
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(out).map_err(|_| "a value is not valid utf-8".to_string())?;
    if text.contains('\0') {
        return Err("a value holds a NUL character".into());
    }
    Ok(Some(text))
}
