//! Self-references checked row by row. A foreign key of a table to itself that is not `DEFERRABLE` (a category
//! tree, a customer's referrer) is checked at the end of each statement, and a net-state export orders a table's
//! rows by key, not by the tree: a category re-parented under a newer one arrives before its parent, in another
//! statement when the table is large. Such a row goes in with its reference cleared (a nullable column of the
//! key, which the check then skips) and the value noted; when the import ends the noted references are set in
//! one statement, which PostgreSQL checks as always, so a parent that never arrived refuses the import with
//! SQLSTATE 23503 and nothing applied. Deferrable keys need none of this: the import checks them at its end.

use std::collections::BTreeMap;

use protocol::payload::TableName;
use protocol::sql::{name_hash, quote_ident};
use tokio_postgres::Transaction;

use crate::catalog::{ForeignKey, TableInfo};
use crate::error::{Error, Result, rejected};

/// One self-reference whose rows may arrive before their parents, and the nullable column the import clears.
#[derive(Debug)]
struct Held {
    note: String,
    primary_key: Vec<String>,
    column: String,
}

/// The references held back until the end of the import, per table and foreign key.
#[derive(Debug, Default)]
pub(crate) struct HeldReferences {
    held: BTreeMap<(TableName, Vec<String>), Held>,
}

/// The self-references of `table` that an upsert of `columns` may have to hold back, with the column it clears.
fn self_references<'t>(table: &'t TableInfo, columns: &[String]) -> impl Iterator<Item = (&'t ForeignKey, &'t str)> {
    table.foreign_keys.iter().filter(|fk| !fk.deferrable && fk.references == table.name).filter_map(move |fk| {
        if !fk.columns.iter().all(|c| columns.contains(c)) || !fk.ref_columns.iter().all(|c| columns.contains(c)) {
            return None;
        }
        let nullable = fk.columns.iter().find(|c| {
            !table.primary_key.contains(c) && table.columns.iter().any(|col| &col.name == *c && !col.not_null)
        })?;
        Some((fk, nullable.as_str()))
    })
}

/// Whether `table` has a self-reference whose rows may arrive before their parents: such a table is merged,
/// never copied straight in, even when it is empty.
pub(crate) fn needed(table: &TableInfo) -> bool {
    self_references(table, &table.column_names()).next().is_some()
}

impl HeldReferences {
    /// Before an upsert of the staged rows: forgets what was held for the keys it rewrites, then holds back
    /// (clears in the stage and notes) each reference of the rows `applies` selects to a row that is neither in
    /// the table nor in the stage.
    pub(crate) async fn hold(
        &mut self,
        tx: &Transaction<'_>,
        table: &TableInfo,
        stage: &str,
        columns: &[String],
        applies: &str,
    ) -> Result<()> {
        let refs: Vec<(&ForeignKey, &str)> = self_references(table, columns).collect();
        self.rewritten(tx, table, stage, columns, applies).await?;
        for (fk, column) in refs {
            let held = self.note(tx, table, fk, column).await?;
            let pk: Vec<String> = table.primary_key.iter().map(|c| quote_ident(c)).collect();
            let s_pk: Vec<String> = pk.iter().map(|c| format!("s.{c}")).collect();
            let present = |alias: &str| -> String {
                let m: Vec<String> = fk
                    .columns
                    .iter()
                    .zip(&fk.ref_columns)
                    .map(|(c, r)| format!("{alias}.{} = s.{}", quote_ident(r), quote_ident(c)))
                    .collect();
                m.join(" AND ")
            };
            let not_null: Vec<String> =
                fk.columns.iter().map(|c| format!("s.{} IS NOT NULL", quote_ident(c))).collect();
            let col = quote_ident(&held.column);
            tx.batch_execute(&format!(
                "INSERT INTO {note} SELECT {s_pk}, s.{col} FROM {stage} s WHERE {not_null} AND {applies}
                   AND NOT EXISTS (SELECT 1 FROM {target} p WHERE {in_table})
                   AND NOT EXISTS (SELECT 1 FROM {stage} p WHERE {in_stage});
                 UPDATE {stage} s SET {col} = NULL FROM {note} n WHERE {match_n}",
                note = held.note,
                s_pk = s_pk.join(", "),
                not_null = not_null.join(" AND "),
                target = table.name.quoted(),
                in_table = present("p"),
                in_stage = present("p"),
                match_n = pk.iter().map(|c| format!("n.{c} = s.{c}")).collect::<Vec<_>>().join(" AND "),
            ))
            .await?;
        }
        Ok(())
    }

    /// Forgets what was held for the keys the staged rows `applies` selects (rewritten or deleted since).
    pub(crate) async fn rewritten(
        &self,
        tx: &Transaction<'_>,
        table: &TableInfo,
        stage: &str,
        key: &[String],
        applies: &str,
    ) -> Result<()> {
        if !table.primary_key.iter().all(|c| key.contains(c)) {
            return Ok(());
        }
        for ((name, _), held) in &self.held {
            if name != &table.name {
                continue;
            }
            let m: Vec<String> = held.primary_key.iter().map(|c| format!("n.{0} = s.{0}", quote_ident(c))).collect();
            tx.execute(
                &format!("DELETE FROM {} n USING {stage} s WHERE {} AND {applies}", held.note, m.join(" AND ")),
                &[],
            )
            .await?;
        }
        Ok(())
    }

    /// At the end of the import: sets every held reference, checked by PostgreSQL as that statement ends.
    pub(crate) async fn restore(&self, tx: &Transaction<'_>, chunk: usize) -> Result<()> {
        for ((table, _), held) in &self.held {
            let m: Vec<String> = held.primary_key.iter().map(|c| format!("t.{0} = n.{0}", quote_ident(c))).collect();
            let col = quote_ident(&held.column);
            tx.execute(
                &format!(
                    "UPDATE {} t SET {col} = n.{col} FROM {} n WHERE {}",
                    table.quoted(),
                    held.note,
                    m.join(" AND ")
                ),
                &[],
            )
            .await
            .map_err(|e| rejected(Error::from(e), chunk, 0, Some(table)))?;
        }
        Ok(())
    }

    async fn note(&mut self, tx: &Transaction<'_>, table: &TableInfo, fk: &ForeignKey, column: &str) -> Result<&Held> {
        let key = (table.name.clone(), fk.columns.clone());
        if !self.held.contains_key(&key) {
            let bare = format!(
                "branchsync_held_{:016x}",
                name_hash(&format!("{}\u{1}{}", table.name, fk.columns.join("\u{1}")))
            );
            let cols: Vec<String> =
                table.primary_key.iter().chain(std::iter::once(&column.to_string())).map(|c| quote_ident(c)).collect();
            tx.batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS {bare} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA;
                 TRUNCATE pg_temp.{bare}",
                cols.join(", "),
                table.name.quoted()
            ))
            .await?;
            let held =
                Held { note: format!("pg_temp.{bare}"), primary_key: table.primary_key.clone(), column: column.into() };
            self.held.insert(key.clone(), held);
        }
        Ok(&self.held[&key])
    }
}
