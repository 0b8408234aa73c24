//! `office-controller demo`: the main job on an embedded default. Starts throwaway clusters for an office and a
//! shop, loads the sample retail schema and data, initialises the shop from the office, sells at the shop,
//! edits a customer on both sides, exchanges both ways and verifies every synced table by checksum.
//!
//! Until the shop agent exists (issue 3) the exchange runs the PostgreSQL layer directly against both
//! databases; the payloads are the same gzip SQL chunks that will travel over XML-RPC.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pgsync::{ApplyOptions, Catalog, ExportOptions, ExportSession};
use protocol::payload::{ReadLimits, TableName, read_payload};
use testbed::Cluster;
use testbed::sample::{self, policy};
use tokio_postgres::Client;

/// Options of the demo.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Products in the office catalogue.
    #[arg(long, default_value_t = 5000)]
    pub products: i64,
    /// Sales made at the shop.
    #[arg(long, default_value_t = 200)]
    pub sales: i64,
    /// Seed of the data generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// What the demo did, printed for the person who ran it.
#[derive(Debug, Default)]
pub struct DemoReport {
    steps: Vec<(String, Duration)>,
    verified: Vec<(String, i64)>,
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "branchsync demo")?;
        for (step, took) in &self.steps {
            writeln!(f, "  {step:<70} {:>8.2?}", took)?;
        }
        writeln!(f, "verify: every synced table equal at office and shop")?;
        for (table, rows) in &self.verified {
            writeln!(f, "  {table:<24} {rows:>8} rows  ok")?;
        }
        Ok(())
    }
}

fn names(lists: &[&[&str]]) -> Vec<TableName> {
    lists.concat().iter().filter_map(|t| TableName::parse(t)).collect()
}

async fn start_database(label: &str) -> Result<(Cluster, String, Client)> {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await?
        .with_context(|| format!("cannot start the {label} cluster"))?;
    let url = cluster.create_database(label).await?;
    let client = pgsync::connect(&url).await?;
    sample::create_schema(&client).await?;
    pgsync::schema::install(&client).await?;
    Ok((cluster, url, client))
}

/// Exports from one database and applies at the other, chunk by chunk through the payload reader, the way the
/// agent and the controller will. Returns the rows moved and the new cursor.
async fn transfer(
    from_url: &str,
    from_catalog: &Catalog,
    since: Option<&str>,
    to: &mut Client,
    to_catalog: &Catalog,
    origin: &str,
    exclude: Option<&str>,
) -> Result<(u64, String)> {
    let client = pgsync::connect(from_url).await?;
    let options = ExportOptions {
        since: since.map(str::parse).transpose()?,
        exclude_origin: exclude.map(str::to_owned),
        ..Default::default()
    };
    let mut session = ExportSession::begin(client, from_catalog.clone(), options).await?;
    let limits = ReadLimits { max_decompressed_bytes: 16 << 20, allowed_tables: to_catalog.names() };
    let mut payloads = Vec::new();
    while let Some(chunk) = session.next_chunk().await? {
        payloads.push(read_payload(&chunk, &limits)?);
    }
    let cursor = session.cursor().to_string();
    let rows = session.rows();
    session.finish().await?;
    let options =
        ApplyOptions { origin: origin.into(), record_cursor: Some(cursor.clone()), ..ApplyOptions::default() };
    pgsync::apply(to, to_catalog, &payloads, &options).await?;
    Ok((rows, cursor))
}

/// Runs the demo and returns its report. The clusters are removed when this returns, also on error.
pub async fn run(args: DemoArgs) -> Result<DemoReport> {
    let mut report = DemoReport::default();
    let mut step = |name: String, started: Instant| report.steps.push((name, started.elapsed()));

    let t = Instant::now();
    let (_office_cluster, office_url, office) = start_database("office").await?;
    let (_shop_cluster, shop_url, mut shop) = start_database("shop").await?;
    step("started two throwaway PostgreSQL clusters (office, shop)".into(), t);

    let t = Instant::now();
    let data =
        sample::OfficeData { seed: args.seed, products: args.products, services: 50, persons: 500, parameters: 20 };
    sample::load_office(&office, data).await?;
    step(format!("loaded the office: {} products, 50 services, 500 customers", args.products), t);

    // What each side sends and may receive, per the retail policy.
    let office_sends = names(&[policy::FROM_SOURCE, policy::BOTH, policy::INITIAL]);
    let shop_sends = names(&[policy::FROM_TARGET, policy::BOTH]);
    let all = names(&[policy::FROM_SOURCE, policy::FROM_TARGET, policy::BOTH, policy::INITIAL]);
    let office_out = Catalog::load(&office, &office_sends).await?;
    let office_in = Catalog::load(&office, &shop_sends).await?;
    let shop_out = Catalog::load(&shop, &shop_sends).await?;
    let shop_in = Catalog::load(&shop, &office_sends).await?;
    for table in office_out.tables() {
        pgsync::schema::install_capture(&office, table).await?;
    }
    for table in shop_out.tables() {
        pgsync::schema::install_capture(&shop, table).await?;
    }

    let t = Instant::now();
    let (rows, push_cursor) = transfer(&office_url, &office_out, None, &mut shop, &shop_in, "office", None).await?;
    step(format!("initialised the shop: full load of {rows} rows office -> shop"), t);

    let t = Instant::now();
    // Branch 1's id range, so that the shop's sales can never collide with the office's or another shop's.
    shop.batch_execute("SELECT setval('sale_id_seq', 1000000000000); SELECT setval('payment_id_seq', 1000000000000); SELECT setval('person_id_seq', 1000000000000)").await?;
    sample::sell(&shop, args.seed + 1, args.sales, args.products, 50, 500).await?;
    shop.batch_execute("UPDATE person SET phone = '+33 1 00 00 00 01', note = 'moved, new phone' WHERE id = 7").await?;
    office.batch_execute("UPDATE product SET price = price * 1.10 WHERE id <= 100; UPDATE person SET email = 'vip@example.com' WHERE id = 8").await?;
    step(format!("sold {} sales at the shop, edited customers at both ends, repriced 100 products", args.sales), t);

    let t = Instant::now();
    let (rows, _) = transfer(&shop_url, &shop_out, None, &mut { office }, &office_in, "shop-1", Some("office")).await?;
    step(format!("pulled the shop's activity: {rows} rows shop -> office"), t);

    let t = Instant::now();
    let (rows, _) =
        transfer(&office_url, &office_out, Some(&push_cursor), &mut shop, &shop_in, "office", Some("shop-1")).await?;
    step(format!("pushed the office's changes: {rows} rows office -> shop"), t);

    let office = pgsync::connect(&office_url).await?;
    let office_all = Catalog::load(&office, &all).await?;
    let shop_all = Catalog::load(&shop, &all).await?;
    let ours = pgsync::checksums(&office, office_all.tables()).await?;
    let theirs = pgsync::checksums(&shop, shop_all.tables()).await?;
    for (a, b) in ours.iter().zip(&theirs) {
        if a != b {
            bail!("table {} differs: office has {} rows, shop {}", a.table, a.rows, b.rows);
        }
        report.verified.push((a.table.to_string(), a.rows));
    }
    Ok(report)
}
