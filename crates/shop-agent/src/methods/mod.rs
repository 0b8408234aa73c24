//! One file per XML-RPC method, plus the few helpers they share.

pub mod clean;
pub mod configure;
pub mod diff;
pub mod setidstart;
pub mod sql_create;
pub mod sql_finish;
pub mod sql_prepare;
pub mod status;
pub mod verify;

use tokio_postgres::GenericClient;

use crate::error::AgentError;
use crate::store::{self, Policy};

/// The origin name the office's changes are marked with at the shop.
pub const OFFICE_ORIGIN: &str = "office";

/// The stored policy, or the fault that says to call `configure` first.
pub(crate) async fn policy(client: &impl GenericClient) -> Result<Policy, AgentError> {
    store::load_policy(client).await?.ok_or(AgentError::NotConfigured)
}
