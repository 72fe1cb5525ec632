//! MIME parse + payload build: `mail::parse`, `Payload::new` and `to_json`,
//! the per-message work between the codec and the webhook. Messages/s by
//! size (2 KB, 100 KB) and shape (plain, multipart/alternative, HTML-only,
//! with attachments), and the hostile header shapes of issue 9.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mail_laser::mail::{Payload, PayloadJson, parse};

const HEADERS: &str = "From: \"Load Test\" <load@example.org>\r\n\
    To: bench@example.com\r\n\
    Subject: =?UTF-8?Q?Quarterly_r=C3=A9port?=\r\n\
    Message-ID: <bench-1@example.org>\r\n\
    Date: Sun, 29 Nov 2026 03:00:00 +0000\r\n\
    X-App-Ticket: 4711\r\n\
    MIME-Version: 1.0\r\n";

/// `len` octets of quoted-printable-safe text in 76-octet lines.
fn text(len: usize) -> String {
    let line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod t\r\n";
    line.repeat(len.div_ceil(line.len()))
}

/// The same amount of text as HTML paragraphs.
fn html(len: usize) -> String {
    let para = "<p>Lorem <b>ipsum</b> dolor sit amet, <a href=\"https://example.org\">consectetur</a> elit.</p>\r\n";
    format!(
        "<html><body>\r\n{}</body></html>\r\n",
        para.repeat(len.div_ceil(para.len()))
    )
}

/// Base64 of `len` octets, in 76-column lines (content is irrelevant).
fn base64(len: usize) -> String {
    let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n";
    line.repeat((len * 4 / 3).div_ceil(line.len()))
}

fn message(shape: &str, len: usize) -> Vec<u8> {
    let body = match shape {
        "plain" => format!(
            "Content-Type: text/plain; charset=utf-8\r\n\r\n{}",
            text(len)
        ),
        "alternative" => format!(
            "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
             --alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\
             --alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{}\
             --alt--\r\n",
            text(len / 2),
            html(len / 2)
        ),
        "html_only" => format!(
            "Content-Type: text/html; charset=utf-8\r\n\r\n{}",
            html(len)
        ),
        // A short text with most of the size in a binary attachment.
        "attachment" => format!(
            "Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n\
             --mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\
             --mix\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\
             --mix--\r\n",
            text(512),
            base64(len.saturating_sub(512) * 3 / 4)
        ),
        other => unreachable!("unknown shape {other}"),
    };
    format!("{HEADERS}{body}").into_bytes()
}

/// What the stack's `Handoff` does per message with one recipient.
fn parse_and_build(raw: &[u8], prefixes: &[String]) -> PayloadJson {
    let parsed = parse(raw, prefixes);
    Payload::new(parsed, "load@example.org", "bench@example.com").to_json()
}

fn payload(c: &mut Criterion) {
    let prefixes = vec!["X-App-".to_owned()];
    let mut group = c.benchmark_group("payload");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    for (size, len) in [("2KB", 2 << 10), ("100KB", 100 << 10)] {
        for shape in ["plain", "alternative", "html_only", "attachment"] {
            let raw = message(shape, len);
            group.bench_function(format!("{size}/{shape}"), |b| {
                b.iter(|| parse_and_build(black_box(&raw), &prefixes));
            });
        }
    }
    group.finish();
}

/// Only the serialisation, to tell it apart from parsing.
fn to_json(c: &mut Criterion) {
    let mut group = c.benchmark_group("to_json");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (size, len) in [("2KB", 2 << 10), ("100KB", 100 << 10)] {
        let raw = message("alternative", len);
        let parsed = parse(&raw, &[]);
        let json = Payload::new(parsed.clone(), "load@example.org", "bench@example.com").to_json();
        group.throughput(Throughput::Bytes(json.len() as u64));
        // A fresh payload each time: the shared part is serialised once
        // per message, and that is what is measured.
        group.bench_function(format!("{size}/alternative"), |b| {
            b.iter_batched(
                || parsed.clone(),
                |mail| Payload::new(mail, "load@example.org", "bench@example.com").to_json(),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// The shapes of the header attack (issue 9, finding 1), which mailparse's
/// own header decoding took seconds for: time per message, linear now.
fn hostile(c: &mut Criterion) {
    let mut group = c.benchmark_group("hostile");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let shapes = [
        (
            "800KB_subject_of_=?",
            format!("Subject: {}\r\n\r\nx", "=?".repeat(400_000)),
        ),
        (
            "64KB_from_of_=?",
            format!("From: {}\r\n\r\nx", "=?".repeat(32_000)),
        ),
        (
            "1MB_folded_subject",
            format!("Subject: a{}\r\n\r\nx", "\r\n b".repeat(250_000)),
        ),
    ];
    for (name, raw) in shapes {
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| parse_and_build(black_box(raw.as_bytes()), &[]));
        });
    }
    group.finish();
}

criterion_group!(benches, payload, to_json, hostile);
criterion_main!(benches);
