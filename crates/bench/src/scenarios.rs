//! The scenarios of BRIEF §8, each measuring ours and the peer's figure on the same clusters in the same run.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use futures_util::TryStreamExt;
use office_controller::commands::{self, sync::SyncArgs};
use office_controller::config::{Config, SyncConfig};
use testbed::sample::{self, OfficeData, Rng};
use tokio_postgres::Client;

use crate::setup::{Env, Line, Results, Sizes};

fn config(office_url: &str) -> Config {
    Config {
        database_url: office_url.into(),
        policies: [("retail".to_string(), demo::retail())].into(),
        sync: SyncConfig { concurrency: 8, retries: 2, ..SyncConfig::default() },
        schedule: Default::default(),
        service: Default::default(),
    }
}

async fn database(cluster: &testbed::Cluster, name: &str) -> Result<(String, Client)> {
    let url = cluster.create_database(name).await?;
    let client = pgsync::connect(&url).await?;
    sample::create_schema(&client).await?;
    Ok((url, client))
}

/// Adds and initialises a branch whose agent runs in this process; returns the agent's stop handle.
async fn branch(
    env: &Env,
    config: &Config,
    name: &str,
    number: i64,
    shop_url: &str,
) -> Result<tokio::sync::oneshot::Sender<()>> {
    let (base, stop) = demo::start_agent(shop_url, &env.hash).await?;
    let add = commands::branch_add::AddArgs {
        name: name.into(),
        url: base,
        user: "office".into(),
        password_env: None,
        password_file: Some(env.password_file()),
        policy: "retail".into(),
        number: Some(number),
    };
    ok(commands::branch_add::run(config, add).await?, "branch add")?;
    ok(commands::branch_init::run(config, name).await?, "branch init")?;
    Ok(stop)
}

fn ok(out: commands::Output, what: &str) -> Result<commands::Output> {
    if out.ok { Ok(out) } else { bail!("{what} failed:\n{}", out.text) }
}

async fn count(client: &Client, sql: &str) -> Result<i64> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// The gzip level our payloads use by default, which the peer's gzip uses too.
fn gzip_level() -> u32 {
    protocol::payload::WriterConfig::default().gzip_level
}

/// gzip, at the writer's default level, of the tables' rows in `COPY` text format.
async fn gzip_copy(client: &Client, tables: &[&str]) -> Result<u64> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::new(gzip_level()));
    for t in tables {
        let stream = client.copy_out(&format!("COPY {t} TO STDOUT")).await?;
        let mut stream = std::pin::pin!(stream);
        while let Some(bytes) = stream.try_next().await? {
            gz.write_all(&bytes)?;
        }
    }
    Ok(gz.finish()?.len() as u64)
}

