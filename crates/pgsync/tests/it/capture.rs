//! Change capture and cursors: snapshot watermarks deliver late commits, applied changes are not echoed, a
//! cursor is refused by any other database, acknowledged changes are purged.

use pgsync::{Error, ExportOptions, ExportSession};
use protocol::cursor::CursorError;
use protocol::payload::{Statement, TableName};

use crate::support::*;

fn upserted_ids(payloads: &[protocol::payload::Payload], table: &str) -> Vec<String> {
    payloads
        .iter()
        .flat_map(|p| &p.statements)
        .filter_map(|s| match s {
            Statement::Upsert { table: t, rows, .. } if t.name == table => {
                Some(rows.iter().map(|r| r[0].clone().unwrap()).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::test]
async fn a_transaction_open_across_an_export_is_delivered_by_the_next_one() {
    let tables = synced();
    let (url, office, catalog) = database("snap", &tables).await;
    load(&office, 3).await;
    let (_, cursor0) = export(&url, &catalog, None, None).await;

    // A long transaction writes before the export and commits after it; meanwhile others keep committing.
    let long = pgsync::connect(&url).await.unwrap();
    long.batch_execute(
        "BEGIN; INSERT INTO product (id, code, name, price) VALUES (50001, 'LONG', 'long transaction', 1)",
    )
    .await
    .unwrap();
    let writer = pgsync::connect(&url).await.unwrap();
    writer
        .batch_execute("INSERT INTO product (id, code, name, price) VALUES (50002, 'EARLY', 'committed before', 1)")
        .await
        .unwrap();
    let (chunks1, cursor1) = export(&url, &catalog, Some(&cursor0), None).await;
    writer
        .batch_execute("INSERT INTO product (id, code, name, price) VALUES (50003, 'LATE', 'committed after', 1)")
        .await
        .unwrap();
    long.batch_execute("COMMIT").await.unwrap();

    let first = upserted_ids(&read(&chunks1, &tables), "product");
    assert_eq!(first, vec!["50002".to_string()]);
    let (chunks2, cursor2) = export(&url, &catalog, Some(&cursor1), None).await;
    let mut second = upserted_ids(&read(&chunks2, &tables), "product");
    second.sort();
    assert_eq!(second, vec!["50001".to_string(), "50003".to_string()], "the long transaction must not be skipped");
    let (chunks3, _) = export(&url, &catalog, Some(&cursor2), None).await;
    assert!(
        upserted_ids(&read(&chunks3, &tables), "product").is_empty(),
        "nothing is delivered twice once acknowledged"
    );
}

#[tokio::test]
async fn applied_changes_carry_their_origin_and_are_not_exported_back_to_it() {
    let tables = synced();
    let (office_url, office, catalog) = database("echo_office", &tables).await;
    let (shop_url, mut shop, shop_catalog) = database("echo_shop", &tables).await;
    load(&office, 5).await;
    let (_, shop_cursor) = export(&shop_url, &shop_catalog, None, None).await;
    let (chunks, _) = export(&office_url, &catalog, None, None).await;
    apply(&mut shop, &shop_catalog, &chunks, "office").await;

    let origins = shop.query("SELECT DISTINCT origin FROM branchsync.change_log", &[]).await.unwrap();
    let origins: Vec<String> = origins.iter().map(|r| r.get(0)).collect();
    assert_eq!(origins, vec!["office".to_string()]);

    // Towards the office nothing goes back; towards anyone else the rows still flow (shop A → office → shop B).
    let (back, _) = export(&shop_url, &shop_catalog, Some(&shop_cursor), Some("office")).await;
    assert!(read(&back, &tables).iter().all(|p| p.statements.is_empty()));
    let (onward, _) = export(&shop_url, &shop_catalog, Some(&shop_cursor), Some("shop-b")).await;
    assert!(!upserted_ids(&read(&onward, &tables), "person").is_empty());

    // A local change made after the applied one does travel back.
    shop.batch_execute("UPDATE person SET name = 'changed at the shop' WHERE id = 1").await.unwrap();
    let (back, _) = export(&shop_url, &shop_catalog, Some(&shop_cursor), Some("office")).await;
    assert_eq!(upserted_ids(&read(&back, &tables), "person"), vec!["1".to_string()]);
}

#[tokio::test]
async fn a_cursor_from_another_database_or_an_earlier_sync_schema_is_refused() {
    let tables = synced();
    let (a_url, _a, catalog) = database("cur_a", &tables).await;
    let (b_url, b, b_catalog) = database("cur_b", &tables).await;
    let (_, cursor_a) = export(&a_url, &catalog, None, None).await;
    let (_, cursor_b) = export(&b_url, &b_catalog, None, None).await;

    let begin = |url: String, catalog: pgsync::Catalog, since: String| async move {
        let client = pgsync::connect(&url).await.unwrap();
        let options = ExportOptions { since: Some(since.parse().unwrap()), ..Default::default() };
        ExportSession::begin(client, catalog, options).await
    };
    assert!(matches!(
        begin(b_url.clone(), b_catalog.clone(), cursor_a).await,
        Err(Error::Cursor(CursorError::Foreign))
    ));
    assert!(begin(b_url.clone(), b_catalog.clone(), cursor_b.clone()).await.is_ok());

    // `clean` reinstalls the sync schema with a new epoch: cursors issued before are refused too.
    pgsync::schema::reinstall(&b).await.unwrap();
    assert!(matches!(begin(b_url, b_catalog, cursor_b).await, Err(Error::Cursor(CursorError::Foreign))));
}

#[tokio::test]
async fn acknowledged_changes_are_purged_and_pending_ones_kept() {
    let tables = synced();
    let (url, client, catalog) = database("purge", &tables).await;
    client.batch_execute("INSERT INTO person (id, name) VALUES (1, 'a'), (2, 'b')").await.unwrap();
    let (_, cursor) = export(&url, &catalog, None, None).await;
    client.batch_execute("UPDATE person SET name = 'c' WHERE id = 2").await.unwrap();
    let cursor: protocol::cursor::Cursor = cursor.parse().unwrap();
    assert_eq!(pgsync::schema::pending_changes(&client, Some(&cursor), None).await.unwrap(), 1);
    let purged = pgsync::schema::purge(&client, std::slice::from_ref(&cursor)).await.unwrap();
    assert_eq!(purged, 2);
    let left: i64 = client.query_one("SELECT count(*) FROM branchsync.change_log", &[]).await.unwrap().get(0);
    assert_eq!(left, 1, "the change after the cursor stays until acknowledged");
    let (chunks, _) = export(&url, &catalog, Some(&cursor.to_string()), None).await;
    assert_eq!(upserted_ids(&read(&chunks, &tables), "person"), vec!["2".to_string()]);
}

#[tokio::test]
async fn deletes_and_key_changes_are_captured_and_truncate_is_refused() {
    let tables = synced();
    let (url, client, catalog) = database("deletes", &tables).await;
    client.batch_execute("INSERT INTO parameter (name, value) VALUES ('a', '1'), ('b', '2')").await.unwrap();
    let (_, cursor) = export(&url, &catalog, None, None).await;
    client
        .batch_execute("DELETE FROM parameter WHERE name = 'a'; UPDATE parameter SET name = 'c' WHERE name = 'b'")
        .await
        .unwrap();
    let (chunks, _) = export(&url, &catalog, Some(&cursor), None).await;
    let payloads = read(&chunks, &tables);
    let deleted: Vec<String> = payloads
        .iter()
        .flat_map(|p| &p.statements)
        .filter_map(|s| match s {
            Statement::Delete { table, rows, .. } if table == &TableName::new("public", "parameter") => {
                Some(rows.to_vec())
            }
            _ => None,
        })
        .flatten()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(deleted, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(upserted_ids(&payloads, "parameter"), vec!["c".to_string()]);

    let err = client.batch_execute("TRUNCATE parameter").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("0A000"));
}
