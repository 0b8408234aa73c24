//! Monitoring (issue 12): `status --check` speaks Nagios/Icinga (one line, exit 0 OK, 1 WARNING, 2 CRITICAL,
//! 3 UNKNOWN) for branches that are synced, late, or whose agent is down; `status --json` keeps one shape
//! whether an agent is up or down.

use crate::support::*;

fn check(fleet: &Fleet, args: &[&str]) -> (i32, String) {
    let mut all = vec!["status", "--check"];
    all.extend_from_slice(args);
    let out = fleet.ctl(&all);
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(line.lines().count(), 1, "one line: {}", text(&out));
    (out.status.code().unwrap(), line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_check_exit_codes_for_ok_late_and_down_branches() {
    let mut fleet = Fleet::new("check", 2, 20, "office-wins").await;
    fleet.sync_all();
    let (code, line) = check(&fleet, &[]);
    assert_eq!(code, 0, "{line}");
    assert!(line.starts_with("BRANCHSYNC OK"), "{line}");

    let late = |hours: i64| {
        format!(
            "UPDATE branchsync.branch_synchronization SET timestamp = now() - interval '{hours} hours' WHERE branch = 'shop-1'"
        )
    };
    fleet.office.batch_execute(&late(2)).await.unwrap();
    let (code, line) = check(&fleet, &["--warn", "1h", "--crit", "4h"]);
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("shop-1") && !line.contains("shop-2 "), "{line}");
    assert_eq!(check(&fleet, &["shop-2"]).0, 0, "one branch checked alone");
    fleet.office.batch_execute(&late(5)).await.unwrap();
    assert_eq!(check(&fleet, &["--warn", "1h", "--crit", "4h"]).0, 2);
    assert_eq!(check(&fleet, &["--warn", "6h", "--crit", "8h"]).0, 0, "thresholds are the operator's");

    fleet.shops[1].stop_agent();
    let (code, line) = check(&fleet, &["--warn", "6h", "--crit", "8h"]);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("shop-2 agent down"), "{line}");
    // Down or up, a branch has the same members in `status --json`.
    let out = fleet.ctl(&["--json", "status"]);
    let states: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = |s: &serde_json::Value| {
        let mut k: Vec<String> = s["agent"].as_object().unwrap().keys().cloned().collect();
        k.extend(s.as_object().unwrap().keys().cloned());
        k
    };
    let list = states.as_array().unwrap();
    assert_eq!(list[1]["agent"]["up"], false);
    assert_eq!(list[0]["agent"]["up"], true);
    assert_eq!(keys(&list[0]), keys(&list[1]));
    assert!(list[0]["last_sync"].as_str().unwrap().ends_with('Z'), "RFC 3339 UTC: {}", list[0]["last_sync"]);

    assert_eq!(check(&fleet, &["no-such-shop"]).0, 3, "a branch that does not exist cannot be judged");
    assert_eq!(check(&fleet, &["--warn", "5h", "--crit", "1h"]).0, 3, "thresholds the wrong way round");
    assert_eq!(check(&fleet, &["--warn", "soon"]).0, 3);
    fleet.edit_config(|c| c.replace("database_url", "database_url_typo"));
    assert_eq!(check(&fleet, &[]).0, 3, "a configuration that does not load is UNKNOWN");
}
