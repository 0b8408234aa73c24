//! Tokenizer for payload SQL. It finds where literals, comments, identifiers and statements end exactly as
//! PostgreSQL's scanner does with `standard_conforming_strings = on`, so that the reader can never disagree
//! with `psql` about what a payload says; forms it does not fully read are reported as tokens of their own,
//! to be refused by the reader.
//!
//! It works on bytes: every token boundary is an ASCII byte (or the end of the text), so slicing the source
//! at token boundaries never splits a UTF-8 character.

use super::PayloadErrorKind;

/// PostgreSQL refuses (truncates) identifiers longer than `NAMEDATALEN - 1` bytes; the reader refuses them.
pub(super) const MAX_IDENT_BYTES: usize = 63;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok {
    /// A bare identifier or keyword.
    Word,
    /// `"..."`, with `""` standing for a quote.
    QuotedIdent,
    /// `'...'`, with `''` standing for a quote; backslash is an ordinary character.
    Str,
    /// `E'...'`, with backslash escapes.
    EStr,
    /// An unsigned numeric constant.
    Number,
    LParen,
    RParen,
    Comma,
    Semicolon,
    Dot,
    LBracket,
    RBracket,
    /// `:` alone (a slice bound, or a psql variable reference).
    Colon,
    /// `::`.
    Cast,
    /// Any operator, after PostgreSQL's rules for where an operator ends (`=`, `-`, `<>`, `||`, `:=`, ...).
    Op,
    /// A lexical form the grammar never accepts as a literal or a name.
    Exotic(Exotic),
    /// The end of the text; returned again on every further call.
    Eof,
}

/// Lexical forms that PostgreSQL knows but the payload grammar refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exotic {
    /// `$1` parameters and `$tag$` dollar quoting; only the `$` itself is consumed.
    Dollar,
    /// `U&'...'`; only the `U&` prefix is consumed.
    UnicodeStr,
    /// `U&"..."`; only the `U&` prefix is consumed.
    UnicodeIdent,
    /// `B'...'`; only the prefix letter is consumed.
    BitStr,
    /// `X'...'`; only the prefix letter is consumed.
    HexStr,
    /// `N'...'`; only the prefix letter is consumed.
    NationalStr,
}

/// One token: its kind and its byte span in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token {
    /// What it is.
    pub kind: Tok,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// For literals and quoted identifiers: whether the body holds an escape (`''`, `""`, a backslash), so that
    /// the common case can be copied without a second scan.
    pub escaped: bool,
}

/// A lexical refusal and the byte where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LexError {
    /// Why.
    pub kind: PayloadErrorKind,
    /// Byte offset in the source.
    pub pos: usize,
}

impl From<LexError> for PayloadErrorKind {
    fn from(e: LexError) -> Self {
        e.kind
    }
}

impl LexError {
    fn syntax(pos: usize, message: impl Into<String>) -> Self {
        Self { kind: PayloadErrorKind::Syntax(message.into()), pos }
    }
}

/// A cursor over the source text.
#[derive(Debug, Clone)]
pub(super) struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

/// PostgreSQL's `space` class (with `\v`, as PostgreSQL 16 and later read it).
#[inline]
pub(super) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

#[inline]
fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

#[inline]
fn is_ident_cont(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// PostgreSQL's `op_chars`.
#[inline]
fn is_op_char(b: u8) -> bool {
    matches!(b, b'~' | b'!' | b'@' | b'#' | b'^' | b'&' | b'|' | b'`' | b'?' | b'+' | b'-' | b'*' | b'/' | b'%' | b'<' | b'>' | b'=')
}

/// The end of a `--` comment that starts at `pos`: PostgreSQL ends it at either `\n` or `\r`, and so must we,
/// or `-- x\rDROP ...` would hide a statement from us that PostgreSQL sees.
pub(super) fn line_comment_end(bytes: &[u8], pos: usize) -> usize {
    let rest = bytes.get(pos..).unwrap_or_default();
    rest.iter().position(|&b| b == b'\n' || b == b'\r').map_or(bytes.len(), |i| pos + i)
}

/// The end of a `/* ... */` comment that starts at `pos`, nesting as PostgreSQL nests them (a depth counter,
/// no recursion).
pub(super) fn block_comment_end(bytes: &[u8], pos: usize) -> Result<usize, LexError> {
    let mut depth = 0usize;
    let mut i = pos;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'/', Some(b'*')) => {
                depth += 1;
                i += 2;
            }
            (b'*', Some(b'/')) => {
                depth = depth.saturating_sub(1);
                i += 2;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => i += 1,
        }
    }
    Err(LexError::syntax(pos, "unterminated /* comment"))
}

