//! The XML-RPC method names of protocol v1 (BRIEF §2), in one place so that agent and controller cannot drift.

/// Erase the shop's synced data and sync state, reinstall the sync schema.
pub const CLEAN: &str = "clean";
/// Open an upload session, returns its sid.
pub const SQL_PREPARE: &str = "sql_prepare";
/// Stage one gzip payload chunk in a session.
pub const SQL_CREATE: &str = "sql_create";
/// Apply a session's chunks in one transaction.
pub const SQL_FINISH: &str = "sql_finish";
/// Move the id sequences of the tables the shop writes into its range.
pub const SETIDSTART: &str = "setidstart";
/// The shop's changes since a cursor.
pub const DIFF: &str = "diff";
/// Extension: hand the shop its policy and id range.
pub const CONFIGURE: &str = "configure";
/// Extension: health and progress for monitoring.
pub const STATUS: &str = "status";

/// Extension: per-table row counts and checksums of the synced tables.
pub const VERIFY: &str = "verify";

/// Every method, for dispatch tables and metrics.
pub const ALL: [&str; 9] = [CLEAN, SQL_PREPARE, SQL_CREATE, SQL_FINISH, SETIDSTART, DIFF, CONFIGURE, STATUS, VERIFY];

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: i32 = 1;
