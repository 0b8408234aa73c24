//! The COPY text format, the one place that encodes, checks and decodes it: rows travel and are staged in it,
//! so the writer, the reader, [`Rows`](super::Rows) and the exporter must agree on every escape.

/// One value of one column: its text representation as PostgreSQL's input function reads it, or `None` for
/// NULL. Numbers and booleans written bare in a payload arrive here as their text.
pub type Value = Option<String>;

/// Appends one row in COPY text format (tab-separated, `\N` for NULL), without its newline.
pub fn push_copy_row(out: &mut String, row: &[Value]) {
    for (i, value) in row.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match value {
            None => out.push_str("\\N"),
            Some(text) => escape_copy(out, text),
        }
    }
}

/// Escapes a value for COPY text format (without the `\N` of NULL).
pub fn escape_copy(out: &mut String, text: &str) {
    // The special characters are ASCII, so slicing at them keeps to character boundaries.
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        let escaped = match b {
            b'\\' => "\\\\",
            b'\t' => "\\t",
            b'\n' => "\\n",
            b'\r' => "\\r",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        out.push_str(escaped);
        start = i + 1;
    }
    out.push_str(&text[start..]);
}

/// Checks one line of COPY text format: exactly `width` fields, each one that [`decode_copy_field`] accepts.
/// Only fields with a backslash are decoded; the others are checked in place, without allocating.
pub(super) fn check_copy_line(line: &str, width: usize) -> Result<(), String> {
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
/// UTF-8 without NUL. Exact where PostgreSQL would be: a field it would refuse or read differently is an error,
/// saying what is wrong in a few lower-case words.
pub fn decode_copy_field(field: &str) -> Result<Value, String> {
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
