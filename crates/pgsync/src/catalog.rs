//! Reads the synced tables' definitions from PostgreSQL's catalogs (columns, primary key, foreign keys, owned
//! sequences) and orders them along the foreign-key graph, so that parents are written before children.

use std::collections::{BTreeMap, BTreeSet};

use protocol::payload::{ColumnDecl, TableName};
use protocol::schema::{TableSchema, fingerprint};
use tokio_postgres::GenericClient;

use crate::error::{Error, Result};

/// One column of a synced table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Type as `format_type` prints it.
    pub type_sql: String,
    /// Whether the column is `NOT NULL`.
    pub not_null: bool,
}

/// A foreign key of a synced table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// The referencing columns.
    pub columns: Vec<String>,
    /// The referenced table.
    pub references: TableName,
    /// The referenced columns.
    pub ref_columns: Vec<String>,
}

/// A synced table as the database defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// The table.
    pub name: TableName,
    /// Columns in ordinal order; generated columns are left out, since they are computed on each side.
    pub columns: Vec<ColumnInfo>,
    /// Primary key columns in key order.
    pub primary_key: Vec<String>,
    /// Foreign keys.
    pub foreign_keys: Vec<ForeignKey>,
    /// Sequences owned by columns (serial or identity), as `(column, qualified sequence name)`.
    pub sequences: Vec<(String, String)>,
    /// Whether a column is `GENERATED ALWAYS AS IDENTITY`, so inserts need `OVERRIDING SYSTEM VALUE`.
    pub identity_always: bool,
}

impl TableInfo {
    /// The column names in ordinal order.
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// The columns as a payload header declares them.
    pub fn column_decls(&self) -> Vec<ColumnDecl> {
        self.columns.iter().map(|c| ColumnDecl { name: c.name.clone(), type_sql: c.type_sql.clone() }).collect()
    }

    /// The column's type, if the table has it.
    pub fn column_type(&self, name: &str) -> Option<&str> {
        self.columns.iter().find(|c| c.name == name).map(|c| c.type_sql.as_str())
    }

    /// The table's description for fingerprints and comparisons.
    pub fn schema(&self) -> TableSchema {
        TableSchema { name: self.name.clone(), columns: self.column_decls(), primary_key: self.primary_key.clone() }
    }
}

/// A set of synced tables, in foreign-key order (parents first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    tables: Vec<TableInfo>,
}

impl Catalog {
    /// Reads the definitions of `names` and orders them. Fails on a missing table, a table without primary key,
    /// or a foreign-key cycle among them (a table referencing itself is allowed).
    pub async fn load(client: &impl GenericClient, names: &[TableName]) -> Result<Catalog> {
        let mut tables = Vec::with_capacity(names.len());
        let unique: BTreeSet<&TableName> = names.iter().collect();
        for name in unique {
            tables.push(load_table(client, name).await?);
        }
        Ok(Catalog { tables: order_by_foreign_keys(tables)? })
    }

    /// The tables, parents first.
    pub fn tables(&self) -> &[TableInfo] {
        &self.tables
    }

    /// One table by name.
    pub fn get(&self, name: &TableName) -> Option<&TableInfo> {
        self.tables.iter().find(|t| &t.name == name)
    }

    /// The subset of tables named, keeping the foreign-key order.
    pub fn subset(&self, names: &BTreeSet<TableName>) -> Catalog {
        Catalog { tables: self.tables.iter().filter(|t| names.contains(&t.name)).cloned().collect() }
    }

    /// The fingerprint of all tables in the catalog.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.tables.iter().map(TableInfo::schema).collect::<Vec<_>>())
    }

    /// The table names.
    pub fn names(&self) -> BTreeSet<TableName> {
        self.tables.iter().map(|t| t.name.clone()).collect()
    }
}

async fn load_table(client: &impl GenericClient, name: &TableName) -> Result<TableInfo> {
    let row = client
        .query_opt(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&name.schema, &name.name],
        )
        .await?;
    let oid: u32 = row.ok_or_else(|| Error::MissingTable(name.clone()))?.get(0);
    let columns: Vec<ColumnInfo> = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| ColumnInfo { name: r.get(0), type_sql: r.get(1), not_null: r.get(2) })
        .collect();
    let primary_key: Vec<String> = client
        .query(
            "SELECT a.attname::text FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, ord), pg_attribute a \
             WHERE i.indrelid = $1 AND i.indisprimary AND a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if primary_key.is_empty() {
        return Err(Error::NoPrimaryKey(name.clone()));
    }
    let foreign_keys = client
        .query(
            "SELECT rn.nspname::text, rc.relname::text, \
               ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a \
                     ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o), \
               ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a \
                     ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o) \
             FROM pg_constraint con JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace \
             WHERE con.conrelid = $1 AND con.contype = 'f' ORDER BY con.conname",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| ForeignKey { references: TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)), columns: r.get(2), ref_columns: r.get(3) })
        .collect();
    let sequences = client
        .query(
            "SELECT a.attname::text, s.oid::regclass::text FROM pg_depend d \
             JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
               AND d.refobjid = $1 AND d.deptype IN ('a', 'i') ORDER BY a.attnum",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let identity_always: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1 AND attidentity = 'a' AND NOT attisdropped)",
            &[&oid],
        )
        .await?
        .get(0);
    Ok(TableInfo { name: name.clone(), columns, primary_key, foreign_keys, sequences, identity_always })
}

/// Kahn's algorithm over the references between the given tables; ties broken by name so the order is stable.
/// References to tables outside the set and to the table itself do not constrain the order.
pub fn order_by_foreign_keys(tables: Vec<TableInfo>) -> Result<Vec<TableInfo>> {
    let names: BTreeSet<TableName> = tables.iter().map(|t| t.name.clone()).collect();
    let mut parents: BTreeMap<TableName, BTreeSet<TableName>> = BTreeMap::new();
    for t in &tables {
        let refs = t
            .foreign_keys
            .iter()
            .map(|fk| fk.references.clone())
            .filter(|r| r != &t.name && names.contains(r))
            .collect();
        parents.insert(t.name.clone(), refs);
    }
    let mut by_name: BTreeMap<TableName, TableInfo> = tables.into_iter().map(|t| (t.name.clone(), t)).collect();
    let mut ordered = Vec::with_capacity(by_name.len());
    while !parents.is_empty() {
        let ready: Vec<TableName> = parents.iter().filter(|(_, p)| p.is_empty()).map(|(n, _)| n.clone()).collect();
        if ready.is_empty() {
            let cycle: Vec<String> = parents.keys().map(|n| n.to_string()).collect();
            return Err(Error::ForeignKeyCycle(cycle.join(", ")));
        }
        for name in ready {
            parents.remove(&name);
            for p in parents.values_mut() {
                p.remove(&name);
            }
            if let Some(t) = by_name.remove(&name) {
                ordered.push(t);
            }
        }
    }
    Ok(ordered)
}
