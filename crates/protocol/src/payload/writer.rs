//! Turns rows into payload chunks: gzip-compressed SQL scripts of bounded size, each readable on its own
//! with `zcat` and runnable with `psql`.

use super::copy::Value;
use super::copy::push_copy_row;
use super::envelope::seal;
use super::model::{ColumnDecl, MAGIC_LINE, TableName};
use crate::sql::{push_literal, quote_ident};

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Uncompressed bytes after which a chunk is closed. A single row larger than this still travels, alone.
    pub chunk_bytes: usize,
    /// Rows after which an `INSERT` or `DELETE` statement is closed and a new one begun (a full chunk closes
    /// it too). Large, because the receiver stages and merges each statement as one batch.
    pub rows_per_statement: usize,
    /// gzip level, 0 to 9.
    pub gzip_level: u32,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self { chunk_bytes: 4 << 20, rows_per_statement: 100_000, gzip_level: 3 }
    }
}

/// The statement the writer is in the middle of, so that rows of the same kind share one statement.
#[derive(Debug, PartialEq)]
enum Open {
    None,
    Insert { table: TableName, columns: Vec<String>, key: Vec<String>, rows: usize },
    Delete { table: TableName, key: Vec<String>, rows: usize },
    Copy { table: TableName, columns: Vec<String> },
}

/// Produces payload chunks. Rows are appended with [`upsert`](Self::upsert), [`delete`](Self::delete) and
/// [`copy_line`](Self::copy_line); completed chunks are taken with [`take_chunks`](Self::take_chunks) so that
/// memory stays bounded by one chunk, and [`finish`](Self::finish) closes the last one.
#[derive(Debug)]
pub struct ChunkWriter {
    config: WriterConfig,
    fingerprint: Option<String>,
    cursor: Option<String>,
    replace: Vec<TableName>,
    declarations: Vec<(TableName, String)>,
    body: String,
    used: Vec<TableName>,
    open: Open,
    done: Vec<Vec<u8>>,
    rows_written: usize,
}

impl ChunkWriter {
    /// A writer whose chunks carry the given fingerprint and cursor in their headers.
    pub fn new(config: WriterConfig, fingerprint: Option<String>, cursor: Option<String>) -> Self {
        Self {
            config,
            fingerprint,
            cursor,
            replace: Vec::new(),
            declarations: Vec::new(),
            body: String::new(),
            used: Vec::new(),
            open: Open::None,
            done: Vec::new(),
            rows_written: 0,
        }
    }

    /// Declares a table's columns, so that every chunk that writes the table says how the sender sees it.
    pub fn declare_table(&mut self, table: &TableName, columns: &[ColumnDecl]) {
        let cols: Vec<String> = columns.iter().map(|c| format!("{} {}", quote_ident(&c.name), c.type_sql)).collect();
        let line = format!("-- table {}: {}\n", table.quoted(), cols.join(", "));
        match self.declarations.iter_mut().find(|(t, _)| t == table) {
            Some(entry) => entry.1 = line,
            None => self.declarations.push((table.clone(), line)),
        }
    }

    /// Marks tables as replaced: every chunk says so, and the receiver deletes the rows of these tables that the
    /// whole upload did not carry.
    pub fn set_replace(&mut self, tables: Vec<TableName>) {
        self.replace = tables;
    }

    /// Sets the cursor carried by the chunks closed from now on.
    pub fn set_cursor(&mut self, cursor: Option<String>) {
        self.cursor = cursor;
    }

    /// Appends one row to be inserted, or updated on a conflict on `key`.
    pub fn upsert(&mut self, table: &TableName, columns: &[String], key: &[String], row: &[Value]) {
        let continues = matches!(&self.open, Open::Insert { table: t, columns: c, key: k, rows }
            if t == table && c == columns && k == key && *rows < self.config.rows_per_statement)
            && self.body.len() < self.config.chunk_bytes;
        if continues {
            self.body.push_str(",\n");
        } else {
            self.close_statement();
            self.roll_if_full();
            self.touch(table);
            let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
            self.body.push_str(&format!("INSERT INTO {} ({}) VALUES\n", table.quoted(), cols.join(", ")));
            self.open = Open::Insert { table: table.clone(), columns: columns.to_vec(), key: key.to_vec(), rows: 0 };
        }
        push_tuple(&mut self.body, row);
        if let Open::Insert { rows, .. } = &mut self.open {
            *rows += 1;
        }
        self.rows_written += 1;
    }

