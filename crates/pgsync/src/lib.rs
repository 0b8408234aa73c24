//! The PostgreSQL side of branchsync, shared by the shop agent and the office controller: introspection of the
//! synced tables, the sync schema and change capture, export of changes as payload chunks, transactional apply
//! of validated payloads together with a cursor, purge of acknowledged changes, and per-table checksums.
//!
//! Every connection used here goes through [`connect`], which pins the session settings that make the text
//! form of every value exact and identical on both sides.

pub mod catalog;
pub mod checksum;
pub mod conn;
pub mod error;
pub mod export;
pub mod import;
pub mod migrate;
pub mod peer_cursor;
pub mod schema;

pub use catalog::{Catalog, ColumnInfo, ForeignKey, TableInfo};
pub use checksum::{TableChecksum, checksum_where, checksums};
pub use conn::connect;
pub use error::{Error, Result};
pub use export::{ExportOptions, ExportSession};
pub use import::{
    ApplyReport, ConflictCheck, Guard, ImportOptions, ImportSession, Imported, Ownership, RecordedConflict, Rule,
    TableCounts, apply, empty_tables, recorded_conflicts, validate,
};
