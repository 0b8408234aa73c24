//! A fleet for end-to-end tests: an office cluster and shop clusters, a real `shop-agent` process per shop, and
//! the real `office-controller` binary driven through its command line, as an operator would.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use testbed::Cluster;
use testbed::sample::{self, policy};
use tokio_postgres::Client;

/// The path of a workspace binary, after building every workspace binary once per test process (a no-op when
/// they are fresh) in the same profile as the tests.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status =
            Command::new(cargo).args(["build", "--quiet", "--workspace", "--bins"]).status().expect("cargo runs");
        assert!(status.success(), "building the workspace binaries failed");
    });
    // Tests run from target/<profile>/deps; binaries sit one level up.
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(|deps| deps.parent()).expect("target directory").join(name)
}

pub const PASSWORD: &str = "e2e-agent-password";

fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| service::auth::hash_password(PASSWORD).unwrap())
}

/// A shop: its cluster, database, and agent process.
pub struct Shop {
    pub name: String,
    _cluster: Cluster,
    pub db: Client,
    pub base: String,
    config: PathBuf,
    agent: Option<Child>,
}

impl Shop {
    /// Starts (or restarts) the agent process and waits until it answers.
    pub fn start_agent(&mut self) {
        let log = std::fs::File::create(self.config.with_extension("log")).unwrap();
        let child = Command::new(binary("shop-agent"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("shop-agent starts");
        self.agent = Some(child);
        let addr = self.base.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "agent {} did not start", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The shop database's connection string, as the agent's configuration has it.
    pub fn database_url(&self) -> String {
        let config = std::fs::read_to_string(&self.config).unwrap();
        let line = config.lines().find(|l| l.starts_with("database_url")).expect("database_url in the agent config");
        line.split('"').nth(1).unwrap().to_string()
    }

    /// Backs the shop database up with `pg_dump` (custom format) into `path`.
    pub fn dump(&self, path: &std::path::Path) {
        let out = Command::new(self._cluster.bin_dir().join("pg_dump"))
            .args(["-Fc", "-f"])
            .arg(path)
            .args(["-d", &self.database_url()])
            .output()
            .expect("pg_dump runs");
        assert!(out.status.success(), "pg_dump: {}", text(&out));
    }

    /// Restores the backup at `path` with `pg_restore` into a new database of the shop's cluster, as an operator
    /// rebuilds a shop's server, points the agent at it (restarting the agent) and reconnects [`Shop::db`].
    pub async fn restore(&mut self, path: &std::path::Path) {
        self.stop_agent();
        let old = self.database_url();
        let new = self._cluster.create_database("restored").await.unwrap();
        let out = Command::new(self._cluster.bin_dir().join("pg_restore"))
            .args(["--exit-on-error", "-d", &new])
            .arg(path)
            .output()
            .expect("pg_restore runs");
        assert!(out.status.success(), "pg_restore: {}", text(&out));
        let config = std::fs::read_to_string(&self.config).unwrap().replace(&old, &new);
        std::fs::write(&self.config, config).unwrap();
        self.db = pgsync::connect(&new).await.unwrap();
        self.start_agent();
    }

    /// Restarts the agent on another port, as when a shop's server gets a new address; returns the new base URL.
    pub fn move_agent(&mut self) -> String {
        self.stop_agent();
        let old = self.base.trim_start_matches("http://").to_string();
        let new = format!("127.0.0.1:{}", free_port());
        let config = std::fs::read_to_string(&self.config).unwrap().replace(&old, &new);
        std::fs::write(&self.config, config).unwrap();
        self.base = format!("http://{new}");
        self.start_agent();
        self.base.clone()
    }

    /// Kills the agent process.
    pub fn stop_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.stop_agent();
    }
}

/// An office and its shops.
pub struct Fleet {
    _office_cluster: Cluster,
    pub office: Client,
    pub shops: Vec<Shop>,
    pub dir: PathBuf,
    config: PathBuf,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn list(l: &[&str]) -> String {
    l.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ")
}

/// What a test adds to the sample schema and the retail policy: `ddl` runs at the office and at every shop
/// before the branches are initialised.
#[derive(Default)]
pub struct Extra {
    pub ddl: &'static str,
    pub from_source: &'static [&'static str],
    pub both: &'static [&'static str],
}

impl Fleet {
    /// Starts an office with sample data and `shops` shops with running agents, runs `init`, `branch add` and
    /// `branch init` for each shop through the controller binary.
    pub async fn new(label: &str, shops: usize, products: i64, conflict: &str) -> Fleet {
        Fleet::with(label, shops, products, conflict, Extra::default()).await
    }