impl<'a> Lexer<'a> {
    /// A lexer over `src` starting at byte `pos`.
    pub fn new(src: &'a str, pos: usize) -> Self {
        Self { src, bytes: src.as_bytes(), pos }
    }

    /// The byte offset the next token is read from.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Moves the cursor, for the reader's raw passes (COPY data).
    pub fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// Skips whitespace and comments.
    pub fn skip_trivia(&mut self) -> Result<(), LexError> {
        let b = self.bytes;
        while let Some(&c) = b.get(self.pos) {
            if is_space(c) {
                self.pos += 1;
            } else if c == b'-' && b.get(self.pos + 1) == Some(&b'-') {
                self.pos = line_comment_end(b, self.pos);
            } else if c == b'/' && b.get(self.pos + 1) == Some(&b'*') {
                self.pos = block_comment_end(b, self.pos)?;
            } else {
                break;
            }
        }
        Ok(())
    }

    /// Reads the next token, skipping whitespace and comments before it.
    pub fn next_token(&mut self) -> Result<Token, LexError> {
        self.skip_trivia()?;
        let b = self.bytes;
        let start = self.pos;
        let Some(&c) = b.get(start) else {
            return Ok(Token { kind: Tok::Eof, start, end: start, escaped: false });
        };
        let next = b.get(start + 1).copied();
        let single = |kind| (kind, start + 1, false);
        let (kind, end, escaped) = match c {
            b'(' => single(Tok::LParen),
            b')' => single(Tok::RParen),
            b',' => single(Tok::Comma),
            b';' => single(Tok::Semicolon),
            b'[' => single(Tok::LBracket),
            b']' => single(Tok::RBracket),
            b'.' if next.is_some_and(|n| n.is_ascii_digit()) => (Tok::Number, self.number(start)?, false),
            b'.' => single(Tok::Dot),
            b'0'..=b'9' => (Tok::Number, self.number(start)?, false),
            b'\'' => {
                let (end, escaped) = self.standard_string(start, start + 1)?;
                (Tok::Str, end, escaped)
            }
            b'"' => {
                let (end, escaped) = self.quoted_ident(start)?;
                (Tok::QuotedIdent, end, escaped)
            }
            b'$' => single(Tok::Exotic(Exotic::Dollar)),
            b'e' | b'E' if next == Some(b'\'') => {
                let (end, escaped) = self.escape_string(start)?;
                (Tok::EStr, end, escaped)
            }
            b'b' | b'B' if next == Some(b'\'') => single(Tok::Exotic(Exotic::BitStr)),
            b'x' | b'X' if next == Some(b'\'') => single(Tok::Exotic(Exotic::HexStr)),
            b'n' | b'N' if next == Some(b'\'') => single(Tok::Exotic(Exotic::NationalStr)),
            b'u' | b'U' if next == Some(b'&') && b.get(start + 2) == Some(&b'\'') => {
                (Tok::Exotic(Exotic::UnicodeStr), start + 2, false)
            }
            b'u' | b'U' if next == Some(b'&') && b.get(start + 2) == Some(&b'"') => {
                (Tok::Exotic(Exotic::UnicodeIdent), start + 2, false)
            }
            c if is_ident_start(c) => (Tok::Word, self.word(start)?, false),
            b':' if next == Some(b':') => (Tok::Cast, start + 2, false),
            b':' if next == Some(b'=') => (Tok::Op, start + 2, false),
            b':' => single(Tok::Colon),
            b'\\' => return Err(self.meta_command(start)),
            c if is_op_char(c) => (Tok::Op, self.operator(start), false),
            _ => {
                let ch = self.src.get(start..).and_then(|s| s.chars().next()).unwrap_or('?');
                let shown: String = ch.escape_debug().collect();
                return Err(LexError::syntax(start, format!("unexpected character `{shown}` outside quotes")));
            }
        };
        self.pos = end;
        Ok(Token { kind, start, end, escaped })
    }

