//! Open `diff` loops: each holds its export snapshot in a task of its own that reads a few chunks ahead of the
//! office, the last answer (resent when the office asks again) and its continuation cursors
//! (`SINCE~LOOP~N`), by loop id. The `diff` method drives them; this module keeps their state.

use std::collections::HashMap;
use std::time::Instant;

use pgsync::ExportSession;
use protocol::wire::DiffAnswer;
use tokio::sync::{Mutex, mpsc};
use tokio_util::task::TaskTracker;

/// The open loops, by id.
pub type Loops = Mutex<HashMap<u64, DiffLoop>>;

/// The chunks an export task reads ahead, and the task (which hands the session back once complete).
pub(crate) type Producer =
    (mpsc::Receiver<Result<Vec<u8>, pgsync::Error>>, tokio::task::JoinHandle<Option<ExportSession>>);

/// Chunks the export reads ahead of the office: enough to keep both sides busy, few enough to bound memory.
pub(crate) const READ_AHEAD: usize = 3;

/// An open diff loop. Its export runs in a task of its own, a few chunks ahead of the office, so that the shop
/// reads while the office applies.
pub struct DiffLoop {
    pub(crate) since: String,
    /// The cursor the loop ends with (its export snapshot).
    pub(crate) cursor: protocol::cursor::Cursor,
    /// Chunks read ahead; closed when the export is complete.
    pub(crate) chunks: mpsc::Receiver<Result<Vec<u8>, pgsync::Error>>,
    /// The export task, which hands the session back once complete.
    pub(crate) producer: Option<tokio::task::JoinHandle<Option<ExportSession>>>,
    /// Chunks handed out so far.
    pub(crate) delivered: u64,
    /// The chunk to hand out next, received ahead so that `more` is known.
    pub(crate) next: Option<Vec<u8>>,
    /// The last answer, resent if the office asks for it again.
    pub(crate) last: Option<DiffAnswer>,
    pub(crate) touched: Instant,
}

impl Drop for DiffLoop {
    fn drop(&mut self) {
        // An abandoned loop stops reading; its connection closes and the snapshot goes with it.
        if let Some(producer) = self.producer.take() {
            producer.abort();
        }
    }
}

impl std::fmt::Debug for DiffLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiffLoop").field("since", &self.since).field("delivered", &self.delivered).finish()
    }
}

/// Starts the export task: every chunk into the channel, then the session back (none after an error, which
/// went into the channel instead).
pub(crate) fn produce(tasks: &TaskTracker, mut session: ExportSession) -> Producer {
    let (ready, chunks) = mpsc::channel(READ_AHEAD);
    let producer = tasks.spawn(async move {
        loop {
            match session.next_chunk().await {
                Ok(Some(chunk)) => {
                    if ready.send(Ok(chunk)).await.is_err() {
                        return None;
                    }
                }
                Ok(None) => return Some(session),
                Err(e) => {
                    let _ = ready.send(Err(e)).await;
                    return None;
                }
            }
        }
    });
    (chunks, producer)
}

pub(crate) fn continuation(since: &str, id: u64, delivered: u64) -> String {
    format!("{since}~{id}~{delivered}")
}

/// Splits `since` into the base cursor and an optional (loop, delivered) continuation.
pub(crate) fn split(since: &str) -> (String, Option<(u64, u64)>) {
    let mut parts = since.rsplitn(3, '~');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(id), Some(base)) => match (id.parse(), n.parse()) {
            (Ok(id), Ok(n)) => (base.to_string(), Some((id, n))),
            _ => (since.to_string(), None),
        },
        _ => (since.to_string(), None),
    }
}

/// A new loop's id: unlikely to repeat across agent restarts.
pub(crate) fn loop_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let salt =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    (salt & 0xffff_ffff_0000) ^ NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_split_back() {
        assert_eq!(split(""), (String::new(), None));
        assert_eq!(split("bs1/1/2/ab/3:4:"), ("bs1/1/2/ab/3:4:".into(), None));
        assert_eq!(split(&continuation("", 7, 2)), (String::new(), Some((7, 2))));
        assert_eq!(split(&continuation("bs1/1/2/ab/3:4:", 9, 1)), ("bs1/1/2/ab/3:4:".into(), Some((9, 1))));
    }
}
