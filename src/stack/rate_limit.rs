//! Per-client-IP rate limits (`docs/access.md`): new connections
//! (`MAIL_LASER_RATE_LIMIT_CONNECTIONS`, checked by the server's accept
//! loop), messages (`MAIL_LASER_RATE_LIMIT_MESSAGES`, the
//! [`RateLimitLayer`] at `MAIL`) and failed `AUTH` attempts (the
//! credentials layer).
//!
//! Each limit is a keyed GCRA limiter (`governor`): N per minute per
//! client, refilling one every 60/N seconds, so a burst of N is allowed
//! and the long-run rate is N a minute. The state per client is one
//! 8-byte timestamp. Memory is bounded however many addresses a hostile
//! client rotates through: keys whose state is back to "fresh" are dropped
//! every [`HOUSEKEEPING_EVERY`] checks, and no more than
//! [`MAX_TRACKED_CLIENTS`] are kept — past that (only a flood from that
//! many addresses within a minute gets there) the limit lets everyone
//! through rather than grow or refuse every client.

use std::future::{Ready, ready};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use governor::clock::{Clock, MonotonicClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use tower::{Layer, Service};

use crate::smtp::reply::Reply;
use crate::smtp::{Outcome, RequestKind, SmtpRequest, SmtpResponse};
use crate::telemetry::Metrics;

/// Most clients a limiter keeps state for (about 64 bytes each).
pub const MAX_TRACKED_CLIENTS: usize = 100_000;

/// Checks between two sweeps of the keys whose state is fresh again.
pub const HOUSEKEEPING_EVERY: u64 = 1024;

/// A client as the limits count it: an IPv4 address, or the /64 network
/// of an IPv6 address (a host usually has a whole /64, so counting single
/// IPv6 addresses would let it rotate through them). IPv4-mapped IPv6
/// addresses count as the IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(u32),
    V6(u64),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => Self::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// What a limiter says about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Within the limit; `remaining` more are allowed right now.
    Allowed { remaining: u32 },
    /// Over the limit; the next one is allowed after `retry_after`.
    Limited { retry_after: Duration },
    /// Not counted: the limiter tracks as many clients as it may (see the
    /// module's notes), so this one passes.
    Untracked,
}

type Limiter<C> =
    RateLimiter<ClientKey, DashMapStateStore<ClientKey>, C, StateInformationMiddleware>;

/// N events per minute per client, in bounded memory.
#[derive(Debug)]
pub struct IpRateLimiter<C: Clock = MonotonicClock> {
    limiter: Limiter<C>,
    quota: Quota,
    clock: C,
    checks: AtomicU64,
    max_clients: usize,
}

impl IpRateLimiter {
    /// `per_minute` events per client and minute; `None` for 0 (no limit).
    pub fn per_minute(per_minute: u32) -> Option<Self> {
        let per_minute = NonZeroU32::new(per_minute)?;
        Some(Self::with_clock(
            per_minute,
            MonotonicClock,
            MAX_TRACKED_CLIENTS,
        ))
    }
}

impl<C: Clock + Clone> IpRateLimiter<C> {
    /// A limiter on `clock` (tests pass a fake one) keeping state for at
    /// most `max_clients` clients.
    pub fn with_clock(per_minute: NonZeroU32, clock: C, max_clients: usize) -> Self {
        let quota = Quota::per_minute(per_minute);
        let limiter: Limiter<C> =
            RateLimiter::new(quota, DashMapStateStore::default(), clock.clone());
        Self {
            limiter,
            quota,
            clock,
            checks: AtomicU64::new(0),
            max_clients,
        }
    }
}

impl<C: Clock> IpRateLimiter<C> {
    /// Counts one event of `ip` and says whether it is within the limit.
    /// An event over the limit is not counted.
    pub fn check(&self, ip: IpAddr) -> Decision {
        if !self.has_room() {
            return Decision::Untracked;
        }
        match self.limiter.check_key(&ClientKey::from(ip)) {
            Ok(state) => Decision::Allowed {
                remaining: state.remaining_burst_capacity(),
            },
            Err(not_until) => Decision::Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        }
    }

    /// The time after which a client that used its last event is allowed
    /// one more: 60 s / N.
    pub fn refill_interval(&self) -> Duration {
        self.quota.replenish_interval()
    }

    /// The clock the limiter runs on.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }

    /// Sweeps fresh keys now and then, and whenever the map is full; false
    /// when it is full of clients seen within the minute.
    fn has_room(&self) -> bool {
        let checks = self.checks.fetch_add(1, Ordering::Relaxed);
        if checks % HOUSEKEEPING_EVERY == 0 {
            self.limiter.retain_recent();
        }
        if self.limiter.len() < self.max_clients {
            return true;
        }
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let room = self.limiter.len() < self.max_clients;
        if !room {
            tracing::warn!(
                tracked = self.limiter.len(),
                "rate limit: too many clients to track, letting this one through"
            );
        }
        room
    }
}

