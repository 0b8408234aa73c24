//! One file per XML-RPC method, each taking its typed request from `protocol::wire` and returning its typed
//! answer, plus the few helpers they share.

pub mod clean;
pub mod configure;
pub mod confirm;
pub mod diff;
pub mod setidstart;
pub mod sql_abort;
pub mod sql_create;
pub mod sql_finish;
pub mod sql_prepare;
pub mod status;
pub mod verify;
