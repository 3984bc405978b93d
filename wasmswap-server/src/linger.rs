//! Lingering close for HTTP/1: a request body that the handler drops
//! before its end (it refused the upload, or the guest reading it failed)
//! is read to its end and discarded in the background — for 10 s and
//! 64 MiB at most, and while the client keeps sending (1 s pauses at
//! most) — before hyper closes the connection.
//!
//! Without it the answer races the client's upload: hyper closes the
//! connection as soon as the answer is written, with the rest of the
//! upload unread, the kernel resets it, and a client still writing sees a
//! broken pipe — or the reset discards the answer before it reads it —
//! instead of the refusal. Seen with an 8 MiB upload to a guest that fails
//! at its 4 MiB memory limit, in the host and on the host's hop to its
//! isolation worker. nginx does the same (`lingering_close`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, Incoming, SizeHint};

/// How long an abandoned upload is read at most.
const LINGER_FOR: Duration = Duration::from_secs(10);

/// How long the client may pause its abandoned upload before it is closed
/// on: a client that stopped sending is not waited for.
const LINGER_IDLE: Duration = Duration::from_secs(1);

/// How much of an abandoned upload is read at most.
const LINGER_BYTES: u64 = 64 << 20;

/// A request body that, dropped before its end over HTTP/1, is drained in
/// the background (see the module docs).
#[derive(Debug)]
pub struct Lingering {
    inner: Option<Incoming>,
    ended: bool,
}

impl Lingering {
    /// `body`, drained if dropped early when `linger` (HTTP/1).
    pub(crate) fn new(body: Incoming, linger: bool) -> Self {
        Lingering {
            ended: !linger || body.is_end_stream(),
            inner: Some(body),
        }
    }
}

impl Body for Lingering {
    type Data = <Incoming as Body>::Data;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(mut body) = self.inner.take() else {
            return;
        };
        if self.ended || body.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let drain = async {
                let mut read = 0u64;
                while let Ok(Some(Ok(frame))) = tokio::time::timeout(
                    LINGER_IDLE,
                    std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)),
                )
                .await
                {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if read > LINGER_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER_FOR, drain).await;
        });
    }
}