    /// A bare word; PostgreSQL would take non-ASCII letters into it, the grammar refuses them instead.
    fn word(&self, start: usize) -> Result<usize, LexError> {
        let b = self.bytes;
        let mut i = start + 1;
        while i < b.len() && is_ident_cont(b[i]) {
            i += 1;
        }
        if b.get(i).is_some_and(|&c| c >= 0x80) {
            return Err(LexError::syntax(start, "non-ascii characters in a name must be inside double quotes"));
        }
        if i - start > MAX_IDENT_BYTES {
            return Err(LexError::syntax(start, format!("name longer than {MAX_IDENT_BYTES} bytes")));
        }
        Ok(i)
    }

    /// A numeric constant: `digits[.digits][e[+-]digits]` or `.digits[e[+-]digits]`. Anything that would
    /// continue it (letters, digits, `_`, `$`, a second `.`) is refused: old PostgreSQL versions read `1abc` as
    /// `1 AS abc` and newer ones refuse it, and `0x1f` or `1_000` mean different things across versions.
    fn number(&self, start: usize) -> Result<usize, LexError> {
        let b = self.bytes;
        let digits = |mut i: usize| {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            i
        };
        let mut i = digits(start);
        if b.get(i) == Some(&b'.') {
            i = digits(i + 1);
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if !b.get(j).is_some_and(|c| c.is_ascii_digit()) {
                return Err(LexError::syntax(start, "trailing junk after a number"));
            }
            i = digits(j);
        }
        if b.get(i).is_some_and(|&c| is_ident_cont(c) || c == b'.' || c >= 0x80) {
            return Err(LexError::syntax(start, "trailing junk after a number"));
        }
        Ok(i)
    }

    /// A standard string whose body starts at `body`: `''` is a quote, nothing else is special.
    fn standard_string(&self, start: usize, body: usize) -> Result<(usize, bool), LexError> {
        let b = self.bytes;
        let mut i = body;
        let mut escaped = false;
        loop {
            let Some(off) = b.get(i..).and_then(|rest| rest.iter().position(|&c| c == b'\'')) else {
                return Err(LexError::syntax(start, "unterminated string literal"));
            };
            i += off;
            if b.get(i + 1) == Some(&b'\'') {
                escaped = true;
                i += 2;
            } else {
                return Ok((i + 1, escaped));
            }
        }
    }

    /// An escape string `E'...'`: a backslash takes the next byte with it (so `\'` does not end the string),
    /// `''` is a quote. Escapes are checked when the value is decoded.
    fn escape_string(&self, start: usize) -> Result<(usize, bool), LexError> {
        let b = self.bytes;
        let mut i = start + 2;
        let mut escaped = false;
        while i < b.len() {
            match b[i] {
                b'\\' => {
                    escaped = true;
                    i += 2;
                }
                b'\'' if b.get(i + 1) == Some(&b'\'') => {
                    escaped = true;
                    i += 2;
                }
                b'\'' => return Ok((i + 1, escaped)),
                _ => i += 1,
            }
        }
        Err(LexError::syntax(start, "unterminated string literal"))
    }

    /// A quoted identifier: non-empty, `""` is a quote, at most [`MAX_IDENT_BYTES`] once decoded.
    fn quoted_ident(&self, start: usize) -> Result<(usize, bool), LexError> {
        let b = self.bytes;
        let mut i = start + 1;
        let mut quotes = 0usize;
        loop {
            let Some(off) = b.get(i..).and_then(|rest| rest.iter().position(|&c| c == b'"')) else {
                return Err(LexError::syntax(start, "unterminated quoted identifier"));
            };
            i += off;
            if b.get(i + 1) == Some(&b'"') {
                quotes += 1;
                i += 2;
            } else {
                let len = i - (start + 1) - quotes;
                if len == 0 {
                    return Err(LexError::syntax(start, "zero-length quoted identifier"));
                }
                if len > MAX_IDENT_BYTES {
                    return Err(LexError::syntax(start, format!("name longer than {MAX_IDENT_BYTES} bytes")));
                }
                return Ok((i + 1, quotes > 0));
            }
        }
    }

    /// An operator, cut where PostgreSQL cuts it: before an embedded `--` or `/*`, and without trailing `+`/`-`
    /// unless it holds a character that SQL operators do not use (so `=-5` is `=` then `-5`).
    fn operator(&self, start: usize) -> usize {
        let b = self.bytes;
        let mut i = start + 1;
        while i < b.len() && is_op_char(b[i]) {
            if matches!((b[i], b.get(i + 1)), (b'-', Some(b'-')) | (b'/', Some(b'*'))) {
                break;
            }
            i += 1;
        }
        let mut end = i;
        if end - start > 1 && matches!(b[end - 1], b'+' | b'-') {
            let special = b[start..end - 1]
                .iter()
                .any(|c| matches!(c, b'~' | b'!' | b'@' | b'#' | b'^' | b'&' | b'|' | b'`' | b'?' | b'%'));
            if !special {
                while end - start > 1 && matches!(b[end - 1], b'+' | b'-') {
                    end -= 1;
                }
            }
        }
        end
    }

