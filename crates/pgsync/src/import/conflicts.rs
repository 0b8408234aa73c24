//! The office's side of BRIEF §4.4: a `Both` row a branch sends whose key the office changed since its last
//! push to that branch is a conflict, decided by the branch's rule and recorded with both versions.

use std::collections::BTreeMap;

use protocol::payload::TableName;
use protocol::sql::{quote_ident, quote_literal};
use tokio_postgres::Transaction;

use crate::catalog::TableInfo;
use crate::error::Result;

/// Who wins when a row changed on both sides since the last exchange (BRIEF §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The office's version stays and is sent to the shop again.
    OfficeWins,
    /// The shop's version is applied.
    ShopWins,
    /// The version whose timestamp column is later wins; ties and missing timestamps go to the office.
    NewerWins,
}

impl Rule {
    /// The rule's name in configuration files and records.
    pub fn name(self) -> &'static str {
        match self {
            Rule::OfficeWins => "office-wins",
            Rule::ShopWins => "shop-wins",
            Rule::NewerWins => "newer-wins",
        }
    }

    /// Parses a rule name.
    pub fn parse(text: &str) -> Option<Rule> {
        [Rule::OfficeWins, Rule::ShopWins, Rule::NewerWins].into_iter().find(|r| r.name() == text)
    }
}

/// The office's conflict check while importing a branch's changes.
#[derive(Debug, Clone)]
pub struct ConflictCheck {
    /// The branch, as recorded with each conflict.
    pub branch: String,
    /// The snapshot of the branch's push cursor: office changes not visible in it have not reached the shop
    /// yet. `None`: nothing has reached it.
    pub unsent_since: Option<String>,
    /// The checked tables and their rules.
    pub rules: BTreeMap<TableName, Rule>,
    /// The timestamp column `newer-wins` compares.
    pub newer_column: String,
    /// A full pull after the shop's cursor was refused (a shop restored from a backup, or rebuilt): the office
    /// cannot tell which rows the shop changed, so every sent row the office holds with other values is a
    /// conflict, decided by the table's rule, and in tables without one (`from_target`) the office keeps its
    /// version: a restored shop's stale or re-issued rows are recorded, never silently applied.
    pub compare_values: bool,
}

