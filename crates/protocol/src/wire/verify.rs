//! `verify() -> struct` (extension): per synced table, its row count and checksum at the shop.

use std::collections::BTreeMap;

use super::call::{Answer, Call, Members, Params, Value, WireError, structure};

/// The `verify()` request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verify;

/// One table's row count and order-independent checksum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSum {
    /// Rows.
    pub rows: i64,
    /// The checksum.
    pub checksum: String,
}

impl Call for Verify {
    const METHOD: &'static str = "verify";
    type Answer = BTreeMap<String, TableSum>;

    fn into_params(self) -> Vec<Value> {
        Vec::new()
    }

    fn from_params(params: Params) -> Result<Self, WireError> {
        params.expect(0).map(|()| Verify)
    }
}

/// Per table (`schema.name`).
impl Answer for BTreeMap<String, TableSum> {
    fn into_value(self) -> Value {
        Value::Struct(
            self.into_iter()
                .map(|(table, s)| {
                    (table, structure(vec![("rows", Value::Long(s.rows)), ("checksum", Value::String(s.checksum))]))
                })
                .collect(),
        )
    }

    fn from_value(method: &'static str, value: Value) -> Result<Self, WireError> {
        let Value::Struct(tables) = value else {
            return Err(WireError { method, detail: ": expected a struct".into() });
        };
        tables
            .into_iter()
            .map(|(table, v)| {
                let mut m = Members::of(method, v)?;
                Ok((table, TableSum { rows: m.int("rows")?, checksum: m.string("checksum")? }))
            })
            .collect()
    }
}
