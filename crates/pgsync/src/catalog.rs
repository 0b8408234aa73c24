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
    /// Declared `DEFERRABLE`: an import checks it at its end, so it does not constrain the order of rows or
    /// tables (a cycle through it is allowed).
    pub deferrable: bool,
}

/// A unique constraint or unique index of a synced table other than its primary key (plain columns, no
/// predicate): an import must not trip over it when rows swap their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKey {
    /// The constrained columns.
    pub columns: Vec<String>,
    /// Declared `DEFERRABLE`: an import checks it at its end, so swaps apply as they come.
    pub deferrable: bool,
    /// `NULLS NOT DISTINCT` (PostgreSQL 15): two NULLs collide too.
    pub nulls_not_distinct: bool,
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
    /// Unique keys besides the primary key.
    pub unique_keys: Vec<UniqueKey>,
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
        let unique: BTreeSet<&TableName> = names.iter().collect();
        let schemas: Vec<&str> = unique.iter().map(|t| t.schema.as_str()).collect();
        let tables: Vec<&str> = unique.iter().map(|t| t.name.as_str()).collect();
        // One round trip for every table: syncs read the catalog often, and a query per detail adds up.
        let rows = client.query(CATALOG_SQL, &[&schemas, &tables]).await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            found.push(table_from_row(row)?);
        }
        for name in unique {
            match found.iter().find(|t| &t.name == name) {
                None => return Err(Error::MissingTable(name.clone())),
                Some(t) if t.primary_key.is_empty() => return Err(Error::NoPrimaryKey(name.clone())),
                Some(_) => {}
            }
        }
        Ok(Catalog { tables: order_by_foreign_keys(found)? })
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
    /// The column that places a shop-written row of `table` in its branch's id range: the table's own sequence
    /// column, or a single-column foreign key to a table of `shop_written` that has one (sale_item → sale).
    /// `verify` compares a branch's rows by it and the office's pull checks ownership by it.
    pub fn range_column(&self, table: &TableInfo, shop_written: &[TableName]) -> Option<String> {
        if let Some((column, _)) = table.sequences.first() {
            return Some(column.clone());
        }
        table.foreign_keys.iter().find_map(|fk| {
            let parent = self.get(&fk.references)?;
            (shop_written.contains(&fk.references) && fk.columns.len() == 1 && !parent.sequences.is_empty())
                .then(|| fk.columns[0].clone())
        })
    }

    /// The tables of `names`, in dependency order.
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

/// Refuses the first table the connected role may not write (`INSERT`, `UPDATE`, `DELETE`: the tables the peer
/// writes here) or capture changes on (`SELECT`, `TRIGGER`: the tables this side sends).
pub async fn check_privileges(
    client: &impl GenericClient,
    written: &[TableName],
    captured: &[TableName],
) -> Result<()> {
    for (tables, privileges, need) in
        [(written, "INSERT, UPDATE, DELETE", "write"), (captured, "SELECT, TRIGGER", "capture changes on")]
    {
        for table in tables {
            // Each privilege must be held: has_table_privilege with a list answers whether any one is.
            let missing: bool = client
                .query_one(
                    "SELECT NOT bool_and(has_table_privilege($1::text::regclass, p)) FROM unnest(string_to_array($2, ', ')) p",
                    &[&table.quoted(), &privileges],
                )
                .await?
                .get(0);
            if missing {
                return Err(Error::NotWritable { table: table.clone(), need });
            }
        }
    }
    Ok(())
}

/// Everything about the requested tables, a row each: columns, primary key, foreign keys and owned sequences.
const CATALOG_SQL: &str = "
SELECT n.nspname::text, c.relname::text,
  (SELECT jsonb_agg(jsonb_build_array(a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity = 'a') ORDER BY a.attnum)
     FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),
  ARRAY(SELECT a.attname::text FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, ord), pg_attribute a
        WHERE i.indrelid = c.oid AND i.indisprimary AND a.attrelid = c.oid AND a.attnum = k.attnum ORDER BY k.ord),
  (SELECT jsonb_agg(jsonb_build_array(rn.nspname, rc.relname,
            ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(x, o) JOIN pg_attribute a
                  ON a.attrelid = con.conrelid AND a.attnum = k.x ORDER BY k.o),
            ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(x, o) JOIN pg_attribute a
                  ON a.attrelid = con.confrelid AND a.attnum = k.x ORDER BY k.o), con.condeferrable) ORDER BY con.conname)
     FROM pg_constraint con JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
     WHERE con.conrelid = c.oid AND con.contype = 'f'),
  (SELECT jsonb_agg(jsonb_build_array(
            ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(x, o) JOIN pg_attribute a
                  ON a.attrelid = c.oid AND a.attnum = k.x ORDER BY k.o),
            COALESCE(con.condeferrable, false),
            COALESCE((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false)) ORDER BY i.indexrelid)
     FROM pg_index i LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = c.oid AND con.contype = 'u'
     WHERE i.indrelid = c.oid AND i.indisunique AND NOT i.indisprimary AND i.indexprs IS NULL AND i.indpred IS NULL
       AND NOT 0 = ANY (i.indkey::int2[])),
  (SELECT jsonb_agg(jsonb_build_array(a.attname, s.oid::regclass::text) ORDER BY a.attnum) FROM pg_depend d
     JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
     JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid AND d.deptype IN ('a', 'i'))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))";

fn table_from_row(row: &tokio_postgres::Row) -> Result<TableInfo> {
    use serde_json::Value as J;
    let name = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1));
    let text = |v: &J| v.as_str().unwrap_or_default().to_string();
    let texts = |v: &J| v.as_array().map(|a| a.iter().map(text).collect::<Vec<_>>()).unwrap_or_default();
    let list = |i: usize| row.get::<_, Option<J>>(i).and_then(|v| v.as_array().cloned()).unwrap_or_default();
    let mut identity_always = false;
    let columns = list(2)
        .iter()
        .map(|c| {
            identity_always |= c[3].as_bool().unwrap_or(false);
            ColumnInfo { name: text(&c[0]), type_sql: text(&c[1]), not_null: c[2].as_bool().unwrap_or(false) }
        })
        .collect();
    let foreign_keys = list(4)
        .iter()
        .map(|f| ForeignKey {
            references: TableName::new(text(&f[0]), text(&f[1])),
            columns: texts(&f[2]),
            ref_columns: texts(&f[3]),
            deferrable: f[4].as_bool().unwrap_or(false),
        })
        .collect();
    let unique_keys = list(5)
        .iter()
        .map(|u| UniqueKey {
            columns: texts(&u[0]),
            deferrable: u[1].as_bool().unwrap_or(false),
            nulls_not_distinct: u[2].as_bool().unwrap_or(false),
        })
        .collect();
    let sequences = list(6).iter().map(|s| (text(&s[0]), text(&s[1]))).collect();
    Ok(TableInfo { name, columns, primary_key: row.get(3), foreign_keys, unique_keys, sequences, identity_always })
}

/// Kahn's algorithm over the references between the given tables; ties broken by name so the order is stable.
/// References to tables outside the set, to the table itself, and deferrable ones (checked when the import ends)
/// do not constrain the order.
pub fn order_by_foreign_keys(tables: Vec<TableInfo>) -> Result<Vec<TableInfo>> {
    let names: BTreeSet<TableName> = tables.iter().map(|t| t.name.clone()).collect();
    let mut parents: BTreeMap<TableName, BTreeSet<TableName>> = BTreeMap::new();
    for t in &tables {
        let refs = t
            .foreign_keys
            .iter()
            .filter(|fk| !fk.deferrable)
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
