//! The agent's HTTP hardening against strangers on the network: credentials are checked before the body is
//! read, wrong passwords neither starve a correct client nor go on for ever (429), slow or idle connections are
//! closed, and connections beyond the cap are refused. Clients bind distinct loopback addresses (127.0.0.x) so
//! that each is its own peer to the agent's per-address counting.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shop_agent::config::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::*;

const STATUS_CALL: &str = "<?xml version=\"1.0\"?><methodCall><methodName>status</methodName><params/></methodCall>";

/// A generous bound for anything the agent must do "promptly" on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(30);

fn address(agent: &TestAgent) -> std::net::SocketAddr {
    agent.base.strip_prefix("http://").unwrap().parse().unwrap()
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A TCP connection to the agent from 127.0.0.`from`.
async fn connect_from(agent: &TestAgent, from: u8) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((loopback(from), 0).into()).unwrap();
    socket.connect(address(agent)).await.unwrap()
}

/// Sends `head` (and nothing more) and returns the status code of the answer, read within [`GENEROUS`].
async fn raw_status(agent: &TestAgent, from: u8, head: &str) -> u16 {
    let mut tcp = connect_from(agent, from).await;
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(GENEROUS, async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before an answer: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("an answer to the headers alone");
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("not HTTP: {text}"))
}

