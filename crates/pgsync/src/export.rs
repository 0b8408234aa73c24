//! Exports a database's changes as payload chunks, all read in one repeatable-read snapshot whose watermark
//! becomes the cursor of the next exchange (BRIEF §4.1).
//!
//! The change log says which keys changed; the rows themselves are read as they are in the export snapshot,
//! so many changes to one row travel once. Rows that exist are upserted, parents first; keys whose rows no
//! longer exist are deleted afterwards, children first. A key whose latest change came from the peer being
//! served is not sent back to it. Without a cursor, whole tables are exported with `COPY`.

use std::collections::VecDeque;

use futures_util::TryStreamExt;
use protocol::cursor::Cursor;
use protocol::payload::{ChunkWriter, WriterConfig, decode_copy_field};
use protocol::sql::{quote_ident, quote_literal};
use tokio_postgres::Client;

use crate::catalog::{Catalog, TableInfo};
use crate::error::{Error, Result};
use crate::schema;

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The peer's cursor; `None` exports every row of every table.
    pub since: Option<Cursor>,
    /// Leave out keys whose latest change came from this origin (the peer being served).
    pub exclude_origin: Option<String>,
    /// Chunk size and compression.
    pub writer: WriterConfig,
    /// Rows fetched from the database per query.
    pub page_rows: i64,
    /// Tables whose rows the receiver should replace: rows the export does not carry are deleted there
    /// (the office's "complete" synchronisation). Only meaningful without `since`.
    pub replace: Vec<protocol::payload::TableName>,
    /// Tables exported whole even with `since` (tables the peer just started to receive): every row as an
    /// upsert, no deletes. The others are exported as changes.
    pub whole: Vec<protocol::payload::TableName>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            since: None,
            exclude_origin: None,
            writer: WriterConfig::default(),
            page_rows: 5000,
            replace: Vec::new(),
            whole: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Whole tables, parents first.
    Full,
    /// Changed rows that exist, parents first.
    Upserts,
    /// Changed keys whose rows are gone, children first.
    Deletes,
    Done,
}

/// One export, read in one snapshot. Owns its connection for the duration, so that a long export (the shop
/// agent's `diff` loop) can span several requests.
pub struct ExportSession {
    client: Client,
    catalog: Catalog,
    options: ExportOptions,
    cursor: Cursor,
    phase: Phase,
    table: usize,
    after: Vec<String>,
    writer: Option<ChunkWriter>,
    ready: VecDeque<Vec<u8>>,
    rows: u64,
    per_table: Vec<(protocol::payload::TableName, u64)>,
    /// The table and phase whose changed keys the open server-side cursor reads.
    changes_cursor: Option<(protocol::payload::TableName, bool)>,
}

impl std::fmt::Debug for ExportSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportSession").field("cursor", &self.cursor.to_string()).field("phase", &self.phase).finish()
    }
}

impl ExportSession {
    /// Opens a repeatable-read, read-only transaction on `client` and takes its snapshot as the new cursor.
    /// A `since` cursor issued by another database is refused with [`Error::Cursor`].
    pub async fn begin(client: Client, catalog: Catalog, options: ExportOptions) -> Result<ExportSession> {
        client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        // The first statement fixes the transaction's snapshot; pg_current_snapshot() returns exactly it.
        let row = client.query_one("SELECT pg_current_snapshot()::text", &[]).await?;
        let snapshot: String = row.get(0);
        let issuer = schema::identity(&client).await?;
        if let Some(since) = &options.since {
            since.clone().check_issuer(&issuer)?;
        }
        let mut writer = ChunkWriter::new(options.writer.clone(), Some(catalog.fingerprint()), None);
        for t in catalog.tables() {
            writer.declare_table(&t.name, &t.column_decls());
        }
        writer.set_replace(options.replace.clone());
        let per_table = catalog.tables().iter().map(|t| (t.name.clone(), 0)).collect();
        let phase = if options.since.is_some() { Phase::Upserts } else { Phase::Full };
        Ok(ExportSession {
            client,
            catalog,
            options,
            cursor: Cursor { issuer, snapshot },
            phase,
            table: 0,
            after: Vec::new(),
            writer: Some(writer),
            ready: VecDeque::new(),
            rows: 0,
            per_table,
            changes_cursor: None,
        })
    }

