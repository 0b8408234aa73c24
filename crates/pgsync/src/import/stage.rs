//! Staging: each statement's rows are copied into a temporary table shaped like the target's columns, so that
//! PostgreSQL's own input functions check every value before anything is merged. Also the set-based foreign-key
//! checks that run on a stage (the office's large pulls).

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::SinkExt;
use protocol::payload::{Rows, TableName};
use protocol::sql::{name_hash, quote_ident};
use tokio_postgres::Transaction;

use crate::catalog::TableInfo;
use crate::error::{Error, Result};

/// Temporary staging tables of this transaction, by target table and column list. Named after a hash of both,
/// so that several sessions in one transaction reuse them instead of colliding.
#[derive(Debug, Default)]
pub(crate) struct Stages {
    names: HashMap<(TableName, Vec<String>), String>,
    /// Per table: whether set-based foreign-key checks skip nothing else there.
    set_based: HashMap<TableName, bool>,
}

impl Stages {
    /// An empty stage for `columns` of `table`.
    pub(crate) async fn get(&mut self, tx: &Transaction<'_>, table: &TableInfo, columns: &[String]) -> Result<String> {
        let key = (table.name.clone(), columns.to_vec());
        if let Some(name) = self.names.get(&key) {
            tx.batch_execute(&format!("TRUNCATE {name}")).await?;
            return Ok(name.clone());
        }
        let bare =
            format!("branchsync_stage_{:016x}", name_hash(&format!("{}\u{1}{}", table.name, columns.join("\u{1}"))));
        let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {bare} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA; TRUNCATE pg_temp.{bare}",
            cols.join(", "),
            table.name.quoted()
        ))
        .await?;
        let name = format!("pg_temp.{bare}");
        self.names.insert(key, name.clone());
        Ok(name)
    }

    /// Whether replica mode would skip nothing but the per-row foreign-key checks on `table` for an upsert of
    /// `columns` (see [`ImportOptions::set_based_foreign_keys`](super::ImportOptions::set_based_foreign_keys));
    /// asked once per table and transaction.
    pub(crate) async fn set_based_allowed(
        &mut self,
        tx: &Transaction<'_>,
        table: &TableInfo,
        columns: &[String],
    ) -> Result<bool> {
        if !table.foreign_keys.iter().all(|fk| fk.columns.iter().all(|c| columns.contains(c))) {
            return Ok(false);
        }
        if let Some(&allowed) = self.set_based.get(&table.name) {
            return Ok(allowed);
        }
        let row = tx
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = $1::text::regclass AND NOT t.tgisinternal)
                    AND NOT EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = $1::text::regclass AND r.rulename <> '_RETURN')
                    AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = $1::text::regclass AND c.contype = 'f'
                                    AND (c.confmatchtype <> 's' OR c.condeferrable))
                    AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.confrelid = $1::text::regclass AND c.contype = 'f'
                                    AND NOT c.confkey <@ COALESCE((SELECT p.conkey FROM pg_constraint p
                                        WHERE p.conrelid = $1::text::regclass AND p.contype = 'p'), '{}'))",
                &[&table.name.quoted()],
            )
            .await?;
        let allowed: bool = row.get(0);
        self.set_based.insert(table.name.clone(), allowed);
        Ok(allowed)
    }
}

/// Copies rows into `target` (a stage, or a fresh table itself).
pub(crate) async fn copy_rows(tx: &Transaction<'_>, target: &str, columns: &[String], rows: &Rows) -> Result<()> {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let sink = tx.copy_in(&format!("COPY {target} ({}) FROM STDIN", cols.join(", "))).await?;
    let mut sink = std::pin::pin!(sink);
    // The reader kept the rows in COPY text format: they go to the database as they are.
    sink.send(Bytes::copy_from_slice(rows.copy_text().as_bytes())).await?;
    sink.finish().await?;
    Ok(())
}

/// Checks every foreign key of the staged rows with one query each, after locking the referenced rows
/// `FOR KEY SHARE` as PostgreSQL's per-row check does (so that they cannot go before this transaction commits).
/// A missing parent refuses the statement with SQLSTATE 23503, as the per-row check would.
pub(crate) async fn check_foreign_keys(tx: &Transaction<'_>, table: &TableInfo, stage: &str) -> Result<()> {
    for fk in &table.foreign_keys {
        let cols: Vec<String> = fk.columns.iter().map(|c| format!("s.{}", quote_ident(c))).collect();
        let refs: Vec<String> = fk.ref_columns.iter().map(|c| format!("p.{}", quote_ident(c))).collect();
        let not_null: Vec<String> = cols.iter().map(|c| format!("{c} IS NOT NULL")).collect();
        let matches: Vec<String> = cols.iter().zip(&refs).map(|(c, r)| format!("{r} = {c}")).collect();
        let parent = fk.references.quoted();
        tx.execute(
            &format!(
                "SELECT 1 FROM {parent} p WHERE ({}) IN (SELECT {} FROM {stage} s) FOR KEY SHARE OF p",
                refs.join(", "),
                cols.join(", ")
            ),
            &[],
        )
        .await?;
        let missing = tx
            .query_opt(
                &format!(
                    "SELECT {}::text FROM {stage} s WHERE {} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {}) LIMIT 1",
                    if cols.len() == 1 { cols[0].clone() } else { format!("ROW({})", cols.join(", ")) },
                    not_null.join(" AND "),
                    matches.join(" AND ")
                ),
                &[],
            )
            .await?;
        if let Some(row) = missing {
            let key: String = row.get(0);
            return Err(Error::Rejected {
                chunk: 0,
                statement: 0,
                sqlstate: Some("23503".into()),
                table: Some(table.name.clone()),
                message: format!(
                    "insert or update on table {} violates foreign key ({}): key {key} is not present in table {}",
                    table.name,
                    fk.columns.join(", "),
                    fk.references
                ),
            });
        }
    }
    Ok(())
}
