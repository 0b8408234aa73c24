//! The one definition of "a key has local changes the peer has not acknowledged" (change-log rows of local origin
//! not yet purged), which both deferral and pruning respect.

use protocol::sql::{quote_ident, quote_literal};

use crate::catalog::TableInfo;

/// The condition "the key of row `alias` has local changes the peer has not acknowledged".
pub(crate) fn pending_local_of(table: &TableInfo, alias: &str) -> String {
    let key: Vec<String> = table.primary_key.iter().map(|c| format!("{alias}.{}::text", quote_ident(c))).collect();
    format!(
        "EXISTS (SELECT 1 FROM branchsync.change_log cl WHERE cl.tbl = {} AND cl.pk = ARRAY[{}] AND cl.origin = '')",
        quote_literal(&table.name.to_string()),
        key.join(", ")
    )
}
