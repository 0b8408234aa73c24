//! Integration tests of the shop agent: the real server function on a real port, a real shop database, driven
//! over HTTP by the Rust client and by Python's standard `xmlrpc.client`.

mod boundaries;
mod commands;
mod hardening;
mod python;
mod security;
mod support;
