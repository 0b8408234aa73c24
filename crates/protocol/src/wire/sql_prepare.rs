//! `sql_prepare() -> int`: open an upload session. The sid is small (below 2^31) and travels as `<int>`, so
//! that every client can send it back.

use super::call::{Answer, Call, Params, Value, WireError, int};

/// The `sql_prepare()` request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqlPrepare;

/// A new upload session's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sid(pub i64);

impl Call for SqlPrepare {
    const METHOD: &'static str = "sql_prepare";
    type Answer = Sid;

    fn into_params(self) -> Vec<Value> {
        Vec::new()
    }

    fn from_params(params: Params) -> Result<Self, WireError> {
        params.expect(0).map(|()| SqlPrepare)
    }
}

impl Answer for Sid {
    fn into_value(self) -> Value {
        match i32::try_from(self.0) {
            Ok(small) => Value::Integer(small),
            Err(_) => Value::Long(self.0),
        }
    }

    fn from_value(method: &'static str, value: Value) -> Result<Self, WireError> {
        int(&value).map(Sid).ok_or_else(|| WireError { method, detail: ": expected an integer sid".into() })
    }
}
