//! Ordered migrations of the sync schema's tables: each component (the shared sync schema, the shop's and the
//! office's own tables) lists its steps once, in order, and a database records in `branchsync.schema_version`
//! how far it has got, so that a newer agent or controller brings an older database up to date on first use.
//!
//! Steps must be idempotent (`IF NOT EXISTS`): a database from before this table existed, or a migration that was
//! interrupted, runs them again harmlessly. The caller may run a migration inside its own transaction (`clean`
//! does); then the steps and the recorded version commit or roll back together.

use tokio_postgres::GenericClient;

use crate::error::Result;

const VERSION_TABLE: &str = "
CREATE SCHEMA IF NOT EXISTS branchsync;
CREATE TABLE IF NOT EXISTS branchsync.schema_version (
    component text PRIMARY KEY,
    version integer NOT NULL,
    migrated_at timestamptz NOT NULL DEFAULT now()
);
";

/// Brings `component`'s tables up to the last of `steps` (step `i` is version `i + 1`). Returns the version the
/// database was at before.
pub async fn migrate(client: &impl GenericClient, component: &str, steps: &[&str]) -> Result<usize> {
    client.batch_execute(VERSION_TABLE).await?;
    let at: i32 = client
        .query_opt("SELECT version FROM branchsync.schema_version WHERE component = $1", &[&component])
        .await?
        .map(|r| r.get(0))
        .unwrap_or(0);
    let at = usize::try_from(at).unwrap_or(0);
    for (i, step) in steps.iter().enumerate().skip(at) {
        client.batch_execute(step).await?;
        let version = i as i32 + 1;
        client
            .execute(
                "INSERT INTO branchsync.schema_version (component, version) VALUES ($1, $2) \
                 ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()",
                &[&component, &version],
            )
            .await?;
        tracing::info!(component, version, "sync schema migrated");
    }
    Ok(at)
}
