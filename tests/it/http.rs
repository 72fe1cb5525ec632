//! The HTTP side's own limits: slow or idle clients of the health port are
//! closed, and their number is capped, so they cannot take what the SMTP
//! side needs.

use std::time::Duration;

use crate::common::{self, Client, DEADLINE, TestServer, eventually};
use mail_laser::http::HttpLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET /health`, or `None` when the server closes without a response.
async fn try_health(server: &TestServer) -> Option<u16> {
    let mut stream = TcpStream::connect(server.http).await.ok()?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .expect("an answer or a close in time")
        .ok()?;
    response.get(9..12)?.parse().ok()
}

/// Issue "health port" (finding 7): idle or half-sent connections were
/// never closed and not limited, so 500 of them exhausted file descriptors
/// and SMTP accepts failed. They are now capped, and at the cap a new
/// connection closes the oldest one, so holding connections cannot keep a
/// health probe out.
#[tokio::test]
async fn health_port_closes_idle_and_half_sent_connections_and_caps_them() {
    let mut config = common::config("-", &[]);
    config.http_limits = HttpLimits {
        max_connections: 4,
        header_timeout: Duration::from_secs(3),
        connection_timeout: Duration::from_secs(30),
    };
    let server = TestServer::start_with(config).await;
    assert_eq!(try_health(&server).await, Some(200));

    // Three idle connections and a half-sent request fill the cap.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.http).await.unwrap());
    }
    let mut half_sent = TcpStream::connect(server.http).await.unwrap();
    half_sent
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // One more closes the oldest, so a probe always gets through.
    assert_eq!(try_health(&server).await, Some(200), "the oldest made room");
    let mut oldest = held.remove(0);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, oldest.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the oldest was closed: {closed:?}"
    );
    // SMTP does not notice.
    let mut smtp = Client::greeted(server.smtp).await;
    assert_eq!(smtp.command("NOOP").await.code, 250);

    // The server closes them after the header timeout, while the client
    // still holds them: the port answers again.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, half_sent.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(_)) | Ok(Err(_))), "closed in time");
    assert!(
        !String::from_utf8_lossy(&rest).contains("200 OK"),
        "{rest:?}"
    );
    eventually("the health port to answer again", || async {
        try_health(&server).await == Some(200)
    })
    .await;
    drop(held);
    server.stop().await;
}
