//! What the fuzz targets share: the input header of the byte-stream targets,
//! a deterministic way to cut a stream into reads, and the check that a
//! reply is well-formed on the wire.

use bytes::BytesMut;
use mail_laser::smtp::reply::Reply;

/// The first [`Header::LEN`] octets of a `codec` or `session` input; the
/// rest is what the client sends.
///
/// | octet | meaning                                            |
/// |-------|----------------------------------------------------|
/// | 0     | flags, each target documents its bits              |
/// | 1–2   | the message size limit, little-endian              |
/// | 3     | a seed (how the stream is cut, or how the stack answers) |
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub flags: u8,
    pub max_message_size: usize,
    pub seed: u8,
}

impl Header {
    pub const LEN: usize = 4;

    /// The header and the stream after it; `None` for inputs too short.
    pub fn split(data: &[u8]) -> Option<(Self, &[u8])> {
        let (header, stream) = data.split_first_chunk::<{ Self::LEN }>()?;
        let header = Self {
            flags: header[0],
            max_message_size: usize::from(u16::from_le_bytes([header[1], header[2]])),
            seed: header[3],
        };
        Some((header, stream))
    }

    pub fn flag(&self, bit: u8) -> bool {
        self.flags & (1 << bit) != 0
    }
}

/// A small deterministic generator (xorshift32), so that one input always
/// runs the same way.
#[derive(Debug, Clone)]
pub struct Rng(u32);

impl Rng {
    pub fn new(seed: u8) -> Self {
        Self((u32::from(seed) + 1).wrapping_mul(0x9E37_79B9) | 1)
    }

    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

/// Cuts `stream` into the reads a socket might deliver: seed 0 is one read
/// of everything; otherwise reads of 1 to 2^(seed % 12) octets, their
/// lengths drawn from the seed (seed 12 is one octet at a time).
pub fn reads(stream: &[u8], seed: u8) -> Vec<&[u8]> {
    if seed == 0 {
        return vec![stream];
    }
    let longest = 1usize << (seed % 12);
    let mut rng = Rng::new(seed);
    let mut reads = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let len = (1 + rng.next_u32() as usize % longest).min(rest.len());
        let (read, tail) = rest.split_at(len);
        reads.push(read);
        rest = tail;
    }
    reads
}

/// Panics unless `reply` is a well-formed SMTP reply (RFC 5321 §4.2), with
/// and without enhanced status codes: a code from 200 to 599, each line
/// `code-text` but the last `code text`, CRLF only at line ends, otherwise
/// printable ASCII, and an enhanced code (RFC 3463) of the code's class.
pub fn check_reply(reply: &Reply) {
    assert!(
        (200..600).contains(&reply.code),
        "reply code out of range: {reply:?}"
    );
    if let Some(enhanced) = reply.enhanced {
        assert_eq!(
            u16::from(enhanced.0),
            reply.code / 100,
            "enhanced code of another class: {reply:?}"
        );
    }
    for with_enhanced in [false, true] {
        let mut wire = BytesMut::new();
        reply.encode(with_enhanced, &mut wire);
        let wire = &wire[..];
        assert!(
            wire.ends_with(b"\r\n"),
            "reply not CRLF-terminated: {wire:?}"
        );
        let code = format!("{:03}", reply.code);
        let lines: Vec<&[u8]> = wire[..wire.len() - 2].split(|&b| b == b'\n').collect();
        for (index, line) in lines.iter().enumerate() {
            let line = if index + 1 < lines.len() {
                line.strip_suffix(b"\r")
                    .unwrap_or_else(|| panic!("bare LF in reply: {wire:?}"))
            } else {
                line
            };
            assert!(
                line.starts_with(code.as_bytes()),
                "line without its code: {wire:?}"
            );
            let separator = if index + 1 < lines.len() { b'-' } else { b' ' };
            assert_eq!(line.get(3), Some(&separator), "bad separator: {wire:?}");
            assert!(
                line.iter().all(|&b| (b' '..=b'~').contains(&b)),
                "control or non-ASCII octet in reply: {wire:?}"
            );
        }
    }
}
