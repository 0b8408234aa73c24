//! The branchsync wire contract, shared by the shop agent and the office controller. It does no IO: the typed
//! methods and their XML-RPC form, fault codes, the cursor's encoding, the policy model, the schema fingerprint
//! and the payload format live here so that both sides agree by construction.

pub mod cursor;
pub mod fault;
pub mod methods;
pub mod payload;
pub mod policy;
pub mod schema;
pub mod sql;
pub mod text;
pub mod wire;
