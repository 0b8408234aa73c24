//! `verify([from_id]) -> struct` (extension): per synced table, its row count and checksum at the shop, and its
//! changes still on their way to the office. With `from_id`, the tables the shop writes (`from_target`) are
//! summed over the rows whose id-range column is at least `from_id`: the shop's history since its
//! initialisation, which is what the office compares.

use std::collections::BTreeMap;

use super::call::{Answer, Call, Members, Params, Value, WireError, structure};

/// The `verify([from_id])` request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verify {
    /// Sum the shop-written tables from this id of their id-range column on; `None`: every row.
    pub from_id: Option<i64>,
}

/// One table's row count and order-independent checksum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSum {
    /// Rows.
    pub rows: i64,
    /// The checksum.
    pub checksum: String,
    /// Changes of the table captured at the shop that the office has not acknowledged (on their way to it);
    /// `None` from an agent that does not say.
    pub pending: Option<i64>,
}

impl Call for Verify {
    const METHOD: &'static str = "verify";
    type Answer = BTreeMap<String, TableSum>;

    fn into_params(self) -> Vec<Value> {
        self.from_id.map(Value::Long).into_iter().collect()
    }

    fn from_params(params: Params) -> Result<Self, WireError> {
        if params.expect(0).is_ok() {
            return Ok(Verify { from_id: None });
        }
        params.expect(1)?;
        Ok(Verify { from_id: Some(params.int(0, "from_id")?) })
    }
}

/// Per table (`schema.name`).
impl Answer for BTreeMap<String, TableSum> {
    fn into_value(self) -> Value {
        Value::Struct(
            self.into_iter()
                .map(|(table, s)| {
                    let mut members = vec![("rows", Value::Long(s.rows)), ("checksum", Value::String(s.checksum))];
                    if let Some(pending) = s.pending {
                        members.push(("pending", Value::Long(pending)));
                    }
                    (table, structure(members))
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
                let pending = if m.has("pending") { Some(m.int("pending")?) } else { None };
                Ok((table, TableSum { rows: m.int("rows")?, checksum: m.string("checksum")?, pending }))
            })
            .collect()
    }
}
