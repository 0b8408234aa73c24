//! Integration tests of the PostgreSQL layer against real throwaway clusters: one cluster per test process,
//! a fresh database per test.

mod apply;
mod capture;
mod constraints;
mod migrate;
mod roundtrip;
mod support;
