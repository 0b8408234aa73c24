//! The agent's shared state: its configuration, users, metrics, the registries of streamed uploads and diff
//! loops, the pool of shop-database connections, and the tracker of its background tasks (so that shutdown
//! waits for them).

use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;

use tokio::sync::{Mutex, Semaphore};
use tokio_postgres::Client;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::diffs;
use crate::error::AgentError;
use crate::metrics::Metrics;
use crate::stream;

/// Everything a request handler shares.
#[derive(Debug)]
pub struct Agent {
    /// The configuration the agent was started with.
    pub config: Config,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// When the agent started.
    pub started: Instant,
    /// Requests served at once.
    pub requests: Semaphore,
    /// Upload sessions streamed into empty tables, each holding its open transaction, by sid.
    pub streams: stream::Streams,
    /// Open `diff` loops, each holding its export snapshot, by loop id.
    pub diffs: diffs::Loops,
    /// Background work (diff exports, streamed uploads, purges): shutdown waits for it.
    pub tasks: TaskTracker,
    /// The last fault returned, with its method, for `status`.
    pub last_error: StdMutex<Option<(String, i64)>>,
    /// Serialises the one-time installation of the sync schema.
    installed: Mutex<bool>,
    /// Idle database connections, reused so that a call does not pay a connection set-up (shared with
    /// background work, which hands its connection back when done).
    idle: Arc<StdMutex<Vec<Client>>>,
}

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 4;

/// A connection lent by the agent; it goes back to the idle list when dropped (a transaction left open is rolled
/// back by its guard before the connection is used again, since requests on one connection run in order).
pub struct Pooled<'a> {
    client: Option<Client>,
    idle: &'a StdMutex<Vec<Client>>,
}

impl std::fmt::Debug for Pooled<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pooled")
    }
}

impl Pooled<'_> {
    /// Takes the connection out of the pool for good (an export session that outlives the request).
    pub fn detach(mut self) -> Client {
        // Always present until dropped or detached.
        self.client.take().expect("a lent connection is present until detached")
    }
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("a lent connection is present until detached")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("a lent connection is present until detached")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            return_idle(self.idle, client);
        }
    }
}

/// Puts a connection back on the idle list, unless it is closed or the list is full.
fn return_idle(idle: &StdMutex<Vec<Client>>, client: Client) {
    if !client.is_closed()
        && let Ok(mut idle) = idle.lock()
        && idle.len() < MAX_IDLE
    {
        idle.push(client);
    }
}

impl Agent {
    /// The agent's shared state for a configuration.
    pub fn new(config: Config) -> Agent {
        Agent {
            metrics: Metrics::default(),
            started: Instant::now(),
            requests: Semaphore::new(config.limits.concurrent_requests),
            streams: stream::Streams::default(),
            diffs: Mutex::new(Default::default()),
            tasks: TaskTracker::new(),
            last_error: StdMutex::new(None),
            installed: Mutex::new(false),
            idle: Arc::new(StdMutex::new(Vec::new())),
            config,
        }
    }

    /// A connection to the shop database (an idle one when there is one), with the sync schema installed on
    /// first use.
    pub async fn db(&self) -> Result<Pooled<'_>, AgentError> {
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop()).filter(|c| !c.is_closed());
        let client = match reused {
            Some(c) => c,
            None => pgsync::connect(&self.config.database_url).await?,
        };
        let client = Pooled { client: Some(client), idle: &self.idle };
        let mut installed = self.installed.lock().await;
        if !*installed {
            crate::migrations::install(&client).await?;
            *installed = true;
        }
        Ok(client)
    }

    /// Runs `work` on a pooled connection in the background, after the current request has answered; the
    /// connection goes back to the idle list when it is done.
    pub async fn in_background<F, Fut>(&self, what: &'static str, work: F) -> Result<(), AgentError>
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = (Client, Result<(), AgentError>)> + Send + 'static,
    {
        let client = self.db().await?.detach();
        let idle = self.idle.clone();
        self.tasks.spawn(async move {
            let (client, result) = work(client).await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "{what} failed in the background");
            }
            return_idle(&idle, client);
        });
        Ok(())
    }

    /// Returns a connection taken out with [`Pooled::detach`] to the idle list.
    pub fn give_back(&self, client: Client) {
        drop(Pooled { client: Some(client), idle: &self.idle });
    }

    /// Forgets that the schema is installed (after `clean` it is installed again by `clean` itself).
    pub(crate) async fn schema_reinstalled(&self) {
        *self.installed.lock().await = true;
    }
}
