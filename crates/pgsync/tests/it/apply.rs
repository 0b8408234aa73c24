//! Apply is all or nothing with its cursor, defers incoming rows that have local changes, refuses what does
//! not fit the receiver's schema, and accepts the public grammar as a third party writes it.

use std::collections::BTreeSet;

use pgsync::{Error, Guard, ImportOptions, ImportSession};
use protocol::payload::{ColumnDecl, Header, read_sql};
use protocol::schema::SchemaMismatch;

use crate::support::*;

async fn cursor_of(client: &tokio_postgres::Client) -> Option<String> {
    pgsync::peer_cursor::read(client, "office").await.unwrap()
}

#[tokio::test]
async fn a_payload_that_fails_in_its_middle_changes_neither_data_nor_cursor() {
    let tables = synced();
    let (office_url, office, catalog) = database("atomic_office", &tables).await;
    let (_shop_url, mut shop, shop_catalog) = database("atomic_shop", &[]).await;
    load(&office, 9).await;
    let (chunks, _) = export(&office_url, &catalog, None, None).await;
    apply(&mut shop, &shop_catalog, &chunks, "office").await;
    let before = checksums(&shop, &shop_catalog).await;
    let cursor_before = cursor_of(&shop).await;
    assert!(cursor_before.is_some());

    let allowed: BTreeSet<_> = tables.iter().cloned().collect();
    let good = read_sql(
        "INSERT INTO product (id, code, name, price) VALUES (1, 'X', 'changed', 9.99) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;",
        &allowed,
    )
    .unwrap();
    let mut bad = read_sql(
        "DELETE FROM parameter WHERE name = 'nothing';
         INSERT INTO product (id, code, name, price) VALUES (2, 'Y', 'bad price', 'not a number') ON CONFLICT (id) DO UPDATE SET price = EXCLUDED.price;
         DELETE FROM parameter WHERE name IN ('x');",
        &allowed,
    )
    .unwrap();
    bad.header.cursor = Some("would-be cursor".into());
    let options = ImportOptions { origin: "office".into(), record_peer_cursor: true, ..Default::default() };
    let err = pgsync::apply(&mut shop, &shop_catalog, &[good, bad], options.clone()).await.unwrap_err();
    match &err {
        Error::Rejected { chunk, statement, sqlstate, .. } => {
            assert_eq!((*chunk, *statement), (2, 2));
            assert_eq!(sqlstate.as_deref(), Some("22P02"));
        }
        other => panic!("expected a rejected statement, got {other:?}"),
    }
    assert_eq!(checksums(&shop, &shop_catalog).await, before, "nothing of the first chunk may remain");
    assert_eq!(cursor_of(&shop).await, cursor_before);

    // A foreign-key violation is refused the same way.
    let orphan = read_sql(
        "INSERT INTO sale_item (sale_id, line_no, quantity, unit_price) VALUES (999999, 1, 1, 1) ON CONFLICT (sale_id, line_no) DO NOTHING",
        &allowed,
    )
    .unwrap();
    let err = pgsync::apply(&mut shop, &shop_catalog, &[orphan], options).await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("23503"));
    assert_eq!(checksums(&shop, &shop_catalog).await, before);
}

#[tokio::test]
async fn schema_differences_are_refused_naming_table_and_column() {
    let tables = synced();
    let (_url, mut shop, catalog) = database("schema_diff", &[]).await;
    let allowed: BTreeSet<_> = tables.iter().cloned().collect();
    let mut payload =
        read_sql("INSERT INTO service (id, name, price) VALUES (1, 's', 1) ON CONFLICT (id) DO NOTHING", &allowed)
            .unwrap();
    let mut decls = catalog.get(&tables.iter().find(|t| t.name == "service").unwrap().clone()).unwrap().column_decls();
    decls.iter_mut().find(|c| c.name == "price").unwrap().type_sql = "numeric".into();
    payload.header =
        Header { tables: vec![(protocol::payload::TableName::new("public", "service"), decls)], ..Default::default() };
    let err = pgsync::apply(&mut shop, &catalog, &[payload], ImportOptions::default()).await.unwrap_err();
    assert!(
        matches!(err, Error::Schema(SchemaMismatch::TypeDiffers { ref column, .. }) if column == "price"),
        "{err:?}"
    );

    let unknown = read_sql(
        "INSERT INTO service (id, name, price, colour) VALUES (1, 's', 1, 'red') ON CONFLICT (id) DO NOTHING",
        &allowed,
    )
    .unwrap();
    let err = pgsync::apply(&mut shop, &catalog, &[unknown], ImportOptions::default()).await.unwrap_err();
    assert!(
        matches!(err, Error::Schema(SchemaMismatch::MissingColumn { ref column, .. }) if column == "colour"),
        "{err:?}"
    );

    let not_pk = read_sql("DELETE FROM service WHERE name = 's'", &allowed).unwrap();
    let err = pgsync::apply(&mut shop, &catalog, &[not_pk], ImportOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { statement: 1, .. }), "{err:?}");
    let _ = ColumnDecl { name: String::new(), type_sql: String::new() };
}

