//! How protocol v1 reads XML-RPC values that common clients send in more than one way.

use dxr::Value;

/// Reads a 64-bit integer sent as `i8`, `i4` or a decimal string: Python's `xmlrpc.client` cannot send `i8`.
pub fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Long(v) => Some(*v),
        Value::Integer(v) => Some(*v as i64),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

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
}
