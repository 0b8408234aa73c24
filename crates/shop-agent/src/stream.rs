//! Streamed upload sessions: an upload into tables that are all empty when it opens (the initial load after
//! `clean`) is applied as its chunks arrive, in one transaction that a task holds open on its own connection
//! until `sql_finish` commits it. The shop's apply then overlaps the office's export and the transfer instead of
//! waiting for the last chunk. Uploads into tables that hold rows are staged and applied at `sql_finish` as
//! before, so that the till never waits on row locks held across a slow line.
//!
//! A streamed session is not durable: after an agent restart, an idle timeout, `sql_abort` or a refused chunk, its
//! transaction is rolled back, nothing of the upload stays, its session row goes (it holds no slot), and later
//! calls for the sid say so (fault 200) so that the office starts the upload again. `sql_create` answers once the chunk is read, checked and queued; a chunk that then
//! fails to apply is reported by the session's next call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use pgsync::Catalog;
use protocol::payload::{Payload, ReadLimits, read_payload};
use protocol::policy::Assignment;
use protocol::wire::Finished;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Limits;
use crate::error::AgentError;
use crate::{sessions, upload};

/// Chunks read and waiting for the apply task: enough to keep it busy, few enough to bound memory.
const QUEUE: usize = 2;

/// The open streamed sessions, by sid.
#[derive(Debug, Default)]
pub struct Streams {
    open: StdMutex<HashMap<i64, Arc<Stream>>>,
}

impl Streams {
    /// The live session `sid`, if this agent process holds it.
    pub fn get(&self, sid: i64) -> Option<Arc<Stream>> {
        self.open.lock().ok().and_then(|open| open.get(&sid).cloned())
    }

    fn insert(&self, stream: Arc<Stream>) {
        if let Ok(mut open) = self.open.lock() {
            open.insert(stream.sid, stream);
        }
    }

    /// Forgets session `sid`: once its last call returns, its task sees the queue close and rolls back.
    pub fn remove(&self, sid: i64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&sid);
        }
    }

    /// The sids of the live sessions.
    pub fn live(&self) -> Vec<i64> {
        self.open.lock().map(|open| open.keys().copied().collect()).unwrap_or_default()
    }

    /// Abandons every live session: their transactions roll back (`clean` calls this before erasing).
    pub fn abandon_all(&self) {
        if let Ok(mut open) = self.open.lock() {
            open.clear();
        }
    }
}

/// What `sql_create` calls of one session share.
#[derive(Debug, Default)]
struct Received {
    /// Digest of the last chunk received: the same chunk again is a retry after a lost answer, applied once.
    last: Option<[u8; 32]>,
    chunks: usize,
    bytes: u64,
}

/// One live streamed session.
#[derive(Debug)]
pub struct Stream {
    sid: i64,
    policy: Assignment,
    catalog: Catalog,
    commands: mpsc::Sender<Command>,
    failure: Arc<StdMutex<Option<AgentError>>>,
    /// Serialises the session's calls.
    received: tokio::sync::Mutex<Received>,
}

enum Command {
    Chunk { payload: Payload },
    Finish { reply: oneshot::Sender<Result<Finished, AgentError>> },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Chunk { .. } => f.write_str("Chunk"),
            Command::Finish { .. } => f.write_str("Finish"),
        }
    }
}

impl Stream {
    /// The error that ended the session, once; afterwards "lost".
    fn ended(&self) -> AgentError {
        self.failure.lock().ok().and_then(|mut f| f.take()).unwrap_or(AgentError::SessionLost(self.sid))
    }

    fn failed(&self) -> bool {
        self.failure.lock().map(|f| f.is_some()).unwrap_or(true) || self.commands.is_closed()
    }
}

