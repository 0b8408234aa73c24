//! Ordered migrations run each step once, in order, and bring an older database up to date; an import refuses a
//! replacing upload where replacement is not accepted.

use std::collections::BTreeSet;

use pgsync::{Error, ImportOptions};
use protocol::payload::read_sql;

use crate::support::*;

#[tokio::test]
async fn each_migration_step_runs_once_in_order_and_a_later_build_adds_only_its_new_steps() {
    let (_, client, _) = database("migrate", &[]).await;
    // Not idempotent on purpose: running a step twice would fail.
    let v1 = "CREATE TABLE branchsync.t (a int)";
    let v2 = "ALTER TABLE branchsync.t ADD COLUMN b int";
    let v3 = "ALTER TABLE branchsync.t ADD COLUMN c int";
    assert_eq!(pgsync::migrate::migrate(&client, "test", &[v1, v2]).await.unwrap(), 0);
    assert_eq!(pgsync::migrate::migrate(&client, "test", &[v1, v2]).await.unwrap(), 2);
    assert_eq!(pgsync::migrate::migrate(&client, "test", &[v1, v2, v3]).await.unwrap(), 2);
    let columns: Vec<String> = client
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = 'branchsync.t'::regclass AND attnum > 0 ORDER BY attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns, ["a", "b", "c"]);
    let version: i32 = client
        .query_one("SELECT version FROM branchsync.schema_version WHERE component = 'test'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 3);
    // The shared sync schema records its own version beside it, and installing again changes nothing.
    let identity = pgsync::schema::identity(&client).await.unwrap();
    assert_eq!(pgsync::schema::install(&client).await.unwrap(), identity);
}

#[tokio::test]
async fn a_replacing_chunk_is_refused_where_replacement_is_not_accepted_and_nothing_is_applied() {
    let tables = synced();
    let (_, mut office, catalog) = database("noreplace", &[]).await;
    office.batch_execute("INSERT INTO person (id, name) VALUES (1, 'kept'), (2, 'kept too')").await.unwrap();
    let before = checksums(&office, &catalog).await;
    let allowed: BTreeSet<_> = tables.iter().cloned().collect();
    let replacing = read_sql(
        "-- replace: public.person\nINSERT INTO person (id, name) VALUES (3, 'only me') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;",
        &allowed,
    )
    .unwrap();
    assert_eq!(replacing.header.replace.len(), 1);
    let options = ImportOptions { origin: "shop-1".into(), accept_replace: false, ..Default::default() };
    let err = pgsync::apply(&mut office, &catalog, std::slice::from_ref(&replacing), options).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { chunk: 1, statement: 0, .. }), "{err:?}");
    assert_eq!(checksums(&office, &catalog).await, before, "nothing applied, nothing pruned");
    // Where it is accepted (the shop taking the office's complete synchronisation), the rows not carried go.
    let options = ImportOptions { origin: "office".into(), accept_replace: true, ..Default::default() };
    let imported = pgsync::apply(&mut office, &catalog, &[replacing], options).await.unwrap();
    assert_eq!(imported.report.pruned(), 2);
    let names: Vec<String> =
        office.query("SELECT name FROM person ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["only me"]);
}
