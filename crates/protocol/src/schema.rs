//! How a side describes its synced tables, the fingerprint of that description, and the comparison that names
//! the first table and column where two sides differ (BRIEF §3).

use std::fmt::Write;

use sha2::{Digest, Sha256};

use crate::payload::{ColumnDecl, TableName};

/// One synced table as its database defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// The table.
    pub name: TableName,
    /// Columns in their ordinal order.
    pub columns: Vec<ColumnDecl>,
    /// Primary key columns in key order.
    pub primary_key: Vec<String>,
}

/// The first difference between the sender's and the receiver's view of a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaMismatch {
    /// The receiver does not sync this table at all.
    #[error("table {0} is not synced here")]
    MissingTable(TableName),
    /// A column the sender has and the receiver lacks, or the reverse.
    #[error("column {table}.{column} exists on one side only, align the schemas")]
    MissingColumn {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
    },
    /// A column whose type differs.
    #[error("column {table}.{column} is {sender} at the sender and {receiver} here, align the schemas")]
    TypeDiffers {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
        /// The sender's type.
        sender: String,
        /// The receiver's type.
        receiver: String,
    },
}

impl SchemaMismatch {
    /// The table the mismatch is about.
    pub fn table(&self) -> &TableName {
        match self {
            SchemaMismatch::MissingTable(t) => t,
            SchemaMismatch::MissingColumn { table, .. } | SchemaMismatch::TypeDiffers { table, .. } => table,
        }
    }
}

/// Compares the sender's declared columns of `table` with the receiver's, by name (column order may differ).
pub fn compare_columns(
    table: &TableName,
    sender: &[ColumnDecl],
    receiver: &[ColumnDecl],
) -> Result<(), SchemaMismatch> {
    for s in sender {
        match receiver.iter().find(|r| r.name == s.name) {
            None => return Err(SchemaMismatch::MissingColumn { table: table.clone(), column: s.name.clone() }),
            Some(r) if r.type_sql != s.type_sql => {
                return Err(SchemaMismatch::TypeDiffers {
                    table: table.clone(),
                    column: s.name.clone(),
                    sender: s.type_sql.clone(),
                    receiver: r.type_sql.clone(),
                });
            }
            Some(_) => {}
        }
    }
    match receiver.iter().find(|r| !sender.iter().any(|s| s.name == r.name)) {
        Some(r) => Err(SchemaMismatch::MissingColumn { table: table.clone(), column: r.name.clone() }),
        None => Ok(()),
    }
}

/// A stable hex digest of a set of table descriptions: table order and column order do not matter, names,
/// types and primary keys do.
pub fn fingerprint(tables: &[TableSchema]) -> String {
    let mut sorted: Vec<&TableSchema> = tables.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut canonical = String::new();
    for t in sorted {
        let mut cols: Vec<&ColumnDecl> = t.columns.iter().collect();
        cols.sort_by(|a, b| a.name.cmp(&b.name));
        let _ = write!(canonical, "{}.{}\u{1}", t.name.schema, t.name.name);
        for c in cols {
            let _ = write!(canonical, "{}\u{2}{}\u{1}", c.name, c.type_sql);
        }
        let _ = write!(canonical, "pk\u{2}{}\u{3}", t.primary_key.join("\u{2}"));
    }
    let digest = Sha256::digest(canonical.as_bytes());
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str) -> ColumnDecl {
        ColumnDecl { name: name.into(), type_sql: ty.into() }
    }

    #[test]
    fn fingerprint_ignores_order_but_not_types() {
        let a = TableSchema {
            name: TableName::new("public", "a"),
            columns: vec![col("id", "bigint"), col("x", "text")],
            primary_key: vec!["id".into()],
        };
        let b = TableSchema {
            name: TableName::new("public", "b"),
            columns: vec![col("id", "bigint")],
            primary_key: vec!["id".into()],
        };
        let mut a2 = a.clone();
        a2.columns.reverse();
        assert_eq!(fingerprint(&[a.clone(), b.clone()]), fingerprint(&[b.clone(), a2]));
        let mut a3 = a.clone();
        a3.columns[1].type_sql = "character varying".into();
        assert_ne!(fingerprint(&[a, b.clone()]), fingerprint(&[a3, b]));
    }

    #[test]
    fn compare_names_the_column() {
        let t = TableName::new("public", "p");
        let mine = [col("id", "bigint"), col("price", "numeric(12,2)")];
        assert_eq!(compare_columns(&t, &mine, &mine), Ok(()));
        let theirs = [col("id", "bigint"), col("price", "numeric")];
        assert!(
            matches!(compare_columns(&t, &theirs, &mine), Err(SchemaMismatch::TypeDiffers { column, .. }) if column == "price")
        );
        let fewer = [col("id", "bigint")];
        assert!(
            matches!(compare_columns(&t, &fewer, &mine), Err(SchemaMismatch::MissingColumn { column, .. }) if column == "price")
        );
    }
}