/// Whether an upload session opened now should stream: the shop receives some tables and all of them are empty.
/// One cheap query, since every sync opens a session; a table that cannot be read means "no" (the staged path
/// then reports it properly).
pub async fn should_stream(client: &Client, assignment: &Assignment) -> Result<bool, AgentError> {
    let receives = assignment.policy.shop_receives();
    if receives.is_empty() {
        return Ok(false);
    }
    let empty: Vec<String> = receives.iter().map(|t| format!("NOT EXISTS (SELECT 1 FROM {})", t.quoted())).collect();
    match client.query_one(&format!("SELECT {}", empty.join(" AND ")), &[]).await {
        Ok(row) => Ok(row.get(0)),
        Err(e) if e.as_db_error().is_some() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Opens the live side of session `sid` (its row exists and is marked streamed): a dedicated connection with
/// the transaction begun and the session row locked. Returns once the transaction is ready.
pub async fn open(
    streams: &Streams,
    tasks: &TaskTracker,
    database_url: &str,
    limits: &Limits,
    sid: i64,
    policy: Assignment,
    catalog: Catalog,
) -> Result<(), AgentError> {
    let client = pgsync::connect(database_url).await?;
    let (commands, queue) = mpsc::channel(QUEUE);
    let failure = Arc::new(StdMutex::new(None));
    let (ready, started) = oneshot::channel();
    let idle = Duration::from_secs(limits.upload_idle_seconds);
    let task = Task { sid, policy: policy.clone(), catalog: catalog.clone(), idle, failure: failure.clone() };
    tasks.spawn(task.run(client, queue, ready).instrument(tracing::info_span!("streamed_upload", sid)));
    started.await.map_err(|_| AgentError::SessionLost(sid))??;
    let stream = Stream { sid, policy, catalog, commands, failure, received: Default::default() };
    streams.insert(Arc::new(stream));
    Ok(())
}

/// `sql_create` on a live session: reads and checks the chunk, then queues it for the apply task.
pub async fn chunk(streams: &Streams, limits: &Limits, stream: &Stream, data: &[u8]) -> Result<(), AgentError> {
    let mut received = stream.received.lock().await;
    let digest: [u8; 32] = Sha256::digest(data).into();
    if received.last == Some(digest) {
        return Ok(());
    }
    if stream.failed() {
        streams.remove(stream.sid);
        return Err(stream.ended());
    }
    let checked = check(limits, stream, &received, data);
    let sent = match checked {
        Ok(payload) => stream.commands.send(Command::Chunk { payload }).await.map_err(|_| stream.ended()),
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        // A refused chunk ends the session at once: its transaction rolls back and its slot is free.
        streams.remove(stream.sid);
        return Err(e);
    }
    let seq = received.chunks + 1;
    received.chunks = seq;
    received.bytes += data.len() as u64;
    received.last = Some(digest);
    Ok(())
}

/// Reads and checks one chunk of a live session against its limits, policy and schema.
fn check(limits: &Limits, stream: &Stream, received: &Received, data: &[u8]) -> Result<Payload, AgentError> {
    let max = limits.session_staged_bytes;
    if received.bytes + data.len() as u64 > max {
        return Err(AgentError::Limit(format!(
            "session {} would bring more than {max} bytes, split the upload into several sessions",
            stream.sid
        )));
    }
    let limits = ReadLimits {
        max_decompressed_bytes: limits.chunk_decompressed_bytes,
        allowed_tables: stream.policy.policy.shop_receives(),
    };
    let payload = read_payload(data, &limits)?;
    pgsync::validate(&stream.catalog, &payload, received.chunks + 1)?;
    Ok(payload)
}

/// `sql_finish` on a live session: the task applies what is queued, prunes, records and commits. Returns the
/// stored result.
pub async fn finish(streams: &Streams, stream: &Stream) -> Result<Finished, AgentError> {
    let _received = stream.received.lock().await;
    let (reply, answer) = oneshot::channel();
    let sent = stream.commands.send(Command::Finish { reply }).await;
    // From here a retried finish reads the session row, which the task holds locked until it commits.
    streams.remove(stream.sid);
    if sent.is_err() {
        return Err(stream.ended());
    }
    match answer.await {
        Ok(result) => result,
        Err(_) => Err(stream.ended()),
    }
}

/// The apply task's fixed inputs.
struct Task {
    sid: i64,
    policy: Assignment,
    catalog: Catalog,
    idle: Duration,
    failure: Arc<StdMutex<Option<AgentError>>>,
}

impl Task {
    /// Applies the session; unless it committed, its row goes too, so that it holds no session slot.
    async fn run(
        self,
        mut client: Client,
        queue: mpsc::Receiver<Command>,
        ready: oneshot::Sender<Result<(), AgentError>>,
    ) {
        if !self.apply(&mut client, queue, ready).await
            && let Err(e) = sessions::end(&client, self.sid).await
        {
            tracing::warn!(error = %e, "a rolled-back streamed upload left its session row; it expires when idle");
        }
    }

    /// Returns whether the session committed.
    async fn apply(
        &self,
        client: &mut Client,
        mut queue: mpsc::Receiver<Command>,
        ready: oneshot::Sender<Result<(), AgentError>>,
    ) -> bool {
        let sid = self.sid;
        let begun = async {
            let tx = client.transaction().await?;
            sessions::lock(&tx, sid).await?;
            let import = upload::begin(&tx, &self.catalog, &self.policy).await?;
            Ok::<_, AgentError>((tx, import))
        };
        let (tx, mut import) = match begun.await {
            Ok(begun) => {
                let _ = ready.send(Ok(()));
                begun
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return false;
            }
        };
        loop {
            let command = match tokio::time::timeout(self.idle, queue.recv()).await {
                Ok(Some(command)) => command,
                Ok(None) => {
                    tracing::info!("streamed upload abandoned, rolled back");
                    return false;
                }
                Err(_) => {
                    tracing::warn!(idle_seconds = self.idle.as_secs(), "streamed upload idle too long, rolled back");
                    return false;
                }
            };
            match command {
                Command::Chunk { payload } => {
                    if let Err(e) = import.chunk(&tx, &payload).await {
                        tracing::warn!(error = %e, chunk = import.chunks() + 1, "streamed upload refused a chunk, rolled back");
                        if let Ok(mut failure) = self.failure.lock() {
                            *failure = Some(e.into());
                        }
                        return false;
                    }
                }
                Command::Finish { reply } => {
                    let result = match upload::finish(&tx, import, sid).await {
                        Ok(finished) => tx.commit().await.map(|()| finished).map_err(AgentError::from),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = &result {
                        tracing::warn!(error = %e, "streamed upload could not finish, rolled back");
                    }
                    let committed = result.is_ok();
                    let _ = reply.send(result);
                    return committed;
                }
            }
        }
    }
}
