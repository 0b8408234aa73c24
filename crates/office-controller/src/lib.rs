//! The office controller as a library: configuration, the office's records, the sync cycle, and one module per
//! command, so that tests and the demo drive exactly what the binary runs.

pub mod commands;
pub mod config;
pub mod output;
pub mod records;
pub mod schedule;
pub mod serve;
pub mod sync;
pub mod views;

pub use config::Config;
