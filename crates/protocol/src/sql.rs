//! SQL escaping, in one place: every piece of SQL text that branchsync builds from names and values it did not
//! write itself goes through these functions, so there is one implementation to review for injection.

/// Quotes an SQL identifier, doubling embedded double quotes.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Quotes a value as a standard-conforming SQL string literal: single quotes doubled, backslashes plain
/// characters. Only for sessions with `standard_conforming_strings` on, which every branchsync connection sets.
pub fn quote_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_literal(&mut out, Some(text));
    out
}

/// Appends a value as a standard-conforming SQL string literal (as [`quote_literal`] quotes it), or `NULL`.
pub fn push_literal(out: &mut String, value: Option<&str>) {
    match value {
        None => out.push_str("NULL"),
        Some(text) => {
            out.push('\'');
            for ch in text.chars() {
                if ch == '\'' {
                    out.push('\'');
                }
                out.push(ch);
            }
            out.push('\'');
        }
    }
}

/// The 64-bit FNV-1a hash of a name's bytes: stable across builds and platforms, so that names derived from it
/// (the capture functions of a table, say) stay the same for as long as the hashed name does.
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_double_what_would_end_the_quote() {
        assert_eq!(quote_ident(r#"Mixed "Case""#), r#""Mixed ""Case""""#);
        assert_eq!(quote_literal(r"it's a \ back"), r"'it''s a \ back'");
        let mut out = String::new();
        push_literal(&mut out, None);
        out.push(',');
        push_literal(&mut out, Some("''"));
        assert_eq!(out, "NULL,''''''");
    }

    #[test]
    fn name_hash_is_fnv_1a() {
        // The published FNV-1a test vectors: names derived from the hash must never change.
        assert_eq!(name_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(name_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(name_hash("foobar"), 0x8594_4171_f739_67e8);
    }
}
