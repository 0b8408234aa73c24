//! Starts a private PostgreSQL cluster from the machine's server binaries in a temporary directory, as an
//! unprivileged user when we run as root, and makes sure it goes away with the process that started it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Why a cluster could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No `initdb`/`postgres` binaries were found.
    #[error(
        "postgresql server binaries not found on PATH or in /usr/lib/postgresql/*/bin, install them or set BRANCHSYNC_PG_BIN"
    )]
    NoBinaries,
    /// Running as root without an unprivileged user to run the server as.
    #[error("running as root but there is no `postgres` user to run the server as, create one")]
    NoUnprivilegedUser,
    /// A command failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// What was run.
        what: String,
        /// Its output or error.
        detail: String,
    },
    /// Filesystem trouble in the temporary directory.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A database-level error while creating a database.
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// A running throwaway cluster, reachable over a Unix socket in its own directory (no TCP port to collide).
/// Stopped and removed on drop; if the owning process dies first, a watchdog process does it.
#[derive(Debug)]
pub struct Cluster {
    root: PathBuf,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    port: u16,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SHARED: OnceLock<Cluster> = OnceLock::new();

/// One cluster per process, started on first use, for tests that each take a fresh database from it.
pub fn shared_cluster() -> &'static Cluster {
    SHARED.get_or_init(|| Cluster::start().unwrap_or_else(|e| panic!("cannot start a test cluster: {e}")))
}

impl Cluster {
    /// Creates and starts a new cluster with settings for throwaway use (no fsync, logical WAL available).
    pub fn start() -> Result<Cluster, ClusterError> {
        Self::start_with(&[])
    }

    /// As [`start`](Self::start), with extra `-c name=value` server settings.
    pub fn start_with(settings: &[(&str, &str)]) -> Result<Cluster, ClusterError> {
        let bin = find_bin_dir().ok_or(ClusterError::NoBinaries)?;
        let run_as = if is_root() { Some(postgres_ids().ok_or(ClusterError::NoUnprivilegedUser)?) } else { None };
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("branchsync-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(|source| ClusterError::Io { path: root.clone(), source })?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))
                .map_err(|source| ClusterError::Io { path: root.clone(), source })?;
        }
        let cluster = Cluster { root, bin, run_as, port: 5432 };
        cluster.spawn_watchdog();
        cluster.initdb()?;
        cluster.write_settings(settings)?;
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }

    /// The directory holding the data directory, the socket and the log.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of the server binaries in use (also holds `pg_dump` and `psql` on Debian).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// A libpq/tokio-postgres connection string for a database of this cluster.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!("host={} port={} user=postgres dbname={dbname}", self.root.display(), self.port)
    }

    /// Creates an empty database with a unique name starting with `prefix` and returns its connection string.
    pub async fn create_database(&self, prefix: &str) -> Result<String, ClusterError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name: String = format!("{prefix}_{n}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .collect();
        let (client, conn) = tokio_postgres::connect(&self.conninfo("postgres"), tokio_postgres::NoTls).await?;
        let task = tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await?;
        drop(client);
        let _ = task.await;
        Ok(self.conninfo(&name))
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn crash(&self) -> Result<(), ClusterError> {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"])
    }

    /// Starts the server again after [`crash`](Self::crash) or a stop.
    pub fn restart(&self) -> Result<(), ClusterError> {
        self.pg_ctl_start()
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.run_as {
            Some(_) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn run(&self, what: &str, cmd: &mut Command) -> Result<(), ClusterError> {
        let out = cmd
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| ClusterError::Command { what: what.into(), detail: e.to_string() })?;
        if out.status.success() {
            Ok(())
        } else {
            let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if let Ok(log) = std::fs::read_to_string(self.root.join("postgres.log")) {
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                detail.push_str("\nserver log tail:\n");
                detail.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
            Err(ClusterError::Command { what: what.into(), detail })
        }
    }

    fn initdb(&self) -> Result<(), ClusterError> {
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(self.data_dir()).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]);
        self.run("initdb", &mut cmd)
    }

    fn write_settings(&self, extra: &[(&str, &str)]) -> Result<(), ClusterError> {
        let mut conf = format!(
            "\n# branchsync throwaway cluster\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = {}\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\n\
             shared_buffers = 128MB\nwal_level = logical\nmax_wal_senders = 10\nmax_replication_slots = 10\n\
             log_min_messages = warning\n",
            self.root.display(),
            self.port
        );
        for (k, v) in extra {
            conf.push_str(&format!("{k} = '{v}'\n"));
        }
        let path = self.data_dir().join("postgresql.conf");
        let mut text =
            std::fs::read_to_string(&path).map_err(|source| ClusterError::Io { path: path.clone(), source })?;
        text.push_str(&conf);
        std::fs::write(&path, text).map_err(|source| ClusterError::Io { path, source })
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), ClusterError> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(self.data_dir()).args(args);
        self.run(&format!("pg_ctl {}", args[0]), &mut cmd)
    }

    fn pg_ctl_start(&self) -> Result<(), ClusterError> {
        let log = self.root.join("postgres.log");
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(self.data_dir()).arg("-l").arg(&log).args(["-w", "-t", "60", "start"]);
        // pg_ctl's daemonised server keeps our stdout open otherwise, which would hang anyone reading it.
        cmd.stdout(Stdio::null());
        self.run("pg_ctl start", &mut cmd)?;
        // The socket appears a moment after pg_ctl returns on some systems.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.root.join(format!(".s.PGSQL.{}", self.port)).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// A detached shell that stops the server and removes the directory once this process is gone, so that a
    /// failing or killed test leaves nothing behind.
    fn spawn_watchdog(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = match self.run_as {
            Some(_) => format!(
                "runuser -u postgres -- '{}' -D '{}' stop -m immediate",
                pg_ctl.display(),
                self.data_dir().display()
            ),
            None => format!("'{}' -D '{}' stop -m immediate", pg_ctl.display(), self.data_dir().display()),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; if [ -f '{data}/postmaster.pid' ]; then {stop} >/dev/null 2>&1; fi; rm -rf '{root}'",
            pid = std::process::id(),
            data = self.data_dir().display(),
            root = self.root.display(),
        );
        let _ = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = self.pg_ctl(&["stop", "-m", "fast", "-w"]);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BRANCHSYNC_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    // Debian puts the real binaries in a versioned directory and only wrappers on PATH; prefer the newest.
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    versioned.sort_by_key(|p| {
        p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    if let Some(dir) = versioned.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

fn postgres_ids() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let mut fields = line.split(':');
    let uid = fields.nth(2)?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    Some((uid, gid))
}
