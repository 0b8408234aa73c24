//! What an import did, per table: the counts both sides report and log.

use protocol::payload::TableName;

/// What an import did, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Per table: rows upserted, rows deleted, rows deferred.
    pub tables: Vec<(TableName, TableCounts)>,
}

/// Row counts for one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounts {
    /// Rows inserted or updated.
    pub upserted: u64,
    /// Rows deleted.
    pub deleted: u64,
    /// Incoming rows deferred because of local changes.
    pub deferred: u64,
    /// Conflicts decided (office side).
    pub conflicts: u64,
    /// Rows deleted because a replacing upload did not carry them.
    pub pruned: u64,
    /// Of the upserted rows, those whose foreign keys were checked set-based
    /// ([`ImportOptions::set_based_foreign_keys`](super::ImportOptions::set_based_foreign_keys)).
    pub set_based: u64,
}

impl ApplyReport {
    pub(crate) fn counts(&mut self, table: &TableName) -> &mut TableCounts {
        if let Some(i) = self.tables.iter().position(|(t, _)| t == table) {
            return &mut self.tables[i].1;
        }
        self.tables.push((table.clone(), TableCounts::default()));
        let last = self.tables.len() - 1;
        &mut self.tables[last].1
    }

    fn total(&self, count: impl Fn(&TableCounts) -> u64) -> u64 {
        self.tables.iter().map(|(_, c)| count(c)).sum()
    }

    /// Total deferred rows.
    pub fn deferred(&self) -> u64 {
        self.total(|c| c.deferred)
    }

    /// Total rows upserted.
    pub fn upserted(&self) -> u64 {
        self.total(|c| c.upserted)
    }

    /// Total conflicts decided.
    pub fn conflicts(&self) -> u64 {
        self.total(|c| c.conflicts)
    }

    /// Total rows deleted by delete statements.
    pub fn deleted(&self) -> u64 {
        self.total(|c| c.deleted)
    }

    /// Total rows deleted because a replacing upload did not carry them.
    pub fn pruned(&self) -> u64 {
        self.total(|c| c.pruned)
    }

    /// Total rows whose foreign keys were checked set-based.
    pub fn set_based(&self) -> u64 {
        self.total(|c| c.set_based)
    }

    /// Adds another report's counts to this one.
    pub fn merge(&mut self, other: ApplyReport) {
        for (table, c) in other.tables {
            let mine = self.counts(&table);
            mine.upserted += c.upserted;
            mine.deleted += c.deleted;
            mine.deferred += c.deferred;
            mine.conflicts += c.conflicts;
            mine.pruned += c.pruned;
            mine.set_based += c.set_based;
        }
    }
}
