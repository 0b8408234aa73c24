//! The state the office service's parts share: the configuration in force (replaced whole on reload), this
//! process's name in the claims, the bound on jobs, the login gate, the job tracker and the metrics.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Result;
use jiff::Timestamp;
use service::auth::Authenticator;
use service::gate::{Gate, GateSettings};
use service::throttle::Settings;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::{Config, OfficeRole, ServiceConfig};
use crate::schedule::Schedule;
use crate::serve::metrics::Metrics;

/// What the service's parts share: the configuration (replaced whole on reload), who this process is in the
/// claims, and the bound on jobs running at once.
#[derive(Debug)]
pub struct Service {
    current: RwLock<(Arc<Config>, Arc<Schedule>)>,
    /// This process in the claims: `host:pid:nonce`.
    pub holder: String,
    /// At most `[sync] concurrency` jobs at once.
    pub bound: Semaphore,
    /// The branches this process is running a job of: never two of one branch here, whoever asked (the
    /// scheduler, the API), and only these claims are renewed.
    pub running: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// When the service started.
    pub started: Timestamp,
    /// The login gate of the API and `/metrics`.
    pub gate: Gate<OfficeRole>,
    /// Every job this service runs (scheduled or asked for), so that a shutdown waits for them.
    pub tasks: TaskTracker,
    /// What `/metrics` shows.
    pub metrics: Metrics,
}

fn users(config: &ServiceConfig) -> Authenticator<OfficeRole> {
    Authenticator::new(config.users.iter().map(|u| (u.name.clone(), u.password_hash.clone(), u.role)))
}

impl Service {
    /// A service for `config`.
    pub fn new(config: Config) -> Result<Service> {
        let schedule = Schedule::from_config(&config.schedule)?;
        let bound = Semaphore::new(config.sync.concurrency);
        let s = &config.service;
        let settings = GateSettings {
            concurrency: s.auth_concurrency,
            throttle: Settings {
                per_address: s.auth_failures_per_address,
                per_user: s.auth_failures_per_user,
                window: Duration::from_secs(s.auth_failure_window_seconds),
                lockout: Duration::from_secs(s.auth_lockout_seconds),
            },
        };
        let gate = Gate::new(users(s), settings);
        Ok(Service {
            current: RwLock::new((Arc::new(config), Arc::new(schedule))),
            holder: holder(),
            bound,
            running: Default::default(),
            started: Timestamp::now(),
            gate,
            tasks: TaskTracker::new(),
            metrics: Metrics::default(),
        })
    }

    /// Replaces the configuration (SIGHUP): the schedule and the users take effect at once, running jobs end
    /// with the configuration they started with. A configuration that does not check is refused whole.
    pub fn reload(&self, config: Config) -> Result<()> {
        let schedule = Schedule::from_config(&config.schedule)?;
        self.gate.replace_users(users(&config.service));
        match self.current.write() {
            Ok(mut c) => *c = (Arc::new(config), Arc::new(schedule)),
            Err(poisoned) => *poisoned.into_inner() = (Arc::new(config), Arc::new(schedule)),
        }
        Ok(())
    }

    /// The configuration and schedule in force.
    pub fn current(&self) -> (Arc<Config>, Arc<Schedule>) {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// This process's name in the claims.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}:{:04x}", std::process::id(), fastrand::u16(..))
}
