//! The circuit breaker: after `threshold` consecutive failed deliveries the
//! webhook is given a rest. While open, deliveries fail at once (`451`, the
//! sender retries later) without a request; after `reset` one probe is let
//! through, and its outcome closes or re-opens the breaker.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{WebhookError, WebhookRequest};
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failed deliveries that open the breaker (≥ 1).
    pub threshold: u32,
    /// How long it stays open before a probe.
    pub reset: Duration,
}

/// What the breaker currently lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    /// `reset` has passed; the next (or current) delivery is the probe.
    HalfOpen,
}

impl BreakerState {
    /// The value of `maillaser_circuit_breaker_state`.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Shared breaker state; clones observe and drive the same breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: Arc<Mutex<State>>,
    metrics: Metrics,
}

/// Whether a delivery may go ahead, and as what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Pass,
    Probe,
    Refuse,
}

impl Breaker {
    pub fn new(config: BreakerConfig, metrics: Metrics) -> Self {
        Self {
            config,
            state: Arc::new(Mutex::new(State::Closed { failures: 0 })),
            metrics,
        }
    }

    /// Exposes the state as `maillaser_circuit_breaker_state`, read at
    /// collection time (so an elapsed reset shows as half-open).
    pub fn observe_state(&self, metrics: &Metrics) {
        // Only the state, not the breaker: the meter must not own itself.
        let state = Arc::downgrade(&self.state);
        let labels = metrics.route_labels();
        let _gauge = metrics
            .meter()
            .i64_observable_gauge("maillaser.circuit_breaker.state")
            .with_description("Circuit breaker: 0 closed, 1 half-open, 2 open")
            .with_callback(move |observer| {
                if let Some(state) = state.upgrade() {
                    observer.observe(public_state(&state).gauge(), &labels);
                }
            })
            .build();
    }

    pub fn state(&self) -> BreakerState {
        public_state(&self.state)
    }

