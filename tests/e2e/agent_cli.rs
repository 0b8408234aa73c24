//! The agent's operational contract as scripts use it: `hash-password`, `print-default-config`, environment
//! overrides, `--log-format json`, and a graceful stop on SIGTERM.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::binary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_binary_hashes_prints_its_config_and_stops_on_sigterm() {
    let mut child = Command::new(binary("shop-agent"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let out = Command::new(binary("shop-agent")).arg("print-default-config").output().unwrap();
    let default = String::from_utf8(out.stdout).unwrap();
    assert!(default.contains("[limits]") && default.contains("role = \"monitor\""));

    // The printed default, with real hashes and an environment override of the database and port, serves.
    let url = testbed::shared_cluster().create_database("cli").await.unwrap();
    let dir = std::env::temp_dir().join(format!("branchsync-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(&config, default.replace("$argon2id$v=19$m=19456,t=2,p=1$REPLACE_ME$REPLACE_ME", &hash)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut agent = Command::new(binary("shop-agent"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .env("SHOP_AGENT__DATABASE_URL", &url)
        .env("SHOP_AGENT__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "agent did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let health = Command::new("python3")
        .args([
            "-c",
            &format!("import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/healthz').status)"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&health.stdout).trim(), "200");
    let term = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status = agent.wait().unwrap();
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut agent.stderr.take().unwrap(), &mut logs).unwrap();
    let first = logs.lines().next().unwrap_or_default();
    assert!(first.starts_with('{') && first.contains("\"level\""), "json log lines expected: {first}");
    let _ = std::fs::remove_dir_all(&dir);
}
