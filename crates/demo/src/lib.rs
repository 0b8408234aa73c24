//! The demo as a library: the main job on an embedded default. Starts throwaway clusters for an office and two
//! shops (separate clusters), loads the sample retail schema and data, starts a shop agent for each shop on a
//! local port, initialises both branches, sells in both shops while a customer is edited on both sides, syncs,
//! verifies, and prints what happened. Everything is removed afterwards, also on Ctrl-C or failure.

use std::fmt::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use office_controller::commands::{self, Output};
use office_controller::config::{Config, PolicyConfig, SyncConfig};
use serde_json::json;
use testbed::Cluster;
use testbed::sample::{self, policy};
use tokio::sync::oneshot;

/// Options of the demo.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Products in the office catalogue.
    #[arg(long, default_value_t = 5000)]
    pub products: i64,
    /// Sales made at each shop.
    #[arg(long, default_value_t = 200)]
    pub sales: i64,
    /// Seed of the data generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

struct Shop {
    _cluster: Cluster,
    url: String,
    client: tokio_postgres::Client,
    stop: Option<oneshot::Sender<()>>,
    base: String,
}

/// Removes the demo's password file however the demo ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn cluster(label: &str) -> Result<(Cluster, String, tokio_postgres::Client)> {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await?
        .with_context(|| format!("cannot start the {label} cluster"))?;
    let url = cluster.create_database(label).await?;
    let client = pgsync::connect(&url).await?;
    sample::create_schema(&client).await?;
    Ok((cluster, url, client))
}

