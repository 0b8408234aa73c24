//! `office-controller serve` (issue 12): a service with a 2-second interval syncs two shops on its own: sales
//! rung up at the shops reach the office, and a catalogue change reaches the shops, without any CLI sync; it
//! answers `/healthz` and stops cleanly on SIGTERM. Through the real binaries.

use std::time::{Duration, Instant};

use crate::support::*;

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen within a minute");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_syncs_every_shop_on_its_schedule_without_a_cli_call() {
    let fleet = Fleet::new("service", 2, 40, "office-wins").await;
    fleet.edit_config(|c| format!("{c}\n[schedule]\ninterval_seconds = 2\ntime_zone = \"Europe/Paris\"\n"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut service = fleet.ctl_spawn(&["serve", "--listen", &listen]);
    eventually("the service listening", async || std::net::TcpStream::connect(&listen).is_ok()).await;
    let health = std::process::Command::new("python3")
        .args([
            "-c",
            &format!("import urllib.request; print(urllib.request.urlopen('http://{listen}/healthz').read().decode())"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&health.stdout).trim(), "ok", "{}", text(&health));

    let before = count(&fleet.office, "SELECT count(*) FROM sale").await;
    assert_eq!(before, 0);
    testbed::sample::sell(&fleet.shops[0].db, 51, 7, 20, 20, 100).await.unwrap();
    testbed::sample::sell(&fleet.shops[1].db, 52, 4, 20, 20, 100).await.unwrap();
    fleet.office.batch_execute("UPDATE product SET price = 4.44 WHERE id = 9").await.unwrap();
    eventually("every sale at the office", async || count(&fleet.office, "SELECT count(*) FROM sale").await == 11)
        .await;
    for shop in &fleet.shops {
        eventually("the new price at the shop", async || {
            count(&shop.db, "SELECT count(*) FROM product WHERE id = 9 AND price = 4.44").await == 1
        })
        .await;
    }
    // Every sync the service ran is in the log, none failed.
    let failed =
        count(&fleet.office, "SELECT count(*) FROM branchsync.sync_log WHERE result NOT IN ('ok', 'fallback')").await;
    assert_eq!(failed, 0);

    let killed = std::process::Command::new("kill").args(["-TERM", &service.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = service.wait().unwrap();
    assert!(status.success(), "the service exits cleanly on SIGTERM: {status}");
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, 11, "nothing counted twice");
    fleet.assert_all_verified();
}
