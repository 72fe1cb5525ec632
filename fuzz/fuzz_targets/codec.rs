//! `SmtpCodec` over an arbitrary client byte stream, cut into arbitrary
//! reads, switched to data and chunk mode as a session would (after every
//! `DATA` and `BDAT` line).
//!
//! Input: [`Header`], then the stream. Flags: bit 0, BDAT chunks are kept
//! (else skipped); bit 1, `STARTTLS` throws the buffered input away as the
//! connection does (which makes the frames depend on the reads).
//!
//! Checks: no panic; the buffer bounds the codec documents after every
//! read (under `MAX_LINE` + 2 octets in command mode, nothing beyond the
//! size limit and its stuffing dots in data mode, less than the chunk in
//! chunk mode); each frame is one the mode allows, a message never over
//! the limit; and, unless bit 1 is set, the frames equal those of a plain
//! reference decoder of the whole stream, whatever the reads.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mail_laser::smtp::codec::{Frame, MAX_LINE, SmtpCodec};
use mail_laser::smtp::command::Command;
use mail_laser_fuzz::{Header, reads};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((header, stream)) = Header::split(data) else {
        return;
    };
    let keep = header.flag(0);
    let starttls_discards = header.flag(1);
    let frames = decode(stream, &header, keep, starttls_discards);
    if !starttls_discards {
        assert_eq!(
            frames,
            reference(stream, header.max_message_size, keep),
            "frames differ from the reference decoder"
        );
    }
});

/// What the driver switched the codec to, and so what may come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Command,
    Data,
    Chunk(usize),
    SkipChunk,
}

fn decode(stream: &[u8], header: &Header, keep: bool, starttls_discards: bool) -> Vec<Frame> {
    let max = header.max_message_size;
    let mut driver = Driver {
        codec: SmtpCodec::new(max),
        buf: BytesMut::new(),
        frames: Vec::new(),
        expect: Expect::Command,
        max,
        keep,
        starttls_discards,
    };
    // Every frame but an empty chunk consumes at least one octet, and an
    // empty chunk follows its BDAT line: a bound that catches a codec
    // yielding frames forever.
    let most_frames = 2 * stream.len() + 2;
    for read in reads(stream, header.seed) {
        driver.buf.extend_from_slice(read);
        while let Some(frame) = driver
            .codec
            .decode(&mut driver.buf)
            .expect("no I/O, no error")
        {
            driver.step(frame);
            assert!(driver.frames.len() <= most_frames, "too many frames");
        }
        check_buffer(&driver.buf, driver.expect, max);
    }
    while let Some(frame) = driver
        .codec
        .decode_eof(&mut driver.buf)
        .expect("no I/O, no error")
    {
        driver.step(frame);
        assert!(driver.frames.len() <= most_frames, "too many frames");
    }
    assert!(
        driver.buf.is_empty(),
        "decode_eof left {} octets",
        driver.buf.len()
    );
    assert!(
        !driver.codec.is_reading_data(),
        "decode_eof left the codec reading data"
    );
    driver.frames
}

/// The codec, its read buffer, and what the session would make of it.
struct Driver {
    codec: SmtpCodec,
    buf: BytesMut,
    frames: Vec<Frame>,
    expect: Expect,
    max: usize,
    keep: bool,
    starttls_discards: bool,
}