    /// How long the breaker stays open before it lets a probe through;
    /// `None` unless it is open. A refused delivery waits at least this
    /// long before it is tried again (the spool), instead of being refused
    /// over and over meanwhile.
    pub fn open_for(&self) -> Option<Duration> {
        match &*self.lock() {
            State::Open { until } => {
                Some(until.saturating_duration_since(Instant::now())).filter(|left| !left.is_zero())
            }
            State::Closed { .. } | State::HalfOpen { .. } => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(&self) -> Admission {
        let mut state = self.lock();
        match &*state {
            State::Closed { .. } => Admission::Pass,
            State::Open { until } if Instant::now() < *until => Admission::Refuse,
            State::Open { .. } => {
                *state = State::HalfOpen { probing: true };
                self.metrics.breaker_transition("half_open");
                Admission::Probe
            }
            State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                Admission::Probe
            }
            State::HalfOpen { probing: true } => Admission::Refuse,
        }
    }

    /// Records a finished delivery. A success (or a rejection or a `429`:
    /// the webhook is up, it just refused or asked to slow down) closes; any
    /// other temporary failure counts.
    fn record(&self, admission: Admission, healthy: bool) {
        let mut state = self.lock();
        let open = State::Open {
            until: Instant::now() + self.config.reset,
        };
        match (&*state, admission, healthy) {
            (_, Admission::Probe, true) => {
                tracing::info!("webhook probe succeeded, circuit breaker closed");
                self.metrics.breaker_transition("closed");
                *state = State::Closed { failures: 0 };
            }
            (_, Admission::Probe, false) => {
                tracing::warn!("webhook probe failed, circuit breaker stays open");
                self.metrics.breaker_transition("open");
                *state = open;
            }
            (State::Closed { .. }, _, true) => *state = State::Closed { failures: 0 },
            (State::Closed { failures }, _, false) => {
                let failures = failures + 1;
                if failures >= self.config.threshold {
                    tracing::warn!(failures, "circuit breaker opened");
                    self.metrics.breaker_transition("open");
                    *state = open;
                } else {
                    *state = State::Closed { failures };
                }
            }
            // A delivery that started before the breaker opened: the
            // probe decides, not stragglers.
            _ => {}
        }
    }

    /// A probe that never finished (its caller went away) must not leave
    /// the breaker half-open forever.
    fn abandon_probe(&self) {
        let mut state = self.lock();
        if let State::HalfOpen { probing: true } = *state {
            *state = State::HalfOpen { probing: false };
        }
    }
}

fn public_state(state: &Mutex<State>) -> BreakerState {
    match &*state.lock().unwrap_or_else(PoisonError::into_inner) {
        State::Closed { .. } => BreakerState::Closed,
        State::Open { until } if Instant::now() < *until => BreakerState::Open,
        State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
    }
}

/// Puts a [`Breaker`] in front of a delivery service.
#[derive(Debug, Clone)]
pub struct BreakerLayer {
    breaker: Breaker,
}

impl BreakerLayer {
    pub fn new(breaker: Breaker) -> Self {
        Self { breaker }
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = BreakerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

// === impl BreakerService ===

#[derive(Debug, Clone)]
pub struct BreakerService<S> {
    inner: S,
    breaker: Breaker,
}

impl<S> Service<WebhookRequest> for BreakerService<S>
where
    S: Service<WebhookRequest, Response = (), Error = WebhookError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = WebhookError;
    type Future = BoxFuture<'static, Result<(), WebhookError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: WebhookRequest) -> Self::Future {
        let admission = self.breaker.admit();
        if admission == Admission::Refuse {
            return Box::pin(std::future::ready(Err(WebhookError::BreakerOpen)));
        }
        let future = self.inner.call(request);
        let guard = ProbeGuard {
            breaker: self.breaker.clone(),
            admission,
            recorded: false,
        };
        Box::pin(async move {
            let mut guard = guard;
            let result = future.await;
            // A rejection or a `429` proves the consumer is up: only
            // other temporary failures count towards opening.
            let healthy = result
                .as_ref()
                .map_or_else(|e| !e.is_temporary() || e.is_throttled(), |()| true);
            guard.breaker.record(admission, healthy);
            guard.recorded = true;
            result
        })
    }
}

struct ProbeGuard {
    breaker: Breaker,
    admission: Admission,
    recorded: bool,
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if !self.recorded && self.admission == Admission::Probe {
            self.breaker.abandon_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::test_support::{MockWebhook, mock_webhook, request};
    use tower::ServiceExt;
    use tower_test::mock;

    type Handle = mock::Handle<WebhookRequest, ()>;

    fn service(threshold: u32) -> (BreakerService<MockWebhook>, Handle, Breaker) {
        let (inner, handle) = mock_webhook();
        let breaker = Breaker::new(
            BreakerConfig {
                threshold,
                reset: Duration::from_secs(60),
            },
            Metrics::disabled(),
        );
        (
            BreakerLayer::new(breaker.clone()).layer(inner),
            handle,
            breaker,
        )
    }

    /// Sends one delivery; `answer` is what the webhook says if asked.
    /// Returns the result (the error as its text) and whether the webhook
    /// was asked at all.
    async fn deliver(
        service: &BreakerService<MockWebhook>,
        handle: &mut Handle,
        answer: Result<(), WebhookError>,
    ) -> (Result<(), String>, bool) {
        let mut call = tokio::spawn(service.clone().oneshot(request()));
        tokio::select! {
            next = handle.next_request() => {
                let (_, respond) = next.expect("mock alive");
                match answer {
                    Ok(()) => respond.send_response(()),
                    Err(error) => respond.send_error(error),
                }
                (call.await.unwrap().map_err(|e| e.to_string()), true)
            }
            result = &mut call => (result.unwrap().map_err(|e| e.to_string()), false),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_then_one_probe_closes_it() {
        let (service, mut handle, breaker) = service(3);
        for _ in 0..2 {
            let failed = deliver(&service, &mut handle, Err(WebhookError::status(500))).await;
            assert_eq!(failed, (Err(WebhookError::status(500).to_string()), true));
            assert_eq!(breaker.state(), BreakerState::Closed);
        }
        // A success in between resets the count.
        assert_eq!(deliver(&service, &mut handle, Ok(())).await, (Ok(()), true));
        for _ in 0..3 {
            let failed = deliver(&service, &mut handle, Err(WebhookError::Timeout)).await;
            assert_eq!(failed, (Err(WebhookError::Timeout.to_string()), true));
        }
        assert_eq!(breaker.state(), BreakerState::Open);

        // Open: refused without a request.
        assert_eq!(
            deliver(&service, &mut handle, Ok(())).await,
            (Err(WebhookError::BreakerOpen.to_string()), false)
        );
        assert_eq!(breaker.open_for(), Some(Duration::from_secs(60)));
        tokio::time::advance(Duration::from_secs(45)).await;
        assert_eq!(breaker.open_for(), Some(Duration::from_secs(15)));

        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(breaker.open_for(), None, "time for a probe");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        // Exactly one probe: a second delivery during the probe is refused.
        let probe = tokio::spawn(service.clone().oneshot(request()));
        let (_, respond) = handle.next_request().await.unwrap();
        assert_eq!(
            deliver(&service, &mut handle, Ok(())).await,
            (Err(WebhookError::BreakerOpen.to_string()), false)
        );
        respond.send_response(());
        assert!(probe.await.unwrap().is_ok());
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_and_rejections_count_as_healthy() {
        let (service, mut handle, breaker) = service(1);
        let failed = deliver(&service, &mut handle, Err(WebhookError::status(503))).await;
        assert_eq!(failed, (Err(WebhookError::status(503).to_string()), true));
        assert_eq!(breaker.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(61)).await;
        let probe = deliver(&service, &mut handle, Err(WebhookError::status(503))).await;
        assert_eq!(probe, (Err(WebhookError::status(503).to_string()), true));
        assert_eq!(breaker.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(61)).await;
        let rejected = || WebhookError::Rejected {
            status: 422,
            reason: None,
        };
        assert_eq!(
            deliver(&service, &mut handle, Err(rejected())).await,
            (Err(rejected().to_string()), true)
        );
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    /// `429` (with or without `Retry-After`) is the consumer pacing us: it
    /// never opens the breaker, a `503` with `Retry-After` still counts.
    #[tokio::test(start_paused = true)]
    async fn throttling_does_not_open_the_breaker() {
        let (service, mut handle, breaker) = service(2);
        let throttled = || WebhookError::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(30)),
        };
        for _ in 0..5 {
            let _ = deliver(&service, &mut handle, Err(throttled())).await;
            assert_eq!(breaker.state(), BreakerState::Closed);
        }
        // It resets the count like a success: one failure after it is one.
        let _ = deliver(&service, &mut handle, Err(WebhookError::status(500))).await;
        let _ = deliver(&service, &mut handle, Err(throttled())).await;
        let _ = deliver(&service, &mut handle, Err(WebhookError::status(500))).await;
        assert_eq!(breaker.state(), BreakerState::Closed);
        let unavailable = || WebhookError::Status {
            status: 503,
            retry_after: Some(Duration::from_secs(30)),
        };
        let _ = deliver(&service, &mut handle, Err(unavailable())).await;
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_the_next_delivery_probe() {
        let (service, mut handle, breaker) = service(1);
        let failed = deliver(&service, &mut handle, Err(WebhookError::status(500))).await;
        assert_eq!(failed, (Err(WebhookError::status(500).to_string()), true));
        tokio::time::advance(Duration::from_secs(60)).await;
        let probe = tokio::spawn(service.clone().oneshot(request()));
        let _pending = handle.next_request().await.unwrap();
        probe.abort();
        let _ = probe.await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(deliver(&service, &mut handle, Ok(())).await, (Ok(()), true));
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
