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
    // systemd's side of sd_notify: a datagram socket the service reports readiness and watchdog pings to.
    let socket_path = fleet.dir.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let socket = socket_path.display().to_string();
    let mut service = fleet.ctl_spawn_env(
        &["serve", "--listen", &listen],
        &[("NOTIFY_SOCKET", socket.as_str()), ("WATCHDOG_USEC", "2000000")],
    );
    let mut told = Vec::new();
    let mut heard = |what: &str| loop {
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).unwrap_or_else(|e| panic!("no {what} from the service: {e}; heard {told:?}"));
        let message = String::from_utf8_lossy(&buf[..n]).to_string();
        told.push(message.clone());
        if message.lines().any(|l| l == what) {
            return;
        }
    };
    heard("READY=1");
    heard("WATCHDOG=1");
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
    heard("STOPPING=1");
    let status = service.wait().unwrap();
    assert!(status.success(), "the service exits cleanly on SIGTERM: {status}");
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, 11, "nothing counted twice");
    fleet.assert_all_verified();
}

/// The holders of the claims recorded now.
async fn holders(fleet: &Fleet) -> Vec<String> {
    let rows = fleet.office.query("SELECT holder FROM branchsync.service_claim", &[]).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_share_three_branches_and_a_killed_ones_work_is_taken_over() {
    let fleet = Fleet::new("service-pair", 3, 40, "office-wins").await;
    fleet.edit_config(|c| format!("{c}\n[schedule]\ninterval_seconds = 2\nclaim_lease_seconds = 4\n"));
    let listen = |_: u8| {
        format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
    };
    let (a_listen, b_listen) = (listen(0), listen(1));
    let mut a = fleet.ctl_spawn(&["serve", "--listen", &a_listen]);
    let mut b = fleet.ctl_spawn(&["serve", "--listen", &b_listen]);
    let (a_pid, b_pid) = (a.id(), b.id());
    for (i, shop) in fleet.shops.iter().enumerate() {
        testbed::sample::sell(&shop.db, 60 + i as u64, 5, 20, 20, 100).await.unwrap();
    }
    // Both services take work: each holds claims of the branches over the first rounds.
    let mut seen = std::collections::BTreeSet::new();
    eventually("both services running jobs", async || {
        seen.extend(holders(&fleet).await);
        [a_pid, b_pid].iter().all(|pid| seen.iter().any(|h| h.contains(&format!(":{pid}:"))))
    })
    .await;
    eventually("the first 15 sales at the office", async || {
        count(&fleet.office, "SELECT count(*) FROM sale").await == 15
    })
    .await;

    // shop-1's agent is held in the middle of a job (its change log locked, so the job's first call waits), and
    // whichever service claimed that job is killed with SIGKILL there.
    let taken = "shop-1";
    let hold = &fleet.shops[0].db;
    hold.batch_execute("BEGIN; LOCK TABLE branchsync.change_log IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let mut holder = String::new();
    eventually("a service in the middle of shop-1's job", async || {
        let row = fleet
            .office
            .query_opt(
                "SELECT holder FROM branchsync.service_claim WHERE branch = 'shop-1' AND finished_at IS NULL",
                &[],
            )
            .await
            .unwrap();
        holder = row.map(|r| r.get(0)).unwrap_or_default();
        !holder.is_empty()
    })
    .await;
    let (victim, survivor, survivor_pid) =
        if holder.contains(&format!(":{a_pid}:")) { (&mut a, &mut b, b_pid) } else { (&mut b, &mut a, a_pid) };
    let victim_pid = victim.id();
    assert!(std::process::Command::new("kill").args(["-KILL", &victim_pid.to_string()]).status().unwrap().success());
    let _ = victim.wait();
    let killed_at = Instant::now();
    let left = count(&fleet.office, &format!("SELECT count(*) FROM branchsync.service_claim WHERE branch = '{taken}' AND finished_at IS NULL AND holder LIKE '%:{victim_pid}:%'")).await;
    assert_eq!(left, 1, "the dead service's claim of {taken} is still recorded as running");
    hold.batch_execute("ROLLBACK").await.unwrap();
    let before = count(&fleet.office, "SELECT count(*) FROM sale").await;
    assert_eq!(before, 15, "nothing half-applied: the office holds exactly the sales it had");

    // More sales everywhere; the survivor alone takes all three branches, the dead one's job included.
    for (i, shop) in fleet.shops.iter().enumerate() {
        testbed::sample::sell(&shop.db, 70 + i as u64, 3, 20, 20, 100).await.unwrap();
    }
    eventually("the survivor holding the claim of the branch the other died syncing", async || {
        count(
            &fleet.office,
            &format!(
                "SELECT count(*) FROM branchsync.service_claim WHERE branch = '{taken}' AND holder LIKE '%:{survivor_pid}:%'"
            ),
        )
        .await
            == 1
    })
    .await;
    let took_over = killed_at.elapsed();
    assert!(took_over < Duration::from_secs(30), "taken over within the lease and a slot: {took_over:?}");
    eventually("all 24 sales at the office", async || count(&fleet.office, "SELECT count(*) FROM sale").await == 24)
        .await;

    assert!(std::process::Command::new("kill").args(["-TERM", &survivor_pid.to_string()]).status().unwrap().success());
    assert!(survivor.wait().unwrap().success());
    let mut at_shops = 0;
    for shop in &fleet.shops {
        at_shops += count(&shop.db, "SELECT count(*) FROM sale").await;
    }
    assert_eq!(
        (at_shops, count(&fleet.office, "SELECT count(*) FROM sale").await),
        (24, 24),
        "nothing lost, nothing doubled"
    );
    let payments = count(&fleet.office, "SELECT count(*) FROM payment").await;
    assert_eq!(payments, 24, "one payment per sale");
    fleet.assert_all_verified();
}
