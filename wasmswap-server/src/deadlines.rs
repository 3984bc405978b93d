//! Deadlines of an HTTP/1 connection, kept apart: a request's headers must
//! arrive within the header timeout *from their first byte*, while a
//! connection idle between requests may stay open for the (longer) idle
//! timeout.
//!
//! hyper's own `header_read_timeout` starts its clock as soon as it waits
//! for the next request, so it also closes every keep-alive connection idle
//! for that long. A client whose pool kept that connection (reqwest and
//! hyper keep idle connections 90 s) can send a request on it at the instant
//! the server closes it, and that request fails ("connection closed before
//! message completed") although nothing was wrong with it. Closing idle
//! connections later than clients' pools do, and timing the headers from
//! their first byte, keeps both the slow-loris guard and every request.
//!
//! HTTP/2 multiplexes streams over one connection, so these socket-level
//! clocks do not fit it: its idle timeout (no stream for that long) and its
//! per-stream write stalls (a client that stops granting one stream flow-
//! control window, so that no bytes are even due on the socket) are judged
//! by the connection's watchdog from [`Activity`] (see `lib.rs`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the request handler tells the connection: how many requests it
/// has begun and how many are still being answered.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    begun: AtomicU64,
    answering: AtomicUsize,
    // Upgraded (101, or a tunnel after CONNECT): the bytes are the
    // handler's protocol now, with no HTTP deadlines.
    upgraded: AtomicBool,
    // The connection's task, woken when the last answer is out: hyper does
    // not read again by itself once idle, so the idle clock would not start.
    reader: Mutex<Option<Waker>>,
    // HTTP/2: the stall clocks of the responses being sent.
    streams: Mutex<Vec<Weak<StallClock>>>,
}

impl Activity {
    /// A request's headers were read and its handler starts; the returned
    /// guard marks the answer finished when dropped. Its clones go with the
    /// request body and the response body, so an upload read after the
    /// response and a streamed response both count until their last byte.
    pub(crate) fn begin(self: &Arc<Self>) -> Answering {
        self.answering.fetch_add(1, Ordering::AcqRel);
        self.begun.fetch_add(1, Ordering::AcqRel);
        Answering(self.clone())
    }

    /// Requests begun so far.
    pub(crate) fn begun(&self) -> u64 {
        self.begun.load(Ordering::Acquire)
    }

    /// Whether a request is being answered now (or the connection was
    /// upgraded): the connection is not idle.
    pub(crate) fn busy(&self) -> bool {
        self.answering.load(Ordering::Acquire) > 0 || self.upgraded.load(Ordering::Acquire)
    }

    /// A stall clock for an HTTP/2 response about to be sent; see
    /// [`Tracked::new`].
    pub(crate) fn stall_clock(&self) -> Arc<StallClock> {
        let clock = Arc::new(StallClock::new());
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|s| s.strong_count() > 0);
        streams.push(Arc::downgrade(&clock));
        clock
    }

    /// How long the longest-waiting HTTP/2 response has been waiting for
    /// the client to take more of it, if one is.
    pub(crate) fn longest_stall(&self) -> Option<Duration> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|s| s.strong_count() > 0);
        streams
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|c| c.waiting())
            .max()
    }
}

/// Since when an HTTP/2 response has been waiting on its client: it was
/// handed to hyper, or its last poll gave hyper a frame to send, and hyper
/// has not asked for more since — which over HTTP/2 means the client grants
/// the stream no flow-control window (hyper polls a body only when the
/// stream may send). A body that has no data ready is waiting on its
/// producer (a slow guest, an event stream), not on the client.
#[derive(Debug)]
pub(crate) struct StallClock {
    epoch: std::time::Instant,
    // Milliseconds since `epoch`, plus one; 0: not waiting on the client.
    since: AtomicU64,
}

impl StallClock {
    fn new() -> Self {
        let clock = StallClock {
            epoch: std::time::Instant::now(),
            since: AtomicU64::new(0),
        };
        clock.waiting_from_now();
        clock
    }

    fn waiting_from_now(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.since.store(ms + 1, Ordering::Release);
    }

    fn not_waiting(&self) {
        self.since.store(0, Ordering::Release);
    }

