//! `verify` tells in-flight changes from drift (issue 11 item 8): a customer one round away, an `initial` table
//! edited at the office and a shop's sales from before its re-initialisation raise no alarm; a catalogue row and
//! a sale deleted at the office behind everyone's back are found, and the repair `verify` names (`sync --full`)
//! repairs both directions. `branch init --force` on a range the office holds sales of keeps the shop's new ids
//! clear of them. Through the real binaries.

use crate::support::*;

fn states(report: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap().to_string(), t["state"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_tells_in_flight_from_drift_and_its_repair_repairs() {
    let fleet = Fleet::new("verify", 2, 40, "office-wins").await;
    let (a, b) = (&fleet.shops[0], &fleet.shops[1]);
    testbed::sample::sell(&a.db, 41, 8, 20, 20, 100).await.unwrap();
    fleet.sync_all();

    // A customer renamed at shop-1 reaches the office; shop-2 was synced first and gets it next round.
    a.db.batch_execute("UPDATE person SET name = 'renamed at shop 1' WHERE id = 3").await.unwrap();
    assert!(fleet.ctl(&["sync", "shop-2"]).status.success());
    assert!(fleet.ctl(&["sync", "shop-1"]).status.success());
    assert_eq!(count(&b.db, "SELECT count(*) FROM person WHERE name = 'renamed at shop 1'").await, 0);
    // The office edits an `initial` table, which shops received once and keep as their own.
    fleet.office.batch_execute("UPDATE parameter SET value = 'changed at the office' WHERE true").await.unwrap();
    let (ok, report) = fleet.verify("shop-2");
    assert!(ok, "{report:#}");
    assert_eq!(report["drift"], 0, "{report:#}");
    let s = states(&report);
    assert_eq!(s["public.person"], "in_flight", "{report:#}");
    assert_eq!(s["public.parameter"], "not_compared", "{report:#}");
    assert_eq!(s["public.product"], "in_sync", "{report:#}");
    fleet.sync_all();
    let (ok, report) = fleet.verify("shop-2");
    assert!(ok, "{report:#}");
    assert_eq!(states(&report)["public.person"], "in_sync", "{report:#}");

    // shop-1 initialised again: its older sales stay at the office, new ones take ids above them, and verify
    // compares the shop's history from its new initialisation on.
    let out = fleet.ctl(&["branch", "init", "shop-1", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&a.db, "SELECT count(*) FROM sale").await, 0);
    let highest: i64 = fleet.office.query_one("SELECT max(id) FROM sale", &[]).await.unwrap().get(0);
    testbed::sample::sell(&a.db, 42, 5, 20, 20, 100).await.unwrap();
    let lowest_new: i64 = a.db.query_one("SELECT min(id) FROM sale", &[]).await.unwrap().get(0);
    assert!(lowest_new > highest, "new sale {lowest_new} not above the office's {highest}");
    fleet.sync_all();
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, 13, "8 from before and 5 new, none replaced");
    let (ok, report) = fleet.verify("shop-1");
    assert!(ok, "{report:#}");
    assert_eq!(states(&report)["public.sale"], "in_sync", "{report:#}");

    // Behind everyone's back, the office loses an unsold product (capture off) and one of shop-1's new sales.
    fleet
        .office
        .batch_execute(
            "ALTER TABLE product DISABLE TRIGGER branchsync_capture_del; DELETE FROM product WHERE id = 35; \
             ALTER TABLE product ENABLE TRIGGER branchsync_capture_del;",
        )
        .await
        .unwrap();
    let lost: i64 = fleet.office.query_one("SELECT max(id) FROM sale", &[]).await.unwrap().get(0);
    fleet
        .office
        .batch_execute(&format!(
            "DELETE FROM payment WHERE sale_id = {lost}; DELETE FROM sale_item WHERE sale_id = {lost}; DELETE FROM sale WHERE id = {lost};"
        ))
        .await
        .unwrap();
    let (ok, report) = fleet.verify("shop-1");
    assert!(!ok, "{report:#}");
    let s = states(&report);
    assert_eq!(s["public.product"], "drift", "{report:#}");
    assert_eq!(s["public.sale"], "drift", "{report:#}");
    let repair = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.sale")
        .and_then(|t| t["repair"].as_str())
        .unwrap()
        .to_string();
    let args: Vec<&str> = repair.split_whitespace().skip(1).collect();
    assert_eq!(args, ["sync", "--full", "shop-1"]);
    let out = fleet.ctl(&args);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&a.db, "SELECT count(*) FROM product WHERE id = 35").await, 0, "the shop's catalogue repaired");
    assert_eq!(
        count(&fleet.office, &format!("SELECT count(*) FROM sale WHERE id = {lost}")).await,
        1,
        "sale re-pulled"
    );
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, 13);
    // `verify --all` finds the lost product at shop-2 too, and its repair settles the whole chain.
    let out = fleet.ctl(&["--json", "verify", "--all"]);
    assert!(!out.status.success(), "{}", text(&out));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all["branches"].as_array().unwrap().len(), 2, "{all:#}");
    assert_eq!(all["drift"], 1, "{all:#}");
    assert_eq!(states(&all["branches"][1])["public.product"], "drift", "{all:#}");
    assert!(fleet.ctl(&["sync", "--full", "shop-2"]).status.success());
    let out = fleet.ctl(&["--json", "verify", "--all"]);
    assert!(out.status.success(), "{}", text(&out));
}
