//! The retry policy: which failures are retried, and when. The machinery is
//! `tower::retry`; only the decisions live here.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;
use tower::retry::Policy;

use super::{WebhookError, WebhookRequest};
use crate::telemetry::Metrics;

/// Exponential backoff with full jitter: the n-th retry waits a uniformly
/// random time in `[0, min(max, base · 2ⁿ⁻¹)]`, so a recovering webhook is
/// not hit by every waiting delivery at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The longest wait before retry number `retry` (1-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A random wait before retry number `retry`.
    pub fn delay(&self, retry: u32) -> Duration {
        self.ceiling(retry).mul_f64(fastrand::f64())
    }
}

/// Retries temporary failures up to `max_retries` times, as long as another
/// attempt still fits in the delivery budget. A rejection or the breaker's
/// refusal is final. A `Retry-After` lengthens the wait ([`retry_wait`]); when it
/// does not fit in the budget, the delivery stops at once.
///
/// ```
/// use std::time::Duration;
/// use mail_laser::webhook::{Backoff, RetryPolicy};
///
/// // Three retries, each attempt up to 30 s, all within four minutes.
/// let policy = RetryPolicy::new(3, Backoff::default(), Duration::from_secs(240), Duration::from_secs(30));
/// # let _ = policy;
/// ```
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    max_retries: u32,
    backoff: Backoff,
    budget: Duration,
    attempt_timeout: Duration,
    /// When this delivery's budget ends; set when the first attempt starts.
    deadline: Option<Instant>,
    metrics: Option<Metrics>,
}

impl RetryPolicy {
    pub fn new(
        max_retries: u32,
        backoff: Backoff,
        budget: Duration,
        attempt_timeout: Duration,
    ) -> Self {
        Self {
            max_retries,
            backoff,
            budget,
            attempt_timeout,
            deadline: None,
            metrics: None,
        }
    }

    /// Counts retries in `maillaser_webhook_retries_total`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

/// The wait before the next attempt after `error`: the backoff's `delay`,
/// or the consumer's `Retry-After` when that is longer (it says "not
/// before"; the jitter still spreads deliveries whose backoff is longer).
pub fn retry_wait(delay: Duration, error: &WebhookError) -> Duration {
    error.retry_after().map_or(delay, |asked| asked.max(delay))
}

impl Policy<WebhookRequest, (), WebhookError> for RetryPolicy {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(
        &mut self,
        request: &mut WebhookRequest,
        result: &mut Result<(), WebhookError>,
    ) -> Option<Self::Future> {
        let error = result.as_ref().err()?;
        if !error.is_temporary() || matches!(error, WebhookError::BreakerOpen) {
            return None;
        }
        let retry = request.attempt;
        if retry > self.max_retries {
            return None;
        }
        let delay = retry_wait(self.backoff.delay(retry), error);
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + self.budget);
        if Instant::now() + delay + self.attempt_timeout > deadline {
            tracing::debug!(
                attempt = retry,
                ?delay,
                retry_after = ?error.retry_after(),
                "delivery budget spent, not retrying"
            );
            return None;
        }
        tracing::debug!(attempt = retry, %error, ?delay, "retrying webhook delivery");
        request.attempt += 1;
        if let Some(metrics) = &self.metrics {
            metrics.webhook_retry();
        }
        Some(Box::pin(tokio::time::sleep(delay)))
    }

