//! `sql_abort(sid) -> nil` (extension, protocol v2): end an unfinished upload session at once, applying nothing
//! of it, so that a failed push never holds one of the shop's session slots.

use super::call::{Call, Nothing, Params, Value, WireError};

/// The `sql_abort(sid)` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlAbort {
    /// The session.
    pub sid: i64,
}

impl Call for SqlAbort {
    const METHOD: &'static str = "sql_abort";
    type Answer = Nothing;

    fn into_params(self) -> Vec<Value> {
        vec![Value::Long(self.sid)]
    }

    fn from_params(params: Params) -> Result<Self, WireError> {
        params.expect(1)?;
        Ok(SqlAbort { sid: params.int(0, "sid")? })
    }
}
