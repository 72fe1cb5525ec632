//! Codec tests: every transcript split at every byte position.

use super::*;
use crate::smtp::command::MailParams;

const LIMIT: usize = 10_000;

/// Does what the connection does after each frame: after DATA the 354
/// is queued, then data mode; after `BDAT n` chunk mode, keeping the
/// chunk when `keep` says so (the session's decision).
fn push(codec: &mut SmtpCodec, frames: &mut Vec<Frame>, frame: Frame, keep: bool) {
    match frame {
        Frame::Command(Ok(Command::Data)) => codec.start_data(),
        Frame::Command(Ok(Command::Bdat { size, .. })) => codec.start_chunk(size, keep),
        _ => {}
    }
    frames.push(frame);
}

/// Feeds `chunks` one after another, decoding after each, then ends the stream.
fn decode_chunks<'a>(limit: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Frame> {
    decode_chunks_keeping(limit, true, chunks)
}

fn decode_chunks_keeping<'a>(
    limit: usize,
    keep: bool,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Frame> {
    let mut codec = SmtpCodec::new(limit);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            push(&mut codec, &mut frames, frame, keep);
        }
    }
    while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
        push(&mut codec, &mut frames, frame, keep);
    }
    assert!(buf.is_empty());
    frames
}

/// Decodes `transcript` whole, split in two at every `step`-th position
/// and one byte at a time; all must yield the same frames.
fn decode_all_ways_step(limit: usize, transcript: &[u8], step: usize) -> Vec<Frame> {
    decode_all_ways_keeping(limit, true, transcript, step)
}

fn decode_all_ways_keeping(limit: usize, keep: bool, transcript: &[u8], step: usize) -> Vec<Frame> {
    let whole = decode_chunks_keeping(limit, keep, [transcript]);
    let positions = (0..=transcript.len())
        .step_by(step)
        .chain([transcript.len()]);
    for at in positions {
        let (head, tail) = transcript.split_at(at);
        assert_eq!(
            decode_chunks_keeping(limit, keep, [head, tail]),
            whole,
            "split at {at}"
        );
    }
    assert_eq!(
        decode_chunks_keeping(limit, keep, transcript.chunks(1)),
        whole,
        "byte by byte"
    );
    whole
}

fn decode_all_ways(limit: usize, transcript: &[u8]) -> Vec<Frame> {
    decode_all_ways_step(limit, transcript, 1)
}

fn message(body: &[u8]) -> Frame {
    Frame::Message(Bytes::copy_from_slice(body))
}

const DATA: Frame = Frame::Command(Ok(Command::Data));
const QUIT: Frame = Frame::Command(Ok(Command::Quit));

/// The body of `DATA\r\n{raw}` followed by QUIT, decoded every way.
fn body_of(raw: &[u8]) -> Vec<Frame> {
    let mut transcript = b"DATA\r\n".to_vec();
    transcript.extend_from_slice(raw);
    transcript.extend_from_slice(b"QUIT\r\n");
    decode_all_ways(LIMIT, &transcript)
}

