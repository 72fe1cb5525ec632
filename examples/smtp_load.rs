//! A small SMTP load generator for loopback measurements: N concurrent
//! sessions, each sending its share of M messages of a given size, one
//! transaction at a time (no pipelining), counting only `250` replies.
//!
//! ```sh
//! cargo run --release --example smtp_load -- 127.0.0.1:2525 SESSIONS MESSAGES SIZE [RCPT]
//! ```
//!
//! Optional, from the environment: `SMTP_LOAD_MESSAGE`, a file sent as the
//! message instead of the generated one (SIZE is then ignored; it must end
//! in CRLF and hold no line starting with a dot: it is sent as it is, then
//! `.`); `SMTP_LOAD_MAIL_FROM` (default `load@example.org`) and
//! `SMTP_LOAD_HELO` (default `load.example`), for a sender that SPF and
//! DMARC can judge.

use std::time::Instant;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2525".into());
    let sessions: usize = args.get(1).map_or(Ok(1), |a| a.parse())?;
    let messages: usize = args.get(2).map_or(Ok(1000), |a| a.parse())?;
    let size: usize = args.get(3).map_or(Ok(2048), |a| a.parse())?;
    let rcpt = args
        .get(4)
        .cloned()
        .unwrap_or_else(|| "bench@example.com".into());

    let message = match std::env::var_os("SMTP_LOAD_MESSAGE") {
        Some(path) => {
            let message = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.to_string_lossy()))?;
            if !message.ends_with("\r\n") || message.starts_with('.') || message.contains("\n.") {
                bail!("SMTP_LOAD_MESSAGE must end in CRLF and hold no line starting with a dot");
            }
            format!("{message}.\r\n")
        }
        None => {
            let line = format!("{}\r\n", "x".repeat(76));
            let body = line.repeat((size / line.len()).max(1));
            format!(
                "From: Load <load@example.org>\r\nTo: {rcpt}\r\nSubject: load\r\n\r\n{body}.\r\n"
            )
        }
    };
    let envelope = Envelope {
        helo: std::env::var("SMTP_LOAD_HELO").unwrap_or_else(|_| "load.example".into()),
        mail_from: std::env::var("SMTP_LOAD_MAIL_FROM")
            .unwrap_or_else(|_| "load@example.org".into()),
        rcpt,
    };

    let start = Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|i| {
            let share = messages / sessions + usize::from(i < messages % sessions);
            let (addr, envelope, message) = (addr.clone(), envelope.clone(), message.clone());
            tokio::spawn(async move { session(&addr, &envelope, &message, share).await })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "sessions={sessions} messages={messages} size={} accepted={accepted} elapsed={elapsed:.3}s rate={:.0}/s",
        message.len(),
        accepted as f64 / elapsed
    );
    Ok(())
}

#[derive(Clone)]
struct Envelope {
    helo: String,
    mail_from: String,
    rcpt: String,
}

async fn session(
    addr: &str,
    envelope: &Envelope,
    message: &str,
    count: usize,
) -> anyhow::Result<usize> {
    let stream = TcpStream::connect(addr).await.context("connect")?;
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    reply(&mut stream).await?;
    command(&mut stream, &format!("EHLO {}\r\n", envelope.helo)).await?;
    let mail_from = format!("MAIL FROM:<{}>\r\n", envelope.mail_from);
    let rcpt_to = format!("RCPT TO:<{}>\r\n", envelope.rcpt);
    let mut accepted = 0;
    for _ in 0..count {
        command(&mut stream, &mail_from).await?;
        command(&mut stream, &rcpt_to).await?;
        command(&mut stream, "DATA\r\n").await?;
        if command(&mut stream, message).await? == 250 {
            accepted += 1;
        }
    }
    command(&mut stream, "QUIT\r\n").await?;
    Ok(accepted)
}

async fn command(stream: &mut BufReader<TcpStream>, line: &str) -> anyhow::Result<u16> {
    stream.get_mut().write_all(line.as_bytes()).await?;
    reply(stream).await
}

async fn reply(stream: &mut BufReader<TcpStream>) -> anyhow::Result<u16> {
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            bail!("connection closed");
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line.get(..3).unwrap_or_default().parse()?);
        }
    }
}
