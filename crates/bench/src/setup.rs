//! What every scenario shares: the sizes of a run, the clusters and password of the environment, and the result
//! lines the scenarios add to.

use std::path::PathBuf;

use anyhow::{Context, Result};
use testbed::Cluster;

/// Row counts and repetitions of a run.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Products in the initial load.
    pub products: i64,
    /// New rows (sale, sale_item, payment) at the shop for the catch-up.
    pub changes: i64,
    /// Runs of the small-change latency.
    pub latency_runs: usize,
    /// Branch counts of the fleet scenario.
    pub fleet: Vec<usize>,
    /// New sales per branch in the fleet scenario.
    pub fleet_sales: i64,
    /// Rows served by one `diff` loop in the agent scenario.
    pub agent_rows: i64,
    /// Seconds of concurrent `status` calls.
    pub status_seconds: f64,
    /// Sales pulled by the controller binary in the memory scenario.
    pub memory_rows: i64,
    /// Decompressed size of the gzip bomb in the memory scenario, in bytes.
    pub bomb_bytes: u64,
    /// Branches of the service scenario.
    pub serve_branches: usize,
    /// The service scenario's `[schedule] interval_seconds`.
    pub serve_interval: u64,
    /// Intervals the service scenario runs for.
    pub serve_rounds: u32,
    /// Run only these scenarios (`load`, `catchup`, `fleet`, `agent`, `hammer`, `memory`, `serve`); all when empty.
    pub only: Vec<String>,
}

impl Sizes {
    /// The sizes of BRIEF §8.
    pub fn full() -> Sizes {
        Sizes {
            products: 1_000_000,
            changes: 100_000,
            latency_runs: 21,
            fleet: vec![50, 100, 200],
            fleet_sales: 50,
            agent_rows: 1_000_000,
            status_seconds: 5.0,
            memory_rows: 1_000_000,
            bomb_bytes: 1 << 30,
            serve_branches: 200,
            serve_interval: 60,
            serve_rounds: 5,
            only: Vec::new(),
        }
    }

    /// A run small enough for the test suite, so that the benchmarks never rot.
    pub fn tiny() -> Sizes {
        Sizes {
            products: 2000,
            changes: 2000,
            latency_runs: 3,
            fleet: vec![3],
            fleet_sales: 5,
            agent_rows: 3000,
            status_seconds: 0.5,
            memory_rows: 2000,
            bomb_bytes: 8 << 20,
            serve_branches: 3,
            serve_interval: 2,
            serve_rounds: 3,
            only: Vec::new(),
        }
    }
}

/// One line of the results table.
#[derive(Debug, Clone)]
pub struct Line {
    /// What was measured.
    pub scenario: String,
    /// Our figure, with its unit.
    pub ours: String,
    /// The peer's figure in the same run, with its unit, or what it is compared with.
    pub peer: String,
    /// ours / peer where both are numbers of the same kind.
    pub ratio: Option<f64>,
    /// The goal of BRIEF §8.
    pub goal: String,
    /// Whether the goal is met, when it can be judged.
    pub met: Option<bool>,
}

/// Everything a run produced.
#[derive(Debug, Default)]
pub struct Results {
    /// The table.
    pub lines: Vec<Line>,
    /// Notes on how each figure was taken.
    pub notes: Vec<String>,
    /// Whether a scenario failed (its error is in the notes).
    pub failed: bool,
}

/// The throwaway clusters a run uses: the office's and the shops'.
pub struct Env {
    /// The office cluster.
    pub office: Cluster,
    /// The shop cluster (one database per shop).
    pub shops: Cluster,
    /// Where configuration and password files go.
    pub dir: PathBuf,
    /// The agent password.
    pub password: String,
    /// Its argon2 hash.
    pub hash: String,
}

impl Env {
    /// Starts the clusters.
    pub async fn start() -> Result<Env> {
        let office = tokio::task::spawn_blocking(Cluster::start).await?.context("cannot start the office cluster")?;
        // Every shop of the fleet scenario shares this cluster, each with an agent holding a few idle connections.
        let shops = tokio::task::spawn_blocking(|| Cluster::start_with(&[("max_connections", "2000")]))
            .await?
            .context("cannot start the shop cluster")?;
        let dir = office.root().join("bench");
        std::fs::create_dir_all(&dir)?;
        let password = "bench-password".to_string();
        std::fs::write(dir.join("password"), &password)?;
        let hash = service::auth::hash_password(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Env { office, shops, dir, password, hash })
    }

    /// The password file for `branch add`.
    pub fn password_file(&self) -> String {
        self.dir.join("password").display().to_string()
    }
}