fn xorshift(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[test]
fn pipelined_transaction() {
    let frames = decode_all_ways(
        LIMIT,
        b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n\
          RCPT TO:<e@f.example>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(
        frames,
        [
            Frame::Command(Ok(Command::Ehlo("client.example".into()))),
            Frame::Command(Ok(Command::Mail {
                from: "a@b.example".into(),
                params: MailParams::default()
            })),
            Frame::Command(Ok(Command::Rcpt {
                to: "c@d.example".into()
            })),
            Frame::Command(Ok(Command::Rcpt {
                to: "e@f.example".into()
            })),
            DATA,
            message(b"Subject: hi\r\n\r\nbody\r\n"),
            QUIT,
        ]
    );
}

#[test]
fn bare_lf_command_lines_and_parse_errors() {
    assert_eq!(
        decode_all_ways(LIMIT, b"NOOP\nFOO bar\r\nQUIT\n"),
        [
            Frame::Command(Ok(Command::Noop)),
            Frame::Command(Err(CommandError::UnknownCommand)),
            QUIT
        ]
    );
}

#[test]
fn dot_stuffed_lines_are_unstuffed() {
    assert_eq!(
        body_of(b"..\r\n..x\r\n.y\r\nplain.\r\n...\r\n.\r\n"),
        [DATA, message(b".\r\n.x\r\ny\r\nplain.\r\n..\r\n"), QUIT]
    );
}

#[test]
fn stuffed_terminator_lookalike_is_body() {
    assert_eq!(
        body_of(b"a\r\n..\r\nb\r\n.\r\n"),
        [DATA, message(b"a\r\n.\r\nb\r\n"), QUIT]
    );
}

#[test]
fn empty_message() {
    assert_eq!(body_of(b".\r\n"), [DATA, message(b""), QUIT]);
}

#[test]
fn message_without_final_crlf_before_dot_is_not_ended() {
    // "x.\r\n": the dot is not at line start.
    assert_eq!(
        body_of(b"x.\r\nend\r\n.\r\n"),
        [DATA, message(b"x.\r\nend\r\n"), QUIT]
    );
}

#[test]
fn smuggling_lf_dot_crlf_is_body() {
    assert_eq!(
        body_of(b"Hi\n.\r\nMAIL FROM:<evil@x.example>\r\nDATA\r\nevil\r\n.\r\n"),
        [
            DATA,
            message(b"Hi\n.\r\nMAIL FROM:<evil@x.example>\r\nDATA\r\nevil\r\n"),
            QUIT
        ]
    );
    // A bare LF right where a line could start does not start one.
    for (raw, body) in [
        (&b"\n.\r\nRSET\r\n.\r\n"[..], &b"\n.\r\nRSET\r\n"[..]),
        (b"Hi\r\n\n.\r\nRSET\r\n.\r\n", b"Hi\r\n\n.\r\nRSET\r\n"),
        (b"Hi\r\n.\n.\r\nRSET\r\n.\r\n", b"Hi\r\n\n.\r\nRSET\r\n"),
    ] {
        assert_eq!(body_of(raw), [DATA, message(body), QUIT]);
    }
}

#[test]
fn smuggling_cr_dot_crlf_is_body() {
    assert_eq!(
        body_of(b"Hi\r.\r\nRSET\r\n.\r\n"),
        [DATA, message(b"Hi\r.\r\nRSET\r\n"), QUIT]
    );
}

#[test]
fn bare_cr_before_crlf_is_text() {
    // CR CR LF: the first CR is text, the second one starts the CRLF.
    assert_eq!(
        body_of(b"Hi\r\r\nmore\r\r\n.\r\n"),
        [DATA, message(b"Hi\r\r\nmore\r\r\n"), QUIT]
    );
}

#[test]
fn smuggling_crlf_dot_lf_is_body() {
    // The line ".\nRSET\r\n" starts with a dot and is not the terminator:
    // its first dot goes (RFC 5321 §4.5.2), the rest stays.
    assert_eq!(
        body_of(b"Hi\r\n.\nRSET\r\n.\r\n"),
        [DATA, message(b"Hi\r\n\nRSET\r\n"), QUIT]
    );
    assert_eq!(
        body_of(b".\nRSET\r\n.\r\n"),
        [DATA, message(b"\nRSET\r\n"), QUIT]
    );
}

#[test]
fn smuggling_lf_dot_lf_is_body() {
    assert_eq!(
        body_of(b"Hi\n.\nRSET\r\n.\r\n"),
        [DATA, message(b"Hi\n.\nRSET\r\n"), QUIT]
    );
}

#[test]
fn smuggling_crlf_dot_cr_without_lf_is_body() {
    assert_eq!(
        body_of(b"Hi\r\n.\rRSET\r\n.\r\n"),
        [DATA, message(b"Hi\r\n\rRSET\r\n"), QUIT]
    );
    // ".\r" then CR LF: the first CR is text, the second starts the CRLF.
    assert_eq!(
        body_of(b"Hi\r\n.\r\r\n.\r\n"),
        [DATA, message(b"Hi\r\n\r\r\n"), QUIT]
    );
    assert_eq!(
        body_of(b"Hi\r\n.\r.\r\n.\r\n"),
        [DATA, message(b"Hi\r\n\r.\r\n"), QUIT]
    );
}

#[test]
fn terminator_split_across_reads() {
    let chunks: [&[u8]; 5] = [b"DATA\r\nx\r\n.", b".\r\ny\r", b"\n.\r", b"\n", b"QUIT\r\n"];
    assert_eq!(
        decode_chunks(LIMIT, chunks),
        [DATA, message(b"x\r\n.\r\ny\r\n"), QUIT]
    );
    let chunks: [&[u8]; 3] = [b"DATA\r\nx\r", b"\n.\r\n", b"QUIT\r\n"];
    assert_eq!(
        decode_chunks(LIMIT, chunks),
        [DATA, message(b"x\r\n"), QUIT]
    );
}

#[test]
fn line_of_2049_octets_is_too_long_and_session_survives() {
    let mut transcript = b"NOOP ".to_vec();
    transcript.resize(MAX_LINE + 1, b'x');
    transcript.extend_from_slice(b"\r\nQUIT\r\n");
    assert_eq!(
        decode_all_ways(LIMIT, &transcript),
        [Frame::LineTooLong, QUIT]
    );
}

#[test]
fn line_of_2048_octets_is_accepted() {
    let mut line = b"NOOP ".to_vec();
    line.resize(MAX_LINE, b'x');
    let mut transcript = line.clone();
    transcript.extend_from_slice(b"\r\n");
    // With a bare LF the same content is still within the limit ...
    transcript.extend_from_slice(&line);
    transcript.extend_from_slice(b"\n");
    // ... and one octet more is not, whatever the line ending.
    transcript.extend_from_slice(&line);
    transcript.extend_from_slice(b"x\n");
    assert_eq!(
        decode_all_ways(LIMIT, &transcript),
        [
            Frame::Command(Ok(Command::Noop)),
            Frame::Command(Ok(Command::Noop)),
            Frame::LineTooLong
        ]
    );
}

#[test]
fn line_of_100_kb_is_too_long() {
    let mut transcript = vec![b'a'; 100_000];
    transcript.extend_from_slice(b"\r\nQUIT\r\n");
    assert_eq!(
        decode_all_ways_step(LIMIT, &transcript, 997),
        [Frame::LineTooLong, QUIT]
    );
}

/// Feeds `input` in 4 KB reads then "\r\nQUIT\r\n", checking the buffer
/// stays bounded after every read.
fn feed_flood(input: &[u8]) -> Vec<Frame> {
    const CHUNK: usize = 4096;
    let mut codec = SmtpCodec::new(1_000);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in input.chunks(CHUNK).chain([&b"\r\nQUIT\r\n"[..]]) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            push(&mut codec, &mut frames, frame, true);
        }
        assert!(buf.len() <= 2 * MAX_LINE + CHUNK, "buffered {}", buf.len());
    }
    frames
}

