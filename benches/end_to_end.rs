//! End to end over loopback: an SMTP client → MailLaser (started in-process
//! with `mail_laser::run` on port-0 listeners) → a local HTTP sink (axum,
//! answers 204). Messages/s at 1 and 32 concurrent sessions, 2 KB messages,
//! each message acknowledged only after the sink received its POST.
//!
//! Client, server and sink share one process and the machine's cores, so the
//! figures are a regression guard, not the ceiling comparison
//! (`scripts/loadtest` does that with separate processes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mail_laser::config::Config;
use mail_laser::telemetry::{Observability, TelemetryConfig};
use mail_laser::{Listeners, open_sink, run};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const RCPT: &str = "bench@example.com";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Starts the webhook sink and MailLaser; returns the SMTP address and the
/// sink's POST counter.
async fn start(shutdown: CancellationToken) -> Result<(SocketAddr, Arc<AtomicU64>), Error> {
    let received = Arc::new(AtomicU64::new(0));
    let hook = TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", hook.local_addr()?);
    let app = Router::new()
        .fallback(post(|State(n): State<Arc<AtomicU64>>| async move {
            n.fetch_add(1, Ordering::Relaxed);
            StatusCode::NO_CONTENT
        }))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(hook, app).await });

    let config = Config::from_args([
        "mail-laser",
        "--target-emails",
        RCPT,
        "--webhook-url",
        &hook_url,
        "--max-concurrent-per-ip",
        "0",
    ])?;
    let observability = Observability::new(&TelemetryConfig::disabled())?;
    let sink = open_sink(&config.sink, observability.metrics()).await?;
    let smtp = TcpListener::bind("127.0.0.1:0").await?;
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let addr = smtp.local_addr()?;
    tokio::spawn(run(
        Listeners {
            smtp,
            http,
            implicit_tls: None,
        },
        config,
        sink,
        observability,
        shutdown,
    ));
    Ok((addr, received))
}

fn message(size: usize) -> Vec<u8> {
    let line = format!("{}\r\n", "x".repeat(76));
    let body = line.repeat((size / line.len()).max(1));
    format!("From: Load <load@example.org>\r\nTo: {RCPT}\r\nSubject: load\r\n\r\n{body}.\r\n")
        .into_bytes()
}

/// One session sending `count` messages, one transaction at a time.
async fn session(addr: SocketAddr, message: Arc<Vec<u8>>, count: u64) -> Result<u64, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    expect(&mut stream, b"", 220).await?;
    expect(&mut stream, b"EHLO bench.example\r\n", 250).await?;
    let rcpt = format!("RCPT TO:<{RCPT}>\r\n");
    for _ in 0..count {
        expect(&mut stream, b"MAIL FROM:<load@example.org>\r\n", 250).await?;
        expect(&mut stream, rcpt.as_bytes(), 250).await?;
        expect(&mut stream, b"DATA\r\n", 354).await?;
        expect(&mut stream, &message, 250).await?;
    }
    expect(&mut stream, b"QUIT\r\n", 221).await?;
    Ok(count)
}

async fn expect(stream: &mut BufReader<TcpStream>, send: &[u8], code: u16) -> Result<(), Error> {
    stream.get_mut().write_all(send).await?;
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Err("connection closed".into());
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    }
    match line.get(..3).map(str::parse::<u16>) {
        Some(Ok(got)) if got == code => Ok(()),
        _ => Err(format!("expected {code}, got {line:?}").into()),
    }
}

/// Sends `total` messages over `sessions` concurrent sessions.
async fn send(addr: SocketAddr, sessions: u64, total: u64, message: Arc<Vec<u8>>) -> u64 {
    let tasks: Vec<_> = (0..sessions)
        .map(|i| {
            let share = total / sessions + u64::from(i < total % sessions);
            tokio::spawn(session(addr, message.clone(), share))
        })
        .collect();
    let mut sent = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(count)) => sent += count,
            Ok(Err(error)) => panic!("session failed: {error}"),
            Err(error) => panic!("session panicked: {error}"),
        }
    }
    sent
}

fn end_to_end(c: &mut Criterion) {
    let runtime = match Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => panic!("tokio runtime: {error}"),
    };
    let shutdown = CancellationToken::new();
    let (addr, received) = match runtime.block_on(start(shutdown.clone())) {
        Ok(started) => started,
        Err(error) => panic!("cannot start MailLaser: {error}"),
    };
    let message = Arc::new(message(2048));

    let mut group = c.benchmark_group("end_to_end_2KB");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    for sessions in [1u64, 32] {
        group.bench_function(format!("{sessions}_sessions"), |b| {
            b.iter_custom(|iters| {
                // At least one message per session, so every session works.
                let total = iters.max(sessions);
                let before = received.load(Ordering::Relaxed);
                let start = Instant::now();
                let sent = runtime.block_on(send(addr, sessions, total, message.clone()));
                let elapsed = start.elapsed();
                assert_eq!(received.load(Ordering::Relaxed) - before, sent);
                elapsed.mul_f64(iters as f64 / total as f64)
            });
        });
    }
    group.finish();
    shutdown.cancel();
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