/// Flushes both clusters before a timed section, so that a checkpoint left over from the setup or from the other
/// side's run does not land in it.
async fn settle(env: &Env) -> Result<()> {
    for cluster in [&env.office, &env.shops] {
        pgsync::connect(&cluster.conninfo("postgres")).await?.batch_execute("CHECKPOINT").await?;
    }
    Ok(())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// 1 and 3a: the initial load of `products` catalogue rows through `branch init`, against
/// `pg_dump --data-only -t product | psql` between the same two clusters.
pub async fn initial_load(env: &Env, sizes: &Sizes, results: &mut Results) -> Result<()> {
    let (office_url, office) = database(&env.office, "load_office").await?;
    let mut rng = Rng::new(7);
    sample::copy_rows(
        &office,
        "product",
        sample::PRODUCT_COLUMNS,
        (1..=sizes.products).map(|id| sample::product_row(&mut rng, id)),
    )
    .await?;
    office.batch_execute("ANALYZE product").await?;
    let config = config(&office_url);
    ok(commands::init::run(&config).await?, "init")?;
    let (shop_url, shop) = database(&env.shops, "load_shop").await?;

    settle(env).await?;
    let started = Instant::now();
    // The monotonic clock values bound the timed section for `perf record -k CLOCK_MONOTONIC` and `perf report --time`.
    tracing::debug!(at = ?started, "initial load begins");
    let stop = branch(env, &config, "load", 1, &shop_url).await?;
    let ours = started.elapsed();
    tracing::debug!(at = ?Instant::now(), "initial load ends");
    let _ = stop.send(());
    let loaded = count(&shop, "SELECT count(*) FROM product").await?;
    if loaded != sizes.products {
        bail!("the shop holds {loaded} products after branch init, expected {}", sizes.products);
    }
    let log = office
        .query_one("SELECT bytes FROM branchsync.sync_log WHERE direction = 'init' ORDER BY id DESC LIMIT 1", &[])
        .await?;
    let our_bytes: i64 = log.get::<_, Option<i64>>(0).unwrap_or(0);

    let (peer_url, peer) = database(&env.shops, "load_peer").await?;
    let bin = env.office.bin_dir();
    let script = format!(
        "set -o pipefail; '{}' --data-only -t public.product -d '{}' | '{}' -q -v ON_ERROR_STOP=1 -d '{}' > /dev/null",
        bin.join("pg_dump").display(),
        office_url,
        bin.join("psql").display(),
        peer_url
    );
    settle(env).await?;
    let started = Instant::now();
    let status = Command::new("bash").arg("-c").arg(&script).stdin(Stdio::null()).status()?;
    let theirs = started.elapsed();
    if !status.success() || count(&peer, "SELECT count(*) FROM product").await? != sizes.products {
        bail!("pg_dump | psql did not load the products");
    }
    let ratio = secs(ours) / secs(theirs);
    results.lines.push(Line {
        scenario: format!("1. initial load, {} products", sizes.products),
        ours: format!("{:.2} s (`branch init`)", secs(ours)),
        peer: format!("{:.2} s (`pg_dump --data-only | psql`)", secs(theirs)),
        ratio: Some(ratio),
        goal: "ratio ≤ 1.5".into(),
        met: Some(ratio <= 1.5),
    });
    let gz = gzip_copy(&office, &["product"]).await?;
    let n = sizes.products as f64;
    let ratio = our_bytes as f64 / gz as f64;
    results.lines.push(Line {
        scenario: "3a. bytes per row, initial load".into(),
        ours: format!("{:.1} B/row", our_bytes as f64 / n),
        peer: format!("{:.1} B/row (gzip -{} of COPY text)", gz as f64 / n, gzip_level()),
        ratio: Some(ratio),
        goal: "ratio ≤ 1.2".into(),
        met: Some(ratio <= 1.2),
    });
    results.notes.push(format!(
        "initial load: `branch init` includes clean, configure, setidstart and the records; the agent runs in the bench process and \
         applies into a table with a primary key, like psql's target. Payload {our_bytes} B for {} rows.",
        sizes.products
    ));
    Ok(())
}

/// Sales, items and payments worth about `rows` rows.
fn sales_for(rows: i64) -> i64 {
    // One sale has 2.5 items on average and one payment.
    (rows as f64 / 4.5).ceil() as i64
}

/// 2, 3b and 4: catch-up of new shop rows into the office by one `sync`, against a logical-replication
/// subscription catching up the same rows; then the latency of one sale.
pub async fn catch_up(env: &Env, sizes: &Sizes, results: &mut Results) -> Result<()> {
    let data = OfficeData { seed: 3, products: 1000, services: 20, persons: 200, parameters: 5 };
    let (office_url, office) = database(&env.office, "cu_office").await?;
    sample::load_office(&office, data).await?;
    let config = config(&office_url);
    ok(commands::init::run(&config).await?, "init")?;
    let (shop_url, shop) = database(&env.shops, "cu_shop").await?;
    let stop = branch(env, &config, "catchup", 1, &shop_url).await?;
    let sync = |name: &str| SyncArgs {
        branches: vec![name.to_string()],
        all: false,
        full: false,
        dry_run: false,
        rebind: false,
    };
    // A branch in service has synced before: the catch-up starts from its pull cursor, as every night's does.
    ok(commands::sync::run(&config, sync("catchup")).await?, "first sync")?;
    let sales = sales_for(sizes.changes);
    let rows = sample::sell(&shop, 11, sales, 1000, 20, 200).await? as i64;

    settle(env).await?;
    let started = Instant::now();
    tracing::debug!(at = ?started, "catch-up begins");
    let out = ok(commands::sync::run(&config, sync("catchup")).await?, "sync")?;
    let ours = started.elapsed();
    tracing::debug!(at = ?Instant::now(), "catch-up ends");
    let pulled = out.json[0]["bytes_pulled"].as_u64().unwrap_or(0);
    if count(&office, "SELECT count(*) FROM sale").await? != sales {
        bail!("the office does not hold the shop's sales after the sync");
    }

    // The peer: a running subscription whose apply worker is held back by a lock on its first target table
    // while the shop sells the same rows, then released: the time is the catch-up itself, not worker start-up.
    let (_, lr_office) = database(&env.office, "cu_lr_office").await?;
    sample::load_office(&lr_office, data).await?;
    let (lr_shop_url, lr_shop) = database(&env.shops, "cu_lr_shop").await?;
    sample::load_office(&lr_shop, data).await?;
    lr_shop.batch_execute("CREATE PUBLICATION bench_pub FOR TABLE sale, sale_item, payment").await?;
    lr_office
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION bench_sub CONNECTION '{lr_shop_url}' PUBLICATION bench_pub WITH (copy_data = false)"
        ))
        .await?;
    wait_for(
        &lr_office,
        "SELECT count(*) FROM pg_stat_subscription WHERE subname = 'bench_sub' AND pid IS NOT NULL",
        1,
    )
    .await?;
    let mut gate = pgsync::connect(&env.office.conninfo(&lr_office_db(&lr_office).await?)).await?;
    let hold = gate.transaction().await?;
    hold.batch_execute("LOCK TABLE sale, sale_item, payment IN ACCESS EXCLUSIVE MODE").await?;
    let lr_rows = sample::sell(&lr_shop, 11, sales, 1000, 20, 200).await? as i64;
    // Let the publisher decode and send what it can while the worker waits, as WAL would pile up during an outage.
    tokio::time::sleep(Duration::from_millis(500)).await;
    settle(env).await?;
    let started = Instant::now();
    hold.rollback().await?;
    wait_for(
        &lr_office,
        "SELECT (SELECT count(*) FROM sale) + (SELECT count(*) FROM sale_item) + (SELECT count(*) FROM payment)",
        lr_rows,
    )
    .await?;
    let theirs = started.elapsed();
    lr_office.batch_execute("DROP SUBSCRIPTION bench_sub").await?;
    let ratio = secs(ours) / secs(theirs);
    results.lines.push(Line {
        scenario: format!("2. catch-up, {rows} new shop rows"),
        ours: format!("{:.2} s (one `sync`)", secs(ours)),
        peer: format!("{:.2} s (logical replication, {lr_rows} rows)", secs(theirs)),
        ratio: Some(ratio),
        goal: "ratio ≤ 1.0".into(),
        met: Some(ratio <= 1.0),
    });
    let gz = gzip_copy(&shop, &["sale", "sale_item", "payment"]).await?;
    let ratio = pulled as f64 / gz as f64;
    results.lines.push(Line {
        scenario: "3b. bytes per row, catch-up".into(),
        ours: format!("{:.1} B/row", pulled as f64 / rows as f64),
        peer: format!("{:.1} B/row (gzip -{} of COPY text)", gz as f64 / rows as f64, gzip_level()),
        ratio: Some(ratio),
        goal: "ratio ≤ 1.2".into(),
        met: Some(ratio <= 1.2),
    });
    results.notes.push(
        "catch-up: the subscription (copy_data = false) ran with its apply worker held back by a lock on the target tables while \
         the shop sold the same rows; timed from releasing the lock until the office held every row. Ours is one `sync` of a \
         branch that has synced before (pull from its cursor; the push has nothing to send), from the moment the line is back."
            .into(),
    );

    let mut times = Vec::new();
    for i in 0..sizes.latency_runs {
        sample::sell(&shop, 1000 + i as u64, 1, 1000, 20, 200).await?;
        let started = Instant::now();
        ok(commands::sync::run(&config, sync("catchup")).await?, "sync")?;
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    results.lines.push(Line {
        scenario: format!("4. one sale until committed at the office (median of {})", times.len()),
        ours: format!("{:.0} ms", median.as_secs_f64() * 1000.0),
        peer: "-".into(),
        ratio: None,
        goal: "reported".into(),
        met: None,
    });
    let _ = stop.send(());
    Ok(())
}

