//! `confirm(cursor)` (extension, protocol v2): the office says it has committed everything up to the final
//! cursor of a `diff` loop. Only a cursor this shop issued and still keeps is taken (fault 400 otherwise); it
//! becomes the acknowledged cursor, and the change-log rows it covers are purged in the background. Confirming
//! the confirmed cursor again (a retry after a lost answer) changes nothing; an older one is no longer kept and
//! is refused.

use protocol::cursor::Cursor;
use protocol::wire::{Confirm, Nothing};

use crate::agent::Agent;
use crate::error::AgentError;
use crate::issued;

/// Handles `confirm(cursor)`.
pub async fn call(agent: &Agent, Confirm { cursor }: Confirm) -> Result<Nothing, AgentError> {
    let cursor: Cursor = cursor.parse().map_err(pgsync::Error::from)?;
    let mut client = agent.db().await?;
    let identity = pgsync::schema::identity(&*client).await?;
    let cursor = cursor.check_issuer(&identity).map_err(pgsync::Error::from)?;
    let Some(confirmed) = issued::confirm(&mut client, &cursor).await? else {
        tracing::debug!("the cursor was confirmed already, nothing to do");
        return Ok(Nothing);
    };
    drop(client);
    // Nothing waits on the purge: `status` counts only what the confirmed cursor does not cover, purged or not,
    // and a failed purge is done by the next confirm.
    agent
        .in_background("purging confirmed changes", move |client| async move {
            let purged = pgsync::schema::purge(&client, std::slice::from_ref(&confirmed)).await;
            (client, purged.map(|_| ()).map_err(AgentError::from))
        })
        .await
        .map(|()| Nothing)
}
