//! `status() -> struct` (extension): what monitoring and the office need to know about a shop at a glance.
//! One shape whether or not the shop database answers: when it does not, its members are empty and
//! `database_error` says why.

use super::call::{Answer, Call, Members, Params, Value, WireError, structure};
use super::configure::{policy_members, read_policy};
use crate::policy::Assignment;

/// The `status()` request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status;

/// The agent's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStatus {
    /// The agent's version.
    pub version: String,
    /// The protocol version it speaks.
    pub protocol: i64,
    /// Seconds since it started.
    pub uptime_seconds: i64,
    /// Unix time of the last completed exchange, 0 for none.
    pub last_exchange_unix: i64,
    /// The last fault it returned, with its method; empty for none, and cleared by a later successful call
    /// (other than `status`).
    pub last_error: String,
    /// Unix time of that fault, 0 for none.
    pub last_error_unix: i64,
    /// What the shop database says, or why it could not be asked.
    pub database: Result<ShopState, String>,
}

/// The shop database's side of the status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShopState {
    /// The branch and policy handed over with `configure`; `None` before it.
    pub assignment: Option<Assignment>,
    /// The schema fingerprint of the synced tables; empty before `configure`.
    pub schema_fingerprint: String,
    /// The office cursor of the last applied upload; empty for none.
    pub last_office_cursor: String,
    /// The shop database's identity (`DbIdentity` as text); empty when the sync schema is not installed or the
    /// agent is older. A shop restored from a backup, or another database behind the same URL, has another.
    pub database_identity: String,
    /// Captured changes the office has not acknowledged.
    pub pending_changes: i64,
    /// Rows the last upload deferred.
    pub deferred_rows: i64,
    /// Unfinished upload sessions.
    pub open_sessions: i64,
    /// The unfinished upload sessions, oldest first.
    pub sessions: Vec<OpenSession>,
}

/// One unfinished upload session, as `status` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenSession {
    /// The session.
    pub sid: i64,
    /// Seconds since `sql_prepare`.
    pub age_seconds: i64,
    /// Seconds since its last call; it expires after the agent's `limits.upload_idle_seconds`.
    pub idle_seconds: i64,
    /// Chunks received.
    pub chunks: i64,
    /// Whether it streams (applied as it arrives) rather than staging.
    pub streamed: bool,
}

impl OpenSession {
    fn into_value(self) -> Value {
        structure(vec![
            ("sid", Value::Long(self.sid)),
            ("age_seconds", Value::Long(self.age_seconds)),
            ("idle_seconds", Value::Long(self.idle_seconds)),
            ("chunks", Value::Long(self.chunks)),
            ("streamed", Value::Boolean(self.streamed)),
        ])
    }

    fn from_value(method: &'static str, value: Value) -> Result<Self, WireError> {
        let m = Members::of(method, value)?;
        Ok(OpenSession {
            sid: m.int("sid")?,
            age_seconds: m.int("age_seconds")?,
            idle_seconds: m.int("idle_seconds")?,
            chunks: m.int("chunks")?,
            streamed: m.boolean("streamed")?,
        })
    }
}

impl AgentStatus {
    /// The office cursor the shop last applied, when its database answers and it has one.
    pub fn last_office_cursor(&self) -> Option<&str> {
        self.database.as_ref().ok().map(|s| s.last_office_cursor.as_str()).filter(|c| !c.is_empty())
    }
}

impl Call for Status {
    const METHOD: &'static str = "status";
    type Answer = AgentStatus;

    fn into_params(self) -> Vec<Value> {
        Vec::new()
    }

    fn from_params(params: Params) -> Result<Self, WireError> {
        params.expect(0).map(|()| Status)
    }
}

