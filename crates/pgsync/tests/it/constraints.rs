//! Constraints a net-state upload meets half-way: values of a secondary `UNIQUE` column swapped between rows,
//! rows that reference a row arriving later (a tree, a cycle between two tables). Declared `DEFERRABLE`, they
//! are checked once, when the import ends; not deferrable, a claimed unique value is given up by its row until
//! that row arrives, and a self-reference to a later row is set when the import ends. A real violation is still
//! refused, naming its table, with nothing applied.

use std::collections::BTreeSet;

use pgsync::{Catalog, Error, ImportOptions};
use protocol::payload::{TableName, read_sql};
use tokio_postgres::Client;

const DDL: &str = "
CREATE TABLE item (id int PRIMARY KEY, barcode text NOT NULL UNIQUE DEFERRABLE, name text);
CREATE TABLE plain_item (id int PRIMARY KEY, barcode text NOT NULL UNIQUE);
CREATE TABLE shelf_item (id int PRIMARY KEY, barcode text UNIQUE, aisle int, slot int, UNIQUE (aisle, slot));
CREATE TABLE category (id int PRIMARY KEY, parent int REFERENCES category DEFERRABLE, name text);
CREATE TABLE tree (id int PRIMARY KEY, parent int REFERENCES tree, name text);
CREATE TABLE shelf (id int PRIMARY KEY, first_bin int);
CREATE TABLE bin (id int PRIMARY KEY, shelf_id int NOT NULL REFERENCES shelf);
ALTER TABLE shelf ADD FOREIGN KEY (first_bin) REFERENCES bin DEFERRABLE;
INSERT INTO item VALUES (1, 'A', 'soap'), (2, 'B', 'brush');
INSERT INTO plain_item VALUES (1, 'A'), (2, 'B');
INSERT INTO shelf_item VALUES (1, 'A', 1, 1), (2, 'B', 1, 2), (3, 'C', 2, 1), (4, NULL, NULL, NULL);
";

fn tables() -> Vec<TableName> {
    ["item", "plain_item", "shelf_item", "tree", "category", "shelf", "bin"]
        .iter()
        .map(|t| TableName::new("public", *t))
        .collect()
}

async fn database() -> (Client, Catalog) {
    let conninfo = testbed::shared_cluster().create_database("constraints").await.unwrap();
    let client = pgsync::connect(&conninfo).await.unwrap();
    client.batch_execute(DDL).await.unwrap();
    pgsync::schema::install(&client).await.unwrap();
    // The cycle shelf -> bin -> shelf is allowed: one of its references is deferrable.
    let catalog = Catalog::load(&client, &tables()).await.unwrap();
    (client, catalog)
}

async fn apply(client: &mut Client, catalog: &Catalog, sql: &str) -> pgsync::Result<pgsync::Imported> {
    let allowed: BTreeSet<TableName> = tables().into_iter().collect();
    let payload = read_sql(sql, &allowed).unwrap();
    pgsync::apply(client, catalog, &[payload], ImportOptions { origin: "office".into(), ..Default::default() }).await
}

