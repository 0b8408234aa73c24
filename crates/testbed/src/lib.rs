//! Throwaway PostgreSQL clusters and the sample retail schema and data, shared by the tests, the controller's
//! demo and the benchmarks, so that none of them needs a server started by hand.

pub mod cluster;
pub mod fake_agent;
pub mod sample;

pub use cluster::{Cluster, ClusterError, shared_cluster};