    /// The cursor of this export: once every chunk is applied, the peer's next `since`.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// Whether the export snapshot holds changes the peer lacks: log rows not visible in `since` whose origin is not
    /// the peer's. Without `since`, always. When there are none, the peer has every change this export's cursor
    /// covers, and the export can be skipped with the cursor still recorded as acknowledged.
    pub async fn has_news(&self) -> Result<bool> {
        let Some(since) = &self.options.since else { return Ok(true) };
        if !self.options.whole.is_empty() {
            return Ok(true);
        }
        let tables: Vec<String> = self.catalog.tables().iter().map(|t| t.name.to_string()).collect();
        let row = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM branchsync.change_log cl WHERE cl.tbl = ANY($1) \
                 AND cl.xid >= $2::text::xid8 AND NOT pg_visible_in_snapshot(cl.xid, $3::text::pg_snapshot) \
                 AND cl.origin IS DISTINCT FROM $4)",
                &[&tables, &since.xmin().to_string(), &since.snapshot, &self.options.exclude_origin],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Rows (upserts and deletes) exported so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rows exported so far, per table.
    pub fn table_rows(&self) -> &[(protocol::payload::TableName, u64)] {
        &self.per_table
    }

    fn count(&mut self, table: &protocol::payload::TableName, n: u64) {
        self.rows += n;
        if let Some(entry) = self.per_table.iter_mut().find(|(t, _)| t == table) {
            entry.1 += n;
        }
    }

