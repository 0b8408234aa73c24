//! `clean() -> nil`: erase the shop's synced data and sync state, reinstall the sync schema.

use super::call::{Call, Nothing, Params, Value, WireError};

/// The `clean()` request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clean;

impl Call for Clean {
    const METHOD: &'static str = "clean";
    type Answer = Nothing;

    fn into_params(self) -> Vec<Value> {
        Vec::new()
    }

    fn from_params(params: Params) -> Result<Self, WireError> {
        params.expect(0).map(|()| Clean)
    }
}