/// Answers `MAIL` with `451 4.7.1` for a client over
/// `MAIL_LASER_RATE_LIMIT_MESSAGES`; passes everything else on.
///
/// Counted at `MAIL`, not at the end of data: a refused sender has sent
/// no message octets yet, and retries the whole message later anyway
/// (Postfix's `smtpd_client_message_rate_limit` counts there too). Every
/// transaction started counts, whether or not it ends in a delivery.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    messages: Option<Arc<IpRateLimiter>>,
    metrics: Metrics,
}

impl RateLimitLayer {
    /// `messages_per_minute` transactions per client IP and minute; 0 = no limit.
    pub fn new(messages_per_minute: u32, metrics: Metrics) -> Self {
        Self {
            messages: IpRateLimiter::per_minute(messages_per_minute).map(Arc::new),
            metrics,
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            messages: self.messages.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

// === impl RateLimit ===

#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    messages: Option<Arc<IpRateLimiter>>,
    metrics: Metrics,
}

impl<S> Service<SmtpRequest> for RateLimit<S>
where
    S: Service<SmtpRequest, Response = SmtpResponse>,
{
    type Response = SmtpResponse;
    type Error = S::Error;
    type Future = Either<Ready<Result<SmtpResponse, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: SmtpRequest) -> Self::Future {
        if let (RequestKind::Mail { .. }, Some(limiter)) = (&request.kind, &self.messages) {
            let ip = request.session.peer.ip();
            if let Decision::Limited { retry_after } = limiter.check(ip) {
                // DEBUG: a client ignoring its 451s must not flood the log;
                // `maillaser_rate_limited_total` counts them.
                tracing::debug!(
                    %ip,
                    retry_after_ms = retry_after.as_millis() as i64,
                    "message rate limit: MAIL refused"
                );
                self.metrics.rate_limited("messages");
                let response = SmtpResponse::new(Outcome::Deferred, Reply::rate_limited());
                return Either::Left(ready(Ok(response)));
            }
        }
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limiter(
        per_minute: u32,
        max_clients: usize,
    ) -> (IpRateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let per_minute = NonZeroU32::new(per_minute).unwrap();
        (
            IpRateLimiter::with_clock(per_minute, clock.clone(), max_clients),
            clock,
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_burst_of_n_then_one_per_refill_interval() {
        let (limiter, clock) = limiter(3, 100);
        let client = ip("192.0.2.1");
        for remaining in [2, 1, 0] {
            assert_eq!(limiter.check(client), Decision::Allowed { remaining });
        }
        assert_eq!(
            limiter.check(client),
            Decision::Limited {
                retry_after: Duration::from_secs(20)
            }
        );
        // Another client has its own budget.
        assert!(matches!(
            limiter.check(ip("192.0.2.2")),
            Decision::Allowed { .. }
        ));
        clock.advance(Duration::from_secs(20));
        assert_eq!(limiter.check(client), Decision::Allowed { remaining: 0 });
        assert!(matches!(limiter.check(client), Decision::Limited { .. }));
        assert_eq!(limiter.refill_interval(), Duration::from_secs(20));
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            ClientKey::from(ip("2001:db8:1:2::1")),
            ClientKey::from(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            ClientKey::from(ip("2001:db8:1:2::1")),
            ClientKey::from(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientKey::from(ip("::ffff:192.0.2.7")),
            ClientKey::from(ip("192.0.2.7"))
        );
        let (limiter, _) = limiter(1, 100);
        assert!(matches!(
            limiter.check(ip("2001:db8::1")),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            limiter.check(ip("2001:db8::2")),
            Decision::Limited { .. }
        ));
    }

    /// Hostile clients rotating addresses: the state stays within its cap,
    /// keys fresh again are swept, and a full map lets clients through
    /// rather than growing.
    #[test]
    fn memory_stays_bounded_when_clients_rotate_addresses() {
        let (limiter, clock) = limiter(2, 1000);
        for n in 0..5000u32 {
            let client = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            let _ = limiter.check(client);
            assert!(limiter.tracked() <= 1000, "{} tracked", limiter.tracked());
        }
        // A full map: clients pass unlimited.
        let busy = ip("192.0.2.9");
        for _ in 0..10 {
            assert_eq!(limiter.check(busy), Decision::Untracked);
        }
        // Once their state is fresh again (a minute for 2 a minute), every
        // key goes at the next sweep and the limit is back.
        clock.advance(Duration::from_secs(60));
        for _ in 0..HOUSEKEEPING_EVERY {
            let _ = limiter.check(busy);
        }
        assert!(limiter.tracked() <= 1, "{} tracked", limiter.tracked());
        clock.advance(Duration::from_secs(60));
        let _ = limiter.check(busy);
        let _ = limiter.check(busy);
        assert!(matches!(limiter.check(busy), Decision::Limited { .. }));
    }
}
