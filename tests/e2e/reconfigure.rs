//! Changing a live branch without re-initialising it (issue 11): `branch set --url` follows a shop to its new
//! address and refuses another branch's agent; a table added to the policy refuses syncs until `branch
//! reconfigure`, which pulls what the shop sold first, loads the new catalogue table whole at the shop, sends the
//! rows the shop already had in its newly sent table, and puts that table's ids in the branch's range.

use crate::support::*;

const DDL: &str = "CREATE TABLE promotion (id bigint PRIMARY KEY, label text NOT NULL); \
                   CREATE TABLE till_note (id bigserial PRIMARY KEY, note text NOT NULL);";

async fn url_of(fleet: &Fleet, branch: &str) -> String {
    fleet
        .office
        .query_one("SELECT url FROM branchsync.branch_synchronization WHERE branch = $1", &[&branch])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_set_follows_a_moved_shop_and_reconfigure_adds_tables_without_losing_a_sale() {
    let mut fleet = Fleet::with("reconfigure", 2, 40, "office-wins", Extra { ddl: DDL, ..Extra::default() }).await;

    // A new address for shop-1: the old one is gone, `branch set --url` follows it, and the sync goes on.
    let old_url = url_of(&fleet, "shop-1").await;
    let new_url = fleet.shops[0].move_agent();
    let out = fleet.ctl(&["branch", "set", "shop-1", "--url", &new_url]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(url_of(&fleet, "shop-1").await, new_url);
    assert_ne!(old_url, new_url);
    testbed::sample::sell(&fleet.shops[0].db, 5, 4, 39, 20, 100).await.unwrap();
    fleet.sync_all();
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, 4);

    // shop-2's URL set to shop-1's agent by mistake: refused, the record keeps its URL.
    let b_url = url_of(&fleet, "shop-2").await;
    let out = fleet.ctl(&["branch", "set", "shop-2", "--url", &new_url]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(url_of(&fleet, "shop-2").await, b_url);
    let out = fleet.ctl(&["branch", "set", "shop-2", "--policy", "no-such-policy"]);
    assert!(!out.status.success(), "{}", text(&out));

    // Before the change: 30 promotions at the office, 12 notes shop-1 kept for itself, 6 sales not yet pulled.
    fleet
        .office
        .batch_execute("INSERT INTO promotion SELECT g, 'promotion ' || g FROM generate_series(1, 30) g")
        .await
        .unwrap();
    let a = &fleet.shops[0];
    a.db.batch_execute("INSERT INTO till_note (note) SELECT 'note ' || g FROM generate_series(1, 12) g").await.unwrap();
    testbed::sample::sell(&a.db, 6, 6, 39, 20, 100).await.unwrap();
    let sales_at_a = count(&a.db, "SELECT count(*) FROM sale").await;
    assert_eq!(sales_at_a, 10);

    fleet.edit_config(|c| {
        c.replacen("from_source = [", "from_source = [\"public.promotion\", ", 1).replacen(
            "from_target = [",
            "from_target = [\"public.till_note\", ",
            1,
        )
    });

    // A sync with the changed policy is refused before anything moves.
    let out = fleet.ctl(&["sync", "shop-1"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, 4, "nothing pulled");
    assert_eq!(count(&a.db, "SELECT count(*) FROM promotion").await, 0, "nothing pushed");

    // Reconfigure: the pending sales come first. The notes shop-1 kept for itself carry ids outside its range,
    // which the office would refuse as another branch's: the shop refuses the new policy, nothing changes there.
    let id_start: i64 = fleet
        .office
        .query_one("SELECT number * id_range FROM branchsync.branch_synchronization WHERE branch = 'shop-1'", &[])
        .await
        .unwrap()
        .get(0);
    let logged_before = count(&a.db, "SELECT count(*) FROM branchsync.change_log WHERE tbl = 'public.till_note'").await;
    let out = fleet.ctl(&["branch", "reconfigure", "shop-1"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, sales_at_a, "every sale pulled first");
    assert_eq!(count(&a.db, "SELECT count(*) FROM promotion").await, 0);
    assert_eq!(
        count(&a.db, "SELECT count(*) FROM branchsync.change_log WHERE tbl = 'public.till_note'").await,
        logged_before,
        "no capture installed"
    );
    assert!(!fleet.ctl(&["sync", "shop-1"]).status.success(), "still refused until reconfigured");

    // Renumbered into the range as the refusal says, the notes go to the office and the catalogue table loads.
    a.db.execute("UPDATE till_note SET id = id + $1 WHERE id < $1", &[&id_start]).await.unwrap();
    let out = fleet.ctl(&["branch", "reconfigure", "shop-1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&a.db, "SELECT count(*) FROM promotion").await, 30, "the new catalogue table loaded whole");
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM till_note").await, 12, "the shop's notes so far sent");
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, sales_at_a);

    // The newly sent table takes ids in the branch's range from now on, past the renumbered ones.
    let id: i64 =
        a.db.query_one("INSERT INTO till_note (note) VALUES ('after') RETURNING id", &[]).await.unwrap().get(0);
    assert_eq!(id, id_start + 13, "the next note follows the renumbered ones inside the range");

    // shop-2 is refused until it too is reconfigured; then both follow the office's catalogue edits.
    let out = fleet.ctl(&["sync", "shop-2"]);
    assert!(!out.status.success(), "{}", text(&out));
    let out = fleet.ctl(&["branch", "reconfigure", "shop-2"]);
    assert!(out.status.success(), "{}", text(&out));
    // Reconfiguring again changes nothing and says so.
    let out = fleet.ctl(&["branch", "reconfigure", "shop-2"]);
    assert!(out.status.success(), "{}", text(&out));
    fleet.office.batch_execute("UPDATE promotion SET label = 'half price' WHERE id = 7").await.unwrap();
    fleet.sync_all();
    for shop in &fleet.shops {
        assert_eq!(count(&shop.db, "SELECT count(*) FROM promotion").await, 30);
        assert_eq!(count(&shop.db, "SELECT count(*) FROM promotion WHERE id = 7 AND label = 'half price'").await, 1);
    }
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM till_note").await, 13);
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, sales_at_a);
    fleet.assert_all_verified();
}