impl Driver {
    /// Checks `frame` against the mode the driver set, then switches the
    /// codec as the session would.
    fn step(&mut self, frame: Frame) {
        match (&frame, self.expect) {
            (Frame::Command(_) | Frame::LineTooLong, Expect::Command)
            | (Frame::MessageTooLarge, Expect::Data)
            | (Frame::ChunkSkipped, Expect::SkipChunk) => {}
            (Frame::Message(message), Expect::Data) => {
                assert!(message.len() <= self.max, "message over the limit");
            }
            (Frame::Chunk(chunk), Expect::Chunk(size)) => assert_eq!(chunk.len(), size),
            (frame, expect) => panic!("frame {frame:?} while expecting {expect:?}"),
        }
        assert!(
            !self.codec.is_reading_data(),
            "a frame must leave command mode"
        );
        self.expect = match &frame {
            Frame::Command(Ok(Command::Data)) => {
                self.codec.start_data();
                Expect::Data
            }
            Frame::Command(Ok(Command::Bdat { size, .. })) => {
                self.codec.start_chunk(*size, self.keep);
                match usize::try_from(*size) {
                    Ok(size) if self.keep && size <= self.max => Expect::Chunk(size),
                    _ => Expect::SkipChunk,
                }
            }
            Frame::Command(Ok(Command::StartTls)) if self.starttls_discards => {
                self.buf.clear();
                self.codec.reset();
                Expect::Command
            }
            _ => Expect::Command,
        };
        assert_eq!(self.codec.is_reading_data(), self.expect != Expect::Command);
        self.frames.push(frame);
    }
}

/// The read buffer stays bounded, whatever the client sends (the codec's
/// module documentation).
fn check_buffer(buf: &BytesMut, expect: Expect, max: usize) {
    let len = buf.len();
    match expect {
        Expect::Command => assert!(len < MAX_LINE + 2, "command mode buffers {len} octets"),
        // The unstuffed body (at most `max`), the stuffing dots dropped in
        // place (at most one per 3 octets of body, plus a trailing one) and
        // a CR that may belong to the terminator.
        Expect::Data => assert!(
            len <= max + max / 3 + 2,
            "data mode buffers {len} octets for a limit of {max}"
        ),
        Expect::Chunk(size) => assert!(len < size, "chunk mode buffers {len} of {size}"),
        Expect::SkipChunk => assert_eq!(len, 0, "a skipped chunk is buffered"),
    }
}

/// The frames of the whole stream, decoded the obvious way: lines end at
/// LF; after `DATA` the body ends at `<CRLF>.<CRLF>` with line-start dots
/// removed; after `BDAT n` come exactly `n` octets. A frame cut off by the
/// end of the stream is not yielded.
fn reference(stream: &[u8], max: usize, keep: bool) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut rest = stream;
    while let Some(lf) = rest.iter().position(|&b| b == b'\n') {
        let (line, tail) = rest.split_at(lf + 1);
        rest = tail;
        let content = &line[..lf];
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.len() > MAX_LINE {
            frames.push(Frame::LineTooLong);
            continue;
        }
        let command = Command::parse(line);
        let announced = match &command {
            Ok(Command::Data) => Some(None),
            Ok(Command::Bdat { size, .. }) => Some(Some(*size)),
            _ => None,
        };
        frames.push(Frame::Command(command));
        match announced {
            None => {}
            Some(None) => {
                let Some((body, used)) = unstuff(rest) else {
                    break;
                };
                rest = &rest[used..];
                frames.push(if body.len() > max {
                    Frame::MessageTooLarge
                } else {
                    Frame::Message(Bytes::from(body))
                });
            }
            Some(Some(size)) => {
                let Some(size) = usize::try_from(size)
                    .ok()
                    .filter(|&size| size <= rest.len())
                else {
                    break;
                };
                let (chunk, tail) = rest.split_at(size);
                rest = tail;
                frames.push(if keep && size <= max {
                    Frame::Chunk(Bytes::copy_from_slice(chunk))
                } else {
                    Frame::ChunkSkipped
                });
            }
        }
    }
    frames
}

/// The body at the start of `raw` and the octets it took, terminator
/// included; `None` if it does not end. Only CRLF ends a line.
fn unstuff(raw: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut line_start = true;
    let mut after_cr = false;
    let mut i = 0;
    while i < raw.len() {
        let byte = raw[i];
        if line_start && byte == b'.' {
            if raw[i + 1..].starts_with(b"\r\n") {
                return Some((body, i + 3));
            }
            line_start = false;
            after_cr = false;
            i += 1;
            continue;
        }
        body.push(byte);
        line_start = after_cr && byte == b'\n';
        after_cr = byte == b'\r';
        i += 1;
    }
    None
}
