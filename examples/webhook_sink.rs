//! A minimal fast webhook receiver for trying MailLaser out and for load
//! tests: answers `204` to every POST and counts them.
//!
//! ```sh
//! cargo run --release --example webhook_sink -- 127.0.0.1:9000
//! curl -s 127.0.0.1:9000/count     # requests received so far
//! ```
//! With `--print`, each payload is printed as one line on stdout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};

#[derive(Default)]
struct Counter {
    received: AtomicU64,
    print: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    let print = args.any(|arg| arg == "--print");
    let counter = Arc::new(Counter {
        received: AtomicU64::new(0),
        print,
    });
    let app = Router::new()
        .route("/count", get(count))
        .fallback(post(receive))
        .with_state(counter)
        // Load tests POST 20 MB messages; axum's default limit is 2 MB.
        .layer(DefaultBodyLimit::max(256 << 20));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!(
        "webhook sink listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

async fn receive(State(counter): State<Arc<Counter>>, body: Bytes) -> StatusCode {
    counter.received.fetch_add(1, Ordering::Relaxed);
    if counter.print {
        println!("{}", String::from_utf8_lossy(&body));
    }
    StatusCode::NO_CONTENT
}

async fn count(State(counter): State<Arc<Counter>>) -> String {
    counter.received.load(Ordering::Relaxed).to_string()
}
