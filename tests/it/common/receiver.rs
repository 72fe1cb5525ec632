//! A real HTTP webhook receiver on loopback that records every request and
//! answers from a script.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::DEADLINE;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16),
    /// A status with a `text/plain` body.
    Text(u16, &'static str),
    /// Never answers.
    Hang,
    /// Answers 200 once the gate is opened.
    Gate(Arc<Notify>),
    /// A status with this `Retry-After` value, verbatim.
    RetryAfter(u16, &'static str),
    /// A status with a `Retry-After` HTTP-date this many seconds after the
    /// request arrived (whole seconds: the fraction is cut off).
    RetryAt(u16, u64),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the request was complete here, by the receiver's clock.
    pub at: Instant,
    /// The status it was answered with (`0`: never answered, `Hang`).
    pub status: u16,
}

impl Recorded {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("request has no {name} header"))
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// The body as JSON, checked against the payload's schema.
    pub fn json(&self) -> serde_json::Value {
        let payload = serde_json::from_slice(&self.body).expect("the body is JSON");
        super::schema::assert_valid(&payload);
        payload
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<Answer>>,
    default: Mutex<Option<Answer>>,
    arrived: Notify,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Starts a receiver answering `200` unless told otherwise.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/hook", post(handle))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers the next requests with these, in order, then the default.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.shared.script.lock().unwrap().extend(answers);
    }

    /// What to answer once the script is used up.
    pub fn answer_with(&self, answer: Answer) {
        *self.shared.default.lock().unwrap() = Some(answer);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived.
    pub async fn wait_for(&self, count: usize) -> Vec<Recorded> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let notified = self.shared.arrived.notified();
            let requests = self.requests();
            if requests.len() >= count {
                return requests;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                tokio::time::timeout(left, notified).await.is_ok(),
                "expected {count} webhook requests, got {}",
                requests.len()
            );
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let (at, now) = (Instant::now(), SystemTime::now());
    let answer = shared.script.lock().unwrap().pop_front();
    let answer = answer
        .or_else(|| shared.default.lock().unwrap().clone())
        .unwrap_or(Answer::Status(200));
    let status = match &answer {
        Answer::Status(code)
        | Answer::Text(code, _)
        | Answer::RetryAfter(code, _)
        | Answer::RetryAt(code, _) => *code,
        Answer::Hang => 0,
        Answer::Gate(_) => 200,
    };
    shared.requests.lock().unwrap().push(Recorded {
        headers,
        body,
        at,
        status,
    });
    shared.arrived.notify_waiters();
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Answer::Text(code, text) => (
            StatusCode::from_u16(code).unwrap(),
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )
            .into_response(),
        Answer::Hang => std::future::pending().await,
        Answer::Gate(gate) => {
            gate.notified().await;
            StatusCode::OK.into_response()
        }
        Answer::RetryAfter(code, value) => (
            StatusCode::from_u16(code).unwrap(),
            [(header::RETRY_AFTER, value.to_owned())],
        )
            .into_response(),
        Answer::RetryAt(code, seconds) => (
            StatusCode::from_u16(code).unwrap(),
            [(
                header::RETRY_AFTER,
                httpdate::fmt_http_date(now + Duration::from_secs(seconds)),
            )],
        )
            .into_response(),
    }
}
