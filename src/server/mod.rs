//! The SMTP server: the accept loop over the SMTP port and the optional
//! implicit-TLS port with their connection limits (global, per client IP,
//! and new connections per client IP and minute, counted across both
//! ports), a task per connection ([`connection`]) over a plain or TLS byte
//! stream ([`transport`], [`tls`]), and graceful shutdown. It drives the
//! pure protocol ([`crate::smtp`]) and calls the Tower stack
//! ([`crate::stack`]).

mod connection;
mod pace;
pub mod tls;
mod transport;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::Readiness;
use crate::smtp::codec::MemoryBudget;
use crate::smtp::reply::Reply;
use crate::smtp::session::SessionConfig;
use crate::stack::SmtpService;
use crate::stack::rate_limit::{Decision, IpRateLimiter};
use crate::telemetry::Metrics;
use connection::{ConnectionContext, Listener};
pub use pace::Timeouts;
pub use tls::TlsConfig;

/// Connection-level limits enforced by the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// 0 = unlimited.
    pub max_per_ip: usize,
    /// New connections per client IP and minute
    /// (`MAIL_LASER_RATE_LIMIT_CONNECTIONS`); 0 = no limit.
    pub per_ip_per_minute: u32,
}

/// The SMTP listener side, validated at start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// The implicit-TLS listener (`MAIL_LASER_TLS_PORT`), if any.
    pub implicit_tls_bind: Option<SocketAddr>,
    pub session: Arc<SessionConfig>,
    pub max_message_size: usize,
    /// Bound on the message data held by all sessions together
    /// (`MAIL_LASER_MAX_BUFFERED_BYTES`): the budget [`Server::new`] is
    /// given is built from it.
    pub max_buffered_bytes: usize,
    pub timeouts: Timeouts,
    pub limits: ConnectionLimits,
    pub tls: TlsConfig,
    /// How long sessions in DATA may finish after a shutdown signal.
    pub drain_timeout: Duration,
}

/// A bound SMTP listener with everything its connections need.
pub struct Server {
    listener: TcpListener,
    /// The implicit-TLS listener (RFC 8314 §3).
    implicit_tls: Option<TcpListener>,
    context: Arc<ConnectionContext>,
    service: SmtpService,
    global: Arc<Semaphore>,
    per_ip: PerIpLimit,
    rate: Option<IpRateLimiter>,
    drain_timeout: Duration,
    metrics: Metrics,
}

impl Server {
    /// Takes an already-bound listener, so tests can bind port 0.
    pub fn new(
        listener: TcpListener,
        config: &ServerConfig,
        tls: Option<TlsAcceptor>,
        service: SmtpService,
        metrics: Metrics,
        memory: MemoryBudget,
    ) -> Self {
        let session = Arc::new(SessionConfig {
            tls_available: tls.is_some(),
            ..(*config.session).clone()
        });
        let ConnectionLimits {
            max_connections,
            max_per_ip,
            per_ip_per_minute,
        } = config.limits;
        let observed = memory.clone();
        metrics
            .meter()
            .i64_observable_gauge("maillaser.buffered.bytes")
            .with_description(
                "Message bytes held by all sessions, against MAIL_LASER_MAX_BUFFERED_BYTES",
            )
            .with_callback(move |observer| {
                observer.observe(i64::try_from(observed.in_use()).unwrap_or(i64::MAX), &[]);
            })
            .build();
        Self {
            listener,
            implicit_tls: None,
            context: Arc::new(ConnectionContext {
                session,
                tls,
                timeouts: config.timeouts,
                max_message_size: config.max_message_size,
                memory,
                metrics: metrics.clone(),
            }),
            service,
            global: Arc::new(Semaphore::new(max_connections)),
            per_ip: PerIpLimit::new(max_per_ip),
            rate: IpRateLimiter::per_minute(per_ip_per_minute),
            drain_timeout: config.drain_timeout,
            metrics,
        }
    }

    /// Also accepts on `listener`, where sessions start with the TLS
    /// handshake (needs the TLS acceptor).
    #[must_use]
    pub fn with_implicit_tls(mut self, listener: TcpListener) -> Self {
        self.implicit_tls = Some(listener);
        self
    }

