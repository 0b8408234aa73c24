//! `kill -9` of the controller in the middle of pushes and pulls, at several moments, then a sync that
//! converges: every branch verifies equal, no sale lost or doubled.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_controller_leaves_nothing_half_done() {
    let fleet = Fleet::new("crash", 1, 3000, "office-wins").await;
    let shop = &fleet.shops[0];
    let mut expected_sales = 0;
    let mut killed_mid_run = 0;
    for (round, delay_ms) in [30u64, 120, 250, 400, 700].into_iter().enumerate() {
        // Work on both sides, so that the kill can land in a pull or in a push.
        testbed::sample::sell(&shop.db, 100 + round as u64, 300, 2999, 20, 100).await.unwrap();
        expected_sales += 300;
        fleet
            .office
            .batch_execute(&format!(
                "UPDATE product SET price = price + 1, name = 'round {round}' WHERE id % 2 = {}",
                round % 2
            ))
            .await
            .unwrap();
        let mut child = fleet.ctl_spawn(&["sync", "--all"]);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(killed_mid_run >= 3, "only {killed_mid_run} of 5 kills landed while the controller was running");
    // The advisory lock died with the killed controller: the next sync runs and converges.
    fleet.sync_all();
    fleet.sync_all();
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, expected_sales, "no sale lost or doubled");
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM payment").await, expected_sales);
    assert_eq!(
        count(&fleet.office, "SELECT count(*) FROM (SELECT receipt FROM sale GROUP BY receipt HAVING count(*) > 1) d")
            .await,
        0
    );
    fleet.assert_all_verified();
}
