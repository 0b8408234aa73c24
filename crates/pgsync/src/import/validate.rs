//! The receiver's check of a payload against its own catalog before anything is written: declared columns match
//! ours, every column exists, upserts and deletes are keyed on the primary key.

use std::collections::BTreeSet;

use protocol::payload::{Payload, Statement};
use protocol::schema::{SchemaMismatch, compare_columns};

use crate::catalog::Catalog;
use crate::error::{Error, Result};

/// Validates one chunk; `chunk` is its 1-based index, reported in errors. The shop agent calls it when a chunk
/// arrives, and every [`ImportSession`](super::ImportSession) again before writing.
pub fn validate(catalog: &Catalog, payload: &Payload, chunk: usize) -> Result<()> {
    for (table, declared) in &payload.header.tables {
        let ours = catalog.get(table).ok_or_else(|| SchemaMismatch::MissingTable(table.clone()))?;
        compare_columns(table, declared, &ours.column_decls())?;
    }
    for (i, statement) in payload.statements.iter().enumerate() {
        let reject =
            |message: String| Error::Rejected { chunk, statement: i + 1, sqlstate: None, table: None, message };
        let table =
            catalog.get(statement.table()).ok_or_else(|| SchemaMismatch::MissingTable(statement.table().clone()))?;
        let pk: BTreeSet<&String> = table.primary_key.iter().collect();
        match statement {
            Statement::Upsert { columns, conflict, .. } => {
                for c in columns {
                    if table.column_type(c).is_none() {
                        return Err(
                            SchemaMismatch::MissingColumn { table: table.name.clone(), column: c.clone() }.into()
                        );
                    }
                }
                if !conflict.is_empty() && conflict.iter().collect::<BTreeSet<_>>() != pk {
                    return Err(reject(format!(
                        "ON CONFLICT must name the primary key ({})",
                        table.primary_key.join(", ")
                    )));
                }
                if !pk.iter().all(|k| columns.contains(k)) {
                    return Err(reject(format!(
                        "every primary key column ({}) must be given",
                        table.primary_key.join(", ")
                    )));
                }
            }
            Statement::Delete { key, .. } => {
                if key.iter().collect::<BTreeSet<_>>() != pk {
                    return Err(reject(format!(
                        "DELETE must match on the primary key ({})",
                        table.primary_key.join(", ")
                    )));
                }
            }
        }
    }
    Ok(())
}
