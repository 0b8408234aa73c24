//! `sql_finish(sid) -> struct`: apply a session's chunks in one transaction; the same answer again for a
//! finished session.

use super::call::{Answer, Call, Members, Params, Value, WireError, structure};

/// The `sql_finish(sid)` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlFinish {
    /// The session.
    pub sid: i64,
}

/// What a finished upload applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Finished {
    /// Rows inserted or updated.
    pub upserted: i64,
    /// Rows deleted, those a replacing upload did not carry included.
    pub deleted: i64,
    /// Rows deferred because the shop has local changes the office has not pulled yet.
    pub deferred: i64,
    /// Chunks applied.
    pub chunks: i64,
}

impl Call for SqlFinish {
    const METHOD: &'static str = "sql_finish";
    type Answer = Finished;

    fn into_params(self) -> Vec<Value> {
        vec![Value::Long(self.sid)]
    }

    fn from_params(params: Params) -> Result<Self, WireError> {
        params.expect(1)?;
        Ok(SqlFinish { sid: params.int(0, "sid")? })
    }
}

impl Answer for Finished {
    fn into_value(self) -> Value {
        structure(vec![
            ("upserted", Value::Long(self.upserted)),
            ("deleted", Value::Long(self.deleted)),
            ("deferred", Value::Long(self.deferred)),
            ("chunks", Value::Long(self.chunks)),
        ])
    }

    fn from_value(method: &'static str, value: Value) -> Result<Self, WireError> {
        let m = Members::of(method, value)?;
        Ok(Finished {
            upserted: m.int("upserted")?,
            deleted: m.int("deleted")?,
            deferred: m.int("deferred")?,
            chunks: m.int("chunks")?,
        })
    }
}
