//! One file per controller command. Each takes the configuration and its arguments and returns an [`Output`].

pub mod branch_add;
pub mod branch_init;
pub mod branch_list;
pub mod branch_reconfigure;
pub mod branch_remove;
pub mod branch_set;
pub mod conflicts;
pub mod init;
pub mod log;
pub mod status;
pub mod sync;
pub mod verify;

pub use crate::output::Output;
