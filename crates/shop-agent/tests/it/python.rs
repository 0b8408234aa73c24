//! Python's standard `xmlrpc.client` drives every command, as the protocol document shows: the reference test
//! that any standard XML-RPC client can use the agent.

use std::process::Command;

use shop_agent::config::Limits;
use testbed::sample;

use crate::support::*;

fn drive(phase: &str, agent: &TestAgent) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/drive.py");
    let out = Command::new("python3")
        .args([script, phase, &agent.base, OFFICE_PASSWORD, MONITOR_PASSWORD])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "python {phase} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_xmlrpc_client_initialises_a_shop_uploads_and_reads_sales_back() {
    let (url, shop) = database("python", false).await;
    let agent = TestAgent::start(&url, Limits::default()).await;
    let out = tokio::task::block_in_place(|| drive("init", &agent));
    assert!(out.contains("\"wrong_password_status\": 401"), "{out}");
    assert!(out.contains("\"monitor_clean_fault\": 101"), "{out}");
    assert!(out.contains("\"ddl_fault\": 300"), "{out}");
    assert!(out.contains("\"ended_fault\": 200"), "{out}");
    assert!(out.contains("\"upserted\": 3"), "{out}");
    let name: String = shop.query_one("SELECT name FROM product WHERE id = 2", &[]).await.unwrap().get(0);
    assert_eq!(name, "It's tea");

    sample::sell(&shop, 3, 25, 2, 0, 1).await.unwrap();
    let min: i64 = shop.query_one("SELECT min(id) FROM sale", &[]).await.unwrap().get(0);
    assert_eq!(min, 1_000_000_000_000);
    let out = tokio::task::block_in_place(|| drive("pull", &agent));
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect("drive.py prints one JSON object");
    assert_eq!(json["again_more"], false, "{out}");
    assert!(json["pending"].as_i64().unwrap() > 0, "{out}");
    assert_eq!(json["pending_after_diff"], json["pending"], "a diff from the cursor purges nothing: {out}");
    assert_eq!(json["pending_after_confirm"], 0, "{out}");
    assert!(!out.contains("\"statements\": 0"), "{out}");
    agent.stop().await;
}
