//! Writer → reader → apply carries every value exactly, full and incremental, in foreign-key order.

use pgsync::catalog::order_by_foreign_keys;

use crate::support::*;

#[tokio::test]
async fn full_and_incremental_exports_round_trip_every_type_exactly() {
    let tables = synced();
    let (office_url, office, catalog) = database("rt_office", &tables).await;
    let (_shop_url, mut shop, shop_catalog) = database("rt_shop", &[]).await;
    load(&office, 7).await;

    let (chunks, cursor) = export(&office_url, &catalog, None, None).await;
    assert!(chunks.len() > 3, "small chunks expected, got {}", chunks.len());
    apply(&mut shop, &shop_catalog, &chunks, "office").await;
    let office_sums = checksums(&office, &catalog).await;
    assert!(office_sums.iter().all(|c| c.rows > 0));
    assert_eq!(office_sums, checksums(&shop, &shop_catalog).await);

    // Awkward updates, inserts and deletes, then an incremental export from the cursor.
    office
        .batch_execute(
            "UPDATE product SET name = E'tab\\there ''quoted'' \\\\ back', description = NULL, image = '\\x00ff10'::bytea, \
                 attributes = '{\"k\": [1, 2.5, \"é\"]}', price = price + 0.01 WHERE id % 7 = 0;
             INSERT INTO product (code, name, price, updated_at) VALUES ('N1', E'line\\nbreak 日本', 1.5, '2026-01-01 00:00:00.123456+05:30');
             DELETE FROM sale_item WHERE sale_id IN (SELECT id FROM sale WHERE id % 5 = 0);
             DELETE FROM payment WHERE sale_id IN (SELECT id FROM sale WHERE id % 5 = 0);
             DELETE FROM sale WHERE id % 5 = 0;
             UPDATE parameter SET value = NULL WHERE name LIKE 'param.1.%';
             UPDATE person SET note = 'multi\nline', birth_date = NULL WHERE id % 3 = 0;",
        )
        .await
        .unwrap();
    let (chunks, _) = export(&office_url, &catalog, Some(&cursor), None).await;
    let report = apply(&mut shop, &shop_catalog, &chunks, "office").await;
    assert!(report.tables.iter().any(|(t, c)| t.name == "sale" && c.deleted > 0));
    assert_eq!(checksums(&office, &catalog).await, checksums(&shop, &shop_catalog).await);
}

#[tokio::test]
async fn parents_children_and_deletes_in_one_payload_apply_in_foreign_key_order() {
    let tables = synced();
    let (office_url, office, catalog) = database("fk_office", &tables).await;
    let (_shop_url, mut shop, shop_catalog) = database("fk_shop", &[]).await;
    load(&office, 11).await;
    let (chunks, cursor) = export(&office_url, &catalog, None, None).await;
    apply(&mut shop, &shop_catalog, &chunks, "office").await;

    // One window holding new parents with new children, and deleted children with their deleted parents.
    office
        .batch_execute(
            "INSERT INTO person (id, name) VALUES (9001, 'new parent');
             INSERT INTO sale (id, person_id, sold_at, total, status, receipt) VALUES (9001, 9001, now(), 3, 'paid', gen_random_uuid());
             INSERT INTO sale_item (sale_id, line_no, product_id, quantity, unit_price) VALUES (9001, 1, 1, 1, 3);
             INSERT INTO payment (sale_id, method, amount, paid_at) VALUES (9001, 'cash', 3, now());
             DELETE FROM sale_item WHERE sale_id IN (1, 2);
             DELETE FROM payment WHERE sale_id IN (1, 2);
             DELETE FROM sale WHERE id IN (1, 2);
             UPDATE sale SET person_id = NULL WHERE person_id = 5;
             DELETE FROM person WHERE id = 5;",
        )
        .await
        .unwrap();
    let (chunks, _) = export(&office_url, &catalog, Some(&cursor), None).await;
    let payloads = read(&chunks, &synced());
    assert_eq!(payloads.len(), 1, "the whole window fits one chunk");
    apply(&mut shop, &shop_catalog, &chunks, "office").await;
    assert_eq!(checksums(&office, &catalog).await, checksums(&shop, &shop_catalog).await);

    // The order comes from the foreign-key graph.
    let order: Vec<String> =
        order_by_foreign_keys(catalog.tables().to_vec()).unwrap().iter().map(|t| t.name.name.clone()).collect();
    let pos = |n: &str| order.iter().position(|x| x == n).unwrap();
    assert!(pos("person") < pos("sale") && pos("sale") < pos("sale_item") && pos("sale") < pos("payment"));
    assert!(pos("product") < pos("sale_item") && pos("service") < pos("sale_item"));
}