#[test]
fn flood_of_random_bytes_stays_bounded() {
    let frames = feed_flood(&xorshift(1 << 20));
    assert_eq!(frames.last(), Some(&QUIT));
}

#[test]
fn flood_without_lf_stays_bounded() {
    let input: Vec<u8> = xorshift(1 << 20)
        .into_iter()
        .map(|byte| if byte == b'\n' { b'x' } else { byte })
        .collect();
    assert_eq!(feed_flood(&input), [Frame::LineTooLong, QUIT]);
}

#[test]
fn oversize_body_is_drained_then_commands_continue() {
    let mut transcript = b"DATA\r\n".to_vec();
    for _ in 0..100 {
        transcript.extend_from_slice(&[b'y'; 48]);
        transcript.extend_from_slice(b"\r\n");
    }
    transcript.extend_from_slice(b".\r\nQUIT\r\n");
    assert_eq!(
        decode_all_ways(1_000, &transcript),
        [DATA, Frame::MessageTooLarge, QUIT]
    );
}

#[test]
fn oversize_body_does_not_stay_buffered() {
    let mut codec = SmtpCodec::new(1_000);
    codec.start_data();
    let mut buf = BytesMut::new();
    for _ in 0..100 {
        buf.extend_from_slice(&[b'z'; 4094]);
        buf.extend_from_slice(b"\r\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }
    buf.extend_from_slice(b".\r\n");
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(Frame::MessageTooLarge)
    );
    assert!(!codec.is_reading_data());
}

/// A body of exactly `len` (at least 8) unstuffed octets, every third
/// line dot-stuffed, and its raw form without the terminator.
fn stuffed_body(len: usize) -> (Vec<u8>, Vec<u8>) {
    let (mut raw, mut body) = (Vec::new(), Vec::new());
    for line in 0.. {
        let rest = len - body.len();
        if rest < 8 {
            let mut last = vec![b'c'; rest - 2];
            last.extend_from_slice(b"\r\n");
            raw.extend_from_slice(&last);
            body.extend_from_slice(&last);
            break;
        }
        if line % 3 == 0 {
            raw.extend_from_slice(b"..a\r\n");
            body.extend_from_slice(b".a\r\n");
        } else {
            raw.extend_from_slice(b"b\r\n");
            body.extend_from_slice(b"b\r\n");
        }
    }
    (raw, body)
}

#[test]
fn body_at_the_limit_is_accepted_one_octet_over_is_refused() {
    let (raw, body) = stuffed_body(1_000);
    assert_eq!(body.len(), 1_000);
    assert!(raw.len() > 1_000);
    let mut raw = raw;
    raw.extend_from_slice(b".\r\n");
    assert_eq!(body_limited(1_000, &raw), [DATA, message(&body), QUIT]);
    assert_eq!(
        body_limited(999, &raw),
        [DATA, Frame::MessageTooLarge, QUIT]
    );
}

fn body_limited(limit: usize, raw: &[u8]) -> Vec<Frame> {
    let mut transcript = b"DATA\r\n".to_vec();
    transcript.extend_from_slice(raw);
    transcript.extend_from_slice(b"QUIT\r\n");
    decode_all_ways(limit, &transcript)
}

#[test]
fn large_body_in_small_reads() {
    let (mut raw, body) = stuffed_body(2 << 20);
    raw.extend_from_slice(b".\r\n");
    let mut codec = SmtpCodec::new(body.len());
    codec.start_data();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in raw.chunks(4096) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
    }
    assert_eq!(frames, [message(&body)]);
}

