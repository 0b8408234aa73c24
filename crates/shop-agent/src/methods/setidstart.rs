//! `setidstart(id)`: makes every id sequence of the tables the shop writes (`from_target`, `both`) continue at
//! `id` (or past the highest id of the range its table holds), never moving one backwards, and caps each at the end of the branch's range (`id + id_range - 1`) so the
//! shop can never issue another branch's ids. With `above` (the highest id of the range the office holds), every
//! sequence also continues above it: a shop restored from a backup must not issue an id again that the office
//! already holds for a later sale. All sequences or none, in one transaction.

use protocol::wire::{IdRange, SetIdStart};

use crate::agent::Agent;
use crate::error::AgentError;
use crate::store;

/// Handles `setidstart(id)`.
pub async fn call(agent: &Agent, SetIdStart { id: start, above }: SetIdStart) -> Result<IdRange, AgentError> {
    if start < 1 {
        return Err(AgentError::BadParams("setidstart: id must be at least 1".into()));
    }
    let mut client = agent.db().await?;
    let policy = store::assignment(&*client).await?;
    let end = start.checked_add(policy.id_range - 1).ok_or_else(|| {
        AgentError::IdRange(format!("id {start} plus the range of {} overflows a 64-bit id", policy.id_range))
    })?;
    // The first id every sequence must reach: the range's start, or past what the office holds.
    let floor = match above {
        Some(above) if above >= end => {
            return Err(AgentError::IdRange(format!(
                "the office already holds id {above}, the end of this branch's range {start}..{end}: the range is used up, give the branch a new number"
            )));
        }
        Some(above) if above >= start => above + 1,
        _ => start,
    };
    let catalog = pgsync::Catalog::load(&*client, &policy.policy.to_office()).await?;
    let tx = client.transaction().await?;
    let mut moved = Vec::new();
    for table in catalog.tables() {
        for (column, sequence) in &table.sequences {
            // Reading the sequence relation itself is exact whether or not it was ever used.
            let row = tx.query_one(&format!("SELECT last_value, is_called FROM {sequence}"), &[]).await?;
            let (last, called): (i64, bool) = (row.get(0), row.get(1));
            let next = if called { last + 1 } else { last };
            if next > end {
                return Err(AgentError::IdRange(format!(
                    "sequence {sequence} ({}.{column}) is already at {next}, beyond this branch's range {start}..{end}; check the branch number",
                    table.name
                )));
            }
            let type_limit: i64 = tx
                .query_one(
                    "SELECT CASE format_type(seqtypid, NULL) WHEN 'integer' THEN 2147483647 WHEN 'smallint' THEN 32767 \
                     ELSE 9223372036854775807 END FROM pg_sequence WHERE seqrelid = $1::text::regclass",
                    &[sequence],
                )
                .await?
                .get(0);
            if end > type_limit {
                return Err(AgentError::IdRange(format!(
                    "sequence {sequence} ({}.{column}) cannot reach {end}: its type stops at {type_limit}, make the column bigint",
                    table.name
                )));
            }
            tx.batch_execute(&format!("ALTER SEQUENCE {sequence} MAXVALUE {end}")).await?;
            // Past the ids of the range the table holds already (rows renumbered into the range by hand before
            // the table was first sent), so that the sequence never issues one of them again.
            let c = protocol::sql::quote_ident(column);
            let held: Option<i64> = tx
                .query_one(
                    &format!(
                        "SELECT max({c})::bigint FROM {} WHERE {c}::bigint BETWEEN $1::bigint AND $2::bigint",
                        table.name.quoted()
                    ),
                    &[&start, &end],
                )
                .await?
                .get(0);
            let floor = match held {
                Some(h) if h >= end => {
                    return Err(AgentError::IdRange(format!(
                        "{} holds id {h} in {column}, the end of this branch's range {start}..{end}: the range is used up, give the branch a new number",
                        table.name
                    )));
                }
                Some(h) if h >= floor => h + 1,
                _ => floor,
            };
            if next < floor {
                tx.query_one("SELECT setval($1::text::regclass, $2, false)", &[sequence, &floor]).await?;
            }
            moved.push(sequence.clone());
        }
    }
    // The range's start, for `configure` to check the rows of a table the shop starts to send.
    store::set_state(&tx, store::ID_START, &start.to_string()).await?;
    tx.commit().await?;
    tracing::info!(start, end, floor, sequences = moved.len(), "id range set");
    Ok(IdRange { start, end, sequences: moved })
}