/// Starts a shop agent in this process on a free local port for `database_url`, with one `office` user;
/// returns its base URL and the sender that stops it. The demo and the benchmarks use it.
pub async fn start_agent(database_url: &str, password_hash: &str) -> Result<(String, oneshot::Sender<()>)> {
    let config = shop_agent::Config {
        listen: "127.0.0.1:0".into(),
        database_url: database_url.into(),
        users: vec![shop_agent::config::User {
            name: "office".into(),
            password_hash: password_hash.into(),
            role: shop_agent::config::Role::Office,
        }],
        tls_cert: None,
        tls_key: None,
        limits: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(shop_agent::run(config, listener, async move {
        let _ = stopped.await;
    }));
    Ok((base, stop))
}

async fn start_shop(label: &str, password_hash: &str) -> Result<Shop> {
    let (cluster, url, client) = cluster(label).await?;
    let (base, stop) = start_agent(&url, password_hash).await?;
    Ok(Shop { _cluster: cluster, url, client, stop: Some(stop), base })
}

/// The sample retail policy as the configuration writes it.
pub fn retail() -> PolicyConfig {
    PolicyConfig::with_tables(&policy::retail())
}

fn step(text: &mut String, started: Instant, what: &str) {
    let _ = writeln!(text, "[{:>6.2}s] {what}", started.elapsed().as_secs_f64());
}

fn need(out: Output, what: &str) -> Result<Output> {
    if out.ok { Ok(out) } else { anyhow::bail!("{what} failed:\n{}", out.text) }
}

/// Runs the demo and returns its report.
pub async fn run(args: DemoArgs) -> Result<Output> {
    let started = Instant::now();
    let mut text =
        String::from("branchsync demo: one office, two shops, each in its own throwaway PostgreSQL cluster\n\n");
    let dir = TempDir(std::env::temp_dir().join(format!("branchsync-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let password = format!("demo-{}-{}", std::process::id(), args.seed);
    let password_file = dir.0.join("agent-password");
    std::fs::write(&password_file, &password)?;
    let hash =
        service::auth::hash_password(&password).map_err(|e| anyhow::anyhow!("cannot hash the demo password: {e}"))?;

    let (_office_cluster, office_url, office) = cluster("office").await?;
    let mut shops = vec![start_shop("shop1", &hash).await?, start_shop("shop2", &hash).await?];
    step(&mut text, started, "started three clusters and two shop agents");

    sample::load_office(
        &office,
        sample::OfficeData { seed: args.seed, products: args.products, services: 50, persons: 500, parameters: 20 },
    )
    .await?;
    step(
        &mut text,
        started,
        &format!("loaded the office: {} products, 50 services, 500 customers, 20 parameters", args.products),
    );

    let config = Config {
        database_url: office_url.clone(),
        policies: [("retail".to_string(), retail())].into(),
        sync: SyncConfig { retries: 1, ..SyncConfig::default() },
        schedule: Default::default(),
        service: Default::default(),
    };
    need(commands::init::run(&config).await?, "init")?;
    for (i, shop) in shops.iter().enumerate() {
        let add = commands::branch_add::AddArgs {
            name: format!("shop-{}", i + 1),
            url: shop.base.clone(),
            user: "office".into(),
            password_env: None,
            password_file: Some(password_file.display().to_string()),
            policy: "retail".into(),
            number: Some(i as i64 + 1),
        };
        need(commands::branch_add::run(&config, add).await?, "branch add")?;
        need(commands::branch_init::run(&config, &format!("shop-{}", i + 1)).await?, "branch init")?;
    }
    step(
        &mut text,
        started,
        "initialised shop-1 and shop-2 (clean, configure, full load, id ranges 10^12 and 2*10^12)",
    );

    for (i, shop) in shops.iter().enumerate() {
        sample::sell(&shop.client, args.seed + 10 + i as u64, args.sales, args.products, 50, 500).await?;
    }
    // A customer edited on both sides: a conflict the office resolves (office-wins).
    office.batch_execute("UPDATE person SET email = 'office@example.com', updated_at = now() WHERE id = 7").await?;
    shops[0]
        .client
        .batch_execute("UPDATE person SET phone = '+33 1 23 45 67 89', updated_at = now() WHERE id = 7")
        .await?;
    // A new customer at shop-1, to reach shop-2 through the office.
    shops[0]
        .client
        .batch_execute("INSERT INTO person (name, email) VALUES ('Zoé Nouvelle', 'zoe@example.com')")
        .await?;
    office.batch_execute("UPDATE product SET price = price + 1 WHERE id <= 100").await?;
    step(
        &mut text,
        started,
        &format!(
            "sold {} sales in each shop, edited customer 7 at the office and at shop-1, added a customer at shop-1, repriced 100 products",
            args.sales
        ),
    );

    for round in 1..=2 {
        let out = commands::sync::run(
            &config,
            commands::sync::SyncArgs { branches: vec![], all: true, full: false, dry_run: false, rebind: false },
        )
        .await?;
        let _ = writeln!(text, "\nsync --all, round {round}:\n{}", out.text);
        need(out, "sync")?;
    }
    step(&mut text, started, "synced every branch twice (the second round carries shop-1's new customer on to shop-2)");

    let mut verified = Vec::new();
    for name in ["shop-1", "shop-2"] {
        let out = commands::verify::run(&config, name).await?;
        let _ = writeln!(text, "\nverify {name}:\n{}", out.text);
        verified.push(out.json.clone());
        need(out, "verify")?;
    }
    let conflicts = commands::conflicts::run(&config, commands::log::LogArgs { branch: None, limit: 10 }).await?;
    let _ = writeln!(text, "conflicts recorded:\n{}", conflicts.text);
    let zoe: i64 =
        shops[1].client.query_one("SELECT count(*) FROM person WHERE email = 'zoe@example.com'", &[]).await?.get(0);
    let _ = writeln!(text, "shop-1's new customer at shop-2: {}", if zoe == 1 { "yes" } else { "NO" });
    step(&mut text, started, "done; removing the clusters");
    for shop in &mut shops {
        if let Some(stop) = shop.stop.take() {
            let _ = stop.send(());
        }
        let _ = &shop.url;
    }
    Ok(Output { text, json: json!({"verify": verified, "conflicts": conflicts.json}), ok: zoe == 1, exit_code: None })
}
