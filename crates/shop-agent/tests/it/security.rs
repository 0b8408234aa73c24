//! Authentication, roles, limits and hostile uploads: each refused clearly, the agent stays up, nothing applied.

use agent_client::ClientError;
use protocol::fault::FaultCode;
use shop_agent::config::Limits;
use testbed::sample::policy;

use crate::support::*;

const STATUS_CALL: &str = "<?xml version=\"1.0\"?><methodCall><methodName>status</methodName><params/></methodCall>";

#[tokio::test]
async fn missing_or_wrong_credentials_get_401_and_monitor_may_only_read() {
    let (agent, _shop) = configured_shop("auth", Limits::default()).await;
    let http = reqwest::Client::new();
    let url = format!("{}/RPC2", agent.base);
    let r = http.post(&url).body(STATUS_CALL).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("www-authenticate").unwrap().to_str().unwrap().starts_with("Basic"));
    let r = http.post(&url).basic_auth("office", Some("wrong")).body(STATUS_CALL).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http.post(&url).basic_auth("nobody", Some(OFFICE_PASSWORD)).body(STATUS_CALL).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(matches!(
        agent_client::AgentClient::new(&agent.base, "office", "wrong", std::time::Duration::from_secs(5))
            .unwrap()
            .status()
            .await,
        Err(ClientError::Auth)
    ));

    let monitor = agent.monitor();
    assert!(monitor.status().await.is_ok());
    assert_eq!(monitor.clean().await.unwrap_err().fault(), Some(FaultCode::NotAllowed));
    assert_eq!(monitor.diff("").await.unwrap_err().fault(), Some(FaultCode::NotAllowed));
    let metrics =
        http.get(format!("{}/metrics", agent.base)).basic_auth("monitor", Some(MONITOR_PASSWORD)).send().await.unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("branchsync_agent_requests_total{method=\"clean\",result=\"fault\"} 1"), "{text}");
    assert!(text.contains("branchsync_agent_pending_changes"));
    assert_eq!(http.get(format!("{}/metrics", agent.base)).send().await.unwrap().status().as_u16(), 401);
    let health = http.get(format!("{}/healthz", agent.base)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    agent.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_junk_gets_a_short_fault() {
    let limits = Limits { request_body_bytes: 64 * 1024, ..Limits::default() };
    let (agent, _shop) = configured_shop("limits", limits).await;
    let client = agent.office();
    let sid = client.sql_prepare().await.unwrap();
    let big = vec![7u8; 128 * 1024];
    assert!(matches!(client.sql_create(sid, big).await, Err(ClientError::Http { status: 413 })));

    let http = reqwest::Client::new();
    let junk = format!("<methodCall><methodName>status</methodName><params><param>{}</param>", "x".repeat(10_000));
    let r = http
        .post(format!("{}/RPC2", agent.base))
        .basic_auth("office", Some(OFFICE_PASSWORD))
        .body(junk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("<int>100</int>") || text.contains("<i4>100</i4>"), "{text}");
    assert!(text.len() < 1000, "the fault must not echo the request: {} bytes", text.len());
    assert_eq!(client.call("no_such_method", vec![]).await.unwrap_err().fault(), Some(FaultCode::UnknownMethod));
    assert_eq!(
        client.call("status", vec![dxr::Value::Integer(1)]).await.unwrap_err().fault(),
        Some(FaultCode::BadParams)
    );
    assert!(client.status().await.is_ok(), "the agent is still up");
    agent.stop().await;
}

#[tokio::test]
async fn hostile_uploads_are_refused_and_nothing_is_applied() {
    let (agent, shop) =
        configured_shop("hostile", Limits { chunk_decompressed_bytes: 1 << 20, ..Limits::default() }).await;
    let client = agent.office();
    let all = names(&[policy::FROM_SOURCE, policy::FROM_TARGET, policy::BOTH, policy::INITIAL, policy::LOCAL]);
    let before = sums(&shop, &all).await;
    let good =
        gzip(b"INSERT INTO product (id, code, name, price) VALUES (1, 'a', 'b', 1) ON CONFLICT (id) DO NOTHING;");
    let schema = gzip(b"-- table public.product: \"id\" text\nINSERT INTO product (id, code, name, price) VALUES (2, 'a', 'b', 1) ON CONFLICT (id) DO NOTHING;");
    let hostile: Vec<(&str, Vec<u8>, FaultCode)> = vec![
        ("bomb", gzip(&vec![b' '; 50 << 20]), FaultCode::PayloadRefused),
        ("broken gzip", b"\x1f\x8b\x08\x00garbage".to_vec(), FaultCode::PayloadRefused),
        ("sale is the shop's to write", gzip(b"DELETE FROM sale WHERE id = 1;"), FaultCode::PayloadRefused),
        ("shop-local table", gzip(b"DELETE FROM till_session WHERE id = 1;"), FaultCode::PayloadRefused),
        ("hidden DDL", gzip(b"INSERT INTO product (id, code, name, price) VALUES (2, 'a', 'b', 1) ON CONFLICT (id) DO NOTHING; DROP TABLE sale;"), FaultCode::PayloadRefused),
        ("function call", gzip(b"INSERT INTO product (id, code, name, price) VALUES (2, 'a', pg_sleep(10), 1) ON CONFLICT (id) DO NOTHING;"), FaultCode::PayloadRefused),
        ("set", gzip(b"SET session_replication_role = replica;"), FaultCode::PayloadRefused),
        ("schema", schema, FaultCode::SchemaMismatch),
    ];
    // Each after a good chunk in a session of its own: the refusal ends the session, the good chunk with it.
    for (what, data, code) in hostile {
        let sid = client.sql_prepare().await.unwrap();
        client.sql_create(sid, good.clone()).await.unwrap();
        let err = client.sql_create(sid, data).await.unwrap_err();
        assert_eq!(err.fault(), Some(code), "{what}: {err}");
        assert_eq!(client.sql_finish(sid).await.unwrap_err().fault(), Some(FaultCode::UnknownSession), "{what}");
    }
    assert_eq!(sums(&shop, &all).await, before, "nothing of a refused session is applied");
    assert_eq!(open_sessions(&client).await, 0, "no refused session holds a slot");
    assert!(client.status().await.is_ok());
    agent.stop().await;
}

#[tokio::test]
async fn a_cursor_from_another_database_is_refused() {
    let (agent_a, _a) = configured_shop("curs_a", Limits::default()).await;
    let (agent_b, _b) = configured_shop("curs_b", Limits::default()).await;
    let answer = agent_a.office().diff("").await.unwrap();
    assert!(!answer.more);
    let err = agent_b.office().diff(&answer.cursor).await.unwrap_err();
    assert_eq!(err.fault(), Some(FaultCode::CursorRefused));
    assert_eq!(agent_b.office().diff("garbage").await.unwrap_err().fault(), Some(FaultCode::CursorRefused));
    agent_a.stop().await;
    agent_b.stop().await;
}

#[tokio::test]
async fn the_agent_serves_https_with_its_own_certificate() {
    let dir = std::env::temp_dir().join(format!("branchsync-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key, ca) = (dir.join("agent.crt"), dir.join("agent.key"), dir.join("ca.crt"));
    // A private CA and a certificate it signed for 127.0.0.1, as a chain would set it up.
    let script = format!(
        "set -e; cd '{d}'; \
         openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.crt; \
         openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout agent.key -out agent.csr; \
         printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf; \
         openssl x509 -req -in agent.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out agent.crt",
        d = dir.display()
    );
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    let (url, _shop) = database("tls", false).await;
    let agent = TestAgent::start_with(&url, Limits::default(), |c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await;
    assert!(agent.base.starts_with("https://"));
    let pem = std::fs::read(&ca).unwrap();
    let client = agent_client::AgentClient::with_ca(
        &agent.base,
        "office",
        OFFICE_PASSWORD,
        std::time::Duration::from_secs(10),
        Some(&pem),
    )
    .unwrap();
    let status = client.status().await;
    assert!(status.is_ok(), "{status:?}");
    // Without trusting the certificate the client refuses to talk: a network-class error, not a fault.
    assert!(matches!(agent.office().status().await, Err(ClientError::Network { .. })));
    agent.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
