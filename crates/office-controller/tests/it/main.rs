//! Integration tests of the controller's library against a real office database.

mod claims;
mod hostile_agent;
mod policy;
