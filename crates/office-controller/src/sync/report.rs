//! What one branch's sync (or `branch init`) did: rows each way per table, bytes, time, conflicts, the error
//! and notes. `sync`'s summary table and `--json` render it.

use std::collections::BTreeMap;

use protocol::payload::TableName;

/// Rows moved for one table in one direction.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Moved {
    /// Rows upserted or deleted.
    pub rows: u64,
    /// Conflicts decided.
    pub conflicts: u64,
}

/// What happened to one branch.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BranchReport {
    /// The branch.
    pub branch: String,
    /// Whether everything went well.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// Per `(table, direction)`.
    pub tables: BTreeMap<String, BTreeMap<&'static str, Moved>>,
    /// Compressed payload bytes from the shop.
    pub bytes_pulled: u64,
    /// Compressed payload bytes to the shop.
    pub bytes_pushed: u64,
    /// Wall time.
    pub seconds: f64,
    /// Things worth knowing (fallbacks, skipped work).
    pub notes: Vec<String>,
    /// Whether the agent answered (`None`: not asked).
    pub agent_up: Option<bool>,
    /// Changes captured at the shop that the office has not confirmed, as the agent said after the sync.
    pub shop_pending: Option<i64>,
}

impl BranchReport {
    /// Counts rows (and conflicts) moved for `table` in `direction` (`pull` or `push`).
    pub fn add(&mut self, table: &TableName, direction: &'static str, rows: u64, conflicts: u64) {
        let moved = self.tables.entry(table.to_string()).or_default().entry(direction).or_default();
        moved.rows += rows;
        moved.conflicts += conflicts;
    }

    /// Adds what another run for the same branch moved (the syncs a command runs on its way), with its notes.
    pub fn absorb(&mut self, other: &BranchReport) {
        for (table, directions) in &other.tables {
            for (direction, moved) in directions {
                let mine = self.tables.entry(table.clone()).or_default().entry(direction).or_default();
                mine.rows += moved.rows;
                mine.conflicts += moved.conflicts;
            }
        }
        self.bytes_pulled += other.bytes_pulled;
        self.bytes_pushed += other.bytes_pushed;
        self.notes.extend(other.notes.iter().cloned());
    }

    /// Rows moved in `direction`, all tables together.
    pub fn rows(&self, direction: &str) -> u64 {
        self.tables.values().filter_map(|t| t.get(direction)).map(|m| m.rows).sum()
    }

    /// Total conflicts.
    pub fn conflicts(&self) -> u64 {
        self.tables.values().flat_map(|d| d.values()).map(|m| m.conflicts).sum()
    }
}
