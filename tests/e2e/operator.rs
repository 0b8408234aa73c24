//! Operator safety (issue 11): `branch init` never erases a live shop, another branch's shop or a shop table
//! left in the sync schema by mistake, and `sync` never syncs a shop under another branch's name; through the
//! real binaries.

use crate::support::*;

async fn shop_branch(db: &tokio_postgres::Client) -> String {
    db.query_one("SELECT branch FROM branchsync.shop_policy", &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_refuses_a_live_shop_and_a_wrong_url_and_sync_refuses_another_shop() {
    let fleet = Fleet::new("operator", 2, 40, "office-wins").await;
    let (a, b) = (&fleet.shops[0], &fleet.shops[1]);
    testbed::sample::sell(&a.db, 31, 20, 39, 20, 100).await.unwrap();
    let sales_at_a = count(&a.db, "SELECT count(*) FROM sale").await;
    let logged_at_a = count(&a.db, "SELECT count(*) FROM branchsync.change_log").await;
    assert_eq!(sales_at_a, 20);

    // Re-initialising a shop that holds unsent sales: refused, nothing erased.
    let out = fleet.ctl(&["branch", "init", "shop-1"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(count(&a.db, "SELECT count(*) FROM sale").await, sales_at_a);
    assert_eq!(count(&a.db, "SELECT count(*) FROM branchsync.change_log").await, logged_at_a);

    // A new branch added with shop-1's URL by mistake: init refuses, even with --force, and shop-1 keeps its name.
    let password_file = fleet.dir.join("password").display().to_string();
    let add = fleet.ctl(&[
        "branch",
        "add",
        "shop-9",
        "--url",
        &a.base,
        "--user",
        "office",
        "--password-file",
        &password_file,
        "--policy",
        "retail",
    ]);
    assert!(add.status.success(), "{}", text(&add));
    for args in [&["branch", "init", "shop-9"][..], &["branch", "init", "shop-9", "--force"][..]] {
        let out = fleet.ctl(args);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
    }
    assert_eq!(shop_branch(&a.db).await, "shop-1");
    assert_eq!(count(&a.db, "SELECT count(*) FROM sale").await, sales_at_a);

    // shop-2's record pointed at shop-1's agent: its sync refuses, nothing moves either way.
    let b_url: String = fleet
        .office
        .query_one("SELECT url FROM branchsync.branch_synchronization WHERE branch = 'shop-2'", &[])
        .await
        .unwrap()
        .get(0);
    fleet
        .office
        .execute("UPDATE branchsync.branch_synchronization SET url = $1 WHERE branch = 'shop-2'", &[&a.base])
        .await
        .unwrap();
    let out = fleet.ctl(&["sync", "shop-2"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, 0, "nothing of shop-1 pulled as shop-2");
    assert_eq!(count(&a.db, "SELECT count(*) FROM branchsync.change_log").await, logged_at_a);
    fleet
        .office
        .execute("UPDATE branchsync.branch_synchronization SET url = $1 WHERE branch = 'shop-2'", &[&b_url])
        .await
        .unwrap();
    assert_eq!(shop_branch(&b.db).await, "shop-2");

    // With --force, init pulls what the shop sold first: every sale reaches the office before the shop is erased.
    let out = fleet.ctl(&["branch", "init", "shop-1", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, sales_at_a);
    assert_eq!(count(&a.db, "SELECT count(*) FROM sale").await, 0, "the shop's synced tables were erased");
    assert!(fleet.ctl(&["branch", "remove", "shop-9"]).status.success());
    fleet.sync_all();
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, sales_at_a);
    // The office's sales from before the re-initialisation are no drift: verify compares from it on.
    fleet.assert_all_verified();

    // The sync-schema trap: a role named like the sync schema creates a shop table with the default search_path,
    // and it lands in the sync schema. Re-initialising that shop (which cleans it) refuses and erases nothing.
    b.db.batch_execute(
        "DO $$ BEGIN CREATE ROLE branchsync; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT USAGE, CREATE ON SCHEMA branchsync TO branchsync;
         SET ROLE branchsync;
         CREATE TABLE till_note (id int PRIMARY KEY, note text);
         INSERT INTO till_note VALUES (1, 'the safe is stuck');
         RESET ROLE;",
    )
    .await
    .unwrap();
    let products = count(&b.db, "SELECT count(*) FROM product").await;
    let out = fleet.ctl(&["branch", "init", "shop-2", "--force"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("branchsync.till_note"), "{}", text(&out));
    assert_eq!(count(&b.db, "SELECT count(*) FROM branchsync.till_note").await, 1, "the shop's table is kept");
    assert_eq!(count(&b.db, "SELECT count(*) FROM product").await, products, "nothing was erased");
    b.db.batch_execute("ALTER TABLE branchsync.till_note SET SCHEMA public").await.unwrap();
    let out = fleet.ctl(&["branch", "init", "shop-2", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&b.db, "SELECT count(*) FROM public.till_note").await, 1, "moved out, the table survives");
}
