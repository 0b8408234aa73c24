//! The tokenizer of payload text, kept apart from the grammar so that the header reader and the statement parser
//! share one reading of PostgreSQL's lexical rules (with `standard_conforming_strings` on): a script must mean the
//! same here and in `psql`, and whatever cannot be read with certainty is refused.

use super::error::{PayloadErrorKind, excerpt};

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
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

/// A token and the byte offset where it starts.
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) start: usize,
}

impl Kind {
    pub(super) fn describe(&self) -> String {
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

    pub(super) fn is_word(&self, keyword: &str) -> bool {
        matches!(self, Kind::Word(w) if w.eq_ignore_ascii_case(keyword))
    }
}

pub(super) fn syntax(message: impl Into<String>) -> PayloadErrorKind {
    PayloadErrorKind::Syntax(message.into())
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// A cursor over payload text. The parser reads the lines of a COPY block past the lexer, at `pos`.
pub(super) struct Lexer<'a> {
    pub(super) src: &'a str,
    pub(super) pos: usize,
}

impl Lexer<'_> {
    pub(super) fn bytes(&self) -> &[u8] {
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

    pub(super) fn peek(&mut self) -> Result<Token, PayloadErrorKind> {
        let saved = self.pos;
        let tok = self.next();
        self.pos = saved;
        tok
    }

    pub(super) fn peek_punct(&self, p: u8) -> bool {
        self.at(self.pos) == Some(p)
    }

    pub(super) fn next(&mut self) -> Result<Token, PayloadErrorKind> {
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
    pub(super) fn ident(&mut self) -> Result<String, PayloadErrorKind> {
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