    /// A backslash outside quotes is a psql meta-command (`\!` runs a shell, `\i` reads a file, `\connect`
    /// changes database): the most dangerous thing a script can hold, refused wherever it appears.
    fn meta_command(&self, start: usize) -> LexError {
        let name: String = self
            .src
            .get(start + 1..)
            .unwrap_or_default()
            .chars()
            .take_while(|c| !c.is_whitespace() && !c.is_control())
            .take(16)
            .collect();
        LexError { kind: PayloadErrorKind::Forbidden(format!("\\{name}")), pos: start }
    }
}

/// The text of a token.
pub(super) fn text<'a>(src: &'a str, tok: &Token) -> &'a str {
    src.get(tok.start..tok.end).unwrap_or_default()
}

/// Whether `tok` is the bare keyword `kw` (given in lower case), in any case.
#[inline]
pub(super) fn is_keyword(src: &str, tok: &Token, kw: &str) -> bool {
    tok.kind == Tok::Word && src.as_bytes().get(tok.start..tok.end).is_some_and(|w| w.eq_ignore_ascii_case(kw.as_bytes()))
}

/// The name a `Word` or `QuotedIdent` token stands for: bare words folded to ASCII lower case, quoted ones
/// verbatim with `""` undone. `None` for any other token.
pub(super) fn ident_text(src: &str, tok: &Token) -> Option<String> {
    match tok.kind {
        Tok::Word => Some(text(src, tok).to_ascii_lowercase()),
        Tok::QuotedIdent => {
            let body = src.get(tok.start + 1..tok.end - 1).unwrap_or_default();
            Some(if tok.escaped { body.replace("\"\"", "\"") } else { body.to_owned() })
        }
        _ => None,
    }
}

/// The value of a standard string token.
pub(super) fn standard_string_value(src: &str, tok: &Token) -> String {
    let body = src.get(tok.start + 1..tok.end - 1).unwrap_or_default();
    if tok.escaped { body.replace("''", "'") } else { body.to_owned() }
}

/// The value of an escape string token, decoding escapes as PostgreSQL does; refuses a result that is not
/// UTF-8 or holds NUL, and malformed Unicode escapes.
pub(super) fn escape_string_value(src: &str, tok: &Token) -> Result<String, String> {
    if !tok.escaped {
        return Ok(src.get(tok.start + 2..tok.end - 1).unwrap_or_default().to_owned());
    }
    let body = src.as_bytes().get(tok.start + 2..tok.end - 1).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c == b'\'' {
            // The lexer only lets `''` through.
            out.push(b'\'');
            i += 2;
            continue;
        }
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let Some(&e) = body.get(i + 1) else {
            return Err("backslash at the end of an escape string".into());
        };
        i += 2;
        let byte = match e {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'0'..=b'7' => {
                let (v, used) = radix_digits(&body[i..], 8, 2);
                i += used;
                ((u32::from(e - b'0') << (3 * used)) | v) as u8
            }
            b'x' if body.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let (v, used) = radix_digits(&body[i..], 16, 2);
                i += used;
                v as u8
            }
            b'u' | b'U' => {
                let width = if e == b'u' { 4 } else { 8 };
                let first = exact_hex(body, i, width)?;
                i += width;
                let code = if (0xD800..0xDC00).contains(&first) {
                    // A high surrogate must be followed by a low one, as PostgreSQL requires.
                    let low = match body.get(i..i + 2) {
                        Some(b"\\u") => exact_hex(body, i + 2, 4).map(|v| (v, 6)),
                        Some(b"\\U") => exact_hex(body, i + 2, 8).map(|v| (v, 10)),
                        _ => Err(String::new()),
                    };
                    match low {
                        Ok((low, used)) if (0xDC00..0xE000).contains(&low) => {
                            i += used;
                            0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
                        }
                        _ => return Err("invalid unicode surrogate pair in an escape string".into()),
                    }
                } else {
                    first
                };
                match char::from_u32(code) {
                    Some(ch) if code != 0 => {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        continue;
                    }
                    _ => return Err(format!("invalid unicode escape value {code:#x}")),
                }
            }
            other => other,
        };
        if byte == 0 {
            return Err("escape string holds a nul character".into());
        }
        out.push(byte);
    }
    String::from_utf8(out).map_err(|_| "escape string decodes to invalid utf-8".into())
}