async fn lr_office_db(client: &Client) -> Result<String> {
    Ok(client.query_one("SELECT current_database()::text", &[]).await?.get(0))
}

async fn wait_for(client: &Client, sql: &str, expected: i64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if count(client, sql).await? == expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {sql} to reach {expected}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// 5: one `sync --all` over many branches with a few new sales each: wall time, and the growth of the process's
/// resident memory (controller and in-process agents together) during the run.
pub async fn fleet(env: &Env, sizes: &Sizes, results: &mut Results) -> Result<()> {
    let data = OfficeData { seed: 5, products: 200, services: 10, persons: 50, parameters: 3 };
    for &branches in &sizes.fleet {
        let (office_url, office) = database(&env.office, &format!("fleet{branches}_office")).await?;
        sample::load_office(&office, data).await?;
        let config = config(&office_url);
        ok(commands::init::run(&config).await?, "init")?;
        let mut stops = Vec::new();
        let mut shops = Vec::new();
        for i in 1..=branches {
            let (shop_url, shop) = database(&env.shops, &format!("fleet{branches}_shop{i}")).await?;
            stops.push(branch(env, &config, &format!("b{i}"), i as i64, &shop_url).await?);
            shops.push(shop);
        }
        for (i, shop) in shops.iter().enumerate() {
            sample::sell(shop, i as u64, sizes.fleet_sales, 200, 10, 50).await?;
        }
        let before = rss_kib();
        let sampler = RssSampler::start();
        settle(env).await?;
        let started = Instant::now();
        tracing::debug!(at = ?started, branches, "fleet sync begins");
        let all = SyncArgs { branches: vec![], all: true, full: false, dry_run: false, rebind: false };
        ok(commands::sync::run(&config, all).await?, "sync --all")?;
        let took = started.elapsed();
        tracing::debug!(at = ?Instant::now(), "fleet sync ends");
        let peak = sampler.stop();
        let expected = sizes.fleet_sales * branches as i64;
        if count(&office, "SELECT count(*) FROM sale").await? != expected {
            bail!("the office does not hold every branch's sales");
        }
        results.lines.push(Line {
            scenario: format!("5. `sync --all`, {branches} branches × {} sales", sizes.fleet_sales),
            ours: format!("{:.2} s, +{} MiB RSS", secs(took), peak.saturating_sub(before) / 1024),
            peer: "-".into(),
            ratio: None,
            goal: if branches >= 200 { "< 10 s, memory flat".into() } else { "memory flat".into() },
            met: (branches >= 200).then(|| secs(took) < 10.0),
        });
        for stop in stops {
            let _ = stop.send(());
        }
    }
    results.notes.push(
        "fleet: agents run in the bench process (one shop database each, one shop cluster), so the RSS growth covers the controller \
         and the agents together; concurrency 8."
            .into(),
    );
    Ok(())
}

/// 6: the agent process's peak resident memory while serving a `diff` loop over `agent_rows` rows, and the rate
/// of `status` calls under 8 concurrent callers.
pub async fn agent(env: &Env, sizes: &Sizes, results: &mut Results) -> Result<()> {
    // Next to this binary (target/release/bench), or one up when running as a test (target/debug/deps/...).
    let here = std::env::current_exe()?;
    let exe = here
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("shop-agent"))
        .find(|p| p.exists())
        .unwrap_or_else(|| here.with_file_name("shop-agent"));
    if !exe.exists() {
        results
            .notes
            .push(format!("agent: {} not built; run `cargo build --release --workspace` first", exe.display()));
        return Ok(());
    }
    let data = OfficeData { seed: 9, products: 1000, services: 20, persons: 100, parameters: 0 };
    let (shop_url, shop) = database(&env.shops, "agent_shop").await?;
    sample::load_office(&shop, data).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config_path = env.dir.join("agent.toml");
    std::fs::write(
        &config_path,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{shop_url}\"\n[[users]]\nname = \"office\"\npassword_hash = \"{}\"\nrole = \"office\"\n",
            env.hash
        ),
    )?;
    let mut child = Command::new(&exe)
        .args(["serve", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    let client = agent_client::AgentClient::new(&base, "office", &env.password, Duration::from_secs(600))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.status().await.is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the agent did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outcome = async {
        let assignment = protocol::policy::Assignment {
            branch: "agent".into(),
            policy: sample::policy::retail(),
            id_range: 1_000_000_000_000,
        };
        client.configure(&assignment).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let rows = sample::sell(&shop, 21, sales_for(sizes.agent_rows), 1000, 20, 100).await?;
        let baseline = peak_kib(child.id()).unwrap_or(0);
        let mut since = String::new();
        let mut answers = 0;
        let started = Instant::now();
        loop {
            let a = client.diff(&since).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            answers += 1;
            since = a.cursor;
            if !a.more {
                break;
            }
        }
        let took = started.elapsed();
        let peak = peak_kib(child.id()).unwrap_or(0);
        results.lines.push(Line {
            scenario: format!(
                "6a. agent peak RSS serving a {rows}-row `diff` ({answers} answers, {:.1} s)",
                secs(took)
            ),
            ours: format!("{} MiB (before: {} MiB)", peak / 1024, baseline / 1024),
            peer: "-".into(),
            ratio: None,
            goal: "< 100 MB".into(),
            met: Some(peak * 1024 < 100_000_000),
        });
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs_f64(sizes.status_seconds);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (client, calls) = (client.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    if client.status().await.is_ok() {
                        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let rate = calls.load(std::sync::atomic::Ordering::Relaxed) as f64 / sizes.status_seconds;
        results.lines.push(Line {
            scenario: "6b. `status` calls per second, 8 concurrent callers".into(),
            ours: format!("{rate:.0} /s"),
            peer: "-".into(),
            ratio: None,
            goal: "reported".into(),
            met: None,
        });
        Ok::<(), anyhow::Error>(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    status_field(&format!("/proc/{pid}/status"), "VmHWM:")
}

fn rss_kib() -> u64 {
    status_field("/proc/self/status", "VmRSS:").unwrap_or(0)
}

fn status_field(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// Samples this process's RSS every 20 ms on a thread, keeping the maximum.
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut max = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(rss_kib());
                std::thread::sleep(Duration::from_millis(20));
            }
            max.max(rss_kib())
        });
        RssSampler { stop, handle }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap_or(0)
    }
}

/// The real agent binary.
fn agent_exe() -> Result<std::path::PathBuf> {
    sibling_exe("shop-agent")
}

/// Starts the real agent process for `shop_url` with `limits` (TOML lines of its `[limits]` table) and waits
/// until it answers `status`; returns the child and its base URL.
async fn agent_process(env: &Env, name: &str, shop_url: &str, limits: &str) -> Result<(std::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config_path = env.dir.join(format!("{name}.toml"));
    std::fs::write(
        &config_path,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{shop_url}\"\n[[users]]\nname = \"office\"\npassword_hash = \"{}\"\nrole = \"office\"\n[limits]\n{limits}\n",
            env.hash
        ),
    )?;
    let mut child = Command::new(agent_exe()?)
        .args(["serve", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_once(&http, &base, &env.password).await.ok() != Some(200) {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the agent did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((child, base))
}

const STATUS_CALL: &str = "<?xml version=\"1.0\"?><methodCall><methodName>status</methodName><params/></methodCall>";

/// One `status` call as the office user with `password`, without retries; the HTTP status.
async fn status_once(http: &reqwest::Client, base: &str, password: &str) -> Result<u16> {
    let r = http.post(format!("{base}/RPC2")).basic_auth("office", Some(password)).body(STATUS_CALL).send().await?;
    let code = r.status().as_u16();
    r.bytes().await?;
    Ok(code)
}

/// Latencies of back-to-back valid `status` calls for `seconds`, sorted; fails on any answer but 200.
async fn valid_latencies(base: &str, password: &str, seconds: f64) -> Result<Vec<Duration>> {
    let http = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut took = Vec::new();
    while Instant::now() < until || took.len() < 5 {
        let started = Instant::now();
        let code = status_once(&http, base, password).await?;
        anyhow::ensure!(code == 200, "a valid status call got HTTP {code}");
        took.push(started.elapsed());
    }
    took.sort();
    Ok(took)
}

fn median_p99(sorted: &[Duration]) -> String {
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    format!("median {:.1} ms, p99 {:.1} ms ({} calls)", at(0.5), at(0.99), sorted.len())
}

/// 7: the latency of a valid `status` call while 16 clients, each from its own loopback address, send wrong
/// passwords as fast as the agent answers; once with throttling out of the way (argon2 runs for every guess,
/// two at a time) and once with the default limits (each guesser locked out after 10 failures, then 429).
pub async fn hammer(env: &Env, sizes: &Sizes, results: &mut Results) -> Result<()> {
    if !agent_exe()?.exists() {
        results.notes.push("hammer: shop-agent not built; run `cargo build --release --workspace` first".into());
        return Ok(());
    }
    let (shop_url, _shop) = database(&env.shops, "hammer_shop").await?;
    let seconds = sizes.status_seconds * 2.0;
    let unthrottled = "auth_failures_per_address = 1000000000\nauth_failures_per_user = 1000000000";
    // The default first: an agent from before the hardening refuses the other's unknown limits, and still gets
    // its line.
    for (label, limits) in [("default throttling", ""), ("throttling off, argon2 for every guess", unthrottled)] {
        let (mut child, base) = agent_process(env, "hammer_agent", &shop_url, limits).await?;
        let outcome = async {
            let quiet = valid_latencies(&base, &env.password, seconds).await?;
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut guessers = Vec::new();
            for i in 0..16u8 {
                let (base, stop) = (base.clone(), stop.clone());
                guessers.push(tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .local_address(std::net::IpAddr::from([127, 0, 0, 10 + i]))
                        .build()?;
                    let (mut denied, mut throttled) = (0u64, 0u64);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match status_once(&http, &base, &format!("wrong-{i}")).await? {
                            401 => denied += 1,
                            429 => throttled += 1,
                            other => bail!("a wrong password got HTTP {other}"),
                        }
                    }
                    Ok::<_, anyhow::Error>((denied, throttled))
                }));
            }
            // Let the guessers get going before measuring.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let loaded = valid_latencies(&base, &env.password, seconds).await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let (mut denied, mut throttled) = (0, 0);
            for g in guessers {
                let (d, t) = g.await??;
                denied += d;
                throttled += t;
            }
            let loaded = loaded?;
            results.lines.push(Line {
                scenario: format!("7. valid `status` while 16 wrong-password clients hammer ({label})"),
                ours: median_p99(&loaded),
                peer: format!("{} without them", median_p99(&quiet)),
                ratio: None,
                goal: "served promptly (4–16 s before)".into(),
                met: Some(loaded[(loaded.len() - 1) * 99 / 100] < Duration::from_secs(1)),
            });
            results.notes.push(format!(
                "hammer ({label}): the guessers got {denied} × 401 and {throttled} × 429 over the run; the valid client \
                 is one address that never failed, its login cached after the first call"
            ));
            Ok::<(), anyhow::Error>(())
        }
        .await;
        let _ = child.kill();
        let _ = child.wait();
        outcome?;
    }
    Ok(())
}

