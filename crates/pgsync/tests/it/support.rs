//! Shared set-up: a fresh database with the sample schema, the retail table lists, and export/apply helpers.

use std::collections::BTreeSet;

use pgsync::{ApplyReport, Catalog, ExportOptions, ExportSession, ImportOptions};
use protocol::payload::{Payload, ReadLimits, TableName, WriterConfig, read_payload};
use testbed::sample::{self, policy};
use tokio_postgres::Client;

/// Every synced table of the retail policy.
pub fn synced() -> Vec<TableName> {
    [policy::FROM_SOURCE, policy::FROM_TARGET, policy::BOTH, policy::INITIAL]
        .concat()
        .iter()
        .map(|t| TableName::parse(t).unwrap())
        .collect()
}

/// A fresh database with the sample schema and the sync schema installed; capture on `captured` tables.
pub async fn database(prefix: &str, captured: &[TableName]) -> (String, Client, Catalog) {
    let conninfo = testbed::shared_cluster().create_database(prefix).await.unwrap();
    let client = pgsync::connect(&conninfo).await.unwrap();
    sample::create_schema(&client).await.unwrap();
    pgsync::schema::install(&client).await.unwrap();
    let catalog = Catalog::load(&client, &synced()).await.unwrap();
    for t in captured {
        pgsync::schema::install_capture(&client, catalog.get(t).unwrap()).await.unwrap();
    }
    (conninfo, client, catalog)
}

/// Small chunks, so that every test crosses chunk boundaries.
pub fn small_chunks() -> WriterConfig {
    WriterConfig { chunk_bytes: 16 * 1024, rows_per_statement: 50, gzip_level: 6 }
}

/// Exports everything `since` from `conninfo` over its own connection; returns the chunks and the cursor.
pub async fn export(
    conninfo: &str,
    catalog: &Catalog,
    since: Option<&str>,
    exclude: Option<&str>,
) -> (Vec<Vec<u8>>, String) {
    let client = pgsync::connect(conninfo).await.unwrap();
    let options = ExportOptions {
        since: since.map(|s| s.parse().unwrap()),
        exclude_origin: exclude.map(str::to_owned),
        writer: small_chunks(),
        page_rows: 70,
        ..Default::default()
    };
    let mut session = ExportSession::begin(client, catalog.clone(), options).await.unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = session.next_chunk().await.unwrap() {
        chunks.push(chunk);
    }
    let cursor = session.cursor().to_string();
    session.finish().await.unwrap();
    (chunks, cursor)
}

/// Reads chunks as a receiver does, allowing the given tables.
pub fn read(chunks: &[Vec<u8>], allowed: &[TableName]) -> Vec<Payload> {
    let limits = ReadLimits {
        max_decompressed_bytes: 64 << 20,
        allowed_tables: allowed.iter().cloned().collect::<BTreeSet<_>>(),
    };
    chunks.iter().map(|c| read_payload(c, &limits).unwrap()).collect()
}

/// Applies chunks from `origin`, recording the cursor the last chunk carries.
pub async fn apply(client: &mut Client, catalog: &Catalog, chunks: &[Vec<u8>], origin: &str) -> ApplyReport {
    let payloads = read(chunks, &synced());
    let options = ImportOptions { origin: origin.into(), record_peer_cursor: true, ..Default::default() };
    pgsync::apply(client, catalog, &payloads, options).await.unwrap().report
}

/// Per-table checksums of every synced table.
pub async fn checksums(client: &Client, catalog: &Catalog) -> Vec<pgsync::TableChecksum> {
    pgsync::checksums(client, catalog.tables()).await.unwrap()
}

/// Loads a small but awkward data set into every synced table of the office database.
pub async fn load(client: &Client, seed: u64) {
    let data = sample::OfficeData { seed, products: 300, services: 20, persons: 120, parameters: 15 };
    sample::load_office(client, data).await.unwrap();
    sample::sell(client, seed + 1, 80, 300, 20, 120).await.unwrap();
}