#[tokio::test]
async fn incoming_rows_with_unacknowledged_local_changes_are_deferred() {
    let tables = synced();
    let (shop_url, mut shop, catalog) = database("defer", &tables).await;
    shop.batch_execute("SELECT set_config('branchsync.origin', 'office', false); INSERT INTO person (id, name) VALUES (1, 'office 1'), (2, 'office 2'); RESET branchsync.origin")
        .await
        .unwrap();
    shop.batch_execute("UPDATE person SET name = 'edited at the shop' WHERE id = 1").await.unwrap();
    let allowed: BTreeSet<_> = tables.iter().cloned().collect();
    let mut incoming = read_sql(
        "insert into PERSON (id, name) values (1, 'office edit'), (2, 'office edit') on conflict (id) do update set name = excluded.name",
        &allowed,
    )
    .unwrap();
    incoming.header.cursor = Some("the office's cursor".into());
    let options = ImportOptions {
        origin: "office".into(),
        guard: Guard::Defer([protocol::payload::TableName::new("public", "person")].into()),
        record_peer_cursor: true,
        ..Default::default()
    };
    let report =
        pgsync::apply(&mut shop, &catalog, std::slice::from_ref(&incoming), options.clone()).await.unwrap().report;
    assert_eq!(report.deferred(), 1);
    let names: Vec<String> =
        shop.query("SELECT name FROM person ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(names, vec!["edited at the shop".to_string(), "office edit".to_string()]);
    // What was deferred is not applied: the shop keeps its older cursor, so the office sends it again and
    // decides it against the shop's edit.
    assert_eq!(cursor_of(&shop).await, None);
    // Once the office has the shop's edit (acknowledged), the same upload applies whole and moves the cursor.
    shop.batch_execute("DELETE FROM branchsync.change_log").await.unwrap();
    let report = pgsync::apply(&mut shop, &catalog, &[incoming], options).await.unwrap().report;
    assert_eq!(report.deferred(), 0);
    assert_eq!(cursor_of(&shop).await.as_deref(), Some("the office's cursor"));
    let _ = shop_url;
}

#[tokio::test]
async fn a_hand_written_payload_in_the_documented_grammar_applies() {
    let tables = synced();
    let (_url, mut shop, catalog) = database("by_hand", &[]).await;
    let allowed: BTreeSet<_> = tables.iter().cloned().collect();
    let text = "-- written by hand
        insert INTO public.\"product\" (\"id\", code, NAME, price, active, attributes)
          values (10, 'A', 'It''s here', -1.5e0, TRUE, '{\"a\": 1}'), (11, 'B', E'two\\nlines', 2, false, NULL)
          ON CONFLICT (id) DO UPDATE SET name = excluded.name, price = EXCLUDED.price;
        COPY service (id, name, price) FROM STDIN;
1\tcopy\\twith tab\t3.50
2\t\\N\t4
\\.
        delete from product where id = 11;";
    let err = read_sql(text, &allowed);
    // The service row with a NULL name violates NOT NULL: the whole payload is refused.
    let payload = err.unwrap();
    let e = pgsync::apply(&mut shop, &catalog, &[payload], ImportOptions::default()).await.unwrap_err();
    assert_eq!(e.sqlstate(), Some("23502"));
    let fixed = read_sql(&text.replace("2\t\\N\t4", "2\tplain\t4"), &allowed).unwrap();
    pgsync::apply(&mut shop, &catalog, &[fixed], ImportOptions::default()).await.unwrap();
    let rows: Vec<(i64, String, String)> = shop
        .query("SELECT id, name, price::text FROM product UNION ALL SELECT id, name, price::text FROM service ORDER BY 1, 2", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, "copy\twith tab".into(), "3.50".into()),
            (2, "plain".into(), "4.00".into()),
            (10, "It's here".into(), "-1.50".into())
        ]
    );
}

