//! The office service's JSON API and `/metrics` (issue 12), through the real binary: authentication (no
//! credentials 401, a viewer reads but cannot act, an operator acts), every endpoint's shape, the actions
//! claimed like scheduled jobs (409 while another service holds the branch), the metrics parsed by a Prometheus
//! text parser, and SIGHUP taking a new user without a restart.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

const VIEWER: (&str, &str) = ("vera", "viewer-password");
const OPERATOR: (&str, &str) = ("otto", "operator-password");

fn users(extra: &str) -> String {
    let user = |(name, password): (&str, &str), role: &str| {
        format!(
            "[[service.users]]\nname = \"{name}\"\npassword_hash = \"{}\"\nrole = \"{role}\"\n",
            service::auth::hash_password(password).unwrap()
        )
    };
    format!("{}{}{extra}", user(VIEWER, "viewer"), user(OPERATOR, "operator"))
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str, who: Option<(&str, &str)>) -> (StatusCode, Value) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some((user, password)) = who {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, who: (&str, &str)) -> (StatusCode, Value) {
        let response =
            self.http.post(format!("{}{path}", self.base)).basic_auth(who.0, Some(who.1)).send().await.unwrap();
        let status = response.status();
        (status, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null))
    }

    async fn text(&self, path: &str, who: (&str, &str)) -> (StatusCode, String) {
        let response =
            self.http.get(format!("{}{path}", self.base)).basic_auth(who.0, Some(who.1)).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap_or_else(|| panic!("an object: {v}")).keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_authenticates_reads_acts_and_exposes_metrics() {
    let fleet = Fleet::new("api", 2, 30, "office-wins").await;
    // A long interval: every sync in this test is one the test asks for.
    fleet.edit_config(|c| format!("{c}\n[schedule]\ninterval_seconds = 86400\n[service]\n{}", users("")));
    let port = free_port();
    let mut service = fleet.ctl_spawn(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
    let api = Api { base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the service did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Authentication and roles.
    assert_eq!(api.get("/api/v1/branches", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(api.get("/api/v1/branches", Some((VIEWER.0, "wrong"))).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(api.get("/metrics", None).await.0, StatusCode::UNAUTHORIZED);
    let (status, list) = api.get("/api/v1/branches", Some(VIEWER)).await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.iter().map(|b| b["name"].as_str().unwrap()).collect::<Vec<_>>(), ["shop-1", "shop-2"]);
    for member in
        ["state", "last_sync", "lag_seconds", "office_changes_waiting", "last_error", "agent", "schedule", "job"]
    {
        assert!(list[0].get(member).is_some(), "{member} in {:#}", list[0]);
    }
    assert_eq!(list[0]["agent"]["up"], true);
    assert!(list[0]["schedule"]["next_complete_sync_at"].as_str().unwrap().ends_with('Z'));
    let (status, body) = api.post("/api/v1/branches/shop-1/sync", VIEWER).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "a viewer cannot act");

    // One branch; an unknown one.
    let (status, one) = api.get("/api/v1/branches/shop-2", Some(VIEWER)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&one), keys(&list[1]), "one shape for the list and for one branch");
    let (status, body) = api.get("/api/v1/branches/nowhere", Some(VIEWER)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

    // An operator's sync now brings a sale in; a conflict is recorded with both versions.
    testbed::sample::sell(&fleet.shops[0].db, 81, 3, 20, 20, 100).await.unwrap();
    fleet.office.batch_execute("UPDATE person SET name = 'office' WHERE id = 4").await.unwrap();
    fleet.shops[0].db.batch_execute("UPDATE person SET name = 'shop' WHERE id = 4").await.unwrap();
    let before = count(&fleet.office, "SELECT count(*) FROM sale").await;
    let (status, done) = api.post("/api/v1/branches/shop-1/sync?wait=true", OPERATOR).await;
    assert_eq!(status, StatusCode::OK, "{done:#}");
    assert_eq!((done["accepted"].as_bool(), done["ok"].as_bool()), (Some(true), Some(true)), "{done:#}");
    assert_eq!(done["report"]["tables"]["public.sale"]["pull"]["rows"], 3, "{done:#}");
    assert_eq!(count(&fleet.office, "SELECT count(*) FROM sale").await, before + 3);
    let (status, conflicts) = api.get("/api/v1/conflicts?branch=shop-1", Some(VIEWER)).await;
    assert_eq!(status, StatusCode::OK);
    let c = &conflicts[0];
    assert_eq!((c["table"].as_str(), c["decision"].as_str()), (Some("public.person"), Some("office")), "{c:#}");
    assert_eq!(
        (c["office_version"]["name"].as_str(), c["shop_version"]["name"].as_str()),
        (Some("office"), Some("shop"))
    );

    // The complete sync and verify, waited for; one started without waiting answers 202.
    let (status, done) = api.post("/api/v1/branches/shop-2/complete-sync?wait=true", OPERATOR).await;
    assert_eq!((status, done["ok"].as_bool()), (StatusCode::OK, Some(true)), "{done:#}");
    let (status, done) = api.post("/api/v1/branches/shop-1/verify?wait=true", OPERATOR).await;
    assert_eq!((status, done["ok"].as_bool()), (StatusCode::OK, Some(true)), "{done:#}");
    assert_eq!(done["report"]["drift"], 0, "{done:#}");
    let (status, body) = api.post("/api/v1/branches/shop-2/explode", OPERATOR).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    let (status, started) = api.post("/api/v1/branches/shop-2/sync", OPERATOR).await;
    assert_eq!((status, started["accepted"].as_bool()), (StatusCode::ACCEPTED, Some(true)));

    // A branch another service is syncing: 409, and nothing run beside it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(
        &fleet.office,
        "SELECT count(*) FROM branchsync.service_claim WHERE branch = 'shop-2' AND finished_at IS NULL",
    )
    .await
        > 0
    {
        assert!(Instant::now() < deadline, "the accepted sync did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet
        .office
        .batch_execute("UPDATE branchsync.service_claim SET holder = 'elsewhere:1:0000', finished_at = NULL, renewed_at = now() WHERE branch = 'shop-2'")
        .await
        .unwrap();
    let log_before = count(&fleet.office, "SELECT count(*) FROM branchsync.sync_log WHERE branch = 'shop-2'").await;
    let (status, body) = api.post("/api/v1/branches/shop-2/sync?wait=true", OPERATOR).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("busy")), "{body:#}");
    assert_eq!(
        count(&fleet.office, "SELECT count(*) FROM branchsync.sync_log WHERE branch = 'shop-2'").await,
        log_before
    );
    fleet
        .office
        .batch_execute("UPDATE branchsync.service_claim SET finished_at = now() WHERE branch = 'shop-2'")
        .await
        .unwrap();

    // The sync log, newest first, RFC 3339; a limit out of range is a bad request.
    let (status, log) = api.get("/api/v1/log?branch=shop-1&limit=5", Some(VIEWER)).await;
    assert_eq!(status, StatusCode::OK);
    let log = log.as_array().unwrap();
    assert!(!log.is_empty() && log.len() <= 5);
    assert!(log.iter().all(|e| e["branch"] == "shop-1" && e["at"].as_str().unwrap().ends_with('Z')), "{log:#?}");
    assert!(log.iter().any(|e| e["direction"] == "verify"), "the verify is in the log: {log:#?}");
    assert_eq!(api.get("/api/v1/log?limit=0", Some(VIEWER)).await.0, StatusCode::BAD_REQUEST);

    // The metrics, parsed as Prometheus parses them.
    let (status, text) = api.text("/metrics", VIEWER).await;
    assert_eq!(status, StatusCode::OK);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample = |name: &str, branch: Option<&str>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && branch.is_none_or(|b| s.labels.get("branch") == Some(b)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                other => panic!("{name}: {other:?}"),
            })
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let last = sample("branchsync_last_success_timestamp_seconds", Some("shop-1")).expect(&text);
    assert!((now - 600.0..=now + 5.0).contains(&last), "{last} {text}");
    assert_eq!(sample("branchsync_last_sync_ok", Some("shop-1")), Some(1.0));
    assert_eq!(sample("branchsync_agent_up", Some("shop-1")), Some(1.0));
    assert_eq!(sample("branchsync_build_info", None), Some(1.0));
    let sale_rows = scrape.samples.iter().find(|s| {
        s.metric == "branchsync_rows_total"
            && s.labels.get("table") == Some("public.sale")
            && s.labels.get("direction") == Some("pull")
            && s.labels.get("branch") == Some("shop-1")
    });
    // OpenMetrics names a counter's family without `_total`; the parser then calls its samples untyped.
    assert!(
        sale_rows.is_some_and(
            |s| matches!(s.value, prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) if v >= 3.0)
        ),
        "{text}"
    );
    assert!(sample("branchsync_conflicts_total", Some("shop-1")).is_some_and(|v| v >= 1.0), "{text}");
    assert!(text.contains("branchsync_sync_duration_seconds_bucket"), "{text}");
    assert!(text.contains("branchsync_shop_pending_changes{branch=\"shop-1\"}"), "{text}");

    // SIGHUP: a new user in the file logs in, without a restart; a broken file leaves the old one in force.
    let newcomer = ("nina", "newcomer-password");
    assert_eq!(api.get("/api/v1/branches?live=false", Some(newcomer)).await.0, StatusCode::UNAUTHORIZED);
    // The hash made as an operator makes it, with the controller's own command.
    let mut hashing = std::process::Command::new(binary("office-controller"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut hashing.stdin.take().unwrap(), format!("{}\n", newcomer.1).as_bytes()).unwrap();
    let hashed = hashing.wait_with_output().unwrap();
    assert!(hashed.status.success());
    let hash = String::from_utf8(hashed.stdout).unwrap().trim().to_string();
    fleet.edit_config(|c| {
        format!("{c}[[service.users]]\nname = \"nina\"\npassword_hash = \"{hash}\"\nrole = \"viewer\"\n")
    });
    let hup = || {
        assert!(
            std::process::Command::new("kill").args(["-HUP", &service.id().to_string()]).status().unwrap().success()
        )
    };
    hup();
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.get("/api/v1/branches?live=false", Some(newcomer)).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "the reloaded user cannot log in");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fleet.edit_config(|c| c.replace("role = \"viewer\"", "role = \"nobody\""));
    hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        api.get("/api/v1/branches?live=false", Some(newcomer)).await.0,
        StatusCode::OK,
        "the old configuration stays"
    );

    assert!(std::process::Command::new("kill").args(["-TERM", &service.id().to_string()]).status().unwrap().success());
    assert!(service.wait().unwrap().success());
    fleet.edit_config(|c| c.replace("role = \"nobody\"", "role = \"viewer\""));
    fleet.assert_all_verified();
}
