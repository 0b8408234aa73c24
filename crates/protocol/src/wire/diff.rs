//! `diff(since) -> struct`: the shop's changes since a cursor, one bounded chunk per answer.

use super::call::{Answer, Call, Members, Params, Value, WireError, structure};

/// The `diff(since)` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The cursor (or a continuation) the answer starts after; `""` for everything.
    pub since: String,
}

/// One `diff` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffAnswer {
    /// A gzip payload chunk.
    pub data: Vec<u8>,
    /// The `since` of the next call.
    pub cursor: String,
    /// Whether more is waiting.
    pub more: bool,
}

impl Call for Diff {
    const METHOD: &'static str = "diff";
    type Answer = DiffAnswer;

    fn into_params(self) -> Vec<Value> {
        vec![Value::String(self.since)]
    }

    fn from_params(params: Params) -> Result<Self, WireError> {
        params.expect(1)?;
        Ok(Diff { since: params.string(0, "since")? })
    }
}

impl Answer for DiffAnswer {
    fn into_value(self) -> Value {
        structure(vec![
            ("data", Value::Base64(self.data)),
            ("cursor", Value::String(self.cursor)),
            ("more", Value::Boolean(self.more)),
        ])
    }

    fn from_value(method: &'static str, value: Value) -> Result<Self, WireError> {
        let mut m = Members::of(method, value)?;
        Ok(DiffAnswer { data: m.base64("data")?, cursor: m.string("cursor")?, more: m.boolean("more")? })
    }
}