/// Reads up to `max` digits of `radix` from the start of `bytes`: (value, digits used).
pub(super) fn radix_digits(bytes: &[u8], radix: u32, max: usize) -> (u32, usize) {
    let mut value = 0u32;
    let mut used = 0;
    while used < max {
        match bytes.get(used).and_then(|&c| char::from(c).to_digit(radix)) {
            Some(d) => {
                value = value * radix + d;
                used += 1;
            }
            None => break,
        }
    }
    (value, used)
}

/// Exactly `width` hex digits at `at`.
fn exact_hex(bytes: &[u8], at: usize, width: usize) -> Result<u32, String> {
    let digits = bytes.get(at..at + width).filter(|d| d.iter().all(u8::is_ascii_hexdigit));
    let Some(digits) = digits else {
        return Err("invalid unicode escape, \\u needs 4 hex digits and \\U needs 8".into());
    };
    Ok(radix_digits(digits, 16, width).0)
}

/// Where the statement that starts at `start` ends, for excerpts: at its `;`, or after enough tokens to fill
/// an excerpt, or at the end of the text when it cannot be read.
pub(super) fn excerpt_end(src: &str, start: usize) -> usize {
    let mut lexer = Lexer::new(src, start);
    // Every token is at least one character of excerpt, so this many fill one.
    for _ in 0..=EXCERPT_CHARS {
        match lexer.next_token() {
            Ok(tok) if tok.kind == Tok::Semicolon => return tok.start,
            Ok(tok) if tok.kind == Tok::Eof => return src.len(),
            Ok(_) => {}
            Err(_) => return src.len(),
        }
    }
    lexer.pos()
}

/// Length of an excerpt in characters.
pub(super) const EXCERPT_CHARS: usize = 80;

/// At most `max` characters of `src[start..end]`, whitespace runs collapsed to one space, other control
/// characters shown as U+FFFD so that an excerpt is safe to print in a log or a terminal.
pub(super) fn excerpt(src: &str, start: usize, end: usize, max: usize) -> String {
    let floor = |mut i: usize| {
        i = i.min(src.len());
        while !src.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let (start, end) = (floor(start), floor(end));
    let mut out = String::new();
    let mut count = 0;
    let mut gap = false;
    for ch in src.get(start..end.max(start)).unwrap_or_default().chars() {
        if ch.is_whitespace() {
            gap = !out.is_empty();
            continue;
        }
        let needed = if gap { 2 } else { 1 };
        if count + needed > max {
            break;
        }
        if gap {
            out.push(' ');
            gap = false;
        }
        out.push(if ch.is_control() { '\u{FFFD}' } else { ch });
        count += needed;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        let mut lexer = Lexer::new(src, 0);
        let mut out = Vec::new();
        loop {
            let tok = lexer.next_token().expect("lexes");
            if tok.kind == Tok::Eof {
                return out;
            }
            out.push(tok.kind);
        }
    }

    #[test]
    fn operators_split_as_postgres_splits_them() {
        assert_eq!(kinds("=-5"), vec![Tok::Op, Tok::Op, Tok::Number]);
        assert_eq!(kinds("a=/*c*/1"), vec![Tok::Word, Tok::Op, Tok::Number]);
        assert_eq!(kinds("@-"), vec![Tok::Op]);
        assert_eq!(kinds("1--2"), vec![Tok::Number]);
    }

    #[test]
    fn line_comments_end_at_carriage_return() {
        assert_eq!(kinds("-- x\rDROP"), vec![Tok::Word]);
    }

    #[test]
    fn nested_comments() {
        assert_eq!(kinds("/* /* */ ; */ x"), vec![Tok::Word]);
        assert_eq!(kinds("/**/;"), vec![Tok::Semicolon]);
        assert_eq!(kinds("/*/ */x"), vec![Tok::Word]);
        assert!(Lexer::new("/* /* */", 0).next_token().is_err());
    }

    #[test]
    fn excerpt_collapses_and_caps() {
        assert_eq!(excerpt("a \n\t b  ", 0, 8, 80), "a b");
        assert_eq!(excerpt(&"x".repeat(200), 0, 200, 80).len(), 80);
        assert_eq!(excerpt("a\u{1b}b", 0, 4, 80), "a\u{FFFD}b");
    }
}
