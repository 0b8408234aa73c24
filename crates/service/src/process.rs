//! The plumbing every service binary needs around its library `run`: the shutdown and reload signals, the
//! systemd notifications (readiness, watchdog, stopping; nothing happens when not started by systemd), and the
//! log subscriber (text with colour only on a terminal, or JSON lines).

use std::io::IsTerminal;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

/// Completes on SIGTERM or SIGINT, telling systemd the service is stopping.
pub async fn shutdown_signal() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down: letting the work in flight finish");
}

/// The SIGHUP stream: each `recv` completes on one SIGHUP (configuration reload). `None` when the signal
/// cannot be watched.
pub fn reload_signal() -> Option<tokio::signal::unix::Signal> {
    signal(SignalKind::hangup()).ok()
}

/// Tells systemd the service is ready (`Type=notify`). Call once the listener is bound.
pub fn notify_ready() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}

/// Pings systemd's watchdog (`WatchdogSec=`); a service calls it from the loop whose liveness matters, so that
/// a stuck loop gets the process restarted.
pub fn notify_watchdog() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
}

/// For a service without a loop of its own: pings the watchdog from a task at half its timeout, as long as the
/// runtime answers. Nothing when the unit has no watchdog.
pub fn spawn_watchdog() {
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        let every = (timeout / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                notify_watchdog();
            }
        });
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines, coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("unknown log format {s:?}: use text or json")),
        }
    }
}

/// Installs the log subscriber on stderr at `level`.
pub fn init_logging(format: LogFormat, level: tracing::Level) {
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}
