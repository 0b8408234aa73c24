//! Starts an agent on port 0 against a fresh shop database, and a fresh office database to exchange with.

use std::sync::OnceLock;
use std::time::Duration;

use agent_client::AgentClient;
use pgsync::{Catalog, ExportOptions, ExportSession, ImportOptions};
use protocol::payload::{ReadLimits, TableName, WriterConfig, read_payload};
use protocol::policy::Assignment;
use shop_agent::config::{Config, Limits, Role, User};
use testbed::sample::{self, policy};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

pub const OFFICE_PASSWORD: &str = "office-secret";
pub const MONITOR_PASSWORD: &str = "monitor-secret";

fn hashes() -> &'static (String, String) {
    static HASHES: OnceLock<(String, String)> = OnceLock::new();
    HASHES.get_or_init(|| {
        (
            service::auth::hash_password(OFFICE_PASSWORD).unwrap(),
            service::auth::hash_password(MONITOR_PASSWORD).unwrap(),
        )
    })
}

/// A running agent.
pub struct TestAgent {
    pub base: String,
    pub db_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestAgent {
    /// Starts an agent on 127.0.0.1:0 for `db_url`.
    pub async fn start(db_url: &str, limits: Limits) -> TestAgent {
        Self::start_with(db_url, limits, |_| ()).await
    }

    /// As [`start`](Self::start), with a last change to the configuration (TLS, users).
    pub async fn start_with(db_url: &str, limits: Limits, adjust: impl FnOnce(&mut Config)) -> TestAgent {
        let (office, monitor) = hashes().clone();
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            database_url: db_url.into(),
            users: vec![
                User { name: "office".into(), password_hash: office, role: Role::Office },
                User { name: "monitor".into(), password_hash: monitor, role: Role::Monitor },
            ],
            tls_cert: None,
            tls_key: None,
            limits,
        };
        adjust(&mut config);
        config.check().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if config.tls_cert.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(shop_agent::run(config, listener, async move {
            let _ = rx.await;
        }));
        TestAgent { base, db_url: db_url.into(), shutdown: Some(tx), handle: Some(handle) }
    }

    /// A client with the office user's credentials.
    pub fn office(&self) -> AgentClient {
        AgentClient::new(&self.base, "office", OFFICE_PASSWORD, Duration::from_secs(60)).unwrap()
    }

    /// A client with the monitor user's credentials.
    pub fn monitor(&self) -> AgentClient {
        AgentClient::new(&self.base, "monitor", MONITOR_PASSWORD, Duration::from_secs(60)).unwrap()
    }

    /// Stops the agent gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

pub fn names(lists: &[&[&str]]) -> Vec<TableName> {
    lists.concat().iter().map(|t| TableName::parse(t).unwrap()).collect()
}

/// The retail policy for branch `branch`.
pub fn retail(branch: &str) -> Assignment {
    Assignment { branch: branch.into(), policy: policy::retail(), id_range: 1_000_000_000_000 }
}

/// The shop's pending changes as its `status` reports them.
pub async fn pending_changes(client: &AgentClient) -> i64 {
    client.status().await.unwrap().database.expect("database_ok").pending_changes
}

/// The shop's unfinished upload sessions as its `status` reports them.
pub async fn open_sessions(client: &AgentClient) -> i64 {
    client.status().await.unwrap().database.expect("database_ok").open_sessions
}

/// A fresh database with the sample schema; with sample office data when `office` is true.
pub async fn database(prefix: &str, office: bool) -> (String, Client) {
    let url = testbed::shared_cluster().create_database(prefix).await.unwrap();
    let client = pgsync::connect(&url).await.unwrap();
    sample::create_schema(&client).await.unwrap();
    if office {
        let data = sample::OfficeData { seed: 17, products: 400, services: 20, persons: 150, parameters: 10 };
        sample::load_office(&client, data).await.unwrap();
        pgsync::schema::install(&client).await.unwrap();
    }
    (url, client)
}

/// A shop database with a running agent, configured with the retail policy.
pub async fn configured_shop(prefix: &str, limits: Limits) -> (TestAgent, Client) {
    let (url, client) = database(prefix, false).await;
    let agent = TestAgent::start(&url, limits).await;
    agent.office().configure(&retail(prefix)).await.unwrap();
    (agent, client)
}

/// The office's full export of the tables it sends, in chunks of `chunk_bytes`.
pub async fn office_full_export(office_url: &str, chunk_bytes: usize) -> (Vec<Vec<u8>>, String) {
    let client = pgsync::connect(office_url).await.unwrap();
    let catalog = Catalog::load(&client, &names(&[policy::FROM_SOURCE, policy::BOTH, policy::INITIAL])).await.unwrap();
    let options = ExportOptions { writer: WriterConfig { chunk_bytes, ..Default::default() }, ..Default::default() };
    let mut session = ExportSession::begin(client, catalog, options).await.unwrap();
    let mut chunks = Vec::new();
    while let Some(c) = session.next_chunk().await.unwrap() {
        chunks.push(c);
    }
    let cursor = session.cursor().to_string();
    session.finish().await.unwrap();
    (chunks, cursor)
}

/// Runs the diff loop from `since`, applying each answer at the office as the controller will; returns the
/// number of answers and the final cursor.
pub async fn pull(client: &AgentClient, since: &str, office: &mut Client) -> (usize, String) {
    let tables = names(&[policy::FROM_TARGET, policy::BOTH]);
    let catalog = Catalog::load(&*office, &tables).await.unwrap();
    let limits = ReadLimits { max_decompressed_bytes: 64 << 20, allowed_tables: tables.iter().cloned().collect() };
    let mut cursor = since.to_string();
    let mut answers = 0;
    loop {
        let answer = client.diff(&cursor).await.unwrap();
        answers += 1;
        let payload = read_payload(&answer.data, &limits).unwrap();
        // The shop's last answer carries its cursor, recorded with the rows behind it.
        let options = ImportOptions { origin: "shop".into(), record_peer_cursor: true, ..Default::default() };
        pgsync::apply(office, &catalog, &[payload], options).await.unwrap();
        cursor = answer.cursor;
        if !answer.more {
            return (answers, cursor);
        }
    }
}

/// Checksums of `tables` in a database.
pub async fn sums(client: &Client, tables: &[TableName]) -> Vec<pgsync::TableChecksum> {
    let catalog = Catalog::load(client, tables).await.unwrap();
    pgsync::checksums(client, catalog.tables()).await.unwrap()
}

/// `bytes` as one gzip payload chunk.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}