/// How far the codec has searched the buffer.
fn searched(codec: &SmtpCodec) -> usize {
    match &codec.mode {
        Mode::Command { next_index } | Mode::Response { next_index } => *next_index,
        Mode::Data(body) => body.next_index,
        Mode::Discarding | Mode::Draining(..) | Mode::Chunk(_) | Mode::SkipChunk(..) => 0,
    }
}

#[test]
fn scanning_resumes_where_it_stopped() {
    let mut codec = SmtpCodec::new(LIMIT);
    let mut buf = BytesMut::from(&b"MAIL FROM:<a@b.example"[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert_eq!(searched(&codec), buf.len());
    buf.extend_from_slice(b">\r\nDA");
    assert!(codec.decode(&mut buf).unwrap().is_some());
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert_eq!(searched(&codec), 2);
    buf.extend_from_slice(b"TA\r\nline\r\n..stuffed\r\nmore");
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(DATA));
    codec.start_data();
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert_eq!(searched(&codec), buf.len());
    buf.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(message(b"line\r\n.stuffed\r\nmore\r\n"))
    );
    assert!(buf.is_empty());
}

#[test]
fn partial_input_at_eof_is_dropped_quietly() {
    assert_eq!(
        decode_all_ways(LIMIT, b"NOOP\r\nQUI"),
        [Frame::Command(Ok(Command::Noop))]
    );
    assert_eq!(decode_all_ways(LIMIT, b"DATA\r\npartial\r\n."), [DATA]);
    assert_eq!(decode_all_ways(LIMIT, &[b'a'; 5_000]), []);
}

#[test]
fn data_mode_ends_by_itself() {
    let mut codec = SmtpCodec::new(LIMIT);
    assert!(!codec.is_reading_data());
    codec.start_data();
    assert!(codec.is_reading_data());
    let mut buf = BytesMut::from(&b"x\r\n.\r\nQUIT\r\n"[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(message(b"x\r\n")));
    assert!(!codec.is_reading_data());
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(QUIT));
}

