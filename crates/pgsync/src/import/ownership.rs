//! The office's check that a branch writes only its own rows (BRIEF §4, trust boundaries): rows of the tables
//! only shops write (`from_target`) must be the sending branch's, and rows of `both` tables may be deleted only
//! when they are, if the policy says so. A row is the branch's when its id-range column (the table's own
//! sequence column, or a foreign key to a shop-written table that has one: sale_item → sale) lies in the
//! branch's id range, both as sent and as the office has it; a table without such a column records the branch
//! that first sent each key (`branchsync.row_owner`, created with the sync schema; every statement on it is here), and no other branch may
//! write that key afterwards. Anything else refuses the whole import: nothing is applied.

use std::collections::{BTreeMap, BTreeSet};

use protocol::payload::TableName;
use protocol::sql::{quote_ident, quote_literal};
use tokio_postgres::Transaction;

use crate::catalog::{Catalog, TableInfo};
use crate::error::{Error, Result};

/// Whose rows a sender may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The sending branch.
    pub branch: String,
    /// The first id of its range.
    pub id_start: i64,
    /// The last id of its range.
    pub id_end: i64,
    /// Tables in which every row the branch writes or deletes must be its own (`from_target`).
    pub own_rows: BTreeSet<TableName>,
    /// Tables in which the branch may write any row but delete only its own (`both`, when the policy says
    /// `both_deletes = "own"`).
    pub own_deletes: BTreeSet<TableName>,
}

/// How one table's rows are placed with their branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    /// The id-range column; `None`: the recorded owner of each key.
    range_column: Option<String>,
    /// Only deletes are checked.
    deletes_only: bool,
}

/// The rule of every table `ownership` concerns.
pub(crate) fn rules(catalog: &Catalog, ownership: &Ownership) -> BTreeMap<TableName, Rule> {
    let shop_written: Vec<TableName> = ownership.own_rows.iter().cloned().collect();
    let mut rules = BTreeMap::new();
    for (tables, deletes_only) in [(&ownership.own_rows, false), (&ownership.own_deletes, true)] {
        for table in catalog.tables().iter().filter(|t| tables.contains(&t.name)) {
            let range_column = catalog.range_column(table, &shop_written);
            rules.insert(table.name.clone(), Rule { range_column, deletes_only });
        }
    }
    rules
}

/// Checks the rows staged in `stage` (columns `columns`) against `rule` before they are merged; `deleting` for a
/// delete by key. Records the owner of new keys of a table without an id-range column.
pub(crate) async fn check(
    tx: &Transaction<'_>,
    table: &TableInfo,
    stage: &str,
    columns: &[String],
    rule: &Rule,
    ownership: &Ownership,
    deleting: bool,
) -> Result<()> {
    if rule.deletes_only && !deleting {
        return Ok(());
    }
    let key_of = |alias: &str| -> Vec<String> {
        table.primary_key.iter().map(|c| format!("{alias}.{}::text", quote_ident(c))).collect()
    };
    let shown = format!("concat_ws(', ', {})", key_of("s").join(", "));
    let refuse = |key: String, why: String| Error::NotOwned { table: table.name.clone(), key, why };
    let (start, end) = (ownership.id_start, ownership.id_end);
    let Some(column) = &rule.range_column else {
        let owners = format!(
            "SELECT {shown}, o.branch FROM {stage} s JOIN branchsync.row_owner o ON o.tbl = {} AND o.pk = ARRAY[{}] \
             WHERE o.branch <> $1 LIMIT 1",
            quote_literal(&table.name.to_string()),
            key_of("s").join(", ")
        );
        if let Some(row) = tx.query_opt(owners.as_str(), &[&ownership.branch]).await? {
            let owner: String = row.get(1);
            return Err(refuse(row.get(0), format!("the key belongs to branch {owner}")));
        }
        if !deleting {
            let claim = format!(
                "INSERT INTO branchsync.row_owner (tbl, pk, branch) SELECT {}, ARRAY[{}], $1 FROM {stage} s \
                 ON CONFLICT DO NOTHING",
                quote_literal(&table.name.to_string()),
                key_of("s").join(", ")
            );
            tx.execute(claim.as_str(), &[&ownership.branch]).await?;
        }
        return Ok(());
    };
    let c = quote_ident(column);
    let outside = |alias: &str| format!("({alias}.{c} IS NULL OR {alias}.{c} NOT BETWEEN {start} AND {end})");
    if !deleting {
        if !columns.contains(column) {
            return Err(refuse(
                "(every row)".into(),
                format!("the rows lack {column}, which places them in an id range"),
            ));
        }
        let sent = format!("SELECT {shown} FROM {stage} s WHERE {} LIMIT 1", outside("s"));
        if let Some(row) = tx.query_opt(sent.as_str(), &[]).await? {
            return Err(refuse(row.get(0), format!("its {column} lies outside the branch's id range {start}..{end}")));
        }
    }
    let same: Vec<String> = table.primary_key.iter().map(|k| format!("t.{0} = s.{0}", quote_ident(k))).collect();
    let held = format!(
        "SELECT {shown} FROM {stage} s JOIN {} t ON {} WHERE {} LIMIT 1",
        table.name.quoted(),
        same.join(" AND "),
        outside("t")
    );
    if let Some(row) = tx.query_opt(held.as_str(), &[]).await? {
        return Err(refuse(
            row.get(0),
            format!(
                "the office's row has its {column} outside the branch's id range {start}..{end}: another branch's or the office's"
            ),
        ));
    }
    Ok(())
}
