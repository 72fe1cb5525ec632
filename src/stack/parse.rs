//! The parse layer: every message is parsed once, here, and the layers
//! below it (the sender policy, the hand-off) read the result from the
//! request's extensions. Where and within what: small messages on the async
//! worker, anything that can take long in a [`ParsePool`], always within a
//! [`ParseBudget`] that is abandoned with the request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tower::{BoxError, Layer, Service};
use tracing::Instrument;

use crate::mail::{self, ParseBudget, ParsedMail};
use crate::smtp::{RequestKind, SmtpRequest, SmtpResponse};

use super::handoff::ParseOptions;

/// A parsed message, in the request's extensions below the parse layer.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub mail: ParsedMail,
    /// SHA-256 of the raw message: every recipient's idempotency key.
    pub sha256: [u8; 32],
    /// Octets of the raw message.
    pub size: usize,
    /// The raw message itself, kept only when it is stored as an object
    /// (`MAIL_LASER_INCLUDE_RAW` in `s3` mode) or a route's format needs it
    /// ([`ParseOptions::keep_raw`]); otherwise dropped after the parse, as
    /// it pins the read buffer it lives in.
    pub raw: Option<Bytes>,
}

/// Parses each message ([`Parsed`] in its extensions) before the layers
/// that decide on its content.
#[derive(Debug, Clone)]
pub struct ParseLayer {
    options: ParseOptions,
    pool: ParsePool,
}

impl ParseLayer {
    pub fn new(options: ParseOptions, pool: ParsePool) -> Self {
        Self { options, pool }
    }
}

impl<S> Layer<S> for ParseLayer {
    type Service = Parse<S>;

    fn layer(&self, inner: S) -> Parse<S> {
        Parse {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Parse<S> {
    inner: S,
    layer: ParseLayer,
}

impl<S> Service<SmtpRequest> for Parse<S>
where
    S: Service<SmtpRequest, Response = SmtpResponse> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    type Response = SmtpResponse;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<SmtpResponse, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: SmtpRequest) -> Self::Future {
        let mut inner = super::take_ready(&mut self.inner);
        let RequestKind::Message(envelope) = &mut request.kind else {
            return Box::pin(async move { inner.call(request).await.map_err(Into::into) });
        };
        let message = std::mem::take(&mut envelope.message);
        let ParseLayer { options, pool } = self.layer.clone();
        Box::pin(async move {
            let size = message.len();
            let raw = options
                .raw_kept(&request.extensions)
                .then(|| message.clone());
            let prefixes = options.header_prefixes_in_force(&request.extensions);
            let (mail, sha256) = parse_message(message, prefixes, &options, &pool)
                .instrument(tracing::info_span!("mail.parse", size))
                .await?;
            if mail.truncated {
                tracing::warn!(
                    size,
                    "parse budget spent: delivering what was parsed, marked parse_truncated"
                );
            }
            request.extensions.insert(Parsed {
                mail,
                sha256,
                size,
                raw,
            });
            inner.call(request).await.map_err(Into::into)
        })
    }
}

/// Messages up to this size are parsed on the async worker: without HTML
/// rendering, parsing is linear in the size (about 40 µs for 64 KB, see
/// `benches/payload.rs`), cheaper than handing it to a pool thread, which
/// costs two thread wake-ups per message (13 % of the CPU at 32 sessions ×
/// 2 KB).
const INLINE_PARSE_LIMIT: usize = 64 * 1024;

/// Wall-clock limit of one parse once it runs. Linear parsing of the
/// largest message takes a fraction of a second; this only matters when the
/// machine is starved, and then the best effort found so far is delivered.
pub const PARSE_TIME_LIMIT: Duration = Duration::from_secs(10);

/// Threads for parse work that may be long: at most one per core, so
/// hostile messages queue here instead of taking every core from the
/// sessions. A job keeps its permit until its thread really finishes (a
/// blocking task cannot be stopped, only told to stop: see [`CancelOnDrop`]).
#[derive(Debug, Clone)]
pub struct ParsePool {
    permits: Arc<Semaphore>,
}

impl ParsePool {
    /// A pool of `threads` parse threads (at least one).
    pub fn new(threads: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(threads.max(1))),
        }
    }

    /// One thread per core.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, usize::from))
    }

    async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ParseError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ParseError::PoolClosed)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(ParseError::Panicked)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the parse pool is closed")]
    PoolClosed,
    /// A defect (the parser never panics by design): the client gets a
    /// temporary failure and the message is not lost.
    #[error("the message parser panicked")]
    Panicked(#[source] tokio::task::JoinError),
}