#[test]
fn buffer_discarded_by_the_connection() {
    let mut codec = SmtpCodec::new(LIMIT);
    let mut buf = BytesMut::from(&b"STARTTLS\r\nEHLO injected"[..]);
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(Frame::Command(Ok(Command::StartTls)))
    );
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.clear();
    codec.reset();
    buf.extend_from_slice(b"QUIT\r\n");
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(QUIT));
    // Even without `reset`, a shorter buffer is no reason to panic.
    buf.extend_from_slice(b"EHLO injected");
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.clear();
    buf.extend_from_slice(b"\n");
    assert!(codec.decode(&mut buf).unwrap().is_some());
    codec.start_data();
    buf.extend_from_slice(b"partial body");
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.clear();
    buf.extend_from_slice(b".\r\n");
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(message(b"")));
}

fn bdat(size: u64, last: bool) -> Frame {
    Frame::Command(Ok(Command::Bdat { size, last }))
}

fn chunk(octets: &[u8]) -> Frame {
    Frame::Chunk(Bytes::copy_from_slice(octets))
}

#[test]
fn bdat_chunks_are_taken_raw() {
    // Dots, bare CRs and LFs, a terminator look-alike and command lines
    // inside a chunk are octets like any other.
    let transcript =
        b"BDAT 12\r\n.\r\n..x\rRSET\nBDAT 0\r\nBDAT 13 LAST\r\nQUIT\r\n\r\n.\r\nxyNOOP\r\n";
    assert_eq!(
        decode_all_ways(LIMIT, transcript),
        [
            bdat(12, false),
            chunk(b".\r\n..x\rRSET\n"),
            bdat(0, false),
            chunk(b""),
            bdat(13, true),
            chunk(b"QUIT\r\n\r\n.\r\nxy"),
            Frame::Command(Ok(Command::Noop)),
        ]
    );
}

#[test]
fn bdat_0_last_is_an_empty_chunk() {
    assert_eq!(
        decode_all_ways(LIMIT, b"BDAT 0 LAST\r\nQUIT\r\n"),
        [bdat(0, true), chunk(b""), QUIT]
    );
}

#[test]
fn pipelined_bdat_transaction() {
    let transcript = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n\
        BDAT 5\r\nHello BDAT 7 LAST\r\n, world\r\nQUIT\r\n";
    let frames = decode_all_ways(LIMIT, transcript);
    assert_eq!(
        frames[2..],
        [
            bdat(5, false),
            chunk(b"Hello"),
            bdat(7, true),
            chunk(b", world"),
            Frame::Command(Err(CommandError::UnknownCommand)),
            QUIT
        ]
    );
}

#[test]
fn skipped_chunk_is_read_and_dropped() {
    // The session refused BDAT (no transaction): the chunk's octets must
    // not be taken for commands.
    assert_eq!(
        decode_all_ways_keeping(LIMIT, false, b"BDAT 10\r\nRSET\r\nRSETNOOP\r\n", 1),
        [
            bdat(10, false),
            Frame::ChunkSkipped,
            Frame::Command(Ok(Command::Noop))
        ]
    );
    assert_eq!(
        decode_all_ways_keeping(LIMIT, false, b"BDAT 0 LAST\r\nNOOP\r\n", 1),
        [
            bdat(0, true),
            Frame::ChunkSkipped,
            Frame::Command(Ok(Command::Noop))
        ]
    );
}

#[test]
fn chunk_over_the_limit_is_skipped_even_when_kept() {
    let mut transcript = b"BDAT 1001\r\n".to_vec();
    transcript.extend_from_slice(&[b'x'; 1001]);
    transcript.extend_from_slice(b"BDAT 1000 LAST\r\n");
    transcript.extend_from_slice(&[b'y'; 1000]);
    transcript.extend_from_slice(b"QUIT\r\n");
    assert_eq!(
        decode_all_ways_step(1_000, &transcript, 7),
        [
            bdat(1001, false),
            Frame::ChunkSkipped,
            bdat(1000, true),
            chunk(&[b'y'; 1000]),
            QUIT
        ]
    );
}

