//! The one set of instruments, exposed on `/metrics` (Prometheus) and via
//! OTLP when an endpoint is set. Names follow Prometheus conventions once
//! exported: `maillaser.messages` becomes `maillaser_messages_total`,
//! a histogram in `s` gets `_seconds`, one in `By` gets `_bytes`.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, UpDownCounter};

/// Message size buckets: 1 KiB … 64 MiB.
const SIZE_BUCKETS: &[f64] = &[
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];
/// Webhook latency buckets: 1 ms … 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The label values each labelled counter is exported with from the start
/// (at 0), so a dashboard panel shows 0 rather than "No data" before the
/// first event. Callers pass one of these.
const MESSAGE_OUTCOMES: &[&str] = &["delivered", "spooled", "rejected", "deferred"];
const BREAKER_STATES: &[&str] = &["open", "half_open", "closed"];
const REFUSAL_REASONS: &[&str] = &["global_limit", "per_ip_limit", "rate_limit"];
const AUTH_RESULTS: &[&str] = &["success", "failure", "throttled", "busy"];
const RATE_LIMITS: &[&str] = &["connections", "messages", "auth"];
const RELOAD_RESULTS: &[&str] = &["success", "failure"];
const CONFIG_RELOAD_RESULTS: &[&str] = &["success", "error"];
const DEAD_LETTER_REASONS: &[&str] = &["rejected", "expired", "unreadable"];
const DMARC_RESULTS: &[&str] = &["pass", "fail", "none", "temperror", "permerror"];
/// The statuses by which a consumer rejects a message (`docs/webhook.md`).
const REJECTION_STATUSES: &[&str] = &["400", "406", "410", "413", "415", "422"];

/// The instruments. Cheap to clone (each is a handle).
#[derive(Debug, Clone)]
pub struct Metrics {
    meter: Meter,
    sessions_active: UpDownCounter<i64>,
    sessions: Counter<u64>,
    commands: Counter<u64>,
    messages: Counter<u64>,
    message_size: Histogram<u64>,
    webhook_duration: Histogram<f64>,
    webhook_retries: Counter<u64>,
    webhook_rejections: Counter<u64>,
    breaker_transitions: Counter<u64>,
    refused: Counter<u64>,
    dead_letters: Counter<u64>,
    auth_results: Counter<u64>,
    auth: Counter<u64>,
    rate_limited: Counter<u64>,
    tls_reloads: Counter<u64>,
    config_reloads: Counter<u64>,
    /// `route="<name>"` on the delivery series of one route's webhook
    /// stack (`MAIL_LASER_ROUTES`); unset for the implicit route, whose
    /// series stay as they were.
    route: Option<KeyValue>,
}

impl Metrics {
    pub fn new(meter: Meter) -> Self {
        let metrics = Self::build(meter);
        metrics.export_known_series();
        metrics
    }

