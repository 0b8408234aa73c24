//! The typed wire contract of protocol v2: one file per XML-RPC method, each holding its request, its answer
//! and both conversions to and from XML-RPC values (the habit of mini-redis' `cmd/get.rs`). Only this module,
//! `agent-client` and the agent's `rpc` know XML-RPC; everything else speaks these types.
//!
//! Requests are read leniently where common clients differ (64-bit integers as `i8`, `i4` or decimal strings,
//! BRIEF §2); answers are read strictly, since only our agent writes them.

mod call;
pub mod clean;
pub mod configure;
pub mod confirm;
pub mod diff;
pub mod setidstart;
pub mod sql_abort;
pub mod sql_create;
pub mod sql_finish;
pub mod sql_prepare;
pub mod status;
pub mod verify;

pub use call::{Answer, Call, Nothing, Params, Value, WireError, int};
pub use clean::Clean;
pub use configure::Configure;
pub use confirm::Confirm;
pub use diff::{Diff, DiffAnswer};
pub use setidstart::{IdRange, SetIdStart};
pub use sql_abort::SqlAbort;
pub use sql_create::SqlCreate;
pub use sql_finish::{Finished, SqlFinish};
pub use sql_prepare::SqlPrepare;
pub use status::{AgentStatus, OpenSession, Status};
pub use verify::{TableSum, Verify};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_i4_i8_and_decimal_strings() {
        assert_eq!(int(&Value::Integer(5)), Some(5));
        assert_eq!(int(&Value::Long(1 << 40)), Some(1 << 40));
        assert_eq!(int(&Value::String(" 1000000000000 ".into())), Some(1_000_000_000_000));
        assert_eq!(int(&Value::String("1e3".into())), None);
        assert_eq!(int(&Value::Boolean(true)), None);
    }

    /// Every request and answer reads back what it wrote.
    #[test]
    fn requests_and_answers_round_trip() {
        fn round<C: Call + Clone + PartialEq + std::fmt::Debug>(c: C) {
            let back = C::from_params(Params::new(C::METHOD, c.clone().into_params())).unwrap();
            assert_eq!(back, c);
        }
        fn answer<A: Answer + Clone + PartialEq + std::fmt::Debug>(a: A) {
            assert_eq!(A::from_value("test", a.clone().into_value()).unwrap(), a);
        }
        round(Clean);
        round(SqlPrepare { token: None });
        round(SqlPrepare { token: Some("push-7".into()) });
        round(SqlAbort { sid: 9 });
        round(SqlCreate { sid: 7, data: vec![1, 2, 3] });
        round(SqlFinish { sid: 1 << 40 });
        round(SetIdStart { id: 1_000_000_000_000, above: None });
        round(SetIdStart { id: 1_000_000_000_000, above: Some(1_000_000_000_041) });
        round(Diff { since: "bs1/1/2/ab/3:4:".into() });
        round(Verify { from_id: None });
        round(Verify { from_id: Some(1_000_000_000_007) });
        round(Confirm { cursor: "bs1/1/2/ab/3:4:".into() });
        round(Status);
        answer(DiffAnswer { data: vec![9], cursor: "c".into(), more: true });
        answer(Finished { upserted: 1, deleted: 2, deferred: 3, chunks: 4 });
        answer(IdRange { start: 1, end: 9, sequences: vec!["public.sale_id_seq".into()] });
        answer(sql_prepare::Sid(42));
    }
}
