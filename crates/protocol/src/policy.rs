//! The one model of a sync policy (BRIEF §1): which synced tables flow which way. The office checks its
//! configured policies against it, hands it to each shop with `configure`, and the shop keeps it; both read the
//! directions through the same methods, named once from the data's point of view.

use std::collections::BTreeSet;

use crate::payload::TableName;

/// The tables of one policy, by the way their rows flow. Tables in no list are shop-local and never touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `FromSource`: office → shop (the catalogue).
    pub from_source: Vec<TableName>,
    /// `FromTarget`: shop → office (the day's sales and payments).
    pub from_target: Vec<TableName>,
    /// `Both`: both ways (customers).
    pub both: Vec<TableName>,
    /// `Initial`: office → shop once, at branch initialisation.
    pub initial: Vec<TableName>,
}

/// Why a policy is not consistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A table assigned twice: its direction would be ambiguous.
    #[error("table {0} is in more than one list")]
    TwoLists(TableName),
    /// A table of a schema that is never synced: PostgreSQL's own (`pg_*`, `information_schema`) or the sync
    /// schema, whose change log and cursors each side keeps for itself.
    #[error("table {0} is in a system or sync schema, which is never synced: take it out of the policy")]
    Reserved(TableName),
}

/// The schema of the sync bookkeeping on both sides.
pub const SYNC_SCHEMA: &str = "branchsync";

/// Whether tables of `schema` can never be synced: PostgreSQL reserves every `pg_` schema (`pg_catalog`,
/// `pg_toast`, the temporary schemas) and `information_schema`, and the sync schema belongs to each side alone.
pub fn is_reserved_schema(schema: &str) -> bool {
    schema.starts_with("pg_") || schema == "information_schema" || schema == SYNC_SCHEMA
}

impl Policy {
    /// Every synced table, in list order.
    pub fn all(&self) -> Vec<TableName> {
        [&self.from_source, &self.from_target, &self.both, &self.initial].into_iter().flatten().cloned().collect()
    }

    /// The tables whose rows flow to the office, which the shop therefore captures and writes ids for:
    /// `from_target` and `both`.
    pub fn to_office(&self) -> Vec<TableName> {
        [&self.from_target, &self.both].into_iter().flatten().cloned().collect()
    }

    /// The tables whose rows flow to the shop in every sync: `from_source` and `both`.
    pub fn to_shop(&self) -> Vec<TableName> {
        [&self.from_source, &self.both].into_iter().flatten().cloned().collect()
    }

    /// The tables whose rows flow to the shop at all, the initial load included: `from_source`, `both` and
    /// `initial`. These are the only tables the office may write at the shop.
    pub fn to_shop_initially(&self) -> Vec<TableName> {
        [&self.from_source, &self.both, &self.initial].into_iter().flatten().cloned().collect()
    }

    /// [`to_shop_initially`](Self::to_shop_initially) as a set, for payload readers.
    pub fn shop_receives(&self) -> BTreeSet<TableName> {
        self.to_shop_initially().into_iter().collect()
    }

    /// The set of every synced table.
    pub fn tables(&self) -> BTreeSet<TableName> {
        self.all().into_iter().collect()
    }

    /// Whether `other` lists the same tables in the same directions, in whatever order.
    pub fn same_tables(&self, other: &Policy) -> bool {
        let set = |l: &[TableName]| l.iter().cloned().collect::<BTreeSet<_>>();
        set(&self.from_source) == set(&other.from_source)
            && set(&self.from_target) == set(&other.from_target)
            && set(&self.both) == set(&other.both)
            && set(&self.initial) == set(&other.initial)
    }

    /// Refuses a policy that assigns a table twice or names a table of a reserved schema.
    pub fn check(&self) -> Result<(), PolicyError> {
        if let Some(t) = self.all().into_iter().find(|t| is_reserved_schema(&t.schema)) {
            return Err(PolicyError::Reserved(t));
        }
        let mut seen = BTreeSet::new();
        match self.all().into_iter().find(|t| !seen.insert(t.clone())) {
            Some(t) => Err(PolicyError::TwoLists(t)),
            None => Ok(()),
        }
    }
}

/// A branch's policy as the office hands it to the shop with `configure`, and as the shop keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The branch's name at the office.
    pub branch: String,
    /// The branch's tables.
    pub policy: Policy,
    /// Size of the branch's id range.
    pub id_range: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> TableName {
        TableName::parse(name).unwrap()
    }

    #[test]
    fn directions_and_the_two_lists_check() {
        let p = Policy {
            from_source: vec![t("product")],
            from_target: vec![t("sale")],
            both: vec![t("person")],
            initial: vec![t("parameter")],
        };
        assert_eq!(p.to_office(), vec![t("sale"), t("person")]);
        assert_eq!(p.to_shop(), vec![t("product"), t("person")]);
        assert_eq!(p.to_shop_initially(), vec![t("product"), t("person"), t("parameter")]);
        assert_eq!(p.check(), Ok(()));
        let twice = Policy { both: vec![t("person"), t("sale")], ..p.clone() };
        assert_eq!(twice.check(), Err(PolicyError::TwoLists(t("sale"))));
        for reserved in ["pg_catalog.pg_authid", "information_schema.tables", "branchsync.change_log", "pg_toast.x"] {
            let bad = Policy { from_source: vec![t(reserved)], ..p.clone() };
            assert_eq!(bad.check(), Err(PolicyError::Reserved(t(reserved))), "{reserved}");
        }
    }
}
