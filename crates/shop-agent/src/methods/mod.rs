//! One file per XML-RPC method, each taking its typed request from `protocol::wire` and returning its typed
//! answer, plus the few helpers they share.

pub mod clean;
pub mod configure;
pub mod diff;
pub mod setidstart;
pub mod sql_create;
pub mod sql_finish;
pub mod sql_prepare;
pub mod status;
pub mod verify;

use protocol::policy::Assignment;
use tokio_postgres::GenericClient;

use crate::error::AgentError;
use crate::store;

/// The origin name the office's changes are marked with at the shop.
pub const OFFICE_ORIGIN: &str = "office";

/// The stored policy, or the fault that says to call `configure` first.
pub(crate) async fn policy(client: &impl GenericClient) -> Result<Assignment, AgentError> {
    store::load_policy(client).await?.ok_or(AgentError::NotConfigured)
}
