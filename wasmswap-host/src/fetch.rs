//! Fetching a version's binary by URL and checking it is the one asked for.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

/// Why a binary could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not one this client speaks (only `http://` today).
    #[error("unsupported URL {0:?}: only http:// URLs can be fetched")]
    BadUrl(String),
    /// Connecting or reading failed.
    #[error("fetching {url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("fetching {url}: the server answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// Its status.
        status: http::StatusCode,
    },
    /// Larger than the limit.
    #[error("fetching {url}: the binary is larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// It took too long.
    #[error("fetching {url}: no complete answer within {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// The bytes are not the ones asked for.
    #[error("the binary's SHA-256 is {actual}, not the expected {expected}")]
    HashMismatch {
        /// What was asked for.
        expected: String,
        /// What arrived.
        actual: String,
    },
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks `bytes` against an expected lowercase-hex SHA-256.
pub fn verify(bytes: &[u8], expected: &str) -> Result<(), FetchError> {
    let actual = sha256_hex(bytes);
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(FetchError::HashMismatch {
            expected: expected.to_ascii_lowercase(),
            actual,
        })
    }
}

/// An HTTP client for binaries: bounded in size and time.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: Client<HttpConnector, Empty<Bytes>>,
    max_bytes: usize,
    timeout: Duration,
    token: Option<String>,
}

impl Fetcher {
    /// A client that refuses bodies over `max_bytes` and answers slower than `timeout`.
    pub fn new(max_bytes: usize, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        Fetcher {
            client: Client::builder(TokioExecutor::new()).build(connector),
            max_bytes,
            timeout,
            token: None,
        }
    }

    /// Sends `Authorization: Bearer {token}` with every fetch.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    fn request(&self, uri: http::Uri) -> Result<http::Request<Empty<Bytes>>, FetchError> {
        let mut req = http::Request::get(uri.clone());
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        req.body(Empty::new())
            .map_err(|_| FetchError::BadUrl(uri.to_string()))
    }

    /// Fetches `url` and checks its SHA-256 against `sha256`.
    pub async fn fetch(&self, url: &str, sha256: &str) -> Result<Vec<u8>, FetchError> {
        let uri: http::Uri = url.parse().map_err(|_| FetchError::BadUrl(url.into()))?;
        if uri.scheme_str() != Some("http") {
            return Err(FetchError::BadUrl(url.into()));
        }
        let transport = |reason: String| FetchError::Transport {
            url: url.into(),
            reason,
        };
        let work = async {
            let resp = self
                .client
                .request(self.request(uri)?)
                .await
                .map_err(|e| transport(e.to_string()))?;
            if !resp.status().is_success() {
                return Err(FetchError::Status {
                    url: url.into(),
                    status: resp.status(),
                });
            }
            let body = Limited::new(resp.into_body(), self.max_bytes);
            let bytes = body.collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge {
                        url: url.into(),
                        limit: self.max_bytes,
                    }
                } else {
                    transport(e.to_string())
                }
            })?;
            Ok(bytes.to_bytes().to_vec())
        };
        let bytes = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| FetchError::Timeout {
                url: url.into(),
                timeout: self.timeout,
            })??;
        verify(&bytes, sha256)?;
        Ok(bytes)
    }
}