/// Finds the staged rows whose keys the office changed since its last push to the branch, records each
/// conflict with both versions and the decision, and takes the rows the office wins out of the stage. A key the
/// office wins is marked changed again, so that the next push carries the office's version back to the shop:
/// as an update where the office holds the row, as a delete where it deleted it (an update of a missing row
/// would be exported as nothing, and the shop would keep the row the office's decision removed). A key both
/// sides deleted is no conflict. `upsert` is false for a stage of deleted keys (the shop's version is then
/// "deleted"); `columns` are the staged ones. Returns the number of conflicts.
pub(crate) async fn decide(
    tx: &Transaction<'_>,
    table: &TableInfo,
    stage: &str,
    columns: &[String],
    check: &ConflictCheck,
    rule: Rule,
    upsert: bool,
) -> Result<u64> {
    let key_of = |alias: &str| -> String {
        let parts: Vec<String> =
            table.primary_key.iter().map(|c| format!("{alias}.{}::text", quote_ident(c))).collect();
        format!("ARRAY[{}]", parts.join(", "))
    };
    let join: Vec<String> = table.primary_key.iter().map(|c| format!("t.{0} = s.{0}", quote_ident(c))).collect();
    let newer = quote_ident(&check.newer_column);
    let decision = match rule {
        Rule::OfficeWins => "'office'".to_string(),
        Rule::ShopWins => "'shop'".to_string(),
        Rule::NewerWins if upsert && table.column_type(&check.newer_column).is_some() => {
            format!(
                "CASE WHEN s.{newer} IS NOT NULL AND (t.{newer} IS NULL OR s.{newer} > t.{newer}) THEN 'shop' ELSE 'office' END"
            )
        }
        Rule::NewerWins => "'office'".to_string(),
    };
    let shop_version = if upsert { "to_jsonb(s)" } else { "NULL::jsonb" };
    let first = quote_ident(&table.primary_key[0]);
    let conflicting = if check.compare_values && upsert {
        // Compared as text: the session pins every type's text form, and not every type has equality (json).
        let as_text = |alias: &str| -> String {
            let parts: Vec<String> = columns.iter().map(|c| format!("{alias}.{}::text", quote_ident(c))).collect();
            format!("ARRAY[{}]::text[]", parts.join(", "))
        };
        // A row of the shop's own tables whose parent the office kept is kept out too: a restored shop's re-issued
        // sale must not leave its lines under the office's sale of the same id. Only this transaction's decisions
        // count (`now()` is the transaction's start), not an old conflict on a key since re-used.
        let kept_parents: Vec<String> = table
            .foreign_keys
            .iter()
            .filter(|fk| !check.rules.contains_key(&fk.references) && !check.rules.contains_key(&table.name))
            .map(|fk| {
                let parts: Vec<String> = fk.columns.iter().map(|c| format!("s.{}::text", quote_ident(c))).collect();
                format!(
                    " OR EXISTS (SELECT 1 FROM branchsync.conflict c WHERE c.branch = $1 AND c.tbl = {} \
                     AND c.at = now() AND c.decision = 'office' AND c.pk = ARRAY[{}])",
                    quote_literal(&fk.references.to_string()),
                    parts.join(", ")
                )
            })
            .collect();
        format!(
            "(t.{first} IS NOT NULL AND {} IS DISTINCT FROM {}){}",
            as_text("t"),
            as_text("s"),
            kept_parents.concat()
        )
    } else {
        format!(
            "EXISTS (SELECT 1 FROM branchsync.change_log cl WHERE cl.tbl = $2 AND cl.pk = {sk}
                     AND cl.origin <> $1 AND ($4::text IS NULL OR NOT pg_visible_in_snapshot(cl.xid, $4::text::pg_snapshot)))
             AND ({upsert} OR t.{first} IS NOT NULL)",
            sk = key_of("s"),
        )
    };
    let sql = format!(
        "WITH decided AS (
            INSERT INTO branchsync.conflict (branch, tbl, pk, office_version, shop_version, rule, decision)
            SELECT $1, $2, {sk}, CASE WHEN t.{first} IS NULL THEN NULL ELSE to_jsonb(t) END, {shop_version}, $3, {decision}
            FROM {stage} s LEFT JOIN {table} t ON {join}
            WHERE {conflicting}
            RETURNING pk, decision, office_version IS NULL AS gone),
         dropped AS (DELETE FROM {stage} s USING decided d WHERE d.decision = 'office' AND d.pk = {sk} RETURNING d.pk, d.gone),
         touched AS (INSERT INTO branchsync.change_log (tbl, pk, op, origin)
                     SELECT $2, pk, CASE WHEN gone THEN 'D' ELSE 'U' END, '' FROM dropped RETURNING 1)
         SELECT (SELECT count(*) FROM decided), (SELECT count(*) FROM touched)",
        sk = key_of("s"),
        table = table.name.quoted(),
        join = join.join(" AND "),
    );
    let (tbl, rule_name) = (table.name.to_string(), rule.name());
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&check.branch, &tbl, &rule_name];
    // Only the change-log test needs the push cursor; a statement must not be given a parameter it never uses.
    if !(check.compare_values && upsert) {
        params.push(&check.unsent_since);
    }
    let row = tx.query_one(sql.as_str(), &params).await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// One recorded conflict as read back for office staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedConflict {
    /// Its id, increasing.
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// The branch.
    pub branch: String,
    /// The table.
    pub table: String,
    /// The key, its columns joined by commas.
    pub key: String,
    /// The rule that decided.
    pub rule: String,
    /// `office` or `shop`.
    pub decision: String,
    /// The office's version as JSON, or `deleted`.
    pub office_version: String,
    /// The shop's version as JSON, or `deleted`.
    pub shop_version: String,
}

/// The recorded conflicts, newest first, of one branch or of all.
pub async fn recorded(
    client: &impl tokio_postgres::GenericClient,
    branch: Option<&str>,
    limit: i64,
) -> Result<Vec<RecordedConflict>> {
    let rows = client
        .query(
            "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), branch, tbl, array_to_string(pk, ','), rule, decision, \
                    coalesce(office_version::text, 'deleted'), coalesce(shop_version::text, 'deleted') \
             FROM branchsync.conflict WHERE $1::text IS NULL OR branch = $1 ORDER BY id DESC LIMIT $2",
            &[&branch, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RecordedConflict {
            id: r.get(0),
            at: r.get(1),
            branch: r.get(2),
            table: r.get(3),
            key: r.get(4),
            rule: r.get(5),
            decision: r.get(6),
            office_version: r.get(7),
            shop_version: r.get(8),
        })
        .collect())
}