#[test]
fn skipped_chunk_does_not_stay_buffered() {
    let mut codec = SmtpCodec::new(1_000);
    codec.start_chunk(u64::MAX, true);
    assert!(codec.is_reading_data());
    let mut buf = BytesMut::new();
    for _ in 0..100 {
        buf.extend_from_slice(&[b'z'; 4096]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }
    let mut codec = SmtpCodec::new(1_000);
    codec.start_chunk(5000, false);
    buf.extend_from_slice(&[b'z'; 4999]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"zQUIT\r\n");
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::ChunkSkipped));
    assert!(!codec.is_reading_data());
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(QUIT));
}

#[test]
fn partial_chunk_at_eof_is_dropped_quietly() {
    assert_eq!(
        decode_all_ways(LIMIT, b"BDAT 10 LAST\r\nshort"),
        [bdat(10, true)]
    );
}

#[test]
fn encoder_writes_reply_with_and_without_enhanced_code() {
    let mut codec = SmtpCodec::new(LIMIT);
    let mut dst = BytesMut::new();
    let reply = Reply::recipient_ok();
    codec
        .encode(
            Outbound {
                reply: &reply,
                enhanced: true,
            },
            &mut dst,
        )
        .unwrap();
    assert_eq!(&dst[..], b"250 2.1.5 OK\r\n");
    dst.clear();
    codec
        .encode(
            Outbound {
                reply: &reply,
                enhanced: false,
            },
            &mut dst,
        )
        .unwrap();
    assert_eq!(&dst[..], b"250 OK\r\n");
}

/// Feeds `input` in 4 KiB reads to `codec` through its read buffer `buf`,
/// returning the frames and the largest the buffer got.
fn feed(codec: &mut SmtpCodec, buf: &mut BytesMut, input: &[u8]) -> (Vec<Frame>, usize) {
    let mut frames = Vec::new();
    let mut peak = 0;
    for read in input.chunks(4096) {
        buf.extend_from_slice(read);
        peak = peak.max(buf.len());
        while let Some(frame) = codec.decode(buf).unwrap() {
            push(codec, &mut frames, frame, true);
        }
    }
    (frames, peak)
}

/// Finding 5 (issue 9): message octets count against one budget shared by
/// every connection as they arrive; a body it cannot hold is read to its
/// end without being buffered, and its octets go back at once.
#[test]
fn memory_has_a_global_bound_across_connections() {
    let budget = MemoryBudget::new(4 * GRANULE);
    let mut first = SmtpCodec::with_budget(1 << 20, &budget);
    let mut second = SmtpCodec::with_budget(1 << 20, &budget);
    let (mut first_buf, mut second_buf) = (BytesMut::new(), BytesMut::new());

    // The first session's body is unfinished: its octets stay counted.
    let body = vec![b'a'; 3 * GRANULE];
    let mut open = b"DATA\r\n".to_vec();
    open.extend_from_slice(&body);
    let (frames, _) = feed(&mut first, &mut first_buf, &open);
    assert_eq!(frames, [Frame::Command(Ok(Command::Data))]);
    assert_eq!(budget.in_use(), 3 * GRANULE);

    // The second one's 200 KB cannot fit: drained, never buffered whole.
    let mut big = b"DATA\r\n".to_vec();
    big.extend_from_slice(&vec![b'b'; 200_000]);
    big.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
    let (frames, peak) = feed(&mut second, &mut second_buf, &big);
    assert_eq!(
        frames,
        [
            Frame::Command(Ok(Command::Data)),
            Frame::OverBudget,
            Frame::Command(Ok(Command::Noop))
        ]
    );
    assert!(peak <= 2 * GRANULE, "buffered {peak} octets");
    assert!(
        second_buf.capacity() <= 2 * GRANULE,
        "the drained body's memory is given back"
    );
    assert_eq!(
        budget.in_use(),
        3 * GRANULE,
        "the drained body holds nothing"
    );

    // The first body completes; its octets are held until the connection
    // says the message was answered.
    let (frames, _) = feed(&mut first, &mut first_buf, b"\r\n.\r\n");
    assert!(matches!(&frames[..], [Frame::Message(m)] if m.len() == 3 * GRANULE + 2));
    assert_eq!(budget.in_use(), 3 * GRANULE + GRANULE);
    first.release_message(&mut first_buf);
    assert_eq!(budget.in_use(), 0);
    assert!(second.budget_has_room());
}

