//! Counters for `GET /metrics`, rendered in Prometheus text format. Plain atomics and one small map: no
//! dependency, no allocation on the hot path beyond the map entry of a new (method, result) pair.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The agent's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, &'static str), u64>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    last_exchange_unix: AtomicI64,
}

impl Metrics {
    /// Counts one request by method and result (`ok`, `fault`, `denied`).
    pub fn request(&self, method: &str, result: &'static str) {
        if let Ok(mut map) = self.requests.lock() {
            // Unknown method names are caller-controlled: fold them so the map stays bounded.
            let method = if protocol::methods::ALL.contains(&method) { method } else { "other" };
            *map.entry((method.to_string(), result)).or_default() += 1;
        }
    }

    /// Adds request and response body sizes.
    pub fn bytes(&self, received: usize, sent: usize) {
        self.bytes_in.fetch_add(received as u64, Ordering::Relaxed);
        self.bytes_out.fetch_add(sent as u64, Ordering::Relaxed);
    }

    /// Records a successful exchange (an applied upload or a completed diff) now.
    pub fn exchanged(&self) {
        self.last_exchange_unix.store(unix_now(), Ordering::Relaxed);
    }

    /// Unix time of the last successful exchange, 0 when none.
    pub fn last_exchange(&self) -> i64 {
        self.last_exchange_unix.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition, with the gauges read from the database by the caller.
    pub fn render(&self, pending_changes: Option<i64>, open_sessions: Option<i64>, uptime_seconds: u64) -> String {
        let mut out = String::new();
        out.push_str("# HELP branchsync_agent_requests_total XML-RPC requests by method and result.\n");
        out.push_str("# TYPE branchsync_agent_requests_total counter\n");
        if let Ok(map) = self.requests.lock() {
            for ((method, result), n) in map.iter() {
                let _ = writeln!(out, "branchsync_agent_requests_total{{method=\"{method}\",result=\"{result}\"}} {n}");
            }
        }
        let gauges: [(&str, &str, &str, Option<i64>); 6] = [
            (
                "branchsync_agent_received_bytes_total",
                "counter",
                "Request body bytes received.",
                Some(self.bytes_in.load(Ordering::Relaxed) as i64),
            ),
            (
                "branchsync_agent_sent_bytes_total",
                "counter",
                "Response body bytes sent.",
                Some(self.bytes_out.load(Ordering::Relaxed) as i64),
            ),
            (
                "branchsync_agent_last_exchange_timestamp_seconds",
                "gauge",
                "Unix time of the last successful exchange.",
                Some(self.last_exchange()),
            ),
            (
                "branchsync_agent_pending_changes",
                "gauge",
                "Captured changes the office has not acknowledged.",
                pending_changes,
            ),
            ("branchsync_agent_open_sessions", "gauge", "Upload sessions not yet finished.", open_sessions),
            (
                "branchsync_agent_uptime_seconds",
                "gauge",
                "Seconds since the agent started.",
                Some(uptime_seconds as i64),
            ),
        ];
        for (name, kind, help, value) in gauges {
            if let Some(v) = value {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
            }
        }
        out
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
