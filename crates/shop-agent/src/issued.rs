//! The cursors this shop issued at the end of its `diff` loops, and the one the office confirmed: what makes an
//! acknowledgement verified rather than taken on faith (BRIEF §4). A `diff(since)` is served only from a cursor
//! kept here, and only `confirm` of a kept cursor moves the acknowledgement that purges the change log and ends
//! deferral. Every statement on `branchsync.issued_cursor` is in this module.

use protocol::cursor::{Cursor, CursorError};
use tokio_postgres::GenericClient;

use crate::error::AgentError;
use crate::store::{self, keys};

/// Shop migration 3: the issued cursors, and for a shop that was already syncing before it, the snapshot below
/// which the cursors an older agent issued are still taken until the office first confirms one.
pub(crate) const MIGRATION: &str = "
CREATE TABLE IF NOT EXISTS branchsync.issued_cursor (
    id bigserial PRIMARY KEY,
    snapshot text NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS issued_cursor_snapshot ON branchsync.issued_cursor (snapshot);
INSERT INTO branchsync.shop_state (key, value)
    SELECT 'legacy_cursor_floor', pg_snapshot_xmax(pg_current_snapshot())::text
    WHERE EXISTS (SELECT 1 FROM branchsync.shop_state WHERE key = 'acknowledged_cursor')
    ON CONFLICT (key) DO NOTHING;
";

/// Unconfirmed cursors kept beyond the confirmed one: a client that never confirms (a plain Stoq client) can
/// still go on from any of its recent cursors, and the table stays small.
pub const KEPT_UNCONFIRMED: i64 = 1000;

/// Records the final cursor of a `diff` loop before it is handed out.
pub async fn record(client: &impl GenericClient, cursor: &Cursor) -> Result<(), AgentError> {
    let id: i64 = client
        .query_one("INSERT INTO branchsync.issued_cursor (snapshot) VALUES ($1) RETURNING id", &[&cursor.snapshot])
        .await?
        .get(0);
    let confirmed = confirmed(client).await?.map(|c| c.snapshot);
    client
        .execute(
            "DELETE FROM branchsync.issued_cursor WHERE id <= $1 AND snapshot IS DISTINCT FROM $2",
            &[&(id - KEPT_UNCONFIRMED), &confirmed],
        )
        .await?;
    Ok(())
}

/// Refuses a `since` the shop did not issue or no longer keeps (fault 400): a forged cursor ahead of anything
/// issued, or one older than the confirmed cursor, whose changes may already be purged. The caller has checked
/// that the cursor names this database.
pub async fn check_since(client: &impl GenericClient, since: &Cursor) -> Result<(), AgentError> {
    if kept(client, since).await?.is_some() {
        return Ok(());
    }
    // An agent from before protocol v2 kept no record: until the office confirms a cursor, what it issued (all
    // below the snapshot taken when this agent first started) is still taken.
    let floor = store::get_state(client, keys::LEGACY_FLOOR).await?.and_then(|f| f.parse::<u64>().ok());
    if floor.is_some_and(|floor| since.xmax() <= floor) {
        return Ok(());
    }
    Err(not_issued())
}

/// Confirms `cursor`: the office has committed everything up to it. Returns the cursor now confirmed if this
/// moved the acknowledgement, `None` if it was confirmed already. A cursor older than the confirmed one is no
/// longer kept and is refused like any other that is not kept.
pub async fn confirm(client: &mut tokio_postgres::Client, cursor: &Cursor) -> Result<Option<Cursor>, AgentError> {
    let tx = client.transaction().await?;
    // Confirms of one shop are rare and short: one at a time keeps "the confirmed cursor only moves forward".
    tx.execute("LOCK TABLE branchsync.issued_cursor IN SHARE ROW EXCLUSIVE MODE", &[]).await?;
    let id = kept(&tx, cursor).await?.ok_or_else(not_issued)?;
    if let Some(current) = confirmed(&tx).await?
        && let Some(current_id) = kept(&tx, &current).await?
        && current_id >= id
    {
        return Ok(None);
    }
    store::set_state(&tx, keys::ACKNOWLEDGED, &cursor.to_string()).await?;
    tx.execute("DELETE FROM branchsync.issued_cursor WHERE id < $1", &[&id]).await?;
    tx.execute("DELETE FROM branchsync.shop_state WHERE key = $1", &[&keys::LEGACY_FLOOR]).await?;
    tx.commit().await?;
    Ok(Some(cursor.clone()))
}

/// The confirmed cursor, if any.
pub async fn confirmed(client: &impl GenericClient) -> Result<Option<Cursor>, AgentError> {
    Ok(store::get_state(client, keys::ACKNOWLEDGED).await?.and_then(|c| c.parse().ok()))
}

/// The id of a kept cursor (the newest, should a snapshot repeat).
async fn kept(client: &impl GenericClient, cursor: &Cursor) -> Result<Option<i64>, AgentError> {
    Ok(client
        .query_one("SELECT max(id) FROM branchsync.issued_cursor WHERE snapshot = $1", &[&cursor.snapshot])
        .await?
        .get(0))
}

fn not_issued() -> AgentError {
    AgentError::Sync(pgsync::Error::Cursor(CursorError::NotIssued))
}
