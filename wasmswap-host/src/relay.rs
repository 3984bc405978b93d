//! How a wasi-http response body that fails midway in the isolation worker
//! reaches the host with its failure's kind.
//!
//! By then the head is out, so the failure cannot be an error answer. The
//! worker ends the body with trailers naming the failure
//! ([`FAILED_KIND_TRAILER`], [`FAILED_MESSAGE_TRAILER`]) instead of
//! breaking the connection off ([`Reporting`]), and the host turns them
//! back into the body's error ([`Relayed`]) — a [`BodyFailure`], which the
//! runtime counts by its kind: a guest that runs out of memory while
//! writing is a `memory_limit`, and stays isolated for it, not a `trap`.
//!
//! HTTP/1.1 carries trailers only on a chunked body whose client asked
//! for them (`TE: trailers`, which the host sends) and whose head declared
//! them (`Trailer`, which the worker adds). A guest's answer with a
//! `Content-Length` cannot carry them (hyper would drop them, then fail
//! the short body before flushing what it holds): the worker does not
//! offer them there, so such a body breaks off as before and is counted
//! as a `trap`.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use hyper::body::{Body, Frame, SizeHint};
use wasmswap_core::{BodyFailure, ErrorKind};

/// The trailer carrying a failed body's [`ErrorKind`] name.
pub(crate) const FAILED_KIND_TRAILER: &str = "x-wasmswap-failed-kind";
/// The trailer carrying a failed body's message.
pub(crate) const FAILED_MESSAGE_TRAILER: &str = "x-wasmswap-failed-message";

/// The longest message the trailer carries: a guest's failure message can
/// hold a backtrace.
const MAX_MESSAGE: usize = 1024;

type WasiError = wasmtime_wasi_http::Error;

/// Whether a forwarded request's `TE` header asks for trailers.
pub(crate) fn accepts_trailers(te: Option<&HeaderValue>) -> bool {
    te.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',')
            .any(|coding| coding.trim().eq_ignore_ascii_case("trailers"))
    })
}

/// Declares the failure trailers in a response head (beside any the guest
/// declared), so that hyper sends them.
pub(crate) fn declare(headers: &mut HeaderMap) {
    let ours = HeaderValue::from_static("x-wasmswap-failed-kind, x-wasmswap-failed-message");
    headers.append(http::header::TRAILER, ours);
}

/// The worker's side: a guest's response body that calls `on_failure`
/// with the kind of a failure it ends with, and, where the host asked for
/// trailers, ends with them instead of an error. The guest's own trailers
/// lose any field named as ours: they would pass for the worker's.
pub(crate) struct Reporting<B> {
    inner: B,
    trailers: bool,
    on_failure: Option<Box<dyn FnOnce(ErrorKind) + Send>>,
    done: bool,
}

impl<B> Reporting<B> {
    /// Wraps `inner`; `trailers`: the host asked for them.
    pub(crate) fn new(
        inner: B,
        trailers: bool,
        on_failure: impl FnOnce(ErrorKind) + Send + 'static,
    ) -> Self {
        Self {
            inner,
            trailers,
            on_failure: Some(Box::new(on_failure)),
            done: false,
        }
    }
}