fn basic(user: &str, password: &str) -> String {
    use std::fmt::Write;
    let raw = format!("{user}:{password}");
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in raw.as_bytes().chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let _ = write!(out, "{}", table[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

fn post_head(length: u64, authorization: Option<&str>) -> String {
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    format!("POST /RPC2 HTTP/1.1\r\nHost: shop\r\nContent-Type: text/xml\r\n{auth}Content-Length: {length}\r\n\r\n")
}

/// A plain HTTP client (no retries) whose connections come from 127.0.0.`from`.
fn http_from(from: u8) -> reqwest::Client {
    reqwest::Client::builder().local_address(loopback(from)).timeout(Duration::from_secs(120)).build().unwrap()
}

async fn status_code(http: &reqwest::Client, agent: &TestAgent, user: &str, password: &str) -> u16 {
    let url = format!("{}/RPC2", agent.base);
    match http.post(url).basic_auth(user, Some(password)).body(STATUS_CALL).send().await {
        Ok(r) => r.status().as_u16(),
        Err(e) => panic!("no answer: {e}"),
    }
}

#[tokio::test]
async fn credentials_are_checked_before_the_body_is_read() {
    let (url, _shop) = database("hardbody", false).await;
    let agent = TestAgent::start(&url, Limits::default()).await;
    // The body is announced and never sent: the answer must come from the headers alone.
    assert_eq!(raw_status(&agent, 1, &post_head(16_000_000, None)).await, 401);
    assert_eq!(raw_status(&agent, 1, &post_head(16_000_000, Some(&basic("office", "wrong")))).await, 401);
    assert_eq!(raw_status(&agent, 1, &post_head(16_000_000, Some(&basic("nobody", "x")))).await, 401);
    // A correct caller announcing more than the limit is refused before sending it.
    let over = Limits::default().request_body_bytes as u64 + 1;
    assert_eq!(raw_status(&agent, 1, &post_head(over, Some(&basic("office", OFFICE_PASSWORD)))).await, 413);
    assert!(agent.office().status().await.is_ok(), "the agent is still up");
    agent.stop().await;
}

#[tokio::test]
async fn wrong_passwords_do_not_starve_a_correct_client_and_end_in_429() {
    let (url, _shop) = database("hardhammer", false).await;
    let agent = Arc::new(TestAgent::start(&url, Limits::default()).await);
    let done = Arc::new(AtomicBool::new(false));
    let mut hammers = Vec::new();
    for i in 0..16u8 {
        let (agent, done) = (agent.clone(), done.clone());
        hammers.push(tokio::spawn(async move {
            let http = http_from(10 + i);
            let started = Instant::now();
            let mut throttled = false;
            // Until the correct client is done, and at least until this one has been told to stop.
            while !(done.load(Ordering::Relaxed) && throttled) && started.elapsed() < Duration::from_secs(300) {
                match status_code(&http, &agent, "office", &format!("wrong-{i}")).await {
                    401 => {}
                    429 => throttled = true,
                    other => panic!("a wrong password got {other}"),
                }
            }
            throttled
        }));
    }
    // The correct client starts uncached (nothing has logged in yet), from an address that never failed.
    let http = http_from(1);
    let mut served = 0;
    while served < 20 || (hammers.iter().any(|h| !h.is_finished()) && served < 2000) {
        assert_eq!(status_code(&http, &agent, "office", OFFICE_PASSWORD).await, 200, "call {served}");
        served += 1;
        if served == 20 {
            done.store(true, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done.store(true, Ordering::Relaxed);
    for hammer in hammers {
        assert!(hammer.await.unwrap(), "every wrong-password client is eventually refused with 429");
    }
    // A user the attack did not name logs in at once from a fresh address, argon2 and all.
    assert_eq!(status_code(&http_from(200), &agent, "monitor", MONITOR_PASSWORD).await, 200);
    Arc::into_inner(agent).unwrap().stop().await;
}

#[tokio::test]
async fn a_locked_address_is_refused_until_its_lockout_ends_while_others_log_in() {
    let limits = Limits {
        auth_failures_per_address: 3,
        auth_failure_window_seconds: 600,
        auth_lockout_seconds: 3,
        ..Limits::default()
    };
    let (url, _shop) = database("hardlock", false).await;
    let agent = TestAgent::start(&url, limits).await;
    let attacker = http_from(20);
    for _ in 0..3 {
        assert_eq!(status_code(&attacker, &agent, "office", "guess").await, 401);
    }
    let r = attacker
        .post(format!("{}/RPC2", agent.base))
        .basic_auth("office", Some("guess"))
        .body(STATUS_CALL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    // The design: a locked address is refused even with the right password (else it could test guesses
    // against the success cache at network speed); the office, elsewhere, is served at once.
    assert_eq!(status_code(&attacker, &agent, "office", OFFICE_PASSWORD).await, 429);
    assert_eq!(status_code(&http_from(1), &agent, "office", OFFICE_PASSWORD).await, 200);
    // Once the lockout is over the right password works from there too, and clears the address's count.
    let started = Instant::now();
    while status_code(&attacker, &agent, "office", OFFICE_PASSWORD).await != 200 {
        assert!(started.elapsed() < GENEROUS, "the lockout never ended");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for _ in 0..2 {
        assert_eq!(status_code(&attacker, &agent, "office", "guess").await, 401, "the count started again");
    }
    agent.stop().await;
}

/// Whether the server has closed `tcp` (a read gives end of file or an error), waiting at most `bound`.
async fn closed_within(tcp: &mut TcpStream, bound: Duration) -> bool {
    let mut buf = [0u8; 256];
    let started = Instant::now();
    while started.elapsed() < bound {
        match tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An answer (408 and the like) before the close is fine.
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    false
}

#[tokio::test]
async fn slowloris_connections_are_closed_and_the_agent_still_serves() {
    let limits = Limits { header_read_seconds: 2, ..Limits::default() };
    let (url, _shop) = database("hardslow", false).await;
    let agent = Arc::new(TestAgent::start(&url, limits).await);
    let mut slow = Vec::new();
    for i in 0..20u8 {
        let agent = agent.clone();
        slow.push(tokio::spawn(async move {
            let mut tcp = connect_from(&agent, 30 + i).await;
            tcp.write_all(b"POST /RPC2 HTTP/1.1\r\nHost: sh").await.unwrap();
            let started = Instant::now();
            let mut buf = [0u8; 256];
            // One byte a second, reading in between, until the agent hangs up.
            while started.elapsed() < GENEROUS {
                if tcp.write_all(b"o").await.is_err() {
                    return true;
                }
                match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    Ok(Ok(_)) | Err(_) => {}
                }
            }
            false
        }));
    }
    // While they trickle, the office is served.
    assert!(agent.office().status().await.is_ok());
    for s in slow {
        assert!(s.await.unwrap(), "a slowloris connection was still open after {GENEROUS:?}");
    }
    assert!(agent.office().status().await.is_ok(), "the agent still serves");
    Arc::into_inner(agent).unwrap().stop().await;
}

#[tokio::test]
async fn a_stalled_body_is_closed_after_the_idle_time() {
    let limits = Limits { idle_seconds: 2, ..Limits::default() };
    let (url, _shop) = database("hardidle", false).await;
    let agent = TestAgent::start(&url, limits).await;
    let mut tcp = connect_from(&agent, 1).await;
    // Authenticated, announcing 1000 bytes and sending ten.
    let head = post_head(1000, Some(&basic("office", OFFICE_PASSWORD)));
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(b"<?xml vers").await.unwrap();
    assert!(closed_within(&mut tcp, GENEROUS).await, "a stalled body kept its connection");
    assert!(agent.office().status().await.is_ok());
    agent.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_status_works_once_they_are_gone() {
    let limits = Limits { max_connections: 4, header_read_seconds: 60, ..Limits::default() };
    let (url, _shop) = database("hardcap", false).await;
    let agent = TestAgent::start(&url, limits).await;
    let mut held = Vec::new();
    for i in 0..4u8 {
        let mut tcp = connect_from(&agent, 50 + i).await;
        // A partial request line: the connection is accepted and waits for the rest.
        tcp.write_all(b"GET /hea").await.unwrap();
        held.push(tcp);
    }
    // Give the accept loop time to take all four before the extra ones arrive (accepts are in order anyway).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..3u8 {
        let mut extra = connect_from(&agent, 60 + i).await;
        // The same valid start of a request as the held ones: only the cap can close it within the bound.
        let _ = extra.write_all(b"GET /hea").await;
        assert!(closed_within(&mut extra, GENEROUS).await, "a connection over the cap stayed open");
    }
    drop(held);
    let http = http_from(1);
    let started = Instant::now();
    loop {
        let url = format!("{}/RPC2", agent.base);
        let sent = http.post(url).basic_auth("office", Some(OFFICE_PASSWORD)).body(STATUS_CALL).send().await;
        if sent.is_ok_and(|r| r.status().as_u16() == 200) {
            break;
        }
        assert!(started.elapsed() < GENEROUS, "status never worked again after the held connections closed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.stop().await;
}
