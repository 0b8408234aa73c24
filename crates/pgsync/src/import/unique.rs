//! Swaps through unique keys that are checked row by row. PostgreSQL checks a unique constraint that is not
//! `DEFERRABLE` at every row, so two products swapping barcodes cannot be upserted one after the other: the
//! first collides with the second's old value. Before an upsert, a row of the table whose value an incoming row
//! claims gives it up (a nullable column of the key is set to NULL, which collides with nothing) and is noted;
//! the upsert that later writes that row takes it off the note, and at the end of the import a noted row that no
//! statement rewrote is the violation PostgreSQL would have reported, refused with SQLSTATE 23505 and nothing
//! applied. Deferrable keys need none of this: the import checks them at its end.

use std::collections::BTreeMap;

use protocol::payload::TableName;
use protocol::sql::{name_hash, quote_ident};
use tokio_postgres::Transaction;

use crate::catalog::{TableInfo, UniqueKey};
use crate::error::{Error, Result};

/// The rows each table gave their unique values up for, in temporary tables of this transaction.
#[derive(Debug, Default)]
pub(crate) struct Vacated {
    /// Per table: the note's name and the table's primary key columns.
    notes: BTreeMap<TableName, (String, Vec<String>)>,
}

/// A unique key the import vacates, and the nullable column it clears.
fn vacatable<'t>(table: &'t TableInfo, columns: &[String]) -> impl Iterator<Item = (&'t UniqueKey, &'t str)> {
    table.unique_keys.iter().filter(|u| !u.deferrable && !u.nulls_not_distinct).filter_map(move |u| {
        if !u.columns.iter().all(|c| columns.contains(c)) {
            return None;
        }
        let nullable = u.columns.iter().find(|c| table.columns.iter().any(|col| &col.name == *c && !col.not_null))?;
        Some((u, nullable.as_str()))
    })
}

impl Vacated {
    /// Clears the unique values of `table`'s rows that staged rows of other keys claim (those `applied` selects,
    /// a condition on the staged row `s`), and notes them.
    pub(crate) async fn vacate(
        &mut self,
        tx: &Transaction<'_>,
        table: &TableInfo,
        stage: &str,
        columns: &[String],
        applied: &str,
    ) -> Result<()> {
        let keys: Vec<(&UniqueKey, &str)> = vacatable(table, columns).collect();
        if keys.is_empty() {
            return Ok(());
        }
        let note = self.note(tx, table).await?;
        let pk: Vec<String> = table.primary_key.iter().map(|c| quote_ident(c)).collect();
        let t_pk: Vec<String> = pk.iter().map(|c| format!("t.{c}")).collect();
        let s_pk: Vec<String> = pk.iter().map(|c| format!("s.{c}")).collect();
        for (key, clear) in keys {
            let cols: Vec<String> = key.columns.iter().map(|c| quote_ident(c)).collect();
            let t_cols: Vec<String> = cols.iter().map(|c| format!("t.{c}")).collect();
            let s_cols: Vec<String> = cols.iter().map(|c| format!("s.{c}")).collect();
            let what = format!(
                "'({})=(' || concat_ws(', ', {}) || ')'",
                key.columns.join(", ").replace('\'', "''"),
                t_cols.iter().map(|c| format!("{c}::text")).collect::<Vec<_>>().join(", ")
            );
            tx.execute(
                &format!(
                    "WITH claimed AS (SELECT DISTINCT {t_pk}, {what} AS what FROM {target} t JOIN {stage} s
                        ON ({t_cols}) = ({s_cols}) AND ({t_pk}) IS DISTINCT FROM ({s_pk}) WHERE {applied}),
                     cleared AS (UPDATE {target} t SET {clear} = NULL FROM claimed c WHERE {match_c} RETURNING {t_pk})
                     INSERT INTO {note} SELECT c.* FROM claimed c JOIN cleared t ON {match_c}",
                    t_pk = t_pk.join(", "),
                    target = table.name.quoted(),
                    t_cols = t_cols.join(", "),
                    s_cols = s_cols.join(", "),
                    s_pk = s_pk.join(", "),
                    clear = quote_ident(clear),
                    match_c = pk.iter().map(|c| format!("t.{c} = c.{c}")).collect::<Vec<_>>().join(" AND "),
                ),
                &[],
            )
            .await?;
        }
        Ok(())
    }

    /// Takes the rows the staged rows `applied` selects just wrote (or deleted) off `table`'s note.
    pub(crate) async fn rewritten(
        &self,
        tx: &Transaction<'_>,
        table: &TableInfo,
        stage: &str,
        key: &[String],
        applied: &str,
    ) -> Result<()> {
        let Some((note, _)) = self.notes.get(&table.name) else { return Ok(()) };
        if !table.primary_key.iter().all(|c| key.contains(c)) {
            return Ok(());
        }
        let matches: Vec<String> = table.primary_key.iter().map(|c| format!("v.{0} = s.{0}", quote_ident(c))).collect();
        tx.execute(&format!("DELETE FROM {note} v USING {stage} s WHERE {} AND {applied}", matches.join(" AND ")), &[])
            .await?;
        Ok(())
    }

    /// Refuses the import if a row gave up its unique value and no statement rewrote it: its old value was
    /// claimed by a row of another key, a violation in the sender's data.
    pub(crate) async fn check(&self, tx: &Transaction<'_>, chunk: usize) -> Result<()> {
        for (table, (note, pk)) in &self.notes {
            let matches: Vec<String> = pk.iter().map(|c| format!("t.{0} = v.{0}", quote_ident(c))).collect();
            let left = tx
                .query_opt(
                    &format!(
                        "SELECT v.what FROM {note} v WHERE EXISTS (SELECT 1 FROM {} t WHERE {}) LIMIT 1",
                        table.quoted(),
                        matches.join(" AND ")
                    ),
                    &[],
                )
                .await?;
            if let Some(row) = left {
                let what: String = row.get(0);
                return Err(Error::Rejected {
                    chunk,
                    statement: 0,
                    sqlstate: Some("23505".into()),
                    table: Some(table.clone()),
                    message: format!(
                        "duplicate key value violates a unique constraint: key {what} is held by a row this upload \
                         does not change; change that row at the sender so the values differ"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The note of `table`: its primary key columns and what the row gave up.
    async fn note(&mut self, tx: &Transaction<'_>, table: &TableInfo) -> Result<String> {
        if let Some((note, _)) = self.notes.get(&table.name) {
            return Ok(note.clone());
        }
        let bare = format!("branchsync_vacated_{:016x}", name_hash(&table.name.to_string()));
        let pk: Vec<String> = table.primary_key.iter().map(|c| quote_ident(c)).collect();
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {bare} ON COMMIT DROP AS SELECT {}, ''::text AS what FROM {} WITH NO DATA;
             TRUNCATE pg_temp.{bare}",
            pk.join(", "),
            table.name.quoted()
        ))
        .await?;
        let note = format!("pg_temp.{bare}");
        self.notes.insert(table.name.clone(), (note.clone(), table.primary_key.clone()));
        Ok(note)
    }
}