    fn waiting(&self) -> Option<Duration> {
        match self.since.load(Ordering::Acquire) {
            0 => None,
            since => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since - 1)),
            ),
        }
    }
}

/// A request being answered; see [`Activity::begin`].
#[derive(Debug)]
pub(crate) struct Answering(Arc<Activity>);

impl Answering {
    /// The connection was upgraded (a `101 Switching Protocols` answer, or a
    /// tunnel after `CONNECT`): its bytes now belong to the handler's
    /// protocol, not to HTTP requests, so no header or idle deadline applies
    /// to it any more.
    pub(crate) fn hand_over(self) {
        self.0.upgraded.store(true, Ordering::Release);
    }
}

impl Clone for Answering {
    fn clone(&self) -> Self {
        self.0.answering.fetch_add(1, Ordering::AcqRel);
        Answering(self.0.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        if self.0.answering.fetch_sub(1, Ordering::AcqRel) == 1 {
            let reader = self
                .0
                .reader
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(w) = reader {
                w.wake();
            }
        }
    }
}

pin_project! {
    /// The connection's socket, which ends the connection when a deadline
    /// passes: an error when headers stall, end-of-stream when idle (so
    /// hyper closes it as if the client had).
    #[project = DeadlinesProj]
    pub(crate) struct Deadlines<T> {
        #[pin]
        io: T,
        activity: Arc<Activity>,
        // `None` for HTTP/2, which has its own keep-alive pings and whose
        // control frames would look like a stalled request here.
        limits: Option<(Duration, Duration)>,
        begun_seen: u64,
        head_since: Option<Instant>,
        last_io: Instant,
        timer: Pin<Box<Sleep>>,
        armed: Instant,
        // Writes: how long one may wait for the client to read, since when
        // the current one has waited, and its timer.
        write_timeout: Duration,
        write_stalled_since: Option<Instant>,
        write_timer: Pin<Box<Sleep>>,
    }
}

impl<T> Deadlines<T> {
    /// Wraps `io`; `limits` is `Some((header_timeout, idle_timeout))` for an
    /// HTTP/1 connection, `None` to pass reads through; `write_timeout`
    /// bounds a write that makes no progress, on any connection.
    pub(crate) fn new(
        io: T,
        activity: Arc<Activity>,
        limits: Option<(Duration, Duration)>,
        write_timeout: Duration,
    ) -> Self {
        let now = Instant::now();
        Deadlines {
            io,
            activity,
            limits,
            begun_seen: 0,
            head_since: None,
            last_io: now,
            timer: Box::pin(tokio::time::sleep_until(now)),
            armed: now,
            write_timeout,
            write_stalled_since: None,
            write_timer: Box::pin(tokio::time::sleep_until(now)),
        }
    }
}

impl<T: AsyncRead> AsyncRead for Deadlines<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let Some((header_timeout, idle_timeout)) = *this.limits else {
            return this.io.poll_read(cx, buf);
        };
        if this.activity.upgraded.load(Ordering::Acquire) {
            return this.io.poll_read(cx, buf);
        }
        // Headers that reached the handler end the header clock.
        let begun = this.activity.begun.load(Ordering::Acquire);
        if begun != *this.begun_seen {
            *this.begun_seen = begun;
            *this.head_since = None;
        }
        let answering = || this.activity.answering.load(Ordering::Acquire) > 0;
        let before = buf.filled().len();
        match this.io.poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let now = Instant::now();
                    *this.last_io = now;
                    // Bytes while nothing is being answered start a request
                    // (bytes during an answer are its body, or a pipelined
                    // request hyper parses as soon as the answer is out).
                    if !answering() && this.head_since.is_none() {
                        *this.head_since = Some(now);
                    }
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        // A slow handler is not the client's fault: no deadline while
        // answering (the handler has its own limits). The waker is stored
        // before looking, so an answer that ends meanwhile still wakes us.
        {
            let mut reader = this
                .activity
                .reader
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *reader = Some(cx.waker().clone());
            }
        }
        if answering() {
            return Poll::Pending;
        }
        // A timeout too long to add (configured in years) is no deadline.
        let deadline = match *this.head_since {
            Some(since) => since.checked_add(header_timeout),
            None => this.last_io.checked_add(idle_timeout),
        };
        let Some(deadline) = deadline else {
            return Poll::Pending;
        };
        if *this.armed != deadline {
            this.timer.as_mut().reset(deadline);
            *this.armed = deadline;
        }
        if this.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        match this.head_since {
            Some(_) => {
                tracing::debug!(?header_timeout, "request headers stalled; closing");
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("request headers not received within {header_timeout:?}"),
                )))
            }
            // End of stream: hyper closes an idle connection quietly.
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for Deadlines<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        let written = this.io.as_mut().poll_write(cx, data);
        progress(written, &mut this, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        let written = this.io.as_mut().poll_write_vectored(cx, bufs);
        progress(written, &mut this, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// Passes a write's result on, noting when bytes went out (the idle clock
/// runs from the connection's last traffic either way), and failing a
/// write that has waited `write_timeout` for the client to read: a client
/// that stops reading would otherwise hold its response (and what the
/// response holds: a guest, a version in flight) for as long as it likes.
fn progress<T>(
    written: Poll<io::Result<usize>>,
    this: &mut DeadlinesProj<'_, T>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    match written {
        Poll::Ready(Ok(n)) => {
            if n > 0 {
                *this.last_io = Instant::now();
            }
            *this.write_stalled_since = None;
            Poll::Ready(Ok(n))
        }
        Poll::Pending if !this.activity.upgraded.load(Ordering::Acquire) => {
            let timeout = *this.write_timeout;
            let since = *this.write_stalled_since.get_or_insert_with(|| {
                let now = Instant::now();
                if let Some(deadline) = now.checked_add(timeout) {
                    this.write_timer.as_mut().reset(deadline);
                }
                now
            });
            if since.checked_add(timeout).is_some() && this.write_timer.as_mut().poll(cx).is_ready()
            {
                tracing::debug!(?timeout, "the client stopped reading; closing");
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing for {timeout:?}"),
                )));
            }
            Poll::Pending
        }
        other => other,
    }
}