    fn clone_request(&mut self, request: &WebhookRequest) -> Option<WebhookRequest> {
        self.deadline
            .get_or_insert_with(|| Instant::now() + self.budget);
        Some(request.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::test_support::{mock_webhook, request};
    use tower::retry::RetryLayer;
    use tower::{Layer, ServiceExt};

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy::new(
            max_retries,
            Backoff::default(),
            Duration::from_secs(240),
            Duration::from_secs(30),
        )
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let ceilings: Vec<_> = (1..=6).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        for n in 1..=6 {
            assert!(backoff.delay(n) <= backoff.ceiling(n));
        }
        assert_eq!(backoff.ceiling(u32::MAX), backoff.max);
    }

    /// Drives a retrying mock: answers each attempt from `answers` and
    /// returns the final result (the error as its text) and the attempt
    /// numbers seen.
    async fn run(
        policy: RetryPolicy,
        answers: Vec<Result<(), WebhookError>>,
    ) -> (Result<(), String>, Vec<u32>) {
        let (service, mut handle) = mock_webhook();
        let service = RetryLayer::new(policy).layer(service);
        let call = tokio::spawn(service.oneshot(request()));
        let mut attempts = Vec::new();
        for answer in answers {
            let Some((request, respond)) = handle.next_request().await else {
                break;
            };
            attempts.push(request.attempt);
            match answer {
                Ok(()) => respond.send_response(()),
                Err(error) => respond.send_error(error),
            }
        }
        (call.await.unwrap().map_err(|e| e.to_string()), attempts)
    }

    #[tokio::test(start_paused = true)]
    async fn retries_temporary_failures_until_success() {
        let (result, attempts) = run(
            policy(3),
            vec![
                Err(WebhookError::status(500)),
                Err(WebhookError::Timeout),
                Ok(()),
            ],
        )
        .await;
        assert_eq!(result, Ok(()));
        assert_eq!(attempts, [1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_retries() {
        let answers = (0..10).map(|_| Err(WebhookError::status(503))).collect();
        let (result, attempts) = run(policy(2), answers).await;
        assert_eq!(result, Err(WebhookError::status(503).to_string()));
        assert_eq!(attempts, [1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn rejections_and_open_breaker_are_final() {
        let rejected = || WebhookError::Rejected {
            status: 422,
            reason: None,
        };
        let (result, attempts) = run(policy(3), vec![Err(rejected())]).await;
        assert_eq!((result, attempts), (Err(rejected().to_string()), vec![1]));
        let (result, attempts) = run(policy(3), vec![Err(WebhookError::BreakerOpen)]).await;
        assert_eq!(
            (result, attempts),
            (Err(WebhookError::BreakerOpen.to_string()), vec![1])
        );
    }

    #[test]
    fn retry_after_is_a_lower_bound_on_the_wait() {
        let asked = |secs| WebhookError::Status {
            status: 503,
            retry_after: Some(Duration::from_secs(secs)),
        };
        let second = Duration::from_secs(1);
        assert_eq!(retry_wait(second, &asked(5)), Duration::from_secs(5));
        assert_eq!(
            retry_wait(second, &asked(0)),
            second,
            "the backoff when longer"
        );
        assert_eq!(retry_wait(second, &WebhookError::status(503)), second);
        assert_eq!(retry_wait(second, &WebhookError::Timeout), second);
    }

    /// The retry comes once the `Retry-After` is over, not before.
    #[tokio::test(start_paused = true)]
    async fn waits_for_retry_after() {
        let (service, mut handle) = mock_webhook();
        let service = RetryLayer::new(policy(3)).layer(service);
        let call = tokio::spawn(service.oneshot(request()));
        let (_, respond) = handle.next_request().await.unwrap();
        let first = Instant::now();
        respond.send_error(WebhookError::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(20)),
        });
        let (second, respond) = handle.next_request().await.unwrap();
        assert_eq!(second.attempt, 2);
        assert!(
            first.elapsed() >= Duration::from_secs(20),
            "{:?}",
            first.elapsed()
        );
        respond.send_response(());
        assert!(call.await.unwrap().is_ok());
    }

    /// A `Retry-After` that leaves no room for an attempt in the budget
    /// ends the delivery at once: no wait, no retry.
    #[tokio::test(start_paused = true)]
    async fn a_retry_after_beyond_the_budget_stops_retrying() {
        let (result, attempts) = run(
            policy(3),
            vec![
                Err(WebhookError::Status {
                    status: 503,
                    retry_after: Some(Duration::from_secs(211)),
                }),
                Ok(()),
            ],
        )
        .await;
        assert_eq!(attempts, [1]);
        assert_eq!(
            result,
            Err("webhook answered 503 (Retry-After 211 s)".to_owned())
        );
        // 210 s and a 30 s attempt fit in 240 s exactly.
        let (result, attempts) = run(
            policy(3),
            vec![
                Err(WebhookError::Status {
                    status: 503,
                    retry_after: Some(Duration::from_secs(210)),
                }),
                Ok(()),
            ],
        )
        .await;
        assert_eq!((result, attempts), (Ok(()), vec![1, 2]));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_the_budget_is_spent() {
        // Each attempt may take 30 s; a 40 s budget leaves room for one retry.
        let policy = RetryPolicy::new(
            5,
            Backoff {
                base: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            Duration::from_secs(40),
            Duration::from_secs(30),
        );
        let (service, mut handle) = mock_webhook();
        let service = RetryLayer::new(policy).layer(service);
        let call = tokio::spawn(service.oneshot(request()));
        let (_, respond) = handle.next_request().await.unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        respond.send_error(WebhookError::Timeout);
        let (second, respond) = handle.next_request().await.unwrap();
        assert_eq!(second.attempt, 2);
        tokio::time::advance(Duration::from_secs(30)).await;
        respond.send_error(WebhookError::Timeout);
        assert!(matches!(call.await.unwrap(), Err(WebhookError::Timeout)));
    }
}