#[tokio::test]
async fn set_based_foreign_key_checks_refuse_orphans_lock_parents_and_leave_user_triggers_firing() {
    let tables = synced();
    let (office_url, office, catalog) = database("setfk_office", &tables).await;
    let (shop_url, mut shop, shop_catalog) = database("setfk_shop", &[]).await;
    load(&office, 5).await;
    let (chunks, _) = export(&office_url, &catalog, None, None).await;
    apply(&mut shop, &shop_catalog, &chunks, "office").await;
    let product: i64 = shop.query_one("SELECT min(id) FROM product", &[]).await.unwrap().get(0);
    let allowed: BTreeSet<_> = tables.iter().cloned().collect();
    let options = ImportOptions { origin: "shop-1".into(), set_based_foreign_keys: true, ..Default::default() };
    // Each statement carries 1,000 rows or more, as set-based checks apply only to large statements.
    let sale = |batch: i64, item_product: &str| {
        let ids: Vec<i64> = (0..1000).map(|i| batch * 10_000 + i).collect();
        let sales: Vec<String> = ids
            .iter()
            .map(|id| format!("({id}, NULL, '2026-01-01 10:00+00', 5, 'done', '00000000-0000-0000-0000-{id:012}')"))
            .collect();
        let items: Vec<String> = ids
            .iter()
            .map(|id| format!("({id}, 1, {item_product}, NULL, 1, 5), ({id}, 2, NULL, NULL, 1, 0)"))
            .collect();
        read_sql(
            &format!(
                "INSERT INTO sale (id, person_id, sold_at, total, status, receipt) VALUES {} \
                 ON CONFLICT (id) DO UPDATE SET total = EXCLUDED.total;
                 INSERT INTO sale_item (sale_id, line_no, product_id, service_id, quantity, unit_price) VALUES {} \
                 ON CONFLICT (sale_id, line_no) DO UPDATE SET product_id = EXCLUDED.product_id",
                sales.join(", "),
                items.join(", ")
            ),
            &allowed,
        )
        .unwrap()
    };

    // Parents present (a NULL key matches nothing and is fine, as MATCH SIMPLE says): applied.
    let report = pgsync::apply(&mut shop, &shop_catalog, &[sale(1, &product.to_string())], options.clone())
        .await
        .unwrap()
        .report;
    assert_eq!(report.upserted(), 3000);
    let set_based = |report: &pgsync::ApplyReport| report.tables.iter().map(|(_, c)| c.set_based).sum::<u64>();
    assert_eq!(set_based(&report), 3000, "sale and sale_item have no triggers of their own");

    // A missing parent refuses the statement as PostgreSQL's own check does, and nothing of the payload stays.
    let before = checksums(&shop, &shop_catalog).await;
    let err = pgsync::apply(&mut shop, &shop_catalog, &[sale(2, "999999999")], options.clone()).await.unwrap_err();
    match &err {
        Error::Rejected { chunk, statement, sqlstate, .. } => {
            assert_eq!((*chunk, *statement), (1, 2));
            assert_eq!(sqlstate.as_deref(), Some("23503"));
        }
        other => panic!("expected a rejected statement, got {other:?}"),
    }
    assert_eq!(checksums(&shop, &shop_catalog).await, before);

    // The referenced rows are locked until the apply commits: nobody can delete a parent under it.
    let tx = shop.transaction().await.unwrap();
    let mut import = ImportSession::begin(&tx, &shop_catalog, options.clone()).await.unwrap();
    import.chunk(&tx, &sale(3, &product.to_string())).await.unwrap();
    let other = pgsync::connect(&shop_url).await.unwrap();
    let err = other.execute("SELECT 1 FROM product WHERE id = $1 FOR UPDATE NOWAIT", &[&product]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("55P03"));
    tx.commit().await.unwrap();

    // A table with a trigger of its own keeps the per-row path, so the trigger still fires.
    shop.batch_execute(
        "CREATE TABLE item_audit (sale_id bigint);
         CREATE FUNCTION audit_item() RETURNS trigger LANGUAGE plpgsql AS
           $$BEGIN INSERT INTO item_audit VALUES (NEW.sale_id); RETURN NEW; END$$;
         CREATE TRIGGER audit_item AFTER INSERT ON sale_item FOR EACH ROW EXECUTE FUNCTION audit_item();",
    )
    .await
    .unwrap();
    let report = pgsync::apply(&mut shop, &shop_catalog, &[sale(4, &product.to_string())], options.clone())
        .await
        .unwrap()
        .report;
    assert_eq!(set_based(&report), 1000, "only the sales went set-based");
    let count = |row: tokio_postgres::Row| row.get::<_, i64>(0);
    let audited =
        shop.query_one("SELECT count(*) FROM item_audit WHERE sale_id BETWEEN 40000 AND 49999", &[]).await.unwrap();
    assert_eq!(count(audited), 2000);
    let items = shop.query_one("SELECT count(*) FROM sale_item WHERE sale_id / 10000 IN (1, 3, 4)", &[]).await.unwrap();
    assert_eq!(count(items), 6000);
}