impl Answer for AgentStatus {
    fn into_value(self) -> Value {
        let mut members = vec![
            ("version", Value::String(self.version)),
            ("protocol", Value::Integer(self.protocol as i32)),
            ("uptime_seconds", Value::Long(self.uptime_seconds)),
            ("last_exchange_unix", Value::Long(self.last_exchange_unix)),
            ("last_error", Value::String(self.last_error)),
            ("last_error_unix", Value::Long(self.last_error_unix)),
        ];
        match self.database {
            Ok(s) => {
                let (branch, policy) = match s.assignment {
                    Some(a) => (a.branch, Value::Struct(policy_members(&a.policy, a.id_range))),
                    None => (String::new(), Value::String(String::new())),
                };
                members.extend([
                    ("database_ok", Value::Boolean(true)),
                    ("branch", Value::String(branch)),
                    ("policy", policy),
                    ("schema_fingerprint", Value::String(s.schema_fingerprint)),
                    ("last_office_cursor", Value::String(s.last_office_cursor)),
                    ("database_identity", Value::String(s.database_identity)),
                    ("pending_changes", Value::Long(s.pending_changes)),
                    ("deferred_rows", Value::Long(s.deferred_rows)),
                    ("open_sessions", Value::Long(s.open_sessions)),
                    ("sessions", Value::Array(s.sessions.into_iter().map(OpenSession::into_value).collect())),
                ]);
            }
            Err(e) => {
                members.extend([
                    ("database_ok", Value::Boolean(false)),
                    ("database_error", Value::String(e)),
                    ("branch", Value::String(String::new())),
                    ("policy", Value::String(String::new())),
                    ("last_office_cursor", Value::String(String::new())),
                    ("schema_fingerprint", Value::String(String::new())),
                    ("pending_changes", Value::Long(0)),
                ]);
            }
        }
        structure(members)
    }

    fn from_value(method: &'static str, value: Value) -> Result<Self, WireError> {
        let mut m = Members::of(method, value)?;
        let (version, protocol) = (m.string("version")?, m.int("protocol")?);
        let (uptime_seconds, last_exchange_unix) = (m.int("uptime_seconds")?, m.int("last_exchange_unix")?);
        let last_error = m.string("last_error")?;
        // Agents before the time was sent: no time.
        let last_error_unix = if m.has("last_error_unix") { m.int("last_error_unix")? } else { 0 };
        let database = if m.boolean("database_ok")? {
            let branch = m.string("branch")?;
            let assignment = match m.take("policy") {
                Some(Value::Struct(p)) => {
                    let (policy, id_range) = read_policy(method, &p)?;
                    Some(Assignment { branch, policy, id_range })
                }
                Some(Value::String(s)) if s.is_empty() => None,
                _ => return Err(WireError { method, detail: ": expected member policy (a struct or \"\")".into() }),
            };
            Ok(ShopState {
                assignment,
                schema_fingerprint: m.string("schema_fingerprint")?,
                last_office_cursor: m.string("last_office_cursor")?,
                database_identity: if m.has("database_identity") {
                    m.string("database_identity")?
                } else {
                    String::new()
                },
                pending_changes: m.int("pending_changes")?,
                deferred_rows: if m.has("deferred_rows") { m.int("deferred_rows")? } else { 0 },
                open_sessions: if m.has("open_sessions") { m.int("open_sessions")? } else { 0 },
                sessions: match m.take("sessions") {
                    None => Vec::new(),
                    Some(Value::Array(items)) => {
                        items.into_iter().map(|v| OpenSession::from_value(method, v)).collect::<Result<_, _>>()?
                    }
                    Some(_) => {
                        return Err(WireError { method, detail: ": expected member sessions (an array)".into() });
                    }
                },
            })
        } else {
            Err(m.string("database_error")?)
        };
        Ok(AgentStatus { version, protocol, uptime_seconds, last_exchange_unix, last_error, last_error_unix, database })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::TableName;
    use crate::policy::Policy;

    #[test]
    fn both_shapes_round_trip() {
        let up = AgentStatus {
            version: "0.1.0".into(),
            protocol: 1,
            uptime_seconds: 5,
            last_exchange_unix: 0,
            last_error: String::new(),
            last_error_unix: 0,
            database: Ok(ShopState {
                assignment: Some(Assignment {
                    branch: "shop1".into(),
                    policy: Policy { from_target: vec![TableName::new("public", "sale")], ..Policy::default() },
                    id_range: 10,
                }),
                last_office_cursor: "c".into(),
                database_identity: "7/16384/ab".into(),
                pending_changes: 3,
                sessions: vec![OpenSession { sid: 4, age_seconds: 70, idle_seconds: 5, chunks: 2, streamed: false }],
                ..ShopState::default()
            }),
        };
        assert_eq!(AgentStatus::from_value("status", up.clone().into_value()), Ok(up.clone()));
        let unconfigured = AgentStatus { database: Ok(ShopState::default()), ..up.clone() };
        assert_eq!(AgentStatus::from_value("status", unconfigured.clone().into_value()), Ok(unconfigured));
        let down = AgentStatus { database: Err("connection refused".into()), ..up };
        assert_eq!(AgentStatus::from_value("status", down.clone().into_value()), Ok(down.clone()));
        assert_eq!(down.last_office_cursor(), None);
    }
}
