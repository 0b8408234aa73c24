//! What staged and streamed upload sessions share: the import of the office's chunks with the shop's options,
//! and its conclusion (the session's result, the office cursor and the deferred count committed with the data).

use pgsync::{Catalog, ImportOptions, ImportSession};
use protocol::policy::Assignment;
use protocol::wire::Finished;
use tokio_postgres::Transaction;

use crate::error::AgentError;
use crate::sessions;
use crate::store::{self, keys};

/// Starts importing an upload in `tx`; call it first thing in the transaction, since the tables empty now take
/// the upload's rows straight in (both-ways tables still merge with deferral).
pub async fn begin<'c>(
    tx: &Transaction<'_>,
    catalog: &'c Catalog,
    assignment: &Assignment,
) -> Result<ImportSession<'c>, AgentError> {
    Ok(ImportSession::begin(tx, catalog, ImportOptions::shop(store::OFFICE_ORIGIN, &assignment.policy)).await?)
}

/// After the last chunk: prunes, records the office cursor, stores the session's result and the deferred count,
/// all in `tx`, which the caller commits. Returns the stored result.
pub async fn finish(tx: &Transaction<'_>, import: ImportSession<'_>, sid: i64) -> Result<Finished, AgentError> {
    let imported = import.finish(tx).await?;
    let finished = sessions::conclude(tx, sid, &imported).await?;
    store::set_state(tx, keys::DEFERRED, &finished.deferred.to_string()).await?;
    tracing::info!(
        upserted = finished.upserted,
        deleted = finished.deleted,
        deferred = finished.deferred,
        "upload applied"
    );
    Ok(finished)
}
