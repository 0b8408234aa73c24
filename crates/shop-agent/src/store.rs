//! The shop's own sync records, kept in the shop database beside the change log: the policy the office handed
//! over, upload sessions with their staged chunks (so an agent restart loses nothing), and a few state values
//! for `status`.

use protocol::payload::TableName;
use protocol::policy::{Assignment, Policy};
use tokio_postgres::GenericClient;

use crate::error::AgentError;

/// Shop migration 1: the policy, upload sessions and state values (the order is in `migrations`).
pub(crate) const SHOP_V1: &str = "
CREATE TABLE IF NOT EXISTS branchsync.shop_policy (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    branch text NOT NULL,
    from_source text[] NOT NULL,
    from_target text[] NOT NULL,
    both_ways text[] NOT NULL,
    initial text[] NOT NULL,
    id_range bigint NOT NULL CHECK (id_range > 0),
    configured_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS branchsync.upload_session (
    sid bigint PRIMARY KEY,
    opened_at timestamptz NOT NULL DEFAULT now(),
    staged_bytes bigint NOT NULL DEFAULT 0,
    chunks integer NOT NULL DEFAULT 0,
    finished_at timestamptz,
    result text
);
CREATE TABLE IF NOT EXISTS branchsync.upload_chunk (
    sid bigint NOT NULL REFERENCES branchsync.upload_session ON DELETE CASCADE,
    seq integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (sid, seq)
);
-- Chunks are gzip already: storing them compressed again (pglz) costs CPU for nothing.
ALTER TABLE branchsync.upload_chunk ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE IF NOT EXISTS branchsync.shop_state (
    key text PRIMARY KEY,
    value text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
";

/// A streamed session (an upload into empty tables) is applied in a transaction held by the agent: after an
/// agent restart it cannot go on, and says so instead of finishing with the chunks it never staged.
pub(crate) const SHOP_V2: &str =
    "ALTER TABLE branchsync.upload_session ADD COLUMN IF NOT EXISTS streamed boolean NOT NULL DEFAULT false;";

/// The origin name the office's changes are marked with at the shop.
pub const OFFICE_ORIGIN: &str = "office";

/// The stored policy, or the fault that says to call `configure` first.
pub async fn assignment(client: &impl GenericClient) -> Result<Assignment, AgentError> {
    load_policy(client).await?.ok_or(AgentError::NotConfigured)
}

/// State keys.
pub mod keys {
    /// The cursor the office last confirmed (see `issued`): what it has acknowledged.
    pub const ACKNOWLEDGED: &str = "acknowledged_cursor";
    /// For a shop that synced before protocol v2: cursors below this transaction id were issued by the older
    /// agent and are taken as `since` until the office first confirms one.
    pub const LEGACY_FLOOR: &str = "legacy_cursor_floor";
    /// Rows deferred by the last applied upload.
    pub const DEFERRED: &str = "deferred_rows";
}

/// The table names of one stored list; a name that does not parse means the record was written by something
/// other than `configure`, and is refused rather than dropped.
fn names(list: Vec<String>) -> Result<Vec<TableName>, AgentError> {
    list.iter()
        .map(|t| {
            // Re-checked on every read: a record written around `configure` never reaches a system table.
            TableName::parse(t).filter(|t| !protocol::policy::is_reserved_schema(&t.schema)).ok_or_else(|| {
                AgentError::Internal(format!(
                    "the stored policy names {:?}, which is not a table name: call configure again",
                    t.chars().take(80).collect::<String>()
                ))
            })
        })
        .collect()
}

/// The stored policy, if `configure` was called since the last `clean`.
pub async fn load_policy(client: &impl GenericClient) -> Result<Option<Assignment>, AgentError> {
    let row = client
        .query_opt(
            "SELECT branch, from_source, from_target, both_ways, initial, id_range FROM branchsync.shop_policy",
            &[],
        )
        .await?;
    let Some(r) = row else { return Ok(None) };
    let policy = Policy {
        from_source: names(r.get(1))?,
        from_target: names(r.get(2))?,
        both: names(r.get(3))?,
        initial: names(r.get(4))?,
    };
    Ok(Some(Assignment { branch: r.get(0), policy, id_range: r.get(5) }))
}

/// Every table the stored policy names that reads as a table name (none before `configure`); the names that do
/// not are logged. For `clean`, which erases these tables and must work on a damaged record too.
pub async fn stored_tables(client: &impl GenericClient) -> Result<Vec<TableName>, AgentError> {
    let row = client
        .query_opt("SELECT from_source || from_target || both_ways || initial FROM branchsync.shop_policy", &[])
        .await?;
    let names: Vec<String> = row.map(|r| r.get(0)).unwrap_or_default();
    // A name of a reserved schema (a record written around `configure`) is never erased.
    let (tables, unreadable): (Vec<_>, Vec<_>) = names
        .iter()
        .partition(|t| TableName::parse(t).is_some_and(|t| !protocol::policy::is_reserved_schema(&t.schema)));
    if !unreadable.is_empty() {
        tracing::warn!(
            ?unreadable,
            "the stored policy names tables that are not table names or lie in a system or sync schema; they are left alone"
        );
    }
    Ok(tables.into_iter().filter_map(|t| TableName::parse(t)).collect())
}

/// Replaces the stored policy.
pub async fn save_policy(client: &impl GenericClient, a: &Assignment) -> Result<(), AgentError> {
    let text = |list: &[TableName]| list.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let p = &a.policy;
    client
        .execute(
            "INSERT INTO branchsync.shop_policy (branch, from_source, from_target, both_ways, initial, id_range) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (singleton) DO UPDATE SET branch = EXCLUDED.branch, \
             from_source = EXCLUDED.from_source, from_target = EXCLUDED.from_target, both_ways = EXCLUDED.both_ways, \
             initial = EXCLUDED.initial, id_range = EXCLUDED.id_range, configured_at = now()",
            &[&a.branch, &text(&p.from_source), &text(&p.from_target), &text(&p.both), &text(&p.initial), &a.id_range],
        )
        .await?;
    Ok(())
}

/// The state key of the first id of the branch's range, written by `setidstart`.
pub const ID_START: &str = "id_start";

/// Reads a state value.
pub async fn get_state(client: &impl GenericClient, key: &str) -> Result<Option<String>, AgentError> {
    Ok(client.query_opt("SELECT value FROM branchsync.shop_state WHERE key = $1", &[&key]).await?.map(|r| r.get(0)))
}

/// Writes a state value.
pub async fn set_state(client: &impl GenericClient, key: &str, value: &str) -> Result<(), AgentError> {
    client
        .execute(
            "INSERT INTO branchsync.shop_state (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
            &[&key, &value],
        )
        .await?;
    Ok(())
}
