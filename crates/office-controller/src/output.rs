//! What a command prints: a table for people, JSON for scripts (`--json`), and whether all went well.

use std::fmt::Write;

/// A command's result.
#[derive(Debug, Default)]
pub struct Output {
    /// Human-readable text.
    pub text: String,
    /// The same data for scripts.
    pub json: serde_json::Value,
    /// False when something failed; the process then exits non-zero.
    pub ok: bool,
    /// The exit code, when the command has its own convention (`status --check`: Nagios' 0 to 3); otherwise
    /// 0 when `ok`, 1 when not.
    pub exit_code: Option<u8>,
}

impl Output {
    /// A successful output.
    pub fn ok(text: String, json: serde_json::Value) -> Output {
        Output { text, json, ok: true, exit_code: None }
    }
}

/// The widest a cell is shown; longer text (a peer's message, say) is cut, so that any input renders.
const MAX_CELL_CHARS: usize = 300;

/// Renders rows as a plain text table with a header. Cells are capped and shown on one line.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |c: &String| protocol::text::capped(&c.replace(['\n', '\r', '\t'], " "), MAX_CELL_CHARS);
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(cell).collect()).collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    line(&mut out, &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for row in rows {
        line(&mut out, row);
    }
    out
}
