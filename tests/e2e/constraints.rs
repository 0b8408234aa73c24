//! No stuck channel (issue 11 item 6), through the real binaries: two products swap barcodes under a plain
//! `UNIQUE` constraint, and a category tree whose rows reference newer rows, larger than one chunk, syncs from the
//! office and from a shop; counts before and after, and every database equal.

use crate::support::*;

const DDL: &str = "
ALTER TABLE product ADD COLUMN barcode text UNIQUE;
CREATE TABLE category (id bigserial PRIMARY KEY, parent bigint REFERENCES category, name text NOT NULL);
";

async fn barcodes(db: &tokio_postgres::Client) -> Vec<String> {
    let rows = db.query("SELECT id || '=' || coalesce(barcode, '-') FROM product WHERE id <= 3 ORDER BY id", &[]).await;
    rows.unwrap().iter().map(|r| r.get(0)).collect()
}

async fn tree(db: &tokio_postgres::Client) -> Vec<(i64, Option<i64>)> {
    let rows = db.query("SELECT id, parent FROM category ORDER BY id", &[]).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// 2,000 categories with long names under the one created last, so that children travel chunks before their
/// parent (the export orders rows by key, and the fleet's chunks are 64 KiB).
async fn plant(db: &tokio_postgres::Client) {
    db.batch_execute(
        "BEGIN;
         INSERT INTO category (name) SELECT 'category ' || g || ' ' || repeat('x', 100) FROM generate_series(1, 2000) g;
         UPDATE category SET parent = (SELECT max(id) FROM category) WHERE id < (SELECT max(id) FROM category) AND parent IS NULL;
         COMMIT;",
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_barcodes_and_a_tree_referencing_newer_rows_sync_both_ways() {
    let extra = Extra { ddl: DDL, from_source: &[], both: &["public.category"] };
    let fleet = Fleet::with("constraints", 2, 10, "office-wins", extra).await;
    fleet.office.batch_execute("UPDATE product SET barcode = 'BC' || id WHERE id <= 3").await.unwrap();
    fleet.sync_all();
    for shop in &fleet.shops {
        assert_eq!(barcodes(&shop.db).await, ["1=BC1", "2=BC2", "3=BC3"]);
    }

    // The office rotates three barcodes in one transaction (through a free value, as the constraint demands).
    fleet
        .office
        .batch_execute(
            "BEGIN; UPDATE product SET barcode = NULL WHERE id = 1; UPDATE product SET barcode = 'BC1' WHERE id = 2;
             UPDATE product SET barcode = 'BC2' WHERE id = 3; UPDATE product SET barcode = 'BC3' WHERE id = 1; COMMIT;",
        )
        .await
        .unwrap();
    // A tree at the office and one at a shop, each child older than its parent.
    plant(&fleet.office).await;
    plant(&fleet.shops[0].db).await;
    let before: Vec<i64> = [
        count(&fleet.office, "SELECT count(*) FROM category").await,
        count(&fleet.shops[0].db, "SELECT count(*) FROM category").await,
        count(&fleet.shops[1].db, "SELECT count(*) FROM category").await,
    ]
    .into();
    assert_eq!(before, [2000, 2000, 0]);

    // Two rounds: the shop's tree reaches the office in the first and shop-2 in the second.
    fleet.sync_all();
    fleet.sync_all();
    let office_tree = tree(&fleet.office).await;
    assert_eq!(office_tree.len(), 4000, "both trees at the office");
    assert_eq!(office_tree.iter().filter(|(_, p)| p.is_none()).count(), 2, "two roots, every other row placed");
    for shop in &fleet.shops {
        assert_eq!(barcodes(&shop.db).await, ["1=BC3", "2=BC1", "3=BC2"], "{}", shop.name);
        assert_eq!(tree(&shop.db).await, office_tree, "{}", shop.name);
    }
    fleet.assert_all_verified();

    // A row that cannot be applied at one shop (its own constraint refuses the office's price): that branch fails
    // with the table and SQLSTATE in the exit code, `status` and `log`, the other branch goes on, and once the
    // shop's constraint is mended the next sync applies and clears the error.
    let (a, b) = (&fleet.shops[0], &fleet.shops[1]);
    a.db.batch_execute("ALTER TABLE product ADD CONSTRAINT modest_price CHECK (price < 100000)").await.unwrap();
    fleet.office.batch_execute("UPDATE product SET price = 250000 WHERE id = 5").await.unwrap();
    let price = "SELECT count(*) FROM product WHERE id = 5 AND price = 250000";
    let out = fleet.ctl(&["sync", "--all"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(count(&a.db, price).await, 0, "nothing applied at the refusing shop");
    assert_eq!(count(&b.db, price).await, 1, "the other branch went on");
    let status = fleet.ctl(&["--json", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let last_error = |name: &str| {
        let branch = status.as_array().unwrap().iter().find(|r| r["name"] == name).unwrap();
        assert!(branch["last_error"].is_null() || branch["last_error"]["hint"].is_string(), "{branch:#}");
        branch["last_error"]["message"].as_str().map(String::from)
    };
    let stuck = last_error("shop-1").expect("the stuck branch has a last error");
    assert!(stuck.contains("public.product") && stuck.contains("23514"), "{stuck}");
    assert_eq!(last_error("shop-2"), None);
    let log = fleet.ctl(&["--json", "log", "--branch", "shop-1"]);
    assert!(log.status.success(), "{}", text(&log));
    assert!(String::from_utf8_lossy(&log.stdout).contains("23514"), "{}", text(&log));
    a.db.batch_execute("ALTER TABLE product DROP CONSTRAINT modest_price").await.unwrap();
    fleet.sync_all();
    assert_eq!(count(&a.db, price).await, 1);
    let status = fleet.ctl(&["--json", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status.as_array().unwrap().iter().all(|r| r["last_error"].is_null()), "{status:#}");
}
