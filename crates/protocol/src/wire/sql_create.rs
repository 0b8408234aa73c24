//! `sql_create(sid, data) -> nil`: one gzip payload chunk for an upload session.

use super::call::{Call, Nothing, Params, Value, WireError};

/// The `sql_create(sid, data)` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlCreate {
    /// The session.
    pub sid: i64,
    /// One gzip payload chunk.
    pub data: Vec<u8>,
}

impl Call for SqlCreate {
    const METHOD: &'static str = "sql_create";
    type Answer = Nothing;

    fn into_params(self) -> Vec<Value> {
        vec![Value::Long(self.sid), Value::Base64(self.data)]
    }

    fn from_params(mut params: Params) -> Result<Self, WireError> {
        params.expect(2)?;
        let sid = params.int(0, "sid")?;
        let data = params.base64(1, "data")?;
        Ok(SqlCreate { sid, data })
    }
}
