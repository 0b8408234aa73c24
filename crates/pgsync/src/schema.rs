//! The sync schema (`branchsync`): bookkeeping tables, the change log and its capture triggers, the database's
//! identity that cursors are tied to, the cursors applied from peers, and the purge of acknowledged changes.
//!
//! Change capture is in the database, not in the application, so that no writer can bypass it: statement-level
//! triggers with transition tables append one change-log row per written key, deletes included, stamped with
//! the writing transaction's id (`pg_current_xact_id`) and with the origin that the applying session declared
//! (`branchsync.origin`), so applied changes are never exported back to where they came from.

use protocol::cursor::{Cursor, DbIdentity};
use protocol::sql::{name_hash, quote_ident, quote_literal};
use tokio_postgres::{Client, GenericClient};

use crate::catalog::TableInfo;
use crate::error::{Error, Result};
use crate::migrate::migrate;

/// The session setting that marks applied changes with their origin.
pub const ORIGIN_SETTING: &str = "branchsync.origin";

/// The shared sync schema's migrations, in order (see [`crate::migrate`]).
const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2];

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS branchsync.meta (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch text NOT NULL DEFAULT replace(gen_random_uuid()::text, '-', ''),
    installed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO branchsync.meta DEFAULT VALUES ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS branchsync.change_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    tbl text NOT NULL,
    pk text[] NOT NULL,
    op \"char\" NOT NULL,
    origin text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS change_log_xid ON branchsync.change_log (xid);
CREATE INDEX IF NOT EXISTS change_log_key ON branchsync.change_log (tbl, pk, id);
CREATE TABLE IF NOT EXISTS branchsync.peer_cursor (
    peer text PRIMARY KEY,
    cursor text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS branchsync.conflict (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    branch text NOT NULL,
    tbl text NOT NULL,
    pk text[] NOT NULL,
    office_version jsonb,
    shop_version jsonb,
    rule text NOT NULL,
    decision text NOT NULL
);
CREATE OR REPLACE FUNCTION branchsync.refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    RAISE EXCEPTION 'table %.% is synced: TRUNCATE would bypass change capture, use DELETE', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'feature_not_supported';
END $f$;
";

/// Who first sent each key of a shop-written table without an id-range column (read and written in
/// `import/ownership.rs`).
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS branchsync.row_owner (
    tbl text NOT NULL,
    pk text[] NOT NULL,
    branch text NOT NULL,
    PRIMARY KEY (tbl, pk)
);
";

/// Creates the sync schema if it is missing; an existing one, and its epoch, are kept.
pub async fn install(client: &Client) -> Result<DbIdentity> {
    migrate(client, "sync", MIGRATIONS).await?;
    identity(client).await
}

/// Drops the sync schema with every capture trigger and all sync state, then installs it afresh with a new
/// epoch, so that every cursor issued before is refused from now on. Runs in the caller's transaction if any.
pub async fn reinstall(client: &impl GenericClient) -> Result<()> {
    client.batch_execute("DROP SCHEMA IF EXISTS branchsync CASCADE").await?;
    migrate(client, "sync", MIGRATIONS).await?;
    Ok(())
}

/// The sync schema's own tables; each component adds its own (`foreign_objects`).
pub const TABLES: &[&str] = &["meta", "change_log", "peer_cursor", "conflict", "schema_version", "row_owner"];

/// Objects in the sync schema that branchsync did not create (a user's table put there because a role named
/// `branchsync` created it with the default `search_path`): anything but `TABLES`, the component's own `tables`,
/// their sequences, and the capture functions. Checked before the schema is dropped, so that no user object is
/// ever dropped with it.
pub async fn foreign_objects(client: &impl GenericClient, tables: &[&str]) -> Result<Vec<String>> {
    let ours: Vec<String> = TABLES.iter().chain(tables).map(|t| t.to_string()).collect();
    let rows = client
        .query(
            "SELECT 'branchsync.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'branchsync' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') \
               AND NOT (c.relkind IN ('r', 'p') AND c.relname = ANY($1)) \
               AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d \
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i'))) \
             UNION ALL \
             SELECT 'branchsync.' || p.proname || '()' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = 'branchsync' AND p.proname <> 'refuse_truncate' \
               AND p.proname !~ '^capture_[0-9a-f]{16}_(ins|upd|del)$' \
             ORDER BY 1 LIMIT 20",
            &[&ours],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The identity cursors issued by this database carry.
pub async fn identity(client: &impl GenericClient) -> Result<DbIdentity> {
    let row = client
        .query_one(
            "SELECT (SELECT system_identifier FROM pg_control_system())::text, \
                    (SELECT oid FROM pg_database WHERE datname = current_database()), \
                    (SELECT epoch FROM branchsync.meta)",
            &[],
        )
        .await
        .map_err(|e| match e.code() {
            // The only relation this query names is the sync schema's own: it is not installed.
            Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Error::NotInstalled,
            _ => e.into(),
        })?;
    let system: String = row.get(0);
    let epoch: Option<String> = row.get(2);
    Ok(DbIdentity {
        system_id: system
            .parse()
            .map_err(|_| Error::Internal(format!("system identifier {system:?} is not a number")))?,
        database_oid: row.get(1),
        epoch: epoch.ok_or(Error::NotInstalled)?,
    })
}

/// Installs (or replaces) change capture on one table.
pub async fn install_capture(client: &impl GenericClient, table: &TableInfo) -> Result<()> {
    client.batch_execute(&capture_sql(table)).await?;
    Ok(())
}

/// Removes change capture from one table; its rows in the change log stay until purged.
pub async fn remove_capture(client: &impl GenericClient, table: &TableInfo) -> Result<()> {
    let t = table.name.quoted();
    let f = function_prefix(table);
    client
        .batch_execute(&format!(
            "DROP TRIGGER IF EXISTS branchsync_capture_ins ON {t}; DROP TRIGGER IF EXISTS branchsync_capture_upd ON {t}; \
             DROP TRIGGER IF EXISTS branchsync_capture_del ON {t}; DROP TRIGGER IF EXISTS branchsync_no_truncate ON {t}; \
             DROP FUNCTION IF EXISTS {f}_ins(); DROP FUNCTION IF EXISTS {f}_upd(); DROP FUNCTION IF EXISTS {f}_del();"
        ))
        .await?;
    Ok(())
}

/// Records every row a table holds now as changed here, so that a table the shop starts to send (after a
/// `configure` that added it) sends the rows it already had, not only those changed from now on. Returns the
/// rows recorded.
pub async fn capture_existing(client: &impl GenericClient, table: &TableInfo) -> Result<u64> {
    let sql = format!(
        "INSERT INTO branchsync.change_log (tbl, pk, op, origin) SELECT {}, {}, 'U', '' FROM {} n",
        quote_literal(&table.name.to_string()),
        key_array(table, "n"),
        table.name.quoted()
    );
    Ok(client.execute(sql.as_str(), &[]).await?)
}

/// The primary key of the row `alias` as a text array, the change log's form of a key.
fn key_array(table: &TableInfo, alias: &str) -> String {
    let parts: Vec<String> = table.primary_key.iter().map(|c| format!("{alias}.{}::text", quote_ident(c))).collect();
    format!("ARRAY[{}]", parts.join(", "))
}

fn function_prefix(table: &TableInfo) -> String {
    // Names must stay under 63 bytes and be unique per table whatever its name: hash the qualified name.
    let h = name_hash(&table.name.to_string());
    format!("branchsync.capture_{h:016x}")
}

/// The per-table capture functions and triggers. Generated per table so that the key is read with static
/// column references (fast, exact text form) rather than dynamic SQL per row.
fn capture_sql(table: &TableInfo) -> String {
    let t = table.name.quoted();
    let tbl = quote_literal(&table.name.to_string());
    let f = function_prefix(table);
    let key = |alias: &str| key_array(table, alias);
    let origin = format!("coalesce(current_setting('{ORIGIN_SETTING}', true), '')");
    let same_key: Vec<String> = table.primary_key.iter().map(|c| format!("n.{0} = o.{0}", quote_ident(c))).collect();
    format!(
        "CREATE OR REPLACE FUNCTION {f}_ins() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN
            INSERT INTO branchsync.change_log (tbl, pk, op, origin) SELECT {tbl}, {nk}, 'U', {origin} FROM new_rows n;
            RETURN NULL; END $f$;
         CREATE OR REPLACE FUNCTION {f}_upd() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN
            INSERT INTO branchsync.change_log (tbl, pk, op, origin) SELECT {tbl}, {nk}, 'U', {origin} FROM new_rows n;
            INSERT INTO branchsync.change_log (tbl, pk, op, origin) SELECT {tbl}, {ok}, 'D', {origin} FROM old_rows o
                WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE {same});
            RETURN NULL; END $f$;
         CREATE OR REPLACE FUNCTION {f}_del() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN
            INSERT INTO branchsync.change_log (tbl, pk, op, origin) SELECT {tbl}, {ok}, 'D', {origin} FROM old_rows o;
            RETURN NULL; END $f$;
         DROP TRIGGER IF EXISTS branchsync_capture_ins ON {t};
         DROP TRIGGER IF EXISTS branchsync_capture_upd ON {t};
         DROP TRIGGER IF EXISTS branchsync_capture_del ON {t};
         DROP TRIGGER IF EXISTS branchsync_no_truncate ON {t};
         CREATE TRIGGER branchsync_capture_ins AFTER INSERT ON {t} REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION {f}_ins();
         CREATE TRIGGER branchsync_capture_upd AFTER UPDATE ON {t} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION {f}_upd();
         CREATE TRIGGER branchsync_capture_del AFTER DELETE ON {t} REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION {f}_del();
         CREATE TRIGGER branchsync_no_truncate BEFORE TRUNCATE ON {t}
            FOR EACH STATEMENT EXECUTE FUNCTION branchsync.refuse_truncate();",
        nk = key("n"),
        ok = key("o"),
        same = same_key.join(" AND "),
    )
}

/// Changes in the log that `peer` has not acknowledged yet: not visible in its cursor (all of them when it has
/// none) and not from the peer itself.
pub async fn pending_changes(client: &impl GenericClient, since: Option<&Cursor>, peer: Option<&str>) -> Result<i64> {
    Ok(pending_by_table(client, since, peer).await?.values().sum())
}

/// [`pending_changes`] per table (`schema.name`), for `verify` to tell a difference still in flight from drift.
pub async fn pending_by_table(
    client: &impl GenericClient,
    since: Option<&Cursor>,
    peer: Option<&str>,
) -> Result<std::collections::BTreeMap<String, i64>> {
    let snapshot = since.map(|c| c.snapshot.clone());
    let rows = client
        .query(
            "SELECT tbl, count(*) FROM branchsync.change_log \
             WHERE ($1::text IS NULL OR NOT pg_visible_in_snapshot(xid, $1::text::pg_snapshot)) AND origin IS DISTINCT FROM $2 \
             GROUP BY tbl",
            &[&snapshot, &peer],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Deletes the change-log rows that every given cursor has acknowledged (visible in all of their snapshots).
/// Returns the number of rows deleted. With no cursor, nothing is acknowledged and nothing is deleted.
pub async fn purge(client: &impl GenericClient, acknowledged: &[Cursor]) -> Result<u64> {
    if acknowledged.is_empty() {
        return Ok(0);
    }
    let snapshots: Vec<String> = acknowledged.iter().map(|c| c.snapshot.clone()).collect();
    let n = client
        .execute(
            "DELETE FROM branchsync.change_log WHERE xid < (SELECT min(pg_snapshot_xmax(s::pg_snapshot)) FROM unnest($1::text[]) s) \
             AND NOT EXISTS (SELECT 1 FROM unnest($1::text[]) s WHERE NOT pg_visible_in_snapshot(xid, s::pg_snapshot))",
            &[&snapshots],
        )
        .await?;
    Ok(n)
}
