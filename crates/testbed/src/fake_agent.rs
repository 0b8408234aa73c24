//! A fake shop agent for tests and benchmarks that need an agent answering what no real one would (hostile
//! content, a gzip bomb): plain HTTP, one request per connection, each answered by a function of its body.

use std::sync::Arc;

use protocol::policy::{Assignment, Policy};
use protocol::wire::AgentStatus;
use protocol::wire::status::ShopState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The status of an agent configured as `branch` with `policy`, as a real one reports it after `branch init`,
/// so that the controller's checks let the sync go on to the calls under test.
pub fn configured_status(branch: &str, policy: Policy, id_range: i64) -> AgentStatus {
    AgentStatus {
        version: "0.0.0-fake".into(),
        protocol: 2,
        uptime_seconds: 1,
        last_exchange_unix: 0,
        last_error: String::new(),
        last_error_unix: 0,
        database: Ok(ShopState {
            assignment: Some(Assignment { branch: branch.into(), policy, id_range }),
            ..ShopState::default()
        }),
    }
}

/// Listens on 127.0.0.1 and answers every request with `answer(body)`, a complete XML-RPC response document.
/// Returns the agent's base URL; it serves until the runtime ends.
pub async fn serve<F>(answer: F) -> std::io::Result<String>
where
    F: Fn(&str) -> String + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut socket).await else { return };
                let body = answer(&String::from_utf8_lossy(&request));
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok(base)
}

/// Reads the headers, then as much body as `Content-Length` says; `None` when the peer closed first.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    let mut buf = [0u8; 8192];
    let (start, wanted) = loop {
        let n = socket.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, end + 4 + length);
        }
    };
    while request.len() < wanted {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    Some(request.split_off(start))
}
