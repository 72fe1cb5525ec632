//! A minimal fast webhook receiver for trying MailLaser out and for load
//! tests: answers `204` to every POST and counts them.
//!
//! ```sh
//! cargo run --release --example webhook_sink -- 127.0.0.1:9000
//! curl -s 127.0.0.1:9000/count     # requests received so far
//! curl -s 127.0.0.1:9000/bytes     # their body bytes, in all
//! ```
//! With `--print`, each payload is printed as one line on stdout.
//!
//! In a load test it shares the CPU with MailLaser and the load generator,
//! so it is kept as cheap as a correct HTTP/1.1 keep-alive server can be: one
//! thread, one read per request, bodies skipped as they arrive (unless
//! printed), a fixed response (the axum version it replaces took about 1.4
//! times the CPU per request, 16-19 us vs 11-13 us). It understands `Content-Length` bodies only, which is what
//! MailLaser (reqwest with a complete body) sends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request head larger than this is refused (`431`).
const MAX_HEAD: usize = 64 * 1024;

#[derive(Default)]
struct Counter {
    received: AtomicU64,
    /// Body bytes of the requests counted in `received`.
    body_bytes: AtomicU64,
    print: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    let print = args.any(|arg| arg == "--print");
    let counter = Arc::new(Counter {
        received: AtomicU64::new(0),
        body_bytes: AtomicU64::new(0),
        print,
    });
    let listener = TcpListener::bind(&addr).await?;
    eprintln!(
        "webhook sink listening on http://{}",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let counter = counter.clone();
        tokio::spawn(async move {
            if let Err(error) = serve(stream, &counter).await {
                eprintln!("webhook sink: connection error: {error}");
            }
        });
    }
}

/// One keep-alive connection: requests one after another until the client
/// closes it.
async fn serve(mut stream: TcpStream, counter: &Counter) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        // The request head.
        let head_end = loop {
            if let Some(at) = find(&buf, b"\r\n\r\n") {
                break at + 4;
            }
            if buf.len() > MAX_HEAD {
                return respond(&mut stream, "431 Request Header Fields Too Large", "").await;
            }
            if read_more(&mut stream, &mut buf).await? == 0 {
                return Ok(());
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let is_get_count = head.starts_with("GET /count ");
        let is_get_bytes = head.starts_with("GET /bytes ");
        let Some(length) = content_length(&head) else {
            return respond(&mut stream, "411 Length Required", "").await;
        };
        buf.drain(..head_end);

        // The body: kept only when printed, otherwise dropped as it arrives.
        let mut body = Vec::new();
        let mut remaining = length;
        loop {
            let take = remaining.min(buf.len());
            if counter.print {
                body.extend_from_slice(&buf[..take]);
            }
            buf.drain(..take);
            remaining -= take;
            if remaining == 0 {
                break;
            }
            if read_more(&mut stream, &mut buf).await? == 0 {
                return Ok(());
            }
        }

        if is_get_count {
            let count = counter.received.load(Ordering::Relaxed).to_string();
            respond(&mut stream, "200 OK", &count).await?;
        } else if is_get_bytes {
            let bytes = counter.body_bytes.load(Ordering::Relaxed).to_string();
            respond(&mut stream, "200 OK", &bytes).await?;
        } else {
            counter.received.fetch_add(1, Ordering::Relaxed);
            counter
                .body_bytes
                .fetch_add(length as u64, Ordering::Relaxed);
            if counter.print {
                println!("{}", String::from_utf8_lossy(&body));
            }
            stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await?;
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(64 * 1024);
    }
    stream.read_buf(buf).await
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await
}

/// `Content-Length` of a request head; 0 when absent (no body), `None` when
/// the body is chunked or the length unreadable.
fn content_length(head: &str) -> Option<usize> {
    let mut length = 0;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok()?;
        }
    }
    Some(length)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
