//! `branchsync.peer_cursor`: the cursor last applied from each peer, written by an import in the same
//! transaction as the rows behind it (BRIEF §4.2) and read back by whoever asks how far a peer has got.

use tokio_postgres::{GenericClient, Transaction};

use crate::error::Result;

/// Records `cursor` as the last applied from `peer`, inside the transaction that applied the rows behind it.
pub async fn record(tx: &Transaction<'_>, peer: &str, cursor: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO branchsync.peer_cursor (peer, cursor, applied_at) VALUES ($1, $2, now()) \
         ON CONFLICT (peer) DO UPDATE SET cursor = EXCLUDED.cursor, applied_at = EXCLUDED.applied_at",
        &[&peer, &cursor],
    )
    .await?;
    Ok(())
}

/// The cursor last applied from `peer`.
pub async fn read(client: &impl GenericClient, peer: &str) -> Result<Option<String>> {
    Ok(client.query_opt("SELECT cursor FROM branchsync.peer_cursor WHERE peer = $1", &[&peer]).await?.map(|r| r.get(0)))
}
