//! Reader and validator of payloads (to be written).

use super::{Payload, PayloadError, ReadLimits, TableName};
use std::collections::BTreeSet;

/// Decompresses one chunk within the limits and reads it.
pub fn read_payload(gz: &[u8], limits: &ReadLimits) -> Result<Payload, PayloadError> {
    let _ = (gz, limits);
    todo!()
}

/// Reads decompressed payload text.
pub fn read_sql(text: &str, allowed: &BTreeSet<TableName>) -> Result<Payload, PayloadError> {
    let _ = (text, allowed);
    todo!()
}