#[tokio::test]
async fn a_key_without_an_id_range_belongs_to_the_branch_that_first_sent_it() {
    let (_url, mut office, _) = database("owner_office", &[]).await;
    office.batch_execute("CREATE TABLE voucher (code text PRIMARY KEY, amount numeric NOT NULL)").await.unwrap();
    let voucher = protocol::payload::TableName::new("public", "voucher");
    let catalog = pgsync::Catalog::load(&office, std::slice::from_ref(&voucher)).await.unwrap();
    let allowed: BTreeSet<_> = [voucher.clone()].into();
    let options = |branch: &str| ImportOptions {
        origin: branch.into(),
        ownership: Some(pgsync::Ownership {
            branch: branch.into(),
            id_start: 1,
            id_end: 10,
            own_rows: allowed.clone(),
            own_deletes: BTreeSet::new(),
        }),
        ..Default::default()
    };
    let sql = |s: &str| read_sql(s, &allowed).unwrap();
    let upsert = |code: &str, amount: i32| {
        sql(&format!(
            "INSERT INTO voucher (code, amount) VALUES ('{code}', {amount}) ON CONFLICT (code) DO UPDATE SET amount = EXCLUDED.amount;"
        ))
    };
    pgsync::apply(&mut office, &catalog, &[upsert("A-1", 5)], options("shop-1")).await.unwrap();
    let recorded = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, String)> {
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let q = "SELECT pk[1], branch FROM branchsync.row_owner ORDER BY 1";
    assert_eq!(recorded(office.query(q, &[]).await.unwrap()), [("A-1".to_string(), "shop-1".to_string())]);

    // Another branch may neither rewrite nor delete it; its own new voucher in the same import goes too.
    for hostile in [
        vec![upsert("B-1", 1), upsert("A-1", 500)],
        vec![upsert("B-1", 1), sql("DELETE FROM voucher WHERE code = 'A-1';")],
    ] {
        let err = pgsync::apply(&mut office, &catalog, &hostile, options("shop-2")).await.unwrap_err();
        assert!(matches!(&err, Error::NotOwned { table, key, .. } if table == &voucher && key == "A-1"), "{err:?}");
        let rows = office.query("SELECT code, amount::text FROM voucher ORDER BY 1", &[]).await.unwrap();
        assert_eq!(recorded(rows), [("A-1".to_string(), "5".to_string())], "nothing applied");
        assert_eq!(recorded(office.query(q, &[]).await.unwrap()).len(), 1, "no owner recorded");
    }
    // The owner may go on changing it.
    pgsync::apply(&mut office, &catalog, &[upsert("A-1", 7)], options("shop-1")).await.unwrap();
    pgsync::apply(&mut office, &catalog, &[upsert("B-1", 1)], options("shop-2")).await.unwrap();
    assert_eq!(
        recorded(office.query(q, &[]).await.unwrap()),
        [("A-1".to_string(), "shop-1".to_string()), ("B-1".to_string(), "shop-2".to_string())]
    );
}

#[tokio::test]
async fn with_own_deletes_a_shop_updates_any_customer_but_deletes_only_its_own() {
    let (_url, mut office, catalog) = database("owner_both", &[]).await;
    office
        .batch_execute(
            "INSERT INTO person (id, name) VALUES (5, 'office customer'), (1000000000005, 'shop-1 customer')",
        )
        .await
        .unwrap();
    let person = protocol::payload::TableName::new("public", "person");
    let allowed: BTreeSet<_> = [person.clone()].into();
    let options = ImportOptions {
        origin: "shop-1".into(),
        ownership: Some(pgsync::Ownership {
            branch: "shop-1".into(),
            id_start: 1_000_000_000_000,
            id_end: 1_999_999_999_999,
            own_rows: BTreeSet::new(),
            own_deletes: allowed.clone(),
        }),
        ..Default::default()
    };
    let sql = |s: &str| read_sql(s, &allowed).unwrap();
    async fn names(office: &tokio_postgres::Client) -> Vec<String> {
        let rows = office.query("SELECT name FROM person ORDER BY id", &[]).await.unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }
    // Moving between shops: a shop may rename the office's customer.
    let rename = sql(
        "INSERT INTO person (id, name) VALUES (5, 'renamed at shop-1') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;",
    );
    pgsync::apply(&mut office, &catalog, &[rename], options.clone()).await.unwrap();
    assert_eq!(names(&office).await, ["renamed at shop-1", "shop-1 customer"]);
    // But not delete it, even together with a delete of its own.
    let err = pgsync::apply(
        &mut office,
        &catalog,
        &[sql("DELETE FROM person WHERE id IN (1000000000005, 5);")],
        options.clone(),
    )
    .await
    .unwrap_err();
    assert!(matches!(&err, Error::NotOwned { table, key, .. } if table == &person && key == "5"), "{err:?}");
    assert_eq!(names(&office).await, ["renamed at shop-1", "shop-1 customer"], "nothing applied");
    pgsync::apply(&mut office, &catalog, &[sql("DELETE FROM person WHERE id = 1000000000005;")], options)
        .await
        .unwrap();
    assert_eq!(names(&office).await, ["renamed at shop-1"]);
}
