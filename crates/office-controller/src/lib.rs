//! The office controller as a library: one module per command, so that tests drive exactly what the binary runs.

pub mod commands;
