//! One file per controller command.

pub mod demo;
