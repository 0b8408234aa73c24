//! End-to-end tests: the real binaries, started as a user would start them, against throwaway clusters.

mod demo;
mod support;