    /// Every known label set at 0.
    fn export_known_series(&self) {
        let zero = |counter: &Counter<u64>, key: &'static str, values: &[&'static str]| {
            for value in values {
                counter.add(0, &[KeyValue::new(key, *value)]);
            }
        };
        zero(&self.messages, "outcome", MESSAGE_OUTCOMES);
        zero(&self.breaker_transitions, "to", BREAKER_STATES);
        zero(&self.refused, "reason", REFUSAL_REASONS);
        zero(&self.dead_letters, "reason", DEAD_LETTER_REASONS);
        zero(&self.auth_results, "dmarc", DMARC_RESULTS);
        zero(&self.auth, "result", AUTH_RESULTS);
        zero(&self.rate_limited, "limit", RATE_LIMITS);
        zero(&self.tls_reloads, "result", RELOAD_RESULTS);
        zero(&self.config_reloads, "result", CONFIG_RELOAD_RESULTS);
        for tls in [false, true] {
            self.sessions.add(0, &[KeyValue::new("tls", tls)]);
        }
        self.webhook_retries.add(0, &[]);
        self.export_rejection_series();
    }

    /// `maillaser_webhook_rejections_total` at 0 for each status, with the
    /// route's label if any: an alert on a first `410` needs the 0 before it.
    fn export_rejection_series(&self) {
        for status in REJECTION_STATUSES {
            self.webhook_rejections
                .add(0, &self.routed(&[KeyValue::new("status", *status)]));
        }
    }

    fn build(meter: Meter) -> Self {
        Self {
            sessions_active: meter
                .i64_up_down_counter("maillaser.sessions.active")
                .with_description("SMTP sessions open now")
                .build(),
            sessions: meter
                .u64_counter("maillaser.sessions")
                .with_description("SMTP sessions ended, by whether they used TLS")
                .build(),
            commands: meter
                .u64_counter("maillaser.smtp.commands")
                .with_description("SMTP commands answered, by verb and reply class")
                .build(),
            messages: meter
                .u64_counter("maillaser.messages")
                .with_description("Messages by delivery outcome")
                .build(),
            message_size: meter
                .u64_histogram("maillaser.message.size")
                .with_unit("By")
                .with_description("Size of received messages")
                .with_boundaries(SIZE_BUCKETS.to_vec())
                .build(),
            webhook_duration: meter
                .f64_histogram("maillaser.webhook.request.duration")
                .with_unit("s")
                .with_description("Duration of webhook attempts, by status class")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            webhook_retries: meter
                .u64_counter("maillaser.webhook.retries")
                .with_description("Webhook attempts that were retries")
                .build(),
            webhook_rejections: meter
                .u64_counter("maillaser.webhook.rejections")
                .with_description("Webhook answers that rejected a message for good, by status")
                .build(),
            breaker_transitions: meter
                .u64_counter("maillaser.circuit_breaker.transitions")
                .with_description("Circuit breaker state changes, by new state")
                .build(),
            refused: meter
                .u64_counter("maillaser.connections.refused")
                .with_description("Connections refused by a limit")
                .build(),
            dead_letters: meter
                .u64_counter("maillaser.spool.dead_letters")
                .with_description("Spooled messages given up on, by reason")
                .build(),
            auth_results: meter
                .u64_counter("maillaser.auth.results")
                .with_description("Messages authenticated, by DMARC result")
                .build(),
            auth: meter
                .u64_counter("maillaser.auth")
                .with_description("SMTP AUTH attempts, by result")
                .build(),
            rate_limited: meter
                .u64_counter("maillaser.rate_limited")
                .with_description(
                    "Connections, MAIL commands and AUTH attempts refused by a per-IP rate limit",
                )
                .build(),
            tls_reloads: meter
                .u64_counter("maillaser.tls.reload")
                .with_description("Reloads of the TLS certificate files, by result")
                .build(),
            config_reloads: meter
                .u64_counter("maillaser.config.reload")
                .with_description("Reloads of the routes file, by result")
                .build(),
            route: None,
            meter,
        }
    }

    /// Instruments that record nothing (no provider): for tools and tests
    /// that don't look at metrics.
    pub fn disabled() -> Self {
        Self::new(opentelemetry_sdk::metrics::SdkMeterProvider::default().meter("mail-laser"))
    }

    /// The same instruments, labelling what one route's webhook stack
    /// records with `route` (its rejection series start at 0).
    #[must_use]
    pub fn for_route(&self, route: &str) -> Self {
        let routed = Self {
            route: Some(KeyValue::new("route", route.to_owned())),
            ..self.clone()
        };
        routed.export_rejection_series();
        routed
    }

    /// The route's name, `None` for the implicit route.
    pub fn route(&self) -> Option<String> {
        self.route.as_ref().map(|route| route.value.to_string())
    }

    /// `labels` plus the route's, if any.
    fn routed(&self, labels: &[KeyValue]) -> Vec<KeyValue> {
        labels.iter().cloned().chain(self.route.clone()).collect()
    }

    /// The labels an observable gauge of a route's stack carries.
    pub fn route_labels(&self) -> Vec<KeyValue> {
        self.routed(&[])
    }

    /// For instruments registered by their owner (observable gauges).
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    pub fn session_opened(&self) {
        self.sessions_active.add(1, &[]);
    }

    pub fn session_closed(&self, tls: bool) {
        self.sessions_active.add(-1, &[]);
        self.sessions.add(1, &[KeyValue::new("tls", tls)]);
    }

    /// One SMTP command answered with a reply of `code`.
    pub fn command(&self, verb: &'static str, code: u16) {
        self.commands.add(
            1,
            &[
                KeyValue::new("verb", verb),
                KeyValue::new("reply_class", status_class(code)),
            ],
        );
    }

    /// One message ended with `outcome` (`delivered`, `spooled`,
    /// `rejected`, `deferred`).
    pub fn message(&self, outcome: &'static str, size: usize) {
        self.messages.add(1, &[KeyValue::new("outcome", outcome)]);
        self.message_size.record(size as u64, &[]);
    }

    /// One webhook attempt; `status` is `None` for a timeout or transport error.
    pub fn webhook_attempt(&self, status: Option<u16>, seconds: f64) {
        let class = status.map_or("error", status_class);
        self.webhook_duration.record(
            seconds,
            &self.routed(&[KeyValue::new("status_class", class)]),
        );
    }

    /// One webhook answer that rejected a message (`400`, `406`, `410`,
    /// `413`, `415`, `422`).
    pub fn webhook_rejection(&self, status: u16) {
        self.webhook_rejections.add(
            1,
            &self.routed(&[KeyValue::new("status", status.to_string())]),
        );
    }

    pub fn webhook_retry(&self) {
        self.webhook_retries.add(1, &self.routed(&[]));
    }

    pub fn breaker_transition(&self, to: &'static str) {
        self.breaker_transitions
            .add(1, &self.routed(&[KeyValue::new("to", to)]));
    }

    /// A spooled message moved to the dead-letter folder (`rejected`,
    /// `expired` or `unreadable`).
    pub fn spool_dead_letter(&self, reason: &'static str) {
        self.dead_letters.add(1, &[KeyValue::new("reason", reason)]);
    }

    /// One message authenticated (`MAIL_LASER_DMARC_MODE` not `off`), by
    /// its DMARC result (`pass`, `fail`, `none`, `temperror`, `permerror`).
    pub fn auth_result(&self, dmarc: &'static str) {
        self.auth_results.add(1, &[KeyValue::new("dmarc", dmarc)]);
    }

    pub fn connection_refused(&self, reason: &'static str) {
        self.refused.add(1, &[KeyValue::new("reason", reason)]);
    }

    /// One `AUTH` answered: `success`, `failure`, `throttled` (refused
    /// unverified after too many failures) or `busy` (no verifier free).
    pub fn auth(&self, result: &'static str) {
        self.auth.add(1, &[KeyValue::new("result", result)]);
    }

    /// One event over a per-IP rate limit: `connections`, `messages`, `auth`.
    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited.add(1, &[KeyValue::new("limit", limit)]);
    }

    /// One reload of the certificate files: `success` or `failure`.
    pub fn tls_reload(&self, result: &'static str) {
        self.tls_reloads.add(1, &[KeyValue::new("result", result)]);
    }

    /// One reload of the routes file: `success` or `error` (the routes in
    /// force were kept).
    pub fn config_reload(&self, result: &'static str) {
        self.config_reloads
            .add(1, &[KeyValue::new("result", result)]);
    }
}

/// `2xx`, `4xx`…: the class of an SMTP reply code or an HTTP status.
fn status_class(code: u16) -> &'static str {
    match code / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let classes: Vec<_> = [101, 250, 354, 421, 554, 999]
            .into_iter()
            .map(status_class)
            .collect();
        assert_eq!(classes, ["1xx", "2xx", "3xx", "4xx", "5xx", "5xx"]);
    }
}
