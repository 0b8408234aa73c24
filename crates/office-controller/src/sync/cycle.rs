//! What every step of one branch's sync shares: the branch's agent client, its one office connection (which
//! holds the advisory lock), the policy, the options and the report; and the connections themselves.

use std::time::Duration;

use agent_client::{AgentClient, ClientError, Retry};
use anyhow::{Context, Result, anyhow};
use tokio_postgres::Client;

use super::progress::Progress;
use super::report::BranchReport;
use crate::config::{Config, Policy, SyncConfig};
use crate::records::Branch;

/// How a sync runs.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Push a complete image of the office's tables; the shop deletes `from_source` rows the office lacks.
    pub full: bool,
    /// Read and count, change nothing on either side.
    pub dry_run: bool,
    /// Accept a shop database other than the one the branch was initialised with (the same shop restored from a
    /// backup or moved to another server) and record it; the restore-safe pull then compares every row.
    pub rebind: bool,
    /// Leave out the pull (a shop whose recurring pull is switched off in `[schedule.branches]`).
    pub skip_pull: bool,
    /// Leave out the push (a shop whose recurring push is switched off).
    pub skip_push: bool,
}

/// Connects to the office database.
pub async fn office(config: &Config) -> Result<Client> {
    pgsync::connect(&config.database_url).await.context("cannot connect to the office database (database_url)")
}

/// A client of the branch's agent that retries transient failures as `[sync]` says.
pub fn agent(branch: &Branch, sync: &SyncConfig) -> Result<AgentClient> {
    let password = branch.password()?;
    let client = AgentClient::new(&branch.url, &branch.username, &password, Duration::from_secs(sync.timeout_seconds))
        .map_err(|e| anyhow!("{e}"))?;
    Ok(client
        .with_retry(Retry { retries: sync.retries, backoff: Duration::from_millis(sync.backoff_ms) })
        .with_answer_limit(sync.max_answer_bytes))
}

/// Explains a client error in the words an operator needs.
pub fn explain(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Auth => anyhow!("{e}; not retried"),
        other => anyhow!("{other}"),
    }
}

/// One branch's sync in progress: what the pull and the push share.
pub(super) struct Cycle<'a> {
    pub(super) config: &'a Config,
    pub(super) branch: &'a Branch,
    pub(super) policy: &'a Policy,
    pub(super) options: SyncOptions,
    pub(super) agent: AgentClient,
    /// The branch's one office connection: it holds the advisory lock and carries the pull's and the push's
    /// office work. Lent to the push's export while it runs.
    pub(super) office: Option<Client>,
    pub(super) report: &'a mut BranchReport,
    pub(super) progress: &'a Progress,
}

impl Cycle<'_> {
    pub(super) fn office(&mut self) -> Result<&mut Client> {
        self.office.as_mut().context("the branch's office connection was lost during the push")
    }
}
