//! The order of the shop's migrations (see `pgsync::migrate`): each step is written beside the table it creates,
//! and listed here, so that no module of the records depends on another to install itself.

use crate::error::AgentError;
use crate::{issued, sessions, store};

const MIGRATIONS: &[&str] = &[store::SHOP_V1, store::SHOP_V2, issued::MIGRATION, sessions::MIGRATION];

/// The tables the shop's migrations create in the sync schema (for `clean`'s check that nothing else is there).
pub const TABLES: &[&str] = &["shop_policy", "upload_session", "upload_chunk", "shop_state", "issued_cursor"];

/// Creates the sync schema and the shop's tables if missing.
pub async fn install(client: &tokio_postgres::Client) -> Result<(), AgentError> {
    pgsync::schema::install(client).await?;
    pgsync::migrate::migrate(client, "shop", MIGRATIONS).await?;
    Ok(())
}

/// Creates the shop's tables after `pgsync::schema::reinstall` (inside the caller's transaction).
pub async fn install_shop_tables(client: &impl tokio_postgres::GenericClient) -> Result<(), AgentError> {
    pgsync::migrate::migrate(client, "shop", MIGRATIONS).await?;
    Ok(())
}