async fn rows(client: &Client, sql: &str) -> Vec<String> {
    client.query(sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn deferrable_swaps_and_forward_references_apply_and_a_real_violation_is_refused_at_the_end() {
    let (mut client, catalog) = database().await;
    let items = "SELECT id || ' ' || barcode FROM item ORDER BY id";
    apply(
        &mut client,
        &catalog,
        "INSERT INTO item (id, barcode) VALUES (1, 'B') ON CONFLICT (id) DO UPDATE SET barcode = EXCLUDED.barcode;
         INSERT INTO item (id, barcode) VALUES (2, 'A') ON CONFLICT (id) DO UPDATE SET barcode = EXCLUDED.barcode;
         INSERT INTO category (id, parent, name) VALUES (1, 3, 'soap'), (2, 3, 'brushes') ON CONFLICT (id) DO NOTHING;
         INSERT INTO category (id, parent, name) VALUES (3, NULL, 'household') ON CONFLICT (id) DO NOTHING;
         INSERT INTO shelf (id, first_bin) VALUES (1, 10) ON CONFLICT (id) DO NOTHING;
         INSERT INTO bin (id, shelf_id) VALUES (10, 1) ON CONFLICT (id) DO NOTHING;",
    )
    .await
    .unwrap();
    assert_eq!(rows(&client, items).await, ["1 B", "2 A"], "the swap applies, across statements");
    assert_eq!(
        rows(&client, "SELECT id || '<' || coalesce(parent, 0) FROM category ORDER BY id").await,
        ["1<3", "2<3", "3<0"]
    );
    assert_eq!(
        rows(&client, "SELECT s.id || ' ' || b.id FROM shelf s JOIN bin b ON b.id = s.first_bin").await,
        ["1 10"]
    );

    // A barcode another row keeps, and a category under one that never arrives: refused at the end, nothing
    // of the upload applied (the first statement was fine on its own).
    let before = rows(&client, items).await;
    for (sql, sqlstate) in [
        (
            "INSERT INTO item (id, barcode) VALUES (3, 'C') ON CONFLICT (id) DO NOTHING;
          INSERT INTO item (id, barcode) VALUES (4, 'A') ON CONFLICT (id) DO NOTHING;",
            "23505",
        ),
        (
            "INSERT INTO item (id, barcode) VALUES (3, 'C') ON CONFLICT (id) DO NOTHING;
          INSERT INTO category (id, parent) VALUES (4, 99) ON CONFLICT (id) DO NOTHING;",
            "23503",
        ),
    ] {
        match apply(&mut client, &catalog, sql).await.unwrap_err() {
            Error::Rejected { sqlstate: got, table, .. } => {
                assert_eq!(got.as_deref(), Some(sqlstate));
                assert!(table.is_some(), "the stuck row's table is named");
            }
            other => panic!("expected a rejected upload, got {other:?}"),
        }
        assert_eq!(rows(&client, items).await, before);
        assert_eq!(rows(&client, "SELECT count(*)::text FROM category").await, ["3"]);
    }

    // Non-deferrable unique keys with a nullable column: a swap across statements and a rotation within one
    // apply (the row whose value is claimed gives it up until its own row arrives).
    let shelf_items = "SELECT id || ' ' || coalesce(barcode, '-') || ' ' || coalesce(aisle || '/' || slot, '-') FROM shelf_item ORDER BY id";
    let upsert =
        "ON CONFLICT (id) DO UPDATE SET barcode = EXCLUDED.barcode, aisle = EXCLUDED.aisle, slot = EXCLUDED.slot;";
    apply(
        &mut client,
        &catalog,
        &format!(
            "INSERT INTO shelf_item (id, barcode, aisle, slot) VALUES (1, 'B', 1, 2) {upsert}
             INSERT INTO shelf_item (id, barcode, aisle, slot) VALUES (2, 'C', 2, 1), (3, 'A', 1, 1) {upsert}
             INSERT INTO shelf_item (id, barcode, aisle, slot) VALUES (4, NULL, NULL, NULL) {upsert}"
        ),
    )
    .await
    .unwrap();
    assert_eq!(rows(&client, shelf_items).await, ["1 B 1/2", "2 C 2/1", "3 A 1/1", "4 - -"]);
    // A value claimed from a row the upload leaves alone is the sender's violation: refused at the end with
    // 23505 and the table, and the row that would have given its value up keeps it.
    let before = rows(&client, shelf_items).await;
    let err = apply(
        &mut client,
        &catalog,
        &format!("INSERT INTO shelf_item (id, barcode, aisle, slot) VALUES (1, 'C', 1, 2), (5, 'E', 9, 9) {upsert}"),
    )
    .await
    .unwrap_err();
    match err {
        Error::Rejected { sqlstate, table, .. } => {
            assert_eq!(sqlstate.as_deref(), Some("23505"));
            assert_eq!(table, Some(TableName::new("public", "shelf_item")));
        }
        other => panic!("expected a rejected upload, got {other:?}"),
    }
    assert_eq!(rows(&client, shelf_items).await, before);

    // A non-deferrable self-reference: children before their parents, in other statements, into an empty table
    // and then re-parented under a row that arrives later; a parent that never arrives is refused with 23503.
    let tree = "SELECT id || '<' || coalesce(parent, 0) FROM tree ORDER BY id";
    let upsert = "ON CONFLICT (id) DO UPDATE SET parent = EXCLUDED.parent";
    apply(
        &mut client,
        &catalog,
        &format!(
            "INSERT INTO tree (id, parent) VALUES (1, 3), (2, 1) {upsert};
             INSERT INTO tree (id, parent) VALUES (3, NULL) {upsert};"
        ),
    )
    .await
    .unwrap();
    assert_eq!(rows(&client, tree).await, ["1<3", "2<1", "3<0"]);
    apply(
        &mut client,
        &catalog,
        &format!(
            "INSERT INTO tree (id, parent) VALUES (3, 6) {upsert};
             INSERT INTO tree (id, parent) VALUES (6, NULL), (7, 1) {upsert};"
        ),
    )
    .await
    .unwrap();
    assert_eq!(rows(&client, tree).await, ["1<3", "2<1", "3<6", "6<0", "7<1"]);
    let err = apply(
        &mut client,
        &catalog,
        &format!("INSERT INTO tree (id, parent) VALUES (8, 1), (9, 99) {upsert}; INSERT INTO tree (id, parent) VALUES (10, 8) {upsert};"),
    )
    .await
    .unwrap_err();
    match err {
        Error::Rejected { sqlstate, table, .. } => {
            assert_eq!(sqlstate.as_deref(), Some("23503"));
            assert_eq!(table, Some(TableName::new("public", "tree")));
        }
        other => panic!("expected a rejected upload, got {other:?}"),
    }
    assert_eq!(rows(&client, tree).await, ["1<3", "2<1", "3<6", "6<0", "7<1"], "nothing applied");

    // A non-deferrable unique column that is NOT NULL cannot give its value up: a swap is refused with its SQLSTATE and table, nothing applied.
    let err = apply(
        &mut client,
        &catalog,
        "INSERT INTO plain_item (id, barcode) VALUES (1, 'B'), (2, 'A') ON CONFLICT (id) DO UPDATE SET barcode = EXCLUDED.barcode;",
    )
    .await
    .unwrap_err();
    match err {
        Error::Rejected { sqlstate, table, .. } => {
            assert_eq!(sqlstate.as_deref(), Some("23505"));
            assert_eq!(table, Some(TableName::new("public", "plain_item")));
        }
        other => panic!("expected a rejected upload, got {other:?}"),
    }
    assert_eq!(rows(&client, "SELECT id || ' ' || barcode FROM plain_item ORDER BY id").await, ["1 A", "2 B"]);
}
