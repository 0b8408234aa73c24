//! Acknowledgement is explicit and verified (BRIEF §4): a dry run reads the shop's changes without confirming
//! them, so nothing is purged and the next real sync brings every sale; through the real binaries.

use crate::support::*;

/// What the shop still keeps for the office and what it takes as acknowledged, and the office's pull cursor.
async fn cursors(fleet: &Fleet) -> (i64, Option<String>, Option<String>) {
    let shop = &fleet.shops[0].db;
    let kept = count(shop, "SELECT count(*) FROM branchsync.change_log WHERE origin = ''").await;
    let acknowledged = shop
        .query_opt("SELECT value FROM branchsync.shop_state WHERE key = 'acknowledged_cursor'", &[])
        .await
        .unwrap()
        .map(|r| r.get(0));
    let pull = fleet
        .office
        .query_one("SELECT pull_cursor FROM branchsync.branch_synchronization WHERE branch = 'shop-1'", &[])
        .await
        .unwrap()
        .get(0);
    (kept, acknowledged, pull)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_confirms_nothing_and_the_next_sync_brings_every_sale() {
    let fleet = Fleet::new("dryrun", 1, 60, "office-wins").await;
    let shop = &fleet.shops[0];
    testbed::sample::sell(&shop.db, 21, 30, 59, 20, 100).await.unwrap();
    fleet.sync_all();
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, 30);

    testbed::sample::sell(&shop.db, 22, 20, 59, 20, 100).await.unwrap();
    let before = cursors(&fleet).await;
    assert!(before.0 >= 20, "the new sales wait in the shop's change log: {before:?}");
    for _ in 0..2 {
        let dry = fleet.ctl(&["--json", "sync", "--dry-run", "shop-1"]);
        assert!(dry.status.success(), "{}", text(&dry));
        let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
        assert!(report.to_string().contains("public.sale"), "the dry run reports the sales it would pull: {report}");
    }
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, 30, "a dry run applies nothing");
    assert_eq!(cursors(&fleet).await, before, "a dry run purges nothing and moves no cursor");

    fleet.sync_all();
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, 50, "every sale arrives");
    let after = cursors(&fleet).await;
    assert_ne!(after.1, before.1, "the real sync confirmed what it committed");
    assert_ne!(after.2, before.2);
    fleet.assert_all_verified();
}
