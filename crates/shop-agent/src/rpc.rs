//! XML-RPC plumbing: reading a method call, checking the caller's role, dispatching to the one file of each
//! method through its typed request and answer (`protocol::wire`), and writing the response. [`respond`] is the
//! only place where errors become faults.

use dxr::{Fault, FaultResponse, MethodCall, MethodResponse};
use protocol::methods;
use protocol::wire::{Answer, Call, Params, Value};

use crate::agent::Agent;
use crate::config::Role;
use crate::error::AgentError;
use service::auth::Caller;

/// Reads a method call. dxr's own parse error carries the whole body; it is replaced by a short one here.
pub fn parse(body: &[u8]) -> Result<MethodCall<'static>, AgentError> {
    let text = std::str::from_utf8(body).map_err(|_| AgentError::NotXmlRpc)?;
    let call = MethodCall::from_xml(text).map_err(|_| AgentError::NotXmlRpc)?;
    Ok(MethodCall { name: call.name.into_owned().into(), params: call.params })
}

/// Checks the role, reads the typed request, runs the method's one file and writes its typed answer.
pub async fn dispatch(agent: &Agent, caller: &Caller<Role>, call: MethodCall<'_>) -> Result<Value, AgentError> {
    let name = call.name.as_ref();
    if !methods::ALL.contains(&name) {
        return Err(AgentError::UnknownMethod(truncate_name(name)));
    }
    if caller.role == Role::Monitor && name != methods::STATUS {
        return Err(AgentError::NotAllowed { user: caller.name.clone(), method: name.to_string() });
    }
    let p = call.params;
    use crate::methods as m;
    match name {
        methods::CLEAN => answer(m::clean::call(agent, request(p)?).await),
        methods::SQL_PREPARE => answer(m::sql_prepare::call(agent, request(p)?).await),
        methods::SQL_CREATE => answer(m::sql_create::call(agent, request(p)?).await),
        methods::SQL_FINISH => answer(m::sql_finish::call(agent, request(p)?).await),
        methods::SQL_ABORT => answer(m::sql_abort::call(agent, request(p)?).await),
        methods::SETIDSTART => answer(m::setidstart::call(agent, request(p)?).await),
        methods::DIFF => answer(m::diff::call(agent, request(p)?).await),
        methods::CONFIRM => answer(m::confirm::call(agent, request(p)?).await),
        methods::CONFIGURE => answer(m::configure::call(agent, request(p)?).await),
        methods::STATUS => answer(m::status::call(agent, request(p)?).await),
        methods::VERIFY => answer(m::verify::call(agent, request(p)?).await),
        _ => Err(AgentError::UnknownMethod(truncate_name(name))),
    }
}

/// Reads a method's typed request from its parameters.
fn request<C: Call>(params: Vec<Value>) -> Result<C, AgentError> {
    Ok(C::from_params(Params::new(C::METHOD, params))?)
}

/// A method's typed answer as the response value.
fn answer<A: Answer>(result: Result<A, AgentError>) -> Result<Value, AgentError> {
    result.map(Answer::into_value)
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
