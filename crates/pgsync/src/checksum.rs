//! Per-table checksums for `verify`: a row count and an order-independent sum of row hashes, computed by the
//! database so that nothing proportional to the table is held in memory.

use protocol::payload::{TableName, quote_ident};
use tokio_postgres::GenericClient;

use crate::catalog::TableInfo;
use crate::error::Result;

/// One table's checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChecksum {
    /// The table.
    pub table: TableName,
    /// Number of rows.
    pub rows: i64,
    /// Sum of the first 60 bits of each row's md5, as decimal text.
    pub digest: String,
}

/// Checksums of the given tables. Columns are hashed in name order, so two databases whose columns have the
/// same names and types but another ordinal order agree; values are hashed in their text form under the
/// session settings of [`crate::connect`].
pub async fn checksums(client: &impl GenericClient, tables: &[TableInfo]) -> Result<Vec<TableChecksum>> {
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        out.push(checksum_where(client, t, None).await?);
    }
    Ok(out)
}

/// One table's checksum over the rows where `column` lies in `range` (inclusive), or over all rows. The office
/// uses it for tables that hold every branch's rows, each branch's in its own id range.
pub async fn checksum_where(
    client: &impl GenericClient,
    t: &TableInfo,
    range: Option<(&str, i64, i64)>,
) -> Result<TableChecksum> {
    {
        let mut names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        let cols: Vec<String> = names.iter().map(|c| format!("t.{}", quote_ident(c))).collect();
        let filter = match range {
            Some((column, start, end)) => format!(" WHERE t.{} BETWEEN {start} AND {end}", quote_ident(column)),
            None => String::new(),
        };
        let sql = format!(
            "SELECT count(*), coalesce(sum(('x' || substr(md5(ROW({})::text), 1, 15))::bit(60)::bigint), 0)::text FROM {} t{filter}",
            cols.join(", "),
            t.name.quoted()
        );
        let row = client.query_one(sql.as_str(), &[]).await?;
        Ok(TableChecksum { table: t.name.clone(), rows: row.get(0), digest: row.get(1) })
    }
}
