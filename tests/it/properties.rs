//! Property tests over hostile input: whatever a client sends, in whatever
//! pieces it arrives, the codec yields the same frames, keeps its buffer
//! bounded and never panics; the MIME parser never panics either.

use bytes::BytesMut;
use mail_laser::smtp::codec::{Frame, MAX_LINE, SmtpCodec};
use mail_laser::smtp::command::Command;
use proptest::prelude::*;
use tokio_util::codec::Decoder;

const MAX_MESSAGE: usize = 4096;

/// Pieces of SMTP and of the attacks on it, plus raw bytes.
fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"EHLO a\r\n".to_vec()),
        Just(b"MAIL FROM:<a@b.example> SIZE=10\r\n".to_vec()),
        Just(b"RCPT TO:<c@d.example>\r\n".to_vec()),
        Just(b"DATA\r\n".to_vec()),
        Just(b"BDAT 5\r\n".to_vec()),
        Just(b"BDAT 3 LAST\r\n".to_vec()),
        Just(b"\r\n.\r\n".to_vec()),
        Just(b".\r\n".to_vec()),
        Just(b"..\r\n".to_vec()),
        Just(b"\n.\r\n".to_vec()),
        Just(b"\r.\r\n".to_vec()),
        Just(b"\r\n.\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b".".to_vec()),
        Just(vec![b'x'; MAX_LINE + 1]),
        proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

fn transcript() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(token(), 0..40).prop_map(|tokens| tokens.concat())
}

/// Feeds `input` in the given pieces, switching modes the way the
/// connection does, and returns the frames.
fn decode(input: &[u8], cuts: &[usize]) -> Vec<Frame> {
    let mut codec = SmtpCodec::new(MAX_MESSAGE);
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|cut| cut % (input.len() + 1)).collect();
    ends.push(input.len());
    ends.sort_unstable();
    for end in ends {
        buffer.extend_from_slice(&input[start..end.max(start)]);
        start = end.max(start);
        while let Some(frame) = codec.decode(&mut buffer).expect("decoding never fails") {
            match &frame {
                Frame::Command(Ok(Command::Data)) => codec.start_data(),
                Frame::Command(Ok(Command::Bdat { size, .. })) => codec.start_chunk(*size, true),
                _ => {}
            }
            frames.push(frame);
        }
        // Bounded: a line, a message within the limit, or one read more.
        assert!(
            buffer.len() <= MAX_LINE + 2 + MAX_MESSAGE + input.len().min(64 * 1024),
            "buffer grew to {}",
            buffer.len()
        );
    }
    frames
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_split_gives_the_same_frames(input in transcript(), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let whole = decode(&input, &[]);
        let pieces = decode(&input, &cuts);
        prop_assert_eq!(whole, pieces);
    }

    #[test]
    fn a_byte_at_a_time_gives_the_same_frames(input in transcript()) {
        let cuts: Vec<usize> = (0..input.len()).collect();
        prop_assert_eq!(decode(&input, &[]), decode(&input, &cuts));
    }

    #[test]
    fn command_lines_never_panic(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut line = line;
        line.push(b'\n');
        let _ = Command::parse(&line);
    }
}

/// MIME-shaped token soup: headers, boundaries, encodings, garbage.
fn mime() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"Content-Type: multipart/mixed; boundary=\"b\"\r\n".to_vec()),
        Just(b"Content-Type: multipart/alternative; boundary=b\r\n".to_vec()),
        Just(b"Content-Type: text/html; charset=iso-8859-1\r\n".to_vec()),
        Just(b"Content-Type: text/plain; charset=utf-8\r\n".to_vec()),
        Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
        Just(b"Content-Transfer-Encoding: quoted-printable\r\n".to_vec()),
        Just(b"Content-Disposition: attachment; filename=a.txt\r\n".to_vec()),
        Just(b"Subject: =?UTF-8?B?w6k=?= =?ISO-8859-1?Q?Caf=E9?=\r\n".to_vec()),
        Just(b"From: \"A, B\" <a@b>\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"--b\r\n".to_vec()),
        Just(b"--b--\r\n".to_vec()),
        Just(b"<html><div><p>x</p></div></html>".to_vec()),
        Just(b"=E2=82=AC=\r\n".to_vec()),
        Just(b"SGVsbG8=\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..32),
    ];
    proptest::collection::vec(piece, 0..60).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mime_parsing_never_panics(raw in mime(), prefixes in proptest::collection::vec("[A-Za-z-]{0,6}", 0..3)) {
        let parsed = mail_laser::mail::parse(&raw, &prefixes);
        // Whatever came in, what goes out is valid JSON.
        let payload = mail_laser::mail::Payload::new(parsed, "a@b", "c@d");
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&payload.to_json().to_bytes()).is_ok());
    }
}