    /// [`Fleet::new`] with `extra` tables and columns.
    pub async fn with(label: &str, shops: usize, products: i64, conflict: &str, extra: Extra) -> Fleet {
        let dir = std::env::temp_dir().join(format!("branchsync-e2e-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let office_cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap().unwrap();
        let office_url = office_cluster.create_database("office").await.unwrap();
        let office = pgsync::connect(&office_url).await.unwrap();
        sample::create_schema(&office).await.unwrap();
        sample::load_office(
            &office,
            sample::OfficeData { seed: 1, products, services: 20, persons: 100, parameters: 5 },
        )
        .await
        .unwrap();
        office.batch_execute(extra.ddl).await.unwrap();
        let config = dir.join("office.toml");
        std::fs::write(
            &config,
            format!(
                "database_url = \"{office_url}\"\n[policies.retail]\nfrom_source = [{}]\nfrom_target = [{}]\nboth = [{}]\ninitial = [{}]\n\
                 conflict = \"{conflict}\"\n[sync]\nconcurrency = 4\ntimeout_seconds = 30\nretries = 1\nbackoff_ms = 100\nchunk_bytes = 65536\n",
                list(&[policy::FROM_SOURCE, extra.from_source].concat()),
                list(policy::FROM_TARGET),
                list(&[policy::BOTH, extra.both].concat()),
                list(policy::INITIAL)
            ),
        )
        .unwrap();
        std::fs::write(dir.join("password"), PASSWORD).unwrap();
        let mut fleet = Fleet { _office_cluster: office_cluster, office, shops: Vec::new(), dir: dir.clone(), config };
        assert!(fleet.ctl(&["init"]).status.success());
        for i in 1..=shops {
            let cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap().unwrap();
            let url = cluster.create_database("shop").await.unwrap();
            let db = pgsync::connect(&url).await.unwrap();
            sample::create_schema(&db).await.unwrap();
            db.batch_execute(extra.ddl).await.unwrap();
            let port = free_port();
            let agent_config = dir.join(format!("shop{i}.toml"));
            std::fs::write(
                &agent_config,
                format!(
                    "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{url}\"\n[[users]]\nname = \"office\"\npassword_hash = \"{}\"\nrole = \"office\"\n",
                    password_hash()
                ),
            )
            .unwrap();
            let mut shop = Shop {
                name: format!("shop-{i}"),
                _cluster: cluster,
                db,
                base: format!("http://127.0.0.1:{port}"),
                config: agent_config,
                agent: None,
            };
            shop.start_agent();
            let password_file = dir.join("password").display().to_string();
            let out = fleet.ctl(&[
                "branch",
                "add",
                &shop.name,
                "--url",
                &shop.base,
                "--user",
                "office",
                "--password-file",
                &password_file,
                "--policy",
                "retail",
            ]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let out = fleet.ctl(&["branch", "init", &shop.name]);
            assert!(
                out.status.success(),
                "branch init: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            fleet.shops.push(shop);
        }
        fleet
    }

    /// Rewrites the controller's configuration file, as an operator edits `office.toml`.
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, edit(text)).unwrap();
    }

    /// Runs the controller with the fleet's configuration.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_env(args, &[])
    }

    /// Runs the controller with extra environment variables (configuration overrides).
    pub fn ctl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(binary("office-controller"));
        cmd.arg("--config").arg(&self.config).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("office-controller runs")
    }

    /// Starts the controller without waiting, for crash tests.
    pub fn ctl_spawn(&self, args: &[&str]) -> Child {
        self.ctl_spawn_env(args, &[])
    }

    /// [`Fleet::ctl_spawn`] with extra environment variables.
    pub fn ctl_spawn_env(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        // Its log is kept beside the configuration, for a person looking into a failed test.
        static SPAWNED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SPAWNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::fs::File::create(self.dir.join(format!("controller-{n}.log"))).unwrap();
        Command::new(binary("office-controller"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// `sync --all`, asserting success.
    pub fn sync_all(&self) {
        let out = self.ctl(&["sync", "--all"]);
        assert!(
            out.status.success(),
            "sync failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `verify NAME --json` parsed, with the exit status.
    pub fn verify(&self, shop: &str) -> (bool, serde_json::Value) {
        let out = self.ctl(&["--json", "verify", shop]);
        (out.status.success(), serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
    }

    /// Asserts every shop equals the office.
    pub fn assert_all_verified(&self) {
        for shop in &self.shops {
            let (ok, report) = self.verify(&shop.name);
            assert!(ok, "{} drifted: {report:#}", shop.name);
        }
    }
}

/// Counts rows with a query.
pub async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

/// The stdout of a run, for messages.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}
