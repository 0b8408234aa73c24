//! A shop restored from a backup (issue 11, item 1), through the real binaries: the refused cursor falls back to
//! a full pull that first moves the shop's sequences past what the office holds and then compares values, so no
//! office sale is replaced, the shop's stale customer is a recorded conflict, and what the shop sells afterwards
//! arrives once.

use crate::support::*;

/// Every sale of shop-1's range at the office, as `id receipt total` lines.
async fn office_sales(fleet: &Fleet) -> Vec<String> {
    lines(
        fleet,
        "SELECT id || ' ' || receipt || ' ' || total FROM sale WHERE id BETWEEN 1000000000000 AND 1999999999999 ORDER BY id",
    )
    .await
}

/// Every line and payment of shop-1's sales at the office, one text line each.
async fn office_lines_and_payments(fleet: &Fleet) -> Vec<String> {
    lines(
        fleet,
        "SELECT x FROM (SELECT 'item ' || i::text AS x FROM sale_item i WHERE sale_id BETWEEN 1000000000000 AND 1999999999999 \
         UNION ALL SELECT 'payment ' || p::text FROM payment p WHERE sale_id BETWEEN 1000000000000 AND 1999999999999) l ORDER BY x",
    )
    .await
}

async fn lines(fleet: &Fleet, sql: &str) -> Vec<String> {
    fleet.office.query(sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_restored_from_a_backup_replaces_no_office_sale_and_its_stale_rows_are_conflicts() {
    let mut fleet = Fleet::new("restore", 2, 30, "office-wins").await;
    let range: i64 = fleet
        .office
        .query_one("SELECT id_range FROM branchsync.branch_synchronization WHERE branch = 'shop-1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(range, 1_000_000_000_000, "the test reads shop-1's range as 10^12..2*10^12-1");
    testbed::sample::sell(&fleet.shops[0].db, 1, 10, 30, 20, 100).await.unwrap();
    fleet.sync_all();
    let backup = fleet.dir.join("shop-1.dump");
    fleet.shops[0].dump(&backup);

    // After the backup: ten more sales reach the office, and the office renames a customer, which reaches the shop.
    testbed::sample::sell(&fleet.shops[0].db, 2, 10, 30, 20, 100).await.unwrap();
    fleet.office.batch_execute("UPDATE person SET name = 'renamed at the office' WHERE id = 5").await.unwrap();
    fleet.sync_all();
    let before = office_sales(&fleet).await;
    assert_eq!(before.len(), 20);
    let details_before = office_lines_and_payments(&fleet).await;
    let conflicts_before = count(&fleet.office, "SELECT count(*) FROM branchsync.conflict").await;

    // The shop's server dies; it is rebuilt from the backup and the till sells three sales before any sync. The
    // rewound sequence gives them the ids of sales the office already holds.
    fleet.shops[0].restore(&backup).await;
    let a = &fleet.shops[0];
    assert_eq!(count(&a.db, "SELECT count(*) FROM sale").await, 10);
    testbed::sample::sell(&a.db, 3, 3, 30, 20, 100).await.unwrap();
    let reissued: Vec<i64> =
        a.db.query("SELECT id FROM sale ORDER BY id DESC LIMIT 3", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert!(reissued.iter().all(|id| before.iter().any(|s| s.starts_with(&format!("{id} ")))), "{reissued:?}");

    // The database behind the URL is not the one initialised: a plain sync refuses and moves nothing, either way.
    let logged = count(&a.db, "SELECT count(*) FROM branchsync.change_log").await;
    let out = fleet.ctl(&["sync", "shop-1"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(office_sales(&fleet).await, before);
    assert_eq!(count(&a.db, "SELECT count(*) FROM branchsync.change_log").await, logged);
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM branchsync.conflict").await, conflicts_before);

    // The operator confirms it is this shop, restored.
    let out = fleet.ctl(&["sync", "shop-1", "--rebind"]);
    assert!(out.status.success(), "{}", text(&out));
    // No office sale replaced, and the re-issued sales, their lines and payments are recorded, not applied.
    assert_eq!(office_sales(&fleet).await, before);
    assert_eq!(office_lines_and_payments(&fleet).await, details_before, "a line or payment landed on an office sale");
    let recorded: Vec<(String, String, String)> = fleet
        .office
        .query(
            "SELECT tbl, array_to_string(pk, ','), decision FROM branchsync.conflict WHERE branch = 'shop-1' ORDER BY id OFFSET $1",
            &[&conflicts_before],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    for id in &reissued {
        assert!(
            recorded.iter().any(|c| c.0 == "public.sale" && c.1 == id.to_string() && c.2 == "office"),
            "sale {id} not recorded: {recorded:?}"
        );
    }
    // The stale customer went through the rule (office-wins) and was recorded; the shop has the office's name back.
    assert!(recorded.iter().any(|c| c.0 == "public.person" && c.1 == "5" && c.2 == "office"), "{recorded:?}");
    let name: String = a.db.query_one("SELECT name FROM person WHERE id = 5", &[]).await.unwrap().get(0);
    assert_eq!(name, "renamed at the office");
    let at_office: String = fleet.office.query_one("SELECT name FROM person WHERE id = 5", &[]).await.unwrap().get(0);
    assert_eq!(at_office, "renamed at the office");
    // The log says what happened.
    let log = text(&fleet.ctl(&["log", "--branch", "shop-1"]));
    assert!(log.contains("fallback"), "{log}");

    // The shop's sequences now continue above every id the office holds: new sales arrive, each once.
    let highest = before.last().unwrap().split(' ').next().unwrap().parse::<i64>().unwrap();
    testbed::sample::sell(&a.db, 4, 5, 30, 20, 100).await.unwrap();
    let lowest_new: i64 =
        a.db.query_one("SELECT min(id) FROM (SELECT id FROM sale ORDER BY id DESC LIMIT 5) s", &[])
            .await
            .unwrap()
            .get(0);
    assert!(lowest_new > highest, "new sale {lowest_new} not above {highest}");
    fleet.sync_all();
    let after = office_sales(&fleet).await;
    assert_eq!(after.len(), 25);
    assert_eq!(after[..20], before[..]);
    let receipts = count(&fleet.office, "SELECT count(DISTINCT receipt) FROM sale").await;
    assert_eq!(receipts, count(&fleet.office, "SELECT count(*) FROM sale").await, "a sale arrived twice");
    // shop-2 is untouched by all this and still equals the office.
    let (ok, report) = fleet.verify("shop-2");
    assert!(ok, "{report:#}");
}
