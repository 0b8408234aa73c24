//! What branchsync's two long-running processes (`shop-agent serve`, `office-controller serve`) share, so that
//! each concept has one home: the hardened accept loop for HTTP and HTTPS ([`listener`], [`tls`]), basic auth
//! against argon2 hashes ([`auth`]) behind a login throttle ([`throttle`]) at one gate ([`gate`]), and the
//! process plumbing of a service ([`process`]: signals, systemd notification, log setup).

pub mod auth;
pub mod gate;
pub mod listener;
pub mod process;
pub mod throttle;
pub mod tls;