    /// Accepts until `shutdown` fires, then stops accepting and waits up to
    /// the drain timeout for sessions to end: those reading a message finish
    /// it, the others are answered `421` at their next command.
    pub async fn run(self, readiness: Readiness, shutdown: CancellationToken) {
        let connections = TaskTracker::new();
        readiness.set_accepting(true);
        loop {
            let (accepted, listener) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => (accepted, Listener::Plain),
                accepted = accept(self.implicit_tls.as_ref()) => (accepted, Listener::ImplicitTls),
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead
                    // of spinning on a listener that keeps failing.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = self.admit(peer.ip()) else {
                // A TLS client would read a plain-text reply as a broken
                // handshake: on the implicit-TLS port the refusal is the close.
                if listener == Listener::Plain {
                    refuse(&stream);
                }
                continue;
            };
            // Replies are small and latency-bound: never wait for Nagle.
            let _ = stream.set_nodelay(true);
            let context = self.context.clone();
            let service = self.service.clone();
            let shutdown = shutdown.clone();
            connections.spawn(async move {
                connection::serve(stream, peer, listener, context, service, shutdown).await;
                drop(slot);
            });
        }
        readiness.set_accepting(false);
        drop(self.listener);
        drop(self.implicit_tls);
        connections.close();
        tracing::info!(
            open = connections.len(),
            "shutting down: waiting for sessions to finish"
        );
        if tokio::time::timeout(self.drain_timeout, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = connections.len(),
                "drain timeout reached, closing remaining sessions"
            );
        }
    }

    fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let Ok(global) = self.global.clone().try_acquire_owned() else {
            tracing::warn!(%ip, "connection refused: global limit reached");
            self.metrics.connection_refused("global_limit");
            return None;
        };
        let Some(per_ip) = self.per_ip.acquire(ip) else {
            tracing::warn!(%ip, "connection refused: per-IP limit reached");
            self.metrics.connection_refused("per_ip_limit");
            return None;
        };
        // Counted last: a connection refused for another reason uses none
        // of the client's budget.
        if let Some(Decision::Limited { retry_after }) =
            self.rate.as_ref().map(|rate| rate.check(ip))
        {
            tracing::warn!(
                %ip,
                retry_after_ms = retry_after.as_millis() as i64,
                "connection refused: connection rate limit"
            );
            self.metrics.connection_refused("rate_limit");
            self.metrics.rate_limited("connections");
            return None;
        }
        Some(Slot {
            _global: global,
            _per_ip: per_ip,
        })
    }
}

/// The next connection on `listener`; never, without one.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Answers `421` without a task: the reply fits in the empty socket buffer.
fn refuse(stream: &TcpStream) {
    let mut reply = BytesMut::new();
    Reply::too_many_connections().encode(true, &mut reply);
    let _ = stream.try_write(&reply);
}

/// Held by a connection task for its lifetime.
struct Slot {
    _global: OwnedSemaphorePermit,
    _per_ip: Option<IpGuard>,
}

/// Concurrent sessions per client IP.
#[derive(Debug, Clone)]
struct PerIpLimit {
    max: usize,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIpLimit {
    fn new(max: usize) -> Self {
        Self {
            max,
            counts: Arc::default(),
        }
    }

    /// `Some(None)` when unlimited, `None` when the IP is at its limit.
    fn acquire(&self, ip: IpAddr) -> Option<Option<IpGuard>> {
        if self.max == 0 {
            return Some(None);
        }
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Some(IpGuard {
            ip,
            counts: self.counts.clone(),
        }))
    }
}

#[derive(Debug)]
struct IpGuard {
    ip: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_limit_counts_and_releases() {
        let limit = PerIpLimit::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let first = limit.acquire(ip).unwrap();
        let _second = limit.acquire(ip).unwrap();
        assert!(limit.acquire(ip).is_none());
        assert!(limit.acquire("10.0.0.2".parse().unwrap()).is_some());
        drop(first);
        assert!(limit.acquire(ip).is_some());
    }

    #[test]
    fn zero_means_unlimited() {
        let limit = PerIpLimit::new(0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let guards: Vec<_> = (0..1000).map(|_| limit.acquire(ip).unwrap()).collect();
        assert!(guards.iter().all(Option::is_none));
        assert!(limit.counts.lock().unwrap().is_empty());
    }
}
