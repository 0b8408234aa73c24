//! Every policy direction, every conflict rule, deletes on every path, drift found and repaired, and one shop
//! down while the other syncs: through the real controller binary and real agent processes.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_sales_and_customers_flow_with_deletes_on_every_path() {
    let fleet = Fleet::new("flows", 2, 300, "office-wins").await;
    let (a, b) = (&fleet.shops[0], &fleet.shops[1]);
    assert_eq!(count(&a.db, "SELECT count(*) FROM product").await, 300);
    assert_eq!(count(&b.db, "SELECT count(*) FROM parameter").await, 5, "initial tables arrive at init");

    // Catalogue change and delete at the office; sales at both shops; a customer created at shop A.
    fleet
        .office
        .batch_execute("UPDATE product SET price = 9.99 WHERE id = 1; DELETE FROM product WHERE id = 300;")
        .await
        .unwrap();
    testbed::sample::sell(&a.db, 11, 20, 299, 20, 100).await.unwrap();
    testbed::sample::sell(&b.db, 12, 25, 299, 20, 100).await.unwrap();
    a.db.batch_execute("INSERT INTO person (name) VALUES ('born at shop A')").await.unwrap();
    fleet.sync_all();
    fleet.sync_all();
    for shop in [a, b] {
        assert_eq!(count(&shop.db, "SELECT count(*) FROM product WHERE id = 1 AND price = 9.99").await, 1);
        assert_eq!(
            count(&shop.db, "SELECT count(*) FROM product WHERE id = 300").await,
            0,
            "office delete reaches {}",
            shop.name
        );
    }
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, 45);
    assert_eq!(
        count(&fleet.office, "SELECT count(*) FROM sale WHERE id BETWEEN 1000000000000 AND 1999999999999").await,
        20
    );
    assert_eq!(
        count(&fleet.office, "SELECT count(*) FROM sale WHERE id BETWEEN 2000000000000 AND 2999999999999").await,
        25
    );
    assert_eq!(
        count(&b.db, "SELECT count(*) FROM person WHERE name = 'born at shop A'").await,
        1,
        "A's customer reaches B"
    );
    fleet.assert_all_verified();

    // A sale voided at shop A is deleted at the office; a customer removed at shop B disappears everywhere.
    let sale: i64 = a.db.query_one("SELECT min(id) FROM sale", &[]).await.unwrap().get(0);
    a.db.batch_execute(&format!("DELETE FROM payment WHERE sale_id = {sale}; DELETE FROM sale_item WHERE sale_id = {sale}; DELETE FROM sale WHERE id = {sale};")).await.unwrap();
    b.db.batch_execute("DELETE FROM person WHERE name = 'born at shop A'").await.unwrap();
    fleet.sync_all();
    fleet.sync_all();
    assert_eq!(count(&fleet.office, &format!("SELECT count(*) FROM sale WHERE id = {sale}")).await, 0);
    for db in [&fleet.office, &a.db, &b.db] {
        assert_eq!(count(db, "SELECT count(*) FROM person WHERE name = 'born at shop A'").await, 0);
    }
    fleet.assert_all_verified();

    // The log says what happened.
    let log = fleet.ctl(&["--json", "log", "--limit", "500"]);
    let entries: serde_json::Value = serde_json::from_slice(&log.stdout).unwrap();
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["table"] == "public.sale" && e["direction"] == "pull" && e["rows"].as_i64() > Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_conflict_rule_decides_and_records() {
    let fleet = Fleet::new("rules", 1, 50, "office-wins").await;
    let shop = &fleet.shops[0];
    let both_edit = |office: &'static str, shop: &'static str| (office, shop);
    for (rule, (office_sql, shop_sql), winner) in [
        (
            "office-wins",
            both_edit("UPDATE person SET name = 'office' WHERE id = 1", "UPDATE person SET name = 'shop' WHERE id = 1"),
            "office",
        ),
        (
            "shop-wins",
            both_edit("UPDATE person SET name = 'office' WHERE id = 2", "UPDATE person SET name = 'shop' WHERE id = 2"),
            "shop",
        ),
        (
            "newer-wins",
            both_edit(
                "UPDATE person SET name = 'office', updated_at = '2030-01-01' WHERE id = 3",
                "UPDATE person SET name = 'shop', updated_at = '2029-01-01' WHERE id = 3",
            ),
            "office",
        ),
        (
            "newer-wins",
            both_edit(
                "UPDATE person SET name = 'office', updated_at = '2030-01-01' WHERE id = 4",
                "UPDATE person SET name = 'shop', updated_at = '2031-01-01' WHERE id = 4",
            ),
            "shop",
        ),
    ] {
        fleet.office.batch_execute(office_sql).await.unwrap();
        shop.db.batch_execute(shop_sql).await.unwrap();
        for _ in 0..2 {
            let out = fleet.ctl_env(&["sync", "--all"], &[("OFFICE_CONTROLLER__POLICIES__RETAIL__CONFLICT", rule)]);
            assert!(out.status.success(), "{rule}: {}", text(&out));
        }
        let id = office_sql.rsplit('=').next().unwrap().trim();
        for db in [&fleet.office, &shop.db] {
            let name: String =
                db.query_one(&format!("SELECT name FROM person WHERE id = {id}"), &[]).await.unwrap().get(0);
            assert_eq!(name, winner, "{rule} on person {id}");
        }
    }
    let out = fleet.ctl(&["--json", "conflicts"]);
    let conflicts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = conflicts.as_array().unwrap();
    assert_eq!(list.len(), 4, "{conflicts:#}");
    for c in list {
        assert!(
            c["office_version"]["name"].as_str().unwrap().contains("office")
                && c["shop_version"]["name"].as_str().unwrap().contains("shop"),
            "{c}"
        );
    }
    assert!(list.iter().any(|c| c["rule"] == "shop-wins" && c["decision"] == "shop"));
    // A later shop edit of a key decided earlier is no conflict, also after syncs with nothing to push (which
    // open no upload session at all).
    let sessions = "SELECT count(*) FROM branchsync.upload_session";
    let before = count(&shop.db, sessions).await;
    shop.db.batch_execute("UPDATE person SET name = 'shop again' WHERE id = 2").await.unwrap();
    fleet.sync_all();
    fleet.sync_all();
    assert_eq!(count(&shop.db, sessions).await, before, "nothing to push, no session");
    let out = fleet.ctl(&["--json", "conflicts"]);
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again.as_array().unwrap().len(), 4, "{again:#}");
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM person WHERE id = 2 AND name = 'shop again'").await, 1);
    fleet.assert_all_verified();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_found_and_repaired_and_a_down_shop_does_not_stop_the_other() {
    let mut fleet = Fleet::new("drift", 2, 100, "office-wins").await;
    // Someone edits the catalogue at shop A behind the office's back, past change capture's reach.
    let a = &fleet.shops[0];
    a.db.batch_execute("UPDATE product SET price = 0.01 WHERE id = 5; INSERT INTO product (id, code, name, price) VALUES (777, 'X', 'extra', 1)").await.unwrap();
    let (ok, report) = fleet.verify("shop-1");
    assert!(!ok);
    assert_eq!(report["drift"], 1, "{report:#}");
    let dry = fleet.ctl(&["--json", "sync", "--dry-run", "--full", "shop-1"]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert_eq!(count(&a.db, "SELECT count(*) FROM product WHERE id = 777").await, 1, "a dry run changes nothing");
    let out = fleet.ctl(&["sync", "--full", "shop-1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&a.db, "SELECT count(*) FROM product WHERE id = 777").await, 0, "extras deleted");
    assert!(fleet.verify("shop-1").0);

    // Shop B's agent is down: shop A still syncs, the run says what failed and exits non-zero.
    fleet.shops[1].stop_agent();
    fleet.office.batch_execute("UPDATE product SET name = 'renamed' WHERE id = 2").await.unwrap();
    let out = fleet.ctl(&["--json", "sync", "--all"]);
    assert!(!out.status.success());
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |n: &str| reports.as_array().unwrap().iter().find(|r| r["branch"] == n).cloned().unwrap();
    assert_eq!(by_name("shop-1")["ok"], true);
    assert_eq!(by_name("shop-2")["ok"], false);
    assert_eq!(count(&fleet.shops[0].db, "SELECT count(*) FROM product WHERE name = 'renamed'").await, 1);
    let status = fleet.ctl(&["--json", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "shop-2" && s["agent"]["up"] == false && s["last_error"]["message"].is_string())
    );
    fleet.shops[1].start_agent();
    fleet.sync_all();
    fleet.assert_all_verified();

    // Branches come and go by name.
    let password = fleet.dir.join("password").display().to_string();
    let add = fleet.ctl(&[
        "branch",
        "add",
        "ghost",
        "--url",
        "http://127.0.0.1:9",
        "--user",
        "office",
        "--password-file",
        &password,
        "--policy",
        "retail",
    ]);
    assert!(add.status.success(), "{}", text(&add));
    let dup = fleet.ctl(&[
        "branch",
        "add",
        "ghost",
        "--url",
        "http://127.0.0.1:9",
        "--user",
        "office",
        "--password-file",
        &password,
        "--policy",
        "retail",
    ]);
    assert!(!dup.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&fleet.ctl(&["--json", "branch", "list"]).stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert!(!fleet.ctl(&["sync", "ghost"]).status.success(), "an uninitialised branch is refused");
    assert!(fleet.ctl(&["branch", "remove", "ghost"]).status.success());
    let listed: serde_json::Value = serde_json::from_slice(&fleet.ctl(&["--json", "branch", "list"]).stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
}
