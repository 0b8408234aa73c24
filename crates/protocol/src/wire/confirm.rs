//! `confirm(cursor) -> nil` (extension, protocol v2): the office has committed everything a `diff` loop that
//! ended with `cursor` delivered; the shop may now purge it and stop deferring those rows.

use super::call::{Call, Nothing, Params, Value, WireError};

/// The `confirm(cursor)` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    /// The final cursor of a `diff` loop, exactly as the shop issued it.
    pub cursor: String,
}

impl Call for Confirm {
    const METHOD: &'static str = "confirm";
    type Answer = Nothing;

    fn into_params(self) -> Vec<Value> {
        vec![Value::String(self.cursor)]
    }

    fn from_params(params: Params) -> Result<Self, WireError> {
        params.expect(1)?;
        Ok(Confirm { cursor: params.string(0, "cursor")? })
    }
}
