//! Bounded text from peers: every string a peer sends (fault messages, cursors, names) is capped here before it
//! is logged, stored or rendered, so that no peer can fill a log, a table cell or a database row.

/// `text` cut to at most `max` characters, with `...` where it was cut, and control characters other than tabs
/// and newlines shown as `?`.
pub fn capped(text: &str, max: usize) -> String {
    let clean = |c: char| if c.is_control() && c != '\n' && c != '\t' { '?' } else { c };
    match text.char_indices().nth(max) {
        None => text.chars().map(clean).collect(),
        Some((end, _)) => {
            let mut out: String = text[..end].chars().map(clean).collect();
            out.push_str("...");
            out
        }
    }
}

/// The longest fault string an agent sends (docs/protocol.md), and what a client keeps of one.
pub const MAX_FAULT_CHARS: usize = 400;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_on_character_boundaries_and_hides_control_characters() {
        assert_eq!(capped("short", 10), "short");
        assert_eq!(capped("ééééé", 3), "ééé...");
        assert_eq!(capped("a\u{0}b\nc", 10), "a?b\nc");
        let long = "x".repeat(500_000);
        assert_eq!(capped(&long, 400).chars().count(), 403);
    }
}