/// A binary of the workspace, next to this one (target/release/bench) or one up when running as a test.
fn sibling_exe(name: &str) -> Result<std::path::PathBuf> {
    let here = std::env::current_exe()?;
    Ok(here
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| here.with_file_name(name)))
}

/// Runs the real controller binary with `args` against the configuration at `config_path` and returns its peak
/// resident memory (VmHWM, sampled until it exits) in KiB and whether it succeeded.
async fn controller_peak(config_path: &std::path::Path, args: &[&str]) -> Result<(u64, bool)> {
    let mut child = Command::new(sibling_exe("office-controller")?)
        .arg("--config")
        .arg(config_path)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(hwm) = status_field(&status_path, "VmHWM:") {
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait()? {
            return Ok((peak, status.success()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The office configuration as a file for the controller binary.
fn config_file(env: &Env, name: &str, office_url: &str) -> Result<std::path::PathBuf> {
    use testbed::sample::policy;
    let list = |l: &[&str]| l.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ");
    let path = env.dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "database_url = \"{office_url}\"\n[policies.retail]\nfrom_source = [{}]\nfrom_target = [{}]\nboth = [{}]\ninitial = [{}]\n[sync]\nretries = 0\n",
            list(policy::FROM_SOURCE),
            list(policy::FROM_TARGET),
            list(policy::BOTH),
            list(policy::INITIAL)
        ),
    )?;
    Ok(path)
}

/// Serves `status` (a shop configured as `branch` with the retail policy) and answers every other call with
/// `diff_answer`: a hostile agent for the office's memory figure.
async fn fake_agent(branch: &str, diff_answer: String) -> Result<String> {
    use protocol::wire::Answer;
    let status =
        testbed::fake_agent::configured_status(branch, sample::policy::retail(), SyncConfig::default().id_range);
    let status = respond_xml(status.into_value());
    let base = testbed::fake_agent::serve(move |request| {
        if request.contains("<methodName>status</methodName>") { status.clone() } else { diff_answer.clone() }
    })
    .await?;
    Ok(base)
}

fn respond_xml(value: protocol::wire::Value) -> String {
    shop_agent::rpc::respond(Ok(value))
}

/// 8: the controller's peak memory (VmHWM of the real `office-controller` process): during a pull of
/// `memory_rows` sales, and against a fake agent whose one `diff` answer inflates to `bomb_bytes` (refused at the
/// office's chunk cap). BRIEF §4.8 asks for under 100 MB in both.
pub async fn office_memory(env: &Env, sizes: &Sizes, results: &mut Results) -> Result<()> {
    if !sibling_exe("office-controller")?.exists() {
        results.notes.push("memory: office-controller not built; run `cargo build --release --workspace` first".into());
        return Ok(());
    }
    let (office_url, office) = database(&env.office, "memory_office").await?;
    sample::load_office(&office, OfficeData { seed: 8, products: 100, services: 5, persons: 50, parameters: 3 })
        .await?;
    let config = config(&office_url);
    ok(commands::init::run(&config).await?, "init")?;
    let (shop_url, shop) = database(&env.shops, "memory_shop").await?;
    let _stop = branch(env, &config, "shop-1", 1, &shop_url).await?;
    let n = sizes.memory_rows;
    shop.execute(
        "INSERT INTO sale (sold_at, total, status, receipt) SELECT now(), 1, 'done', gen_random_uuid() FROM generate_series(1, $1::bigint)",
        &[&n],
    )
    .await?;
    let path = config_file(env, "memory_office", &office_url)?;
    let (pull_kib, pulled) = controller_peak(&path, &["sync", "shop-1"]).await?;
    let arrived = count(&office, "SELECT count(*) FROM sale").await?;
    anyhow::ensure!(pulled && arrived == n, "the pull of {n} sales brought {arrived}");
    results.lines.push(Line {
        scenario: format!("8a. controller peak RSS while pulling {n} sales"),
        ours: format!("{:.1} MB", pull_kib as f64 / 1024.0),
        peer: "-".into(),
        ratio: None,
        goal: "under 100 MB".into(),
        met: Some(pull_kib < 100 * 1024),
    });

    // The bomb: a stream of identical comment lines, gzip'd as it is written, so this process never holds it.
    let mut gz = GzEncoder::new(Vec::new(), Compression::new(gzip_level()));
    let line = "-- padding padding padding padding padding padding padding padding padding\n".repeat(1024).into_bytes();
    let mut written = 0u64;
    while written < sizes.bomb_bytes {
        gz.write_all(&line)?;
        written += line.len() as u64;
    }
    let data = gz.finish()?;
    let compressed = data.len();
    let answer = protocol::wire::DiffAnswer { data, cursor: "bs1/1/2/ab/3:4:".into(), more: false };
    let base = fake_agent("bomb", respond_xml(protocol::wire::Answer::into_value(answer))).await?;
    let add = commands::branch_add::AddArgs {
        name: "bomb".into(),
        url: base,
        user: "office".into(),
        password_env: None,
        password_file: Some(env.password_file()),
        policy: "retail".into(),
        number: Some(2),
    };
    ok(commands::branch_add::run(&config, add).await?, "branch add")?;
    office_controller::records::mark_initialised(&office, "bomb", "", "").await?;
    let (bomb_kib, took) = controller_peak(&path, &["sync", "bomb"]).await?;
    anyhow::ensure!(!took, "the bomb was taken");
    anyhow::ensure!(count(&office, "SELECT count(*) FROM sale").await? == n, "the bomb applied something");
    results.lines.push(Line {
        scenario: format!("8b. controller peak RSS against a {} MiB gzip bomb", sizes.bomb_bytes >> 20),
        ours: format!("{:.1} MB", bomb_kib as f64 / 1024.0),
        peer: format!("{} KiB compressed", compressed >> 10),
        ratio: None,
        goal: "under 100 MB, refused".into(),
        met: Some(bomb_kib < 100 * 1024),
    });
    results.notes.push(
        "memory: VmHWM of the office-controller process, sampled every 10 ms until it exits; default caps (64 MiB answer body, 32 MiB decompressed chunk)".into(),
    );
    Ok(())
}

/// 9: the office service (`office-controller serve`, the release binary) keeping `serve_branches` branches on a
/// `serve_interval` schedule for `serve_rounds` intervals while the shops sell: in each interval, how many
/// branches had a successful incremental sync; the jobs' mean and longest durations (from its `/metrics`), and
/// the service process's resident memory after the first interval and at the end.
pub async fn serve(env: &Env, sizes: &Sizes, results: &mut Results) -> Result<()> {
    if !sibling_exe("office-controller")?.exists() {
        results.notes.push("serve: office-controller not built; run `cargo build --release --workspace` first".into());
        return Ok(());
    }
    let n = sizes.serve_branches;
    let interval = Duration::from_secs(sizes.serve_interval);
    let (office_url, office) = database(&env.office, "serve_office").await?;
    sample::load_office(&office, OfficeData { seed: 9, products: 200, services: 10, persons: 50, parameters: 3 })
        .await?;
    let config = config(&office_url);
    ok(commands::init::run(&config).await?, "init")?;
    let mut stops = Vec::new();
    let mut shops = Vec::new();
    for i in 1..=n {
        let (shop_url, shop) = database(&env.shops, &format!("serve_shop{i}")).await?;
        stops.push(branch(env, &config, &format!("s{i}"), i as i64, &shop_url).await?);
        shops.push(shop);
    }
    let path = config_file(env, "serve_office", &office_url)?;
    let mut text = std::fs::read_to_string(&path)?;
    text.push_str(&format!(
        "[schedule]\ninterval_seconds = {}\n[service]\n[[service.users]]\nname = \"office\"\npassword_hash = \"{}\"\nrole = \"viewer\"\n",
        sizes.serve_interval, env.hash
    ));
    std::fs::write(&path, text)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = Command::new(sibling_exe("office-controller")?)
        .arg("--config")
        .arg(&path)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let since: String = office.query_one("SELECT now()::text", &[]).await?.get(0);
    let started = Instant::now();
    let mut sold = 0i64;
    let mut rss_after_first = 0;
    let mut rss_peak = 0;
    let mut k = 0usize;
    // The shops sell all along: one sale a second somewhere in the chain.
    while started.elapsed() < interval * sizes.serve_rounds {
        sold += sample::sell(&shops[k % n], 900 + k as u64, 1, 200, 10, 50).await.map(|_| 1)?;
        k += 1;
        let rss = status_field(&status_path, "VmRSS:").unwrap_or(0);
        rss_peak = rss_peak.max(rss);
        if rss_after_first == 0 && started.elapsed() >= interval {
            rss_after_first = rss;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let rss_end = status_field(&status_path, "VmRSS:").unwrap_or(0);
    // Every sale is at the office within two more intervals.
    let deadline = Instant::now() + interval * 2 + Duration::from_secs(10);
    while count(&office, "SELECT count(*) FROM sale").await? < sold {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the service did not bring every sale to the office within two intervals");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .basic_auth("office", Some(&env.password))
        .send()
        .await?
        .text()
        .await?;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    for stop in stops {
        let _ = stop.send(());
    }
    // Per interval since the start: branches with a successful sync in it.
    let per_round = office
        .query(
            "SELECT floor(extract(epoch FROM at - $1::text::timestamptz) / $2::float8)::bigint AS round, count(DISTINCT branch) \
             FROM branchsync.sync_log WHERE tbl = '*' AND direction = 'sync' AND result = 'ok' AND at >= $1::text::timestamptz \
             GROUP BY round ORDER BY round",
            &[&since, &(sizes.serve_interval as f64)],
        )
        .await?;
    let rounds: Vec<i64> = per_round
        .iter()
        .filter(|r| r.get::<_, i64>(0) < i64::from(sizes.serve_rounds))
        .map(|r| r.get::<_, i64>(1))
        .collect();
    let failed = count(
        &office,
        &format!("SELECT count(*) FROM branchsync.sync_log WHERE result = 'error' AND at >= '{since}'::timestamptz"),
    )
    .await?;
    let (jobs, seconds, longest) = durations(&metrics);
    let full_rounds = rounds.iter().skip(1).filter(|&&c| c as usize == n).count();
    results.lines.push(Line {
        scenario: format!("9a. `serve`, {n} branches every {} s, {} intervals", sizes.serve_interval, sizes.serve_rounds),
        ours: format!(
            "branches synced per interval {rounds:?}; {jobs} jobs, mean {:.2} s, longest under {longest:.1} s; {failed} failed",
            if jobs > 0 { seconds / jobs as f64 } else { 0.0 }
        ),
        peer: "-".into(),
        ratio: None,
        goal: "every branch each interval, jobs well under the interval".into(),
        met: Some(failed == 0 && full_rounds + 1 >= rounds.len() && longest < interval.as_secs_f64()),
    });
    results.lines.push(Line {
        scenario: format!("9b. `serve` resident memory, {n} branches"),
        ours: format!(
            "{:.1} MB after the first interval, {:.1} MB at the end, peak {:.1} MB",
            rss_after_first as f64 / 1024.0,
            rss_end as f64 / 1024.0,
            rss_peak as f64 / 1024.0
        ),
        peer: "-".into(),
        ratio: None,
        goal: "flat".into(),
        met: Some(rss_end <= rss_after_first + rss_after_first / 5 + 4096),
    });
    results.notes.push(format!(
        "serve: the release office-controller binary, concurrency 8, agents in the bench process; {sold} sales rung up one a second across the shops, all at the office afterwards. The first interval is partial (slots are spread by phase, the service starts mid-interval)."
    ));
    Ok(())
}

/// From the service's metrics text: jobs run, their total seconds, and the upper bound of the lowest histogram
/// bucket that holds every job of the slowest branch.
fn durations(metrics: &str) -> (u64, f64, f64) {
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let label = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        Some(line[start..].split('"').next()?.to_string())
    };
    let (mut jobs, mut seconds, mut longest) = (0u64, 0.0, 0.0f64);
    let mut counts: std::collections::BTreeMap<String, f64> = Default::default();
    for line in metrics.lines() {
        if line.starts_with("branchsync_sync_duration_seconds_count") {
            jobs += value(line) as u64;
            counts.insert(label(line, "branch").unwrap_or_default(), value(line));
        } else if line.starts_with("branchsync_sync_duration_seconds_sum") {
            seconds += value(line);
        }
    }
    // Buckets come in increasing order per branch: the first one holding all of a branch's jobs bounds its
    // longest job.
    for line in metrics.lines().filter(|l| l.starts_with("branchsync_sync_duration_seconds_bucket")) {
        let (Some(branch), Some(le)) = (label(line, "branch"), label(line, "le")) else { continue };
        let le: f64 = le.parse().unwrap_or(f64::INFINITY);
        if counts.get(&branch).is_some_and(|&c| c > 0.0 && value(line) >= c) {
            counts.remove(&branch);
            longest = longest.max(le);
        }
    }
    (jobs, seconds, longest)
}
