//! Integration tests of the controller's library against a real office database.

mod hostile_agent;
mod policy;
