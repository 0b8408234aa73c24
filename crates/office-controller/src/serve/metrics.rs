//! The office's metrics at `GET /metrics` in the Prometheus text format, kept with `prometheus-client`. Each
//! finished job adds its duration, rows and bytes (by table and direction), conflicts and result; the last
//! successful sync time and the last result of every branch are read from the office's records at each scrape,
//! so they survive restarts and agree across services sharing the office. Names follow Prometheus conventions
//! (`_seconds`, `_total`); docs/api.md lists them, deploy/alerts.yml uses them.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::records::Branch;
use crate::sync::BranchReport;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BranchLabel {
    branch: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    branch: String,
    table: String,
    direction: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    branch: String,
    direction: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    branch: String,
    job: String,
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

fn duration_histogram() -> Histogram {
    // 0.1 s to about 55 min.
    Histogram::new(exponential_buckets(0.1, 2.0, 16))
}

/// The service's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    duration: Family<BranchLabel, Histogram, fn() -> Histogram>,
    rows: Family<TableLabels, Counter>,
    bytes: Family<DirectionLabels, Counter>,
    conflicts: Family<BranchLabel, Counter>,
    jobs: Family<JobLabels, Counter>,
    agent_up: Family<BranchLabel, Gauge>,
    shop_pending: Family<BranchLabel, Gauge>,
    last_success: Family<BranchLabel, Gauge<f64, AtomicU64>>,
    last_ok: Family<BranchLabel, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("branchsync");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            rows: Family::default(),
            bytes: Family::default(),
            conflicts: Family::default(),
            jobs: Family::default(),
            agent_up: Family::default(),
            shop_pending: Family::default(),
            last_success: Family::default(),
            last_ok: Family::default(),
        };
        registry.register_with_unit(
            "sync_duration",
            "Wall time of each sync job of a branch",
            Unit::Seconds,
            m.duration.clone(),
        );
        registry.register("rows", "Rows moved, by branch, table and direction (pull, push)", m.rows.clone());
        registry.register_with_unit(
            "payload",
            "Compressed payload moved, by branch and direction",
            Unit::Bytes,
            m.bytes.clone(),
        );
        registry.register("conflicts", "Conflicts decided while pulling a branch", m.conflicts.clone());
        registry.register("jobs", "Jobs run by this service, by branch, job and result", m.jobs.clone());
        registry.register(
            "agent_up",
            "1 when the branch's agent answered at its last job, 0 when not",
            m.agent_up.clone(),
        );
        registry.register(
            "shop_pending_changes",
            "Changes captured at the shop and not yet confirmed by the office, after the last sync",
            m.shop_pending.clone(),
        );
        registry.register_with_unit(
            "last_success_timestamp",
            "Unix time of the branch's last successful sync (from the office's records)",
            Unit::Seconds,
            m.last_success.clone(),
        );
        registry.register(
            "last_sync_ok",
            "1 when the branch's last sync attempt succeeded, 0 when it failed",
            m.last_ok.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("build_info", "The office controller's version", build);
        *m.registry.lock().unwrap_or_else(|p| p.into_inner()) = registry;
        m
    }
}

impl Metrics {
    /// Counts a finished job and what its report says it moved.
    pub fn job(&self, branch: &str, job: &str, ok: bool, seconds: f64, report: Option<&BranchReport>) {
        let b = BranchLabel { branch: branch.into() };
        let result = if ok { "ok" } else { "error" };
        self.jobs.get_or_create(&JobLabels { branch: branch.into(), job: job.into(), result: result.into() }).inc();
        self.duration.get_or_create(&b).observe(seconds);
        let Some(report) = report else { return };
        for (table, directions) in &report.tables {
            for (direction, moved) in directions {
                let labels =
                    TableLabels { branch: branch.into(), table: table.clone(), direction: (*direction).into() };
                self.rows.get_or_create(&labels).inc_by(moved.rows);
                self.conflicts.get_or_create(&b).inc_by(moved.conflicts);
            }
        }
        for (direction, bytes) in [("pull", report.bytes_pulled), ("push", report.bytes_pushed)] {
            self.bytes
                .get_or_create(&DirectionLabels { branch: branch.into(), direction: direction.into() })
                .inc_by(bytes);
        }
        if let Some(up) = report.agent_up {
            self.agent_up.get_or_create(&b).set(i64::from(up));
        }
        if let Some(pending) = report.shop_pending {
            self.shop_pending.get_or_create(&b).set(pending);
        }
    }

    /// The metrics as Prometheus (OpenMetrics) text, the last success and result of each of `branches` (as
    /// the office's records hold them) set first.
    pub fn render(&self, branches: &[Branch]) -> Result<String, std::fmt::Error> {
        for b in branches.iter().filter(|b| b.initialised_at.is_some()) {
            let label = BranchLabel { branch: b.name.clone() };
            let at = b.timestamp.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok());
            self.last_success.get_or_create(&label).set(at.map_or(0.0, |t| t.as_millisecond() as f64 / 1000.0));
            self.last_ok.get_or_create(&label).set(i64::from(b.last_error.is_none() && b.timestamp.is_some()));
        }
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }
}