impl<B> Body for Reporting<B>
where
    B: Body<Data = Bytes, Error = WasiError> + Unpin,
{
    type Data = Bytes;
    type Error = WasiError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, WasiError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(match polled {
            Some(Err(e)) => {
                let Some(failure) = BodyFailure::of(&e) else {
                    return Poll::Ready(Some(Err(e)));
                };
                if let Some(note) = self.on_failure.take() {
                    note(failure.kind);
                }
                if self.trailers {
                    self.done = true;
                    Some(Ok(Frame::trailers(failure_trailers(&failure))))
                } else {
                    Some(Err(e))
                }
            }
            Some(Ok(frame)) => Some(Ok(match frame.into_trailers() {
                Ok(mut trailers) => {
                    trailers.remove(FAILED_KIND_TRAILER);
                    trailers.remove(FAILED_MESSAGE_TRAILER);
                    Frame::trailers(trailers)
                }
                Err(frame) => frame,
            })),
            None => None,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The trailers that say `failure`; the message made fit for a header
/// value (control characters become spaces) and cut to [`MAX_MESSAGE`].
fn failure_trailers(failure: &BodyFailure) -> HeaderMap {
    let mut message: String = failure
        .message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    let mut trailers = HeaderMap::new();
    trailers.insert(
        HeaderName::from_static(FAILED_KIND_TRAILER),
        HeaderValue::from_static(failure.kind.as_str()),
    );
    if let Ok(value) = HeaderValue::from_bytes(message.as_bytes()) {
        trailers.insert(HeaderName::from_static(FAILED_MESSAGE_TRAILER), value);
    }
    trailers
}

/// The host's side: the worker's response body, whose failure trailers
/// become its error — a [`BodyFailure`] — and whose other trailers pass.
pub(crate) struct Relayed {
    inner: hyper::body::Incoming,
    done: bool,
}

impl Relayed {
    /// Wraps the body of the worker's answer.
    pub(crate) fn new(inner: hyper::body::Incoming) -> Self {
        Self { inner, done: false }
    }
}

impl Body for Relayed {
    type Data = Bytes;
    type Error = WasiError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, WasiError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(match polled {
            Some(Ok(frame)) => match frame.into_trailers() {
                Ok(mut trailers) => match failure_in(&mut trailers) {
                    Some(failure) => {
                        self.done = true;
                        Some(Err(failure.into()))
                    }
                    None => {
                        // The guest's own: the last frame there is. A
                        // chunked body does not say it has ended, and a
                        // server stops polling after trailers.
                        self.done = true;
                        Some(Ok(Frame::trailers(trailers)))
                    }
                },
                Err(frame) => Some(Ok(frame)),
            },
            Some(Err(e)) => Some(Err(e.into())),
            None => None,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Takes the failure trailers out of `trailers`: the failure they say, if
/// any (a kind this build does not know is a `trap`).
fn failure_in(trailers: &mut HeaderMap) -> Option<BodyFailure> {
    let kind = trailers.remove(FAILED_KIND_TRAILER)?;
    let message = trailers
        .remove(FAILED_MESSAGE_TRAILER)
        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
        .unwrap_or_default();
    let kind = kind
        .to_str()
        .ok()
        .and_then(ErrorKind::from_name)
        .unwrap_or(ErrorKind::Trap);
    Some(BodyFailure { kind, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_survives_its_trailers() {
        let failure = BodyFailure {
            kind: ErrorKind::MemoryLimit,
            message: "grow refused\nat line 3\té".into(),
        };
        let mut trailers = failure_trailers(&failure);
        trailers.insert("x-guest", HeaderValue::from_static("kept"));
        assert_eq!(
            failure_in(&mut trailers),
            Some(BodyFailure {
                kind: ErrorKind::MemoryLimit,
                message: "grow refused at line 3 é".into(),
            })
        );
        assert_eq!(trailers.len(), 1, "the guest's own trailer stays");
        assert_eq!(failure_in(&mut trailers), None);

        let long = BodyFailure {
            kind: ErrorKind::Trap,
            message: "é".repeat(MAX_MESSAGE),
        };
        let said = failure_in(&mut failure_trailers(&long)).unwrap();
        assert!(said.message.len() <= MAX_MESSAGE && said.message.len() > MAX_MESSAGE - 2);
    }

    #[test]
    fn the_declaration_names_both_trailers() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::TRAILER, HeaderValue::from_static("x-guest"));
        declare(&mut headers);
        let declared: Vec<&str> = headers
            .get_all(http::header::TRAILER)
            .iter()
            .flat_map(|v| v.to_str().unwrap().split(','))
            .map(str::trim)
            .collect();
        assert_eq!(
            declared,
            ["x-guest", FAILED_KIND_TRAILER, FAILED_MESSAGE_TRAILER]
        );
    }

    #[test]
    fn only_te_trailers_asks_for_trailers() {
        let te = |v: &'static str| accepts_trailers(Some(&HeaderValue::from_static(v)));
        assert!(te("trailers"));
        assert!(te("gzip, Trailers"));
        assert!(!te("gzip"));
        assert!(!accepts_trailers(None));
    }
}