    /// Appends one row to be deleted by its key.
    pub fn delete(&mut self, table: &TableName, key: &[String], values: &[Value]) {
        let continues = matches!(&self.open, Open::Delete { table: t, key: k, rows }
            if t == table && k == key && *rows < self.config.rows_per_statement)
            && self.body.len() < self.config.chunk_bytes;
        if continues {
            self.body.push_str(", ");
        } else {
            self.close_statement();
            self.roll_if_full();
            self.touch(table);
            let cols: Vec<String> = key.iter().map(|c| quote_ident(c)).collect();
            if key.len() == 1 {
                self.body.push_str(&format!("DELETE FROM {} WHERE {} IN (", table.quoted(), cols[0]));
            } else {
                self.body.push_str(&format!("DELETE FROM {} WHERE ({}) IN (", table.quoted(), cols.join(", ")));
            }
            self.open = Open::Delete { table: table.clone(), key: key.to_vec(), rows: 0 };
        }
        if key.len() == 1 {
            push_literal(&mut self.body, values[0].as_deref());
        } else {
            push_tuple(&mut self.body, values);
        }
        if let Open::Delete { rows, .. } = &mut self.open {
            *rows += 1;
        }
        self.rows_written += 1;
    }

    /// Appends one line of a `COPY ... FROM STDIN` block, already in COPY text format without its newline
    /// (as PostgreSQL's `COPY ... TO STDOUT` produces it). Rows of a COPY block are upserted by the receiver.
    pub fn copy_line(&mut self, table: &TableName, columns: &[String], line: &str) {
        let continues = matches!(&self.open, Open::Copy { table: t, columns: c } if t == table && c == columns);
        if continues && self.body.len() < self.config.chunk_bytes {
            // Stay in the block.
        } else {
            self.close_statement();
            self.roll_if_full();
            self.touch(table);
            let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
            self.body.push_str(&format!("COPY {} ({}) FROM STDIN;\n", table.quoted(), cols.join(", ")));
            self.open = Open::Copy { table: table.clone(), columns: columns.to_vec() };
        }
        self.body.push_str(line);
        self.body.push('\n');
        self.rows_written += 1;
    }

    /// Appends one row of a `COPY` block from its values, escaping them in COPY text format.
    pub fn copy_row(&mut self, table: &TableName, columns: &[String], row: &[Value]) {
        let mut line = String::new();
        push_copy_row(&mut line, row);
        self.copy_line(table, columns, &line);
    }

    /// Uncompressed bytes in the chunk being built.
    pub fn pending_bytes(&self) -> usize {
        self.body.len()
    }

    /// Rows written since the writer was created.
    pub fn rows_written(&self) -> usize {
        self.rows_written
    }

    /// Completed chunks so far; the chunk being built stays.
    pub fn take_chunks(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.done)
    }

    /// Closes the last chunk and returns every chunk not yet taken. A writer that wrote nothing returns one
    /// chunk holding only the header, so that a receiver still learns the cursor.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.close_statement();
        if !self.body.is_empty() || self.done.is_empty() {
            self.close_chunk();
        }
        self.done
    }

    fn touch(&mut self, table: &TableName) {
        if !self.used.contains(table) {
            self.used.push(table.clone());
        }
    }

    fn roll_if_full(&mut self) {
        if self.body.len() >= self.config.chunk_bytes {
            self.close_chunk();
        }
    }

    fn close_statement(&mut self) {
        match std::mem::replace(&mut self.open, Open::None) {
            Open::None => {}
            Open::Insert { columns, key, .. } => {
                let keys: Vec<String> = key.iter().map(|c| quote_ident(c)).collect();
                let sets: Vec<String> = columns
                    .iter()
                    .filter(|c| !key.contains(c))
                    .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
                    .collect();
                if sets.is_empty() {
                    self.body.push_str(&format!("\nON CONFLICT ({}) DO NOTHING;\n", keys.join(", ")));
                } else {
                    self.body.push_str(&format!(
                        "\nON CONFLICT ({}) DO UPDATE SET {};\n",
                        keys.join(", "),
                        sets.join(", ")
                    ));
                }
            }
            Open::Delete { .. } => self.body.push_str(");\n"),
            Open::Copy { .. } => self.body.push_str("\\.\n"),
        }
        if self.body.len() >= self.config.chunk_bytes {
            self.close_chunk();
        }
    }

    fn close_chunk(&mut self) {
        let mut header = String::with_capacity(256);
        header.push_str(MAGIC_LINE);
        header.push('\n');
        if let Some(fp) = &self.fingerprint {
            header.push_str(&format!("-- fingerprint: {fp}\n"));
        }
        if let Some(cursor) = &self.cursor {
            header.push_str(&format!("-- cursor: {cursor}\n"));
        }
        if !self.replace.is_empty() {
            let names: Vec<String> = self.replace.iter().map(TableName::quoted).collect();
            header.push_str(&format!("-- replace: {}\n", names.join(", ")));
        }
        for (table, line) in &self.declarations {
            if self.used.contains(table) {
                header.push_str(line);
            }
        }
        self.done.push(seal(&header, &self.body, self.config.gzip_level));
        self.body.clear();
        self.used.clear();
    }
}

fn push_tuple(out: &mut String, row: &[Value]) {
    out.push('(');
    for (i, value) in row.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_literal(out, value.as_deref());
    }
    out.push(')');
}
