//! `sql_prepare([token]) -> int`: open an upload session. The sid is small (below 2^31) and travels as `<int>`,
//! so that every client can send it back. The optional token (protocol v2) makes a retry after a lost answer
//! return the same session instead of opening a second one.

use super::call::{Answer, Call, Params, Value, WireError, int};

/// The `sql_prepare([token])` request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqlPrepare {
    /// Chosen by the caller for one upload (at most [`MAX_TOKEN_CHARS`]); a retried call with the same token gets
    /// the same unfinished session. `None`: Stoq's `sql_prepare()`, a new session every time.
    pub token: Option<String>,
}

/// The longest token the agent takes.
pub const MAX_TOKEN_CHARS: usize = 128;

/// A new upload session's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sid(pub i64);

impl Call for SqlPrepare {
    const METHOD: &'static str = "sql_prepare";
    type Answer = Sid;

    fn into_params(self) -> Vec<Value> {
        self.token.into_iter().map(Value::String).collect()
    }

    fn from_params(params: Params) -> Result<Self, WireError> {
        if params.expect(0).is_ok() {
            return Ok(SqlPrepare { token: None });
        }
        params.expect(1)?;
        let token = params.string(0, "token")?;
        if token.is_empty() || token.chars().count() > MAX_TOKEN_CHARS {
            return Err(WireError {
                method: SqlPrepare::METHOD,
                detail: format!(": token must be 1 to {MAX_TOKEN_CHARS} characters"),
            });
        }
        Ok(SqlPrepare { token: Some(token) })
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
