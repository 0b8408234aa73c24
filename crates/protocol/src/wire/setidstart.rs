//! `setidstart(id[, above]) -> struct`: move the id sequences of the tables the shop writes into its range, and
//! past the ids the office already holds of it (a shop restored from a backup).

use super::call::{Answer, Call, Members, Params, Value, WireError, structure};

/// The `setidstart(id[, above])` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetIdStart {
    /// The first id of the branch's range.
    pub id: i64,
    /// The highest id of the range the office already holds: every sequence continues above it (v2; absent,
    /// as Stoq sends it: `None`).
    pub above: Option<i64>,
}

/// The range the sequences now live in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdRange {
    /// The first id.
    pub start: i64,
    /// The last id (every sequence's `MAXVALUE`).
    pub end: i64,
    /// The sequences moved into the range.
    pub sequences: Vec<String>,
}

impl Call for SetIdStart {
    const METHOD: &'static str = "setidstart";
    type Answer = IdRange;

    fn into_params(self) -> Vec<Value> {
        std::iter::once(self.id).chain(self.above).map(Value::Long).collect()
    }

    fn from_params(params: Params) -> Result<Self, WireError> {
        if params.expect(1).is_ok() {
            return Ok(SetIdStart { id: params.int(0, "id")?, above: None });
        }
        params.expect(2)?;
        Ok(SetIdStart { id: params.int(0, "id")?, above: Some(params.int(1, "above")?) })
    }
}

impl Answer for IdRange {
    fn into_value(self) -> Value {
        structure(vec![
            ("start", Value::Long(self.start)),
            ("end", Value::Long(self.end)),
            ("sequences", Value::Array(self.sequences.into_iter().map(Value::String).collect())),
        ])
    }

    fn from_value(method: &'static str, value: Value) -> Result<Self, WireError> {
        let mut m = Members::of(method, value)?;
        let (start, end) = (m.int("start")?, m.int("end")?);
        let sequences = match m.take("sequences") {
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(WireError { method, detail: ": expected sequence names as strings".into() }),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(WireError { method, detail: ": expected member sequences (an array)".into() }),
        };
        Ok(IdRange { start, end, sequences })
    }
}
