//! `configure(policy) -> string` (extension): the office hands the shop its policy and id range; the answer is
//! the shop's schema fingerprint of the synced tables. The policy struct is also a member of `status`.

use std::collections::BTreeMap;

use super::call::{Answer, Call, Params, Value, WireError, int};
use crate::payload::TableName;
use crate::policy::{Assignment, Policy};

/// The `configure(policy)` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configure(pub Assignment);

/// The shop's schema fingerprint of the synced tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(pub String);

const METHOD: &str = "configure";
const LISTS: [&str; 4] = ["from_source", "from_target", "both", "initial"];

impl Call for Configure {
    const METHOD: &'static str = METHOD;
    type Answer = Fingerprint;

    fn into_params(self) -> Vec<Value> {
        let Assignment { branch, policy, id_range } = self.0;
        let mut members = policy_members(&policy, id_range);
        members.insert("branch".into(), Value::String(branch));
        vec![Value::Struct(members)]
    }

    fn from_params(params: Params) -> Result<Self, WireError> {
        params.expect(1)?;
        let s = params.structure(0, "policy")?;
        let error = |detail: String| WireError { method: METHOD, detail };
        if let Some(key) =
            s.keys().find(|k| k.as_str() != "branch" && k.as_str() != "id_range" && !LISTS.contains(&k.as_str()))
        {
            return Err(error(format!(": unknown policy member {:?}", key.chars().take(40).collect::<String>())));
        }
        let branch = match s.get("branch") {
            Some(Value::String(b)) if !b.trim().is_empty() && b.len() <= 200 => b.clone(),
            _ => return Err(error(": policy member branch must be a non-empty string".into())),
        };
        let (policy, id_range) = read_policy(METHOD, s)?;
        policy.check().map_err(|e| error(format!(": {e}")))?;
        Ok(Configure(Assignment { branch, policy, id_range }))
    }
}

impl Answer for Fingerprint {
    fn into_value(self) -> Value {
        Value::String(self.0)
    }

    fn from_value(method: &'static str, value: Value) -> Result<Self, WireError> {
        match value {
            Value::String(fp) => Ok(Fingerprint(fp)),
            _ => Err(WireError { method, detail: ": expected a fingerprint string".into() }),
        }
    }
}

/// The policy's lists and id range as struct members (without the branch).
pub(crate) fn policy_members(policy: &Policy, id_range: i64) -> BTreeMap<String, Value> {
    let list = |l: &[TableName]| Value::Array(l.iter().map(|t| Value::String(t.to_string())).collect());
    let mut members = BTreeMap::new();
    members.insert("from_source".into(), list(&policy.from_source));
    members.insert("from_target".into(), list(&policy.from_target));
    members.insert("both".into(), list(&policy.both));
    members.insert("initial".into(), list(&policy.initial));
    members.insert("id_range".into(), Value::Long(id_range));
    members
}

/// Reads the lists (each optional, default empty) and the id range of a policy struct.
pub(crate) fn read_policy(method: &'static str, s: &BTreeMap<String, Value>) -> Result<(Policy, i64), WireError> {
    let error = |detail: String| WireError { method, detail };
    let tables = |member: &str| -> Result<Vec<TableName>, WireError> {
        match s.get(member) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => {
                        TableName::parse(s).ok_or_else(|| error(format!(": {member}: {s:?} is not a table name")))
                    }
                    _ => Err(error(format!(": policy member {member} must be an array of table names"))),
                })
                .collect(),
            Some(_) => Err(error(format!(": policy member {member} must be an array of table names"))),
        }
    };
    let id_range = s.get("id_range").and_then(int).filter(|r| *r > 0).ok_or_else(|| {
        error(": policy member id_range must be a positive integer (i4, i8 or decimal string)".into())
    })?;
    let policy = Policy {
        from_source: tables("from_source")?,
        from_target: tables("from_target")?,
        both: tables("both")?,
        initial: tables("initial")?,
    };
    Ok((policy, id_range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_a_policy() {
        let t = |n: &str| TableName::parse(n).unwrap();
        let c = Configure(Assignment {
            branch: "shop1".into(),
            policy: Policy { from_source: vec![t("product")], both: vec![t("person")], ..Policy::default() },
            id_range: 1_000_000_000_000,
        });
        assert_eq!(Configure::from_params(Params::new(METHOD, c.clone().into_params())), Ok(c.clone()));
        let bad = |edit: &dyn Fn(&mut BTreeMap<String, Value>)| {
            let Value::Struct(mut s) = c.clone().into_params().remove(0) else { unreachable!() };
            edit(&mut s);
            Configure::from_params(Params::new(METHOD, vec![Value::Struct(s)])).is_err()
        };
        assert!(bad(&|s| {
            s.insert("extra".into(), Value::Nil);
        }));
        assert!(bad(&|s| {
            s.insert("branch".into(), Value::String(" ".into()));
        }));
        assert!(bad(&|s| {
            s.insert("id_range".into(), Value::Integer(0));
        }));
        assert!(bad(&|s| {
            s.insert("initial".into(), Value::Array(vec![Value::String("a b".into())]));
        }));
        assert!(bad(&|s| {
            s.insert("from_target".into(), Value::Array(vec![Value::String("person".into())]));
        }));
        assert!(!bad(&|s| {
            s.insert("id_range".into(), Value::String("1000".into()));
        }));
    }
}
