//! The one accept loop, for plain HTTP and HTTPS alike: it caps the connections open at once, serves each with
//! hyper's HTTP/1 (which closes a connection whose request head does not arrive in time), closes connections
//! on which nothing moves while no request of theirs is being worked on, tells the handlers the peer's address,
//! and on shutdown stops accepting and lets every connection finish its request. `axum::serve` offers none of
//! the timeouts, hence our own loop.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::tls::HANDSHAKE_DEADLINE;

/// The accept loop's bounds.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest wait for a request's head.
    pub header_read: Duration,
    /// A connection on which nothing moves this long while none of its requests is worked on is closed.
    pub idle: Duration,
    /// Connections open at once; beyond it a new one is closed at once.
    pub max_connections: usize,
}

/// How the connections are served.
#[derive(Clone)]
struct Serving {
    router: Router,
    http: http1::Builder,
    idle: Duration,
    stop: CancellationToken,
}

/// Accepts on `listener` (TLS when `tls` is set) until `shutdown` completes, then waits for the open
/// connections to finish what they are doing.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read).keep_alive(true);
    let serving = Serving { router, http, idle: limits.idle, stop: CancellationToken::new() };
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closing at once costs nothing, where queueing would let a flood hold every slot and the backlog.
            tracing::debug!(%peer, limit = limits.max_connections, "too many connections, closing a new one");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        connections.spawn(connection(tcp, peer, slot, tls.clone(), serving.clone()));
    }
    drop(listener);
    serving.stop.cancel();
    connections.close();
    connections.wait().await;
}

/// One accepted connection, holding its slot until it closes.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
    tls: Option<TlsAcceptor>,
    serving: Serving,
) {
    match tls {
        None => http(tcp, peer, serving).await,
        Some(acceptor) => match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => http(stream, peer, serving).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
            Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
        },
    }
}

/// Serves HTTP/1 on one connection until it closes, goes idle, or the service shuts down.
async fn http<I>(io: I, peer: SocketAddr, serving: Serving)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let watched = Watched { inner: io, activity: activity.clone() };
    let router = serving.router.clone();
    let working = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        // From the request's head until its answer is ready (body read included) the service is working on it:
        // no idle deadline then, each stage has its own (request_seconds, the body's idle_seconds per frame).
        let busy = Busy::new(working.clone());
        let answer = router.clone().call(request);
        async move {
            let answer = answer.await;
            drop(busy);
            answer
        }
    });
    let conn = serving.http.serve_connection(TokioIo::new(watched), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    // Header-read timeouts land here, as do clients that hang up.
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                break;
            }
            _ = serving.stop.cancelled(), if !stopping => {
                stopping = true;
                // Finishes the request in flight, if any, then closes; an idle connection closes at once.
                conn.as_mut().graceful_shutdown();
            }
            _ = activity.idle(serving.idle) => {
                tracing::debug!(%peer, "connection idle, closing");
                break;
            }
        }
    }
}

/// What a connection's watchdog knows: when a byte last moved, and how many of its requests are being worked on.
struct Activity {
    origin: Instant,
    last_millis: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity { origin: Instant::now(), last_millis: AtomicU64::new(0), busy: AtomicUsize::new(0) }
    }

    fn touch(&self) {
        self.last_millis.store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `limit` while no request is being worked on.
    async fn idle(&self, limit: Duration) {
        loop {
            let quiet =
                self.origin.elapsed().saturating_sub(Duration::from_millis(self.last_millis.load(Ordering::Relaxed)));
            if self.busy.load(Ordering::Relaxed) == 0 && quiet >= limit {
                return;
            }
            // Checked again when the limit could next be reached, and at least every second while busy.
            let wait = if quiet >= limit { Duration::from_secs(1) } else { limit - quiet };
            tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
        }
    }
}

/// Marks a request as being worked on while it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Busy {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        // The idle time counts from the end of the work, not from the last byte before it.
        self.0.touch();
    }
}

/// The connection's stream, noting each byte that moves.
struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
