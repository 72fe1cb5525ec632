//! Decode throughput of the SMTP codec: a pipelined command transcript and
//! DATA bodies of 2 KB, 100 KB and 10 MB (whole, and in 4 KB reads as they
//! arrive from a socket).

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mail_laser::smtp::codec::{Frame, SmtpCodec};
use tokio_util::codec::Decoder;

/// 1,000 pipelined transactions without DATA.
fn command_transcript() -> Vec<u8> {
    let mut transcript = b"EHLO client.example.org\r\n".to_vec();
    for i in 0..1_000 {
        transcript.extend_from_slice(
            format!(
                "MAIL FROM:<sender{i}@example.org> SIZE=2048 BODY=8BITMIME\r\n\
                 RCPT TO:<alerts@example.com>\r\nRCPT TO:<ops@example.com>\r\n\
                 NOOP\r\nRSET\r\n"
            )
            .as_bytes(),
        );
    }
    transcript.extend_from_slice(b"QUIT\r\n");
    transcript
}

/// A body of about `len` octets in 78-octet lines, ended by `.\r\n`; every
/// 40th line starts with a dot (stuffed) when `stuffed`.
fn body(len: usize, stuffed: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(len + 80);
    let mut line = 0usize;
    while body.len() < len {
        if stuffed && line % 40 == 0 {
            body.extend_from_slice(b"..");
        }
        body.extend_from_slice(
            b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod te\r\n",
        );
        line += 1;
    }
    body.extend_from_slice(b".\r\n");
    body
}

fn decode_commands(input: BytesMut) -> usize {
    let mut buf = input;
    let mut codec = SmtpCodec::new(usize::MAX);
    let mut frames = 0;
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        black_box(&frame);
        frames += 1;
    }
    frames
}

fn decode_body(input: BytesMut) -> Option<Frame> {
    let mut buf = input;
    let mut codec = SmtpCodec::new(usize::MAX);
    codec.start_data();
    codec.decode(&mut buf).ok().flatten()
}

fn decode_body_in_reads(input: &[u8], read: usize) -> Option<Frame> {
    let mut buf = BytesMut::with_capacity(read);
    let mut codec = SmtpCodec::new(usize::MAX);
    codec.start_data();
    for chunk in input.chunks(read) {
        buf.extend_from_slice(chunk);
        if let Ok(Some(frame)) = codec.decode(&mut buf) {
            return Some(frame);
        }
    }
    None
}

fn commands(c: &mut Criterion) {
    let transcript = command_transcript();
    let frames = decode_commands(BytesMut::from(&transcript[..])) as u64;
    let mut group = c.benchmark_group("commands");
    group.measurement_time(Duration::from_secs(3));
    // The same work reported twice: as MB/s and as commands/s.
    for (name, throughput) in [
        ("pipelined", Throughput::Bytes(transcript.len() as u64)),
        ("pipelined_commands", Throughput::Elements(frames)),
    ] {
        group.throughput(throughput);
        group.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&transcript[..]),
                decode_commands,
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn data(c: &mut Criterion) {
    let mut group = c.benchmark_group("data");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for (name, len) in [("2KB", 2 << 10), ("100KB", 100 << 10), ("10MB", 10 << 20)] {
        for (variant, stuffed) in [("plain", false), ("stuffed", true)] {
            let input = body(len, stuffed);
            group.throughput(Throughput::Bytes(input.len() as u64));
            group.bench_function(format!("{name}/{variant}"), |b| {
                b.iter_batched(
                    || BytesMut::from(&input[..]),
                    decode_body,
                    BatchSize::LargeInput,
                );
            });
        }
    }
    let input = body(10 << 20, true);
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.bench_function("10MB/stuffed_4KB_reads", |b| {
        b.iter(|| decode_body_in_reads(&input, 4096));
    });
    group.finish();
}

criterion_group!(benches, commands, data);
criterion_main!(benches);