/// Finding 5: BDAT chunks count too, cumulatively over the message: a
/// chunk that does not fit is dropped as it arrives and reported.
#[test]
fn memory_has_a_global_bound_for_chunks() {
    let budget = MemoryBudget::new(2 * GRANULE);
    let mut codec = SmtpCodec::with_budget(1 << 20, &budget);
    let mut buf = BytesMut::new();
    let chunk = |size: usize| {
        let mut input = format!("BDAT {size}\r\n").into_bytes();
        input.extend(std::iter::repeat_n(b'c', size));
        input
    };
    let (frames, _) = feed(&mut codec, &mut buf, &chunk(GRANULE));
    assert!(matches!(&frames[..], [_, Frame::Chunk(c)] if c.len() == GRANULE));
    let mut input = chunk(GRANULE + 1);
    input.extend_from_slice(b"NOOP\r\n");
    let (frames, _) = feed(&mut codec, &mut buf, &input);
    assert_eq!(
        frames[1..],
        [Frame::OverBudget, Frame::Command(Ok(Command::Noop))]
    );
    assert_eq!(budget.in_use(), 0, "a failed message holds nothing");
}

/// Finding 5: a read buffer that grew for a message gives its memory back
/// once the message is answered (the budget no longer counts it).
#[test]
fn a_grown_read_buffer_is_shrunk_once_released() {
    let mut codec = SmtpCodec::new(1 << 20);
    let mut buf = BytesMut::new();
    let mut input = b"DATA\r\n".to_vec();
    input.extend_from_slice(&vec![b'm'; 500_000]);
    input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
    let mut frames = Vec::new();
    buf.extend_from_slice(&input[..6]);
    while let Some(frame) = codec.decode(&mut buf).unwrap() {
        push(&mut codec, &mut frames, frame, true);
    }
    buf.extend_from_slice(&input[6..]);
    let Some(Frame::Message(message)) = codec.decode(&mut buf).unwrap() else {
        panic!("a message");
    };
    assert_eq!(message.len(), 500_002);
    drop(message);
    let before = buf.as_ptr();
    codec.release_message(&mut buf);
    assert_eq!(&buf[..], b"NOOP\r\n", "pipelined input is kept");
    assert_ne!(buf.as_ptr(), before, "moved out of the body's allocation");
    assert!(buf.capacity() <= 64 * 1024);
}

/// After a `334`, the next line is a SASL response: raw, not parsed as a
/// command, bounded like one; then the codec reads commands again.
#[test]
fn a_sasl_response_line_is_taken_raw() {
    let mut codec = SmtpCodec::new(LIMIT);
    let mut buf = BytesMut::from(&b"AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nNOOP\r\n"[..]);
    assert!(matches!(
        codec.decode(&mut buf).unwrap(),
        Some(Frame::Command(Ok(Command::Auth { .. })))
    ));
    codec.start_response();
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(Frame::Response(Bytes::from_static(b"AGFsaWNlAHNlY3JldA==")))
    );
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(Frame::Command(Ok(Command::Noop)))
    );

    codec.start_response();
    let mut long = BytesMut::from(&vec![b'A'; MAX_LINE + 10][..]);
    assert_eq!(codec.decode(&mut long).unwrap(), None);
    assert!(long.len() <= MAX_LINE + 2, "the buffer stays bounded");
    long.extend_from_slice(b"AAAA\r\n*\r\n");
    assert_eq!(codec.decode(&mut long).unwrap(), Some(Frame::LineTooLong));
    // Back in command mode: `*` is no command.
    assert!(matches!(
        codec.decode(&mut long).unwrap(),
        Some(Frame::Command(Err(_)))
    ));
}
