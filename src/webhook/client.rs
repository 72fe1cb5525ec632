//! The innermost service: one HTTP POST with the shared `reqwest::Client`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use tower::Service;

use super::WebhookRequest;
use super::classify::{is_rejection, rejection_reason};
use super::request::Body as RequestBody;
use super::retry_after::parse_retry_after;

/// How much of a rejection's body is read for its reason.
const MAX_REASON_BODY: usize = 4096;
/// How much of any other body is drained so the connection can be reused.
const MAX_DRAINED_BODY: usize = 64 * 1024;

/// What the webhook answered, reduced to what classification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    pub status: StatusCode,
    /// First line of a `text/plain` body, for rejections only.
    pub reason: Option<String>,
    /// The wait a `429` or `503` asked for with `Retry-After` (capped);
    /// `None` for other statuses and for a value that does not parse.
    pub retry_after: Option<Duration>,
}

/// A [`RequestBody`] as an HTTP body: its pieces are sent one after the other,
/// never joined, under an exact `Content-Length`.
struct PiecesBody {
    /// The pieces still to send, the next one last.
    pieces: Vec<Bytes>,
}

impl PiecesBody {
    fn new(body: &RequestBody) -> Self {
        let mut pieces: Vec<Bytes> = body
            .pieces()
            .filter(|piece| !piece.is_empty())
            .cloned()
            .collect();
        pieces.reverse();
        Self { pieces }
    }
}

impl Body for PiecesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.pieces.pop().map(|piece| Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        let length = self.pieces.iter().map(Bytes::len).sum::<usize>();
        SizeHint::with_exact(u64::try_from(length).unwrap_or(u64::MAX))
    }
}

/// POSTs to one URL. Cloning shares the connection pool.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    url: Url,
    /// Sent with every request (a route's `headers`); the request's own
    /// headers win over them.
    headers: HeaderMap,
}

impl HttpClient {
    /// One client for the process: pooled keep-alive connections, HTTP/2
    /// where the server offers it (ALPN), no redirects (a `3xx` is a
    /// temporary failure, not a new destination for mail).
    ///
    /// # Errors
    /// The TLS configuration could not be loaded.
    pub fn new(url: Url, attempt_timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Self::shared(Self::client(attempt_timeout)?, url))
    }

    /// POSTs to `url` over `client`, whose pool other routes share.
    pub fn shared(client: reqwest::Client, url: Url) -> Self {
        Self {
            client,
            url,
            headers: HeaderMap::new(),
        }
    }

    /// Adds `headers` to every request.
    #[must_use]
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// The process's client (see [`HttpClient::new`]); `connect_timeout`
    /// bounds connecting for every route.
    ///
    /// # Errors
    /// The TLS configuration could not be loaded.
    pub fn client(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .user_agent(concat!("MailLaser/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
    }
}

impl Service<WebhookRequest> for HttpClient {
    type Response = WebhookResponse;
    type Error = reqwest::Error;
    type Future = BoxFuture<'static, Result<WebhookResponse, reqwest::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: WebhookRequest) -> Self::Future {
        let pending = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .headers(request.headers)
            .header(CONTENT_TYPE, request.body.content_type().clone())
            .body(reqwest::Body::wrap(PiecesBody::new(&request.body)))
            .send();
        Box::pin(async move {
            let mut response = pending.await?;
            let status = response.status();
            let retry_after = retry_after(&response);
            let reason = if is_rejection(status) && is_text_plain(&response) {
                let body = read_prefix(&mut response, MAX_REASON_BODY).await?;
                rejection_reason(&body)
            } else {
                read_prefix(&mut response, MAX_DRAINED_BODY).await?;
                None
            };
            Ok(WebhookResponse {
                status,
                reason,
                retry_after,
            })
        })
    }
}

/// The `Retry-After` of a `429` (RFC 6585) or `503` (RFC 9110); on a
/// redirect, which is not followed, and on any other status it is ignored.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    if !matches!(response.status().as_u16(), 429 | 503) {
        return None;
    }
    let value = response.headers().get(RETRY_AFTER)?;
    parse_retry_after(value.as_bytes(), SystemTime::now())
}

fn is_text_plain(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("text/plain"))
}

/// Reads at most `limit` bytes of the body; the rest is dropped with the
/// connection rather than read without bound.
async fn read_prefix(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]),
            None => break,
        }
    }
    Ok(body)
}
