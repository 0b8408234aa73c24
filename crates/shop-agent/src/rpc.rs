//! XML-RPC plumbing: reading a method call, checking the caller's role, dispatching to the one file of each
//! method, and writing the response. [`respond`] is the only place where errors become faults.

use std::collections::BTreeMap;

use dxr::{Fault, FaultResponse, MethodCall, MethodResponse, Value};
use protocol::methods;

use crate::Agent;
use crate::auth::Caller;
use crate::config::Role;
use crate::error::AgentError;

/// Reads a method call. dxr's own parse error carries the whole body; it is replaced by a short one here.
pub fn parse(body: &[u8]) -> Result<MethodCall<'static>, AgentError> {
    let text = std::str::from_utf8(body).map_err(|_| AgentError::NotXmlRpc)?;
    let call = MethodCall::from_xml(text).map_err(|_| AgentError::NotXmlRpc)?;
    Ok(MethodCall { name: call.name.into_owned().into(), params: call.params })
}

/// Checks the role and runs the method.
pub async fn dispatch(agent: &Agent, caller: &Caller, call: MethodCall<'_>) -> Result<Value, AgentError> {
    let name = call.name.as_ref();
    if !methods::ALL.contains(&name) {
        return Err(AgentError::UnknownMethod(truncate_name(name)));
    }
    if caller.role == Role::Monitor && name != methods::STATUS {
        return Err(AgentError::NotAllowed { user: caller.name.clone(), method: name.to_string() });
    }
    let p = Params::new(name, call.params);
    match name {
        methods::CLEAN => crate::methods::clean::call(agent, p).await,
        methods::SQL_PREPARE => crate::methods::sql_prepare::call(agent, p).await,
        methods::SQL_CREATE => crate::methods::sql_create::call(agent, p).await,
        methods::SQL_FINISH => crate::methods::sql_finish::call(agent, p).await,
        methods::SETIDSTART => crate::methods::setidstart::call(agent, p).await,
        methods::DIFF => crate::methods::diff::call(agent, p).await,
        methods::CONFIGURE => crate::methods::configure::call(agent, p).await,
        methods::STATUS => crate::methods::status::call(agent, p).await,
        methods::VERIFY => crate::methods::verify::call(agent, p).await,
        _ => Err(AgentError::UnknownMethod(truncate_name(name))),
    }
}

fn truncate_name(name: &str) -> String {
    name.chars().take(64).collect()
}

/// The response body for a result: the value, or a fault with a stable code and a short message.
pub fn respond(result: Result<Value, AgentError>) -> String {
    let xml = match result {
        Ok(value) => MethodResponse { value }.to_xml(),
        Err(e) => FaultResponse { fault: Fault::new(e.fault_code().code(), e.fault_string()) }.to_xml(),
    };
    let body = xml.unwrap_or_else(|_| {
        let fault = Fault::new(protocol::fault::FaultCode::Internal.code(), "cannot encode the response".into());
        FaultResponse { fault }.to_xml().unwrap_or_default()
    });
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}")
}

/// A method's parameters, with typed accessors that say which parameter was wrong.
#[derive(Debug)]
pub struct Params {
    method: &'static str,
    values: Vec<Value>,
}

impl Params {
    fn new(method: &str, values: Vec<Value>) -> Params {
        let method = methods::ALL.iter().find(|m| **m == method).copied().unwrap_or("unknown");
        Params { method, values }
    }

    /// Refuses any count of parameters other than `n`.
    pub fn expect(&self, n: usize) -> Result<(), AgentError> {
        if self.values.len() == n {
            Ok(())
        } else {
            Err(AgentError::BadParams(format!("{} takes {n} parameter(s), got {}", self.method, self.values.len())))
        }
    }

    fn get(&self, index: usize) -> Result<&Value, AgentError> {
        self.values
            .get(index)
            .ok_or_else(|| AgentError::BadParams(format!("{} is missing parameter {}", self.method, index + 1)))
    }

    fn wrong(&self, index: usize, name: &str, expected: &str) -> AgentError {
        AgentError::BadParams(format!("{}: parameter {} ({name}) must be {expected}", self.method, index + 1))
    }

    /// A 64-bit integer, sent as `i8`, `i4` or a decimal string.
    pub fn int(&self, index: usize, name: &str) -> Result<i64, AgentError> {
        protocol::values::int(self.get(index)?)
            .ok_or_else(|| self.wrong(index, name, "an integer (i4, i8 or a decimal string)"))
    }

    /// A string.
    pub fn string(&self, index: usize, name: &str) -> Result<String, AgentError> {
        match self.get(index)? {
            Value::String(s) => Ok(s.clone()),
            _ => Err(self.wrong(index, name, "a string")),
        }
    }

    /// Binary data sent as `base64`.
    pub fn base64(&self, index: usize, name: &str) -> Result<&[u8], AgentError> {
        match self.get(index)? {
            Value::Base64(b) => Ok(b),
            _ => Err(self.wrong(index, name, "base64 data")),
        }
    }

    /// A struct.
    pub fn structure(&self, index: usize, name: &str) -> Result<&BTreeMap<String, Value>, AgentError> {
        match self.get(index)? {
            Value::Struct(s) => Ok(s),
            _ => Err(self.wrong(index, name, "a struct")),
        }
    }
}

/// A struct result from its members.
pub fn structure(members: Vec<(&str, Value)>) -> Value {
    Value::Struct(members.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}