    /// The next chunk, or `None` when the export is complete. Only the last chunk carries the cursor, so a
    /// receiver that applies chunks one by one never records a cursor before it has every row behind it.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        while self.ready.is_empty() {
            let Some(writer) = self.writer.as_mut() else { return Ok(None) };
            if self.phase == Phase::Done {
                writer.set_cursor(Some(self.cursor.to_string()));
                if let Some(w) = self.writer.take() {
                    self.ready.extend(w.finish());
                }
                break;
            }
            self.fill_page().await?;
            if let Some(w) = self.writer.as_mut() {
                self.ready.extend(w.take_chunks());
            }
        }
        Ok(self.ready.pop_front())
    }

    /// Ends the read-only transaction and gives the connection back.
    pub async fn finish(self) -> Result<Client> {
        self.client.batch_execute("COMMIT").await?;
        Ok(self.client)
    }

    /// Fetches one page of the current table in the current phase into the writer and moves the position on.
    async fn fill_page(&mut self) -> Result<()> {
        let tables = self.catalog.tables();
        let index = match self.phase {
            Phase::Deletes => tables.len().checked_sub(self.table + 1),
            _ => (self.table < tables.len()).then_some(self.table),
        };
        let Some(index) = index else {
            self.phase = match self.phase {
                Phase::Upserts => Phase::Deletes,
                _ => Phase::Done,
            };
            self.table = 0;
            self.after.clear();
            return Ok(());
        };
        let table = tables[index].clone();
        let started = std::time::Instant::now();
        let whole = self.options.whole.contains(&table.name);
        let fetched = match self.phase {
            Phase::Full => self.page_full(&table).await?,
            Phase::Upserts if whole => self.page_full(&table).await?,
            Phase::Deletes if whole => 0,
            Phase::Upserts => self.page_changes(&table, true).await?,
            Phase::Deletes => self.page_changes(&table, false).await?,
            Phase::Done => 0,
        };
        tracing::debug!(table = %table.name, phase = ?self.phase, rows = fetched, ms = started.elapsed().as_millis() as u64, "export page");
        if fetched < self.options.page_rows as usize {
            self.table += 1;
            self.after.clear();
        }
        Ok(())
    }

    /// One page of a whole table through `COPY`, in primary-key order after the last key sent.
    async fn page_full(&mut self, table: &TableInfo) -> Result<usize> {
        let cols: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
        let key: Vec<String> = table.primary_key.iter().map(|c| quote_ident(c)).collect();
        let mut conditions = Vec::new();
        if let Some(peer) = &self.options.exclude_origin {
            // Rows whose latest change came from the peer are the peer's already (a shop's diff("") after its
            // initial load must not send the office's catalogue and customers back).
            let key: Vec<String> = table.primary_key.iter().map(|c| format!("t.{}::text", quote_ident(c))).collect();
            conditions.push(format!(
                "(SELECT cl.origin FROM branchsync.change_log cl WHERE cl.tbl = {} AND cl.pk = ARRAY[{}] ORDER BY cl.id DESC LIMIT 1) \
                 IS DISTINCT FROM {}",
                quote_literal(&table.name.to_string()),
                key.join(", "),
                quote_literal(peer)
            ));
        }
        if !self.after.is_empty() {
            // COPY takes no parameters: the key values are ours, read from this database, and quoted.
            let values: Vec<String> = table
                .primary_key
                .iter()
                .zip(&self.after)
                .map(|(c, v)| format!("{}::{}", quote_literal(v), table.column_type(c).unwrap_or("text")))
                .collect();
            conditions.push(format!("({}) > ({})", key.join(", "), values.join(", ")));
        }
        let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
        let sql = format!(
            "COPY (SELECT {} FROM {} t{filter} ORDER BY {} LIMIT {}) TO STDOUT",
            cols.iter().map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", "),
            table.name.quoted(),
            key.iter().map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", "),
            self.options.page_rows
        );
        let key_positions: Vec<usize> =
            table.primary_key.iter().filter_map(|k| table.columns.iter().position(|c| &c.name == k)).collect();
        let names = table.column_names();
        let stream = self.client.copy_out(sql.as_str()).await?;
        let mut stream = std::pin::pin!(stream);
        let writer = self.writer.as_mut().ok_or_else(|| Error::Internal("the export's writer is gone".into()))?;
        let mut count = 0usize;
        let mut last = String::new();
        while let Some(bytes) = stream.try_next().await? {
            // PostgreSQL sends one row per COPY data message, newline-terminated, in the client encoding (UTF-8).
            let line = std::str::from_utf8(&bytes).unwrap_or_default().trim_end_matches('\n');
            writer.copy_line(&table.name, &names, line);
            last.clear();
            last.push_str(line);
            count += 1;
        }
        if count > 0 {
            let fields: Vec<&str> = last.split('\t').collect();
            self.after = key_positions
                .iter()
                .map(|&i| key_value(&table.columns[i].name, fields.get(i).copied().unwrap_or_default(), &last))
                .collect::<Result<_>>()?;
        }
        self.count(&table.name, count as u64);
        Ok(count)
    }

    /// One page of changed keys of a table: the rows that exist (`present`) or the keys that are gone. The
    /// changed keys are read through one server-side cursor per table and phase, so that the change log is
    /// sorted once per export rather than once per page.
    async fn page_changes(&mut self, table: &TableInfo, present: bool) -> Result<usize> {
        let position = (table.name.clone(), present);
        if self.changes_cursor.as_ref() != Some(&position) {
            let since = self
                .options
                .since
                .as_ref()
                .ok_or_else(|| Error::Internal("a changes export without a cursor".into()))?;
            let join: Vec<String> = table
                .primary_key
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    format!("t.{} = (k.pk[{}])::{}", quote_ident(c), i + 1, table.column_type(c).unwrap_or("text"))
                })
                .collect();
            // DECLARE takes no parameters: every value here is ours (a table name, a validated cursor, a peer
            // name) and quoted.
            let in_window = format!(
                "cl.tbl = {} AND cl.xid >= {}::xid8 AND NOT pg_visible_in_snapshot(cl.xid, {}::pg_snapshot)",
                quote_literal(&table.name.to_string()),
                quote_literal(&since.xmin().to_string()),
                quote_literal(&since.snapshot)
            );
            let window = format!(
                "SELECT DISTINCT ON (cl.pk) cl.pk, cl.origin FROM branchsync.change_log cl WHERE {in_window} \
                 ORDER BY cl.pk, cl.id DESC"
            );
            let peer = match &self.options.exclude_origin {
                Some(p) => quote_literal(p),
                None => "NULL::text".into(),
            };
            let query = if present {
                let cols: Vec<String> =
                    table.columns.iter().map(|c| format!("t.{}::text", quote_ident(&c.name))).collect();
                format!(
                    "SELECT {} FROM ({window}) k JOIN {} t ON {} WHERE k.origin IS DISTINCT FROM {peer}",
                    cols.join(", "),
                    table.name.quoted(),
                    join.join(" AND ")
                )
            } else {
                // A key is gone when its latest change is a delete: only those log rows are read, so an export
                // without deletes costs an index scan here rather than sorting every changed key again.
                format!(
                    "SELECT DISTINCT k.pk FROM branchsync.change_log k WHERE {} AND k.op = 'D' \
                     AND NOT EXISTS (SELECT 1 FROM branchsync.change_log l WHERE l.tbl = k.tbl AND l.pk = k.pk AND l.id > k.id) \
                     AND k.origin IS DISTINCT FROM {peer} AND NOT EXISTS (SELECT 1 FROM {} t WHERE {})",
                    in_window.replace("cl.", "k."),
                    table.name.quoted(),
                    join.join(" AND ")
                )
            };
            if self.changes_cursor.take().is_some() {
                self.client.batch_execute("CLOSE branchsync_changes").await?;
            }
            self.client.batch_execute(&format!("DECLARE branchsync_changes NO SCROLL CURSOR FOR {query}")).await?;
            self.changes_cursor = Some(position);
        }
        let rows = self.client.query(&format!("FETCH {} FROM branchsync_changes", self.options.page_rows), &[]).await?;
        if rows.len() < self.options.page_rows as usize {
            self.client.batch_execute("CLOSE branchsync_changes").await?;
            self.changes_cursor = None;
        }
        let writer = self.writer.as_mut().ok_or_else(|| Error::Internal("the export's writer is gone".into()))?;
        let names = table.column_names();
        for row in &rows {
            if present {
                let values: Vec<Option<String>> = (0..names.len()).map(|i| row.get(i)).collect();
                // A COPY block means an upsert of every column on the primary key, and reads cheaper than VALUES.
                writer.copy_row(&table.name, &names, &values);
            } else {
                let key: Vec<Option<String>> = row.get::<_, Vec<Option<String>>>(0);
                writer.delete(&table.name, &table.primary_key, &key);
            }
        }
        self.count(&table.name, rows.len() as u64);
        Ok(rows.len())
    }
}

/// Decodes the key field `column` of a COPY line the database sent, where the next page starts.
///
/// PostgreSQL's own COPY output always decodes, and key columns are never NULL, so this does not fail on what the
/// database sends. Should it, the receiver's reader would refuse the chunk holding the line for the same reason:
/// the export stops with that refusal (chunk 0, the one being written) rather than page on from a wrong key.
fn key_value(column: &str, field: &str, line: &str) -> Result<String> {
    match decode_copy_field(field) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(Error::Internal(format!("key column {column} is null in the database's COPY row"))),
        Err(m) => Err(Error::Internal(format!(
            "the database's COPY row cannot be decoded, key column {column}: {m} (near `{}`)",
            line.chars().take(80).collect::<String>()
        ))),
    }
}
