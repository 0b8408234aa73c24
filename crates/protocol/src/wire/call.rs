//! What every method file of the wire contract builds on: the [`Call`] and [`Answer`] traits, the lenient
//! reading of received parameters, the strict reading of answer structs, and the error that says what was wrong.

use std::collections::BTreeMap;

pub use dxr::Value;

/// A request or an answer that is not what protocol v1 says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{method}{detail}")]
pub struct WireError {
    /// The method.
    pub method: &'static str,
    /// What was wrong, in words that say what to send instead, beginning with its separator from the method
    /// name (`": ..."`, or `" takes ..."`).
    pub detail: String,
}

impl WireError {
    /// What was wrong, without the separator from the method name.
    pub fn what(&self) -> &str {
        self.detail.trim_start_matches(':').trim_start()
    }
}

/// One method of protocol v1: its request type, with the name it travels under and the answer it gets.
pub trait Call: Sized {
    /// The method name on the wire.
    const METHOD: &'static str;
    /// The answer's type.
    type Answer: Answer;
    /// The request as XML-RPC parameters.
    fn into_params(self) -> Vec<Value>;
    /// Reads the request from received parameters.
    fn from_params(params: Params) -> Result<Self, WireError>;
}

/// A method's answer.
pub trait Answer: Sized {
    /// The answer as one XML-RPC value.
    fn into_value(self) -> Value;
    /// Reads the answer from a received value.
    fn from_value(method: &'static str, value: Value) -> Result<Self, WireError>;
}

/// The answer of methods that return nothing (`<nil/>`); any value is taken as nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Nothing;

impl Answer for Nothing {
    fn into_value(self) -> Value {
        Value::Nil
    }

    fn from_value(_: &'static str, _: Value) -> Result<Self, WireError> {
        Ok(Nothing)
    }
}

/// Reads a 64-bit integer sent as `i8`, `i4` or a decimal string: Python's `xmlrpc.client` cannot send `i8`.
pub fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Long(v) => Some(*v),
        Value::Integer(v) => Some(*v as i64),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A method's received parameters, with typed accessors that say which parameter was wrong.
#[derive(Debug)]
pub struct Params {
    method: &'static str,
    values: Vec<Value>,
}

impl Params {
    /// The parameters of a call of `method`.
    pub fn new(method: &'static str, values: Vec<Value>) -> Params {
        Params { method, values }
    }

    fn error(&self, detail: String) -> WireError {
        WireError { method: self.method, detail }
    }

    /// Refuses any count of parameters other than `n`.
    pub fn expect(&self, n: usize) -> Result<(), WireError> {
        if self.values.len() == n {
            Ok(())
        } else {
            Err(self.error(format!(" takes {n} parameter(s), got {}", self.values.len())))
        }
    }

    fn get(&self, index: usize) -> Result<&Value, WireError> {
        self.values.get(index).ok_or_else(|| self.error(format!(" is missing parameter {}", index + 1)))
    }

    fn wrong(&self, index: usize, name: &str, expected: &str) -> WireError {
        self.error(format!(": parameter {} ({name}) must be {expected}", index + 1))
    }

    /// A 64-bit integer (`i8`, `i4` or a decimal string).
    pub fn int(&self, index: usize, name: &str) -> Result<i64, WireError> {
        int(self.get(index)?).ok_or_else(|| self.wrong(index, name, "an integer (i4, i8 or a decimal string)"))
    }

    /// A string.
    pub fn string(&self, index: usize, name: &str) -> Result<String, WireError> {
        match self.get(index)? {
            Value::String(s) => Ok(s.clone()),
            _ => Err(self.wrong(index, name, "a string")),
        }
    }

    /// Binary data sent as `base64`, taken out of the parameters without a copy.
    pub fn base64(&mut self, index: usize, name: &str) -> Result<Vec<u8>, WireError> {
        if !matches!(self.get(index)?, Value::Base64(_)) {
            return Err(self.wrong(index, name, "base64 data"));
        }
        match std::mem::replace(&mut self.values[index], Value::Nil) {
            Value::Base64(b) => Ok(b),
            _ => Err(self.wrong(index, name, "base64 data")),
        }
    }

    /// A struct.
    pub fn structure(&self, index: usize, name: &str) -> Result<&BTreeMap<String, Value>, WireError> {
        match self.get(index)? {
            Value::Struct(s) => Ok(s),
            _ => Err(self.wrong(index, name, "a struct")),
        }
    }
}

/// A struct value from its members.
pub(crate) fn structure(members: Vec<(&str, Value)>) -> Value {
    Value::Struct(members.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// The members of a struct answer, read strictly by name.
pub(crate) struct Members {
    method: &'static str,
    members: BTreeMap<String, Value>,
}

impl Members {
    /// The struct `value`, or the error that says one was expected.
    pub(crate) fn of(method: &'static str, value: Value) -> Result<Members, WireError> {
        match value {
            Value::Struct(members) => Ok(Members { method, members }),
            _ => Err(WireError { method, detail: ": expected a struct".into() }),
        }
    }

    fn missing(&self, name: &str, what: &str) -> WireError {
        WireError { method: self.method, detail: format!(": expected member {name} ({what})") }
    }

    /// Whether the struct has member `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// Takes member `name` out as it is.
    pub(crate) fn take(&mut self, name: &str) -> Option<Value> {
        self.members.remove(name)
    }

    /// A 64-bit integer member.
    pub(crate) fn int(&self, name: &str) -> Result<i64, WireError> {
        self.members.get(name).and_then(int).ok_or_else(|| self.missing(name, "an integer"))
    }

    /// A string member.
    pub(crate) fn string(&mut self, name: &str) -> Result<String, WireError> {
        match self.members.remove(name) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(self.missing(name, "a string")),
        }
    }

    /// A boolean member.
    pub(crate) fn boolean(&self, name: &str) -> Result<bool, WireError> {
        match self.members.get(name) {
            Some(Value::Boolean(b)) => Ok(*b),
            _ => Err(self.missing(name, "a boolean")),
        }
    }

    /// A base64 member.
    pub(crate) fn base64(&mut self, name: &str) -> Result<Vec<u8>, WireError> {
        match self.members.remove(name) {
            Some(Value::Base64(b)) => Ok(b),
            _ => Err(self.missing(name, "base64 data")),
        }
    }
}
