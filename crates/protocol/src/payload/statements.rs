//! The statement parser: reads decompressed payload text into typed statements, accepting only the grammar of
//! `docs/payload-grammar.md`.
//!
//! This is the security boundary: whatever the sender wrote, the receiver only ever gets upserts and deletes by
//! key of allowed tables, with literal values. The text is never executed; the applier builds its own SQL from
//! what this module yields.

use std::collections::BTreeSet;

use super::copy::Value;
use super::copy::check_copy_line;
use super::error::{PayloadError, PayloadErrorKind, excerpt};
use super::header::read_header;
use super::lexer::{Kind, Lexer, syntax};
use super::model::{Payload, Statement, TableName};
use super::rows::Rows;

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

/// PostgreSQL's own limit of columns per table; also bounds the duplicate checks of name lists.
const MAX_COLUMNS: usize = 1600;

struct Parser<'a> {
    lx: Lexer<'a>,
    allowed: &'a BTreeSet<TableName>,
    index: usize,
    start: usize,
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
