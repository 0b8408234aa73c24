//! The XML-RPC method names of the protocol (BRIEF §2), taken from the typed requests in [`crate::wire`], for
//! dispatch tables and metrics.

use crate::wire::{self, Call};

/// Erase the shop's synced data and sync state, reinstall the sync schema.
pub const CLEAN: &str = wire::Clean::METHOD;
/// Open an upload session, returns its sid.
pub const SQL_PREPARE: &str = wire::SqlPrepare::METHOD;
/// Stage one gzip payload chunk in a session.
pub const SQL_CREATE: &str = wire::SqlCreate::METHOD;
/// Apply a session's chunks in one transaction.
pub const SQL_FINISH: &str = wire::SqlFinish::METHOD;
/// Extension (v2): end an unfinished upload session, applying nothing.
pub const SQL_ABORT: &str = wire::SqlAbort::METHOD;
/// Move the id sequences of the tables the shop writes into its range.
pub const SETIDSTART: &str = wire::SetIdStart::METHOD;
/// The shop's changes since a cursor.
pub const DIFF: &str = wire::Diff::METHOD;
/// Extension: hand the shop its policy and id range.
pub const CONFIGURE: &str = wire::Configure::METHOD;
/// Extension: health and progress for monitoring.
pub const STATUS: &str = wire::Status::METHOD;

/// Extension (v2): the office has committed what a `diff` loop delivered, up to its final cursor.
pub const CONFIRM: &str = wire::Confirm::METHOD;

/// Extension: per-table row counts and checksums of the synced tables.
pub const VERIFY: &str = wire::Verify::METHOD;

/// Every method, for dispatch tables and metrics.
pub const ALL: [&str; 11] =
    [CLEAN, SQL_PREPARE, SQL_CREATE, SQL_FINISH, SQL_ABORT, SETIDSTART, DIFF, CONFIRM, CONFIGURE, STATUS, VERIFY];

/// The protocol version this build speaks.
///
/// v2 added `confirm` (a `diff(since)` no longer acknowledges, and purges, what came before `since`; only a
/// confirmed cursor does), `sql_abort`, the optional token of `sql_prepare` and `status`'s list of sessions.
pub const PROTOCOL_VERSION: i32 = 2;
