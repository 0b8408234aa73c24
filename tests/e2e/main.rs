//! End-to-end tests: the real binaries, started as a user would start them, against throwaway clusters.

mod acknowledgement;
mod agent_cli;
mod api;
mod architecture;
mod constraints;
mod crash;
mod decisions;
mod demo;
mod deploy;
mod flows;
mod monitoring;
mod operator;
mod reconfigure;
mod restore;
mod service;
mod support;
mod verify;