/// Sets the flag when dropped: the request was abandoned (request timeout,
/// client gone, server shut down), so the parse thread stops at its next
/// budget check instead of burning a core for nobody.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Parses the message, collecting the headers of `prefixes`, and hashes
/// its raw bytes (once, for every recipient's idempotency key). The raw
/// bytes are dropped here: nothing after the parse needs them, and they pin
/// the read buffer they live in.
pub async fn parse_message(
    raw: Bytes,
    prefixes: Arc<[String]>,
    options: &ParseOptions,
    pool: &ParsePool,
) -> Result<(ParsedMail, [u8; 32]), ParseError> {
    let span = tracing::Span::current();
    let cancelled = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancelled.clone());
    let budget = move |size| {
        ParseBudget::for_size(size)
            .with_deadline(Instant::now() + PARSE_TIME_LIMIT)
            .with_cancellation(cancelled)
    };
    let all_headers = options.all_headers;
    let include_raw = options.raw_inline();
    // `MAIL_LASER_INCLUDE_RAW`: encoded where the message is parsed.
    let raw_base64 = move |raw: &[u8]| include_raw.then(|| data_encoding::BASE64.encode(raw));
    if raw.len() <= INLINE_PARSE_LIMIT {
        let budget = budget(raw.len());
        let digest = Sha256::digest(&raw).into();
        let mut unrendered = mail::parse_unrendered(&raw, &prefixes, all_headers, &budget);
        unrendered.set_raw_base64(raw_base64(&raw));
        drop(raw);
        if !unrendered.needs_rendering() {
            return Ok((unrendered.render(&budget), digest));
        }
        let parsed = pool
            .run(move || span.in_scope(|| unrendered.render(&budget)))
            .await?;
        return Ok((parsed, digest));
    }
    pool.run(move || {
        span.in_scope(|| {
            let budget = budget(raw.len());
            let mut parsed =
                mail::parse_unrendered(&raw, &prefixes, all_headers, &budget).render(&budget);
            parsed.raw_base64 = raw_base64(&raw);
            (parsed, Sha256::digest(&raw).into())
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use futures_util::FutureExt;

    use super::*;

    /// Finding 1 (issue 9): parse work beyond the inline limit queues for
    /// the pool's threads instead of taking one per message.
    #[tokio::test]
    async fn the_parse_pool_runs_at_most_its_threads() {
        let pool = ParsePool::new(1);
        let (release, wait) = mpsc::channel::<()>();
        let (started, has_started) = tokio::sync::oneshot::channel();
        let first = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    let _ = started.send(());
                    let _ = wait.recv();
                })
                .await
            }
        });
        has_started.await.expect("the first job runs");
        let mut second = Box::pin(pool.run(|| 2));
        assert!(
            (&mut second).now_or_never().is_none(),
            "the second job waits for the only thread"
        );
        release.send(()).expect("the first job listens");
        first.await.expect("joined").expect("ran");
        assert_eq!(second.await.expect("ran"), 2);
    }

    /// Finding 1: a parse whose request is abandoned is told to stop.
    #[test]
    fn an_abandoned_parse_is_cancelled() {
        let flag = Arc::new(AtomicBool::new(false));
        let budget = ParseBudget::with_limit(u64::MAX).with_cancellation(flag.clone());
        let guard = CancelOnDrop(flag);
        assert!(budget.check());
        drop(guard);
        assert!(!budget.check());
    }

    #[tokio::test]
    async fn large_and_small_messages_parse_alike() {
        let options = ParseOptions::default();
        let pool = ParsePool::new(1);
        let body = "a".repeat(INLINE_PARSE_LIMIT);
        for body in ["short", body.as_str()] {
            let raw = Bytes::from(format!("Subject: s\r\n\r\n{body}"));
            let (parsed, digest) = parse_message(raw.clone(), Arc::default(), &options, &pool)
                .await
                .expect("parsed");
            assert_eq!((parsed.subject.as_str(), parsed.body.as_str()), ("s", body));
            assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&raw)));
        }
    }
}