pin_project! {
    /// A body that keeps its request counted as being answered until it
    /// has ended or been dropped: the response body (until hyper has sent
    /// it), and the request body (until the handler has read it). While a
    /// request is being answered its connection has no header or idle
    /// deadline: bytes then are the request's body, not a stalled request.
    pub struct Tracked<B> {
        #[pin]
        body: B,
        answering: Option<Answering>,
        // A request body's: set while it has not ended.
        unread: Option<Arc<AtomicBool>>,
        // An HTTP/2 response body's: when it began waiting on the client.
        stall: Option<Arc<StallClock>>,
    }
}

impl<B: http_body::Body> Tracked<B> {
    /// A request body, counted until its end (at once if it has none),
    /// and, if it has one, a flag that holds until that end: whether the
    /// body is still unread. A body-less request (most of them) costs no
    /// allocation for it.
    pub(crate) fn request(body: B, answering: &Answering) -> (Self, Option<Arc<AtomicBool>>) {
        let unread = (!body.is_end_stream()).then(|| Arc::new(AtomicBool::new(true)));
        let tracked = Tracked {
            body,
            answering: unread.is_some().then(|| answering.clone()),
            unread: unread.clone(),
            stall: None,
        };
        (tracked, unread)
    }
}

impl<B> Tracked<B> {
    /// A response body, counted until hyper has sent or dropped it; over
    /// HTTP/2, with its [`StallClock`].
    pub(crate) fn new(body: B, answering: Answering, stall: Option<Arc<StallClock>>) -> Self {
        Tracked {
            body,
            answering: Some(answering),
            unread: None,
            stall,
        }
    }

    /// A body that tracks nothing (the answer that upgrades a connection).
    pub(crate) fn untracked(body: B) -> Self {
        Tracked {
            body,
            answering: None,
            unread: None,
            stall: None,
        }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for Tracked<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.body.fmt(f)
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.body.poll_frame(cx);
        if let Some(stall) = this.stall {
            match frame {
                // Handed over: until hyper asks again, the client has it.
                Poll::Ready(Some(Ok(_))) => stall.waiting_from_now(),
                _ => stall.not_waiting(),
            }
        }
        if matches!(frame, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            // Ended: the rest of the exchange no longer waits on it.
            this.answering.take();
            if let Some(unread) = this.unread.take() {
                unread.store(false, Ordering::Release);
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
