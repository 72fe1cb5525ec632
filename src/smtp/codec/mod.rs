//! Framing of the SMTP byte stream (`docs/smtp.md`): command lines, DATA bodies and
//! BDAT chunks in, replies out.
//!
//! The codec only turns bytes into [`Frame`]s; it makes no protocol
//! decisions. The session, which knows when it answered `354`, switches it to
//! data mode with [`SmtpCodec::start_data`]; after `BDAT n` it switches it to
//! chunk mode with [`SmtpCodec::start_chunk`]. Every limit is enforced here,
//! so whatever a client sends, the read buffer stays bounded: about
//! [`MAX_LINE`] octets in command mode and the message size limit (plus one
//! read) in data and chunk mode — and message octets count against the
//! [`MemoryBudget`] shared by all connections as they arrive.
//!
//! A body ends only at `<CRLF>.<CRLF>`; a dot framed by a bare LF or CR is
//! body text (no SMTP smuggling). A BDAT chunk is exactly `n` octets, taken
//! as they are: no dot processing, no line parsing (RFC 3030 §2).

mod budget;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

pub use self::budget::{GRANULE, MemoryBudget, Reservation};
use super::command::{Command, CommandError};
use super::reply::Reply;

/// Maximum length of a command line in octets, excluding the CRLF.
pub const MAX_LINE: usize = 2048;

/// The most a command line may occupy in the buffer before we know whether it
/// is too long: the content, a CR and the LF.
const MAX_FRAMED_LINE: usize = MAX_LINE + 2;

/// One unit of input for the session.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One command line, parsed by `Command::parse` (the line passed including its LF).
    Command(Result<Command, CommandError>),
    /// A line answering a SASL challenge (after [`SmtpCodec::start_response`]),
    /// without its CRLF and unparsed: base64 or `*`.
    Response(Bytes),
    /// A command line longer than [`MAX_LINE`]; yielded once the rest of that
    /// line was discarded (at its LF), so the reply stays in order. The
    /// session survives.
    LineTooLong,
    /// The complete message after DATA: dot-unstuffed, CRLFs kept, including
    /// the CRLF that ended the last line, without the terminating `.\r\n`.
    Message(Bytes),
    /// The body exceeded the size limit: it was read to its end and
    /// discarded (never buffered beyond the limit).
    MessageTooLarge,
    /// The octets of one BDAT chunk, exactly as sent.
    Chunk(Bytes),
    /// A BDAT chunk the session asked to skip (refused, or over the limit):
    /// its octets were read and dropped, so the command stream stays in sync.
    ChunkSkipped,
    /// The body after DATA, or a BDAT chunk, did not fit in the
    /// [`MemoryBudget`]: it was read to its end and dropped.
    OverBudget,
}

/// Errors of the transport underneath; the framing itself never fails.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One reply ready for the wire; `enhanced` says whether
/// ENHANCEDSTATUSCODES is in effect.
#[derive(Debug, Clone, Copy)]
pub struct Outbound<'a> {
    pub reply: &'a Reply,
    pub enhanced: bool,
}

/// The SMTP codec. Every frame it yields leaves it in command mode; only
/// [`SmtpCodec::start_data`] enters data mode.
#[derive(Debug)]
pub struct SmtpCodec {
    mode: Mode,
    /// Limit on the unstuffed body octets of one message.
    max_message_size: usize,
    /// What this connection holds against the shared budget.
    reservation: Reservation,
    /// Octets of the current message held: the body so far, or the chunks
    /// so far (the session keeps them) plus the one being read.
    held: usize,
}

// === impl SmtpCodec ===

impl SmtpCodec {
    /// A codec in command mode whose messages may hold at most
    /// `max_message_size` octets (after dot-unstuffing), without a shared
    /// memory budget.
    pub fn new(max_message_size: usize) -> Self {
        Self::with_budget(max_message_size, &MemoryBudget::unlimited())
    }

    /// As [`SmtpCodec::new`], with message octets counted against `budget`.
    pub fn with_budget(max_message_size: usize, budget: &MemoryBudget) -> Self {
        Self {
            mode: Mode::command(),
            max_message_size,
            reservation: budget.reservation(),
            held: 0,
        }
    }

    /// Gives the current message's octets back to the budget. The
    /// connection calls it once the session holds no message any more (it
    /// was answered, refused or reset): until then the octets live on, in
    /// the session's chunks, the parse and the delivery.
    ///
    /// The message was split off `read_buffer`, whose allocation it came in
    /// lives on as long as the buffer uses it: after a large message, what
    /// the buffer holds (pipelined input) moves to a small new one.
    pub fn release_message(&mut self, read_buffer: &mut BytesMut) {
        if self.held > KEEP_CAPACITY {
            renew(read_buffer);
        }
        self.held = 0;
        self.reservation.release();
    }

    /// Whether the shared budget has room for a new message.
    pub fn budget_has_room(&self) -> bool {
        self.reservation.budget().has_room()
    }

    /// Switches to data mode: the next frame is [`Frame::Message`] or
    /// [`Frame::MessageTooLarge`]. Called by the connection right after it
    /// queued the 354 reply; bytes already buffered after the DATA line belong
    /// to the body. Calling it again while a body is being read changes nothing.
    pub fn start_data(&mut self) {
        if !self.is_reading_data() {
            self.mode = Mode::Data(Body::new());
        }
    }

    /// Switches to response mode: the next line is a client's answer to a
    /// SASL challenge (RFC 4954 §4), yielded raw as [`Frame::Response`] (or
    /// [`Frame::LineTooLong`]: it has the command line's limit). Called by
    /// the connection right after it queued the `334` reply.
    pub fn start_response(&mut self) {
        if matches!(self.mode, Mode::Command { .. }) {
            self.mode = Mode::Response { next_index: 0 };
        }
    }

    /// Switches to chunk mode: the next `size` octets are one BDAT chunk,
    /// yielded as [`Frame::Chunk`] when `keep` is set, otherwise dropped as
    /// they arrive and reported as [`Frame::ChunkSkipped`]. A chunk larger
    /// than the message size limit is never kept, whatever `keep` says, so
    /// the buffer stays bounded. Called by the connection right after the
    /// session accepted (or refused) `BDAT size`; bytes already buffered
    /// after the BDAT line belong to the chunk.
    pub fn start_chunk(&mut self, size: u64, keep: bool) {
        let kept = usize::try_from(size)
            .ok()
            .filter(|&size| keep && size <= self.max_message_size);
        self.mode = match kept {
            Some(size) => Mode::Chunk(size),
            None => Mode::SkipChunk(size, Dropped::Limit),
        };
    }

    /// Whether the codec is between `start_data` and the end of that body,
    /// or between `start_chunk` and the end of that chunk.
    pub fn is_reading_data(&self) -> bool {
        matches!(
            self.mode,
            Mode::Data(_) | Mode::Draining(..) | Mode::Chunk(_) | Mode::SkipChunk(..)
        )
    }

    /// Back to command mode, forgetting how far the buffer was scanned. The
    /// codec remembers positions in the read buffer, so the connection calls
    /// this whenever it throws buffered input away itself (after `STARTTLS`).
    pub fn reset(&mut self) {
        self.mode = Mode::command();
    }
}

impl Decoder for SmtpCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        loop {
            let mut held = Held {
                reservation: &mut self.reservation,
                octets: &mut self.held,
            };
            let step = match &mut self.mode {
                Mode::Command { next_index } => decode_line(next_index, src, Line::Command),
                Mode::Response { next_index } => decode_line(next_index, src, Line::Response),
                Mode::Discarding => discard_line(src),
                Mode::Data(body) => body.decode(src, self.max_message_size, &mut held),
                Mode::Draining(scan, dropped) => drain(scan, *dropped, src),
                Mode::Chunk(size) => take_chunk(*size, src, &mut held),
                Mode::SkipChunk(remaining, dropped) => skip_chunk(remaining, *dropped, src),
            };
            match step {
                Step::Pending => return Ok(None),
                Step::Yield(frame) => {
                    self.mode = Mode::command();
                    return Ok(Some(frame));
                }
                Step::Switch(mode) => self.mode = mode,
            }
        }
    }

    /// A partial line or body at the end of the stream is not a frame: it is
    /// dropped and the connection simply ends (no "bytes remaining" error).
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        src.clear();
        self.reset();
        Ok(None)
    }
}

impl<'a> Encoder<Outbound<'a>> for SmtpCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Outbound<'a>, dst: &mut BytesMut) -> Result<(), CodecError> {
        item.reply.encode(item.enhanced, dst);
        Ok(())
    }
}

// === impl Mode ===

/// What the bytes at the front of the buffer are.
#[derive(Debug)]
enum Mode {
    /// A command line; `src[..next_index]` was already searched for its LF.
    Command { next_index: usize },
    /// A SASL response line, searched likewise.
    Response { next_index: usize },
    /// The rest of an overlong line, dropped as it arrives up to its LF.
    Discarding,
    /// A message body being collected in place.
    Data(Body),
    /// A body being dropped: looking for its terminator while keeping nothing.
    Draining(Scan, Dropped),
    /// A BDAT chunk of this many octets, collected at the front of the buffer.
    Chunk(usize),
    /// A BDAT chunk being dropped; this many octets are still to come.
    SkipChunk(u64, Dropped),
}

/// Why a body or chunk is dropped, which decides the frame it ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dropped {
    /// Over the message size limit, or refused by the session.
    Limit,
    /// The shared memory budget could not hold it.
    Budget,
}

impl Dropped {
    fn body_frame(self) -> Frame {
        match self {
            Self::Limit => Frame::MessageTooLarge,
            Self::Budget => Frame::OverBudget,
        }
    }

    fn chunk_frame(self) -> Frame {
        match self {
            Self::Limit => Frame::ChunkSkipped,
            Self::Budget => Frame::OverBudget,
        }
    }
}

/// The octets of the current message and their reservation.
struct Held<'a> {
    reservation: &'a mut Reservation,
    octets: &'a mut usize,
}

impl Held<'_> {
    /// Covers `octets` more than the chunks kept so far (`base`); `false`
    /// when the budget cannot.
    fn cover(&mut self, octets: usize) -> bool {
        self.reservation.cover(self.octets.saturating_add(octets))
    }

    /// The message is dropped: nothing of it is held any more (the session
    /// drops its chunks too), so its octets go back at once rather than
    /// when the client finally stops sending — and so does the memory the
    /// read buffer grew to for it (what `src` still holds moves to a new,
    /// small buffer: `clear` or `advance` would keep the allocation).
    fn drop_message(&mut self, src: &mut BytesMut) {
        if self.reservation.held() > KEEP_CAPACITY || src.capacity() > KEEP_CAPACITY {
            renew(src);
        }
        *self.octets = 0;
        self.reservation.release();
    }
}

impl Mode {
    const fn command() -> Self {
        Self::Command { next_index: 0 }
    }
}

/// The outcome of one decoding step.
enum Step {
    /// Nothing complete is buffered; all buffered bytes are accounted for.
    Pending,
    /// A frame; the codec returns to command mode.
    Yield(Frame),
    /// Continue decoding the same buffer in another mode.
    Switch(Mode),
}

/// What a line is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Command,
    Response,
}

/// Finds the next command (or SASL response) line. Never looks further
/// than [`MAX_FRAMED_LINE`] octets, so an LF-less flood cannot make the
/// buffer grow.
fn decode_line(next_index: &mut usize, src: &mut BytesMut, line: Line) -> Step {
    let window = src.len().min(MAX_FRAMED_LINE);
    // Only a buffer emptied behind our back (see `SmtpCodec::reset`) can be
    // shorter than what was searched; then search it all.
    let searched = if *next_index > window { 0 } else { *next_index };
    match find(b'\n', &src[searched..window]) {
        Some(offset) => {
            let end = searched + offset + 1;
            let crlf = end >= 2 && src[end - 2] == b'\r';
            let content = end - 1 - usize::from(crlf);
            let frame = if content > MAX_LINE {
                Frame::LineTooLong
            } else if line == Line::Response {
                Frame::Response(Bytes::copy_from_slice(&src[..content]))
            } else {
                Frame::Command(Command::parse(&src[..end]))
            };
            src.advance(end);
            *next_index = 0;
            Step::Yield(frame)
        }
        None if window == MAX_FRAMED_LINE => {
            // No LF in the longest acceptable line: whatever follows, it is
            // too long. Anything after the window may hold its LF.
            src.advance(window);
            Step::Switch(Mode::Discarding)
        }
        None => {
            *next_index = window;
            Step::Pending
        }
    }
}

/// Drops the rest of an overlong line; its LF yields [`Frame::LineTooLong`].
fn discard_line(src: &mut BytesMut) -> Step {
    match find(b'\n', src) {
        Some(offset) => {
            src.advance(offset + 1);
            Step::Yield(Frame::LineTooLong)
        }
        None => {
            src.clear();
            Step::Pending
        }
    }
}

/// Scans a dropped body for its terminator, discarding everything.
fn drain(scan: &mut Scan, dropped: Dropped, src: &mut BytesMut) -> Step {
    let mut from = 0;
    loop {
        match scan.run(src, from) {
            Event::Dot(at) => from = at + 1,
            Event::End(end) => {
                src.advance(end);
                return Step::Yield(dropped.body_frame());
            }
            Event::Exhausted => {
                src.clear();
                return Step::Pending;
            }
        }
    }
}

/// Yields the chunk once all `size` octets are buffered. Nothing is scanned:
/// a chunk is opaque. The octets count against the budget as they arrive;
/// when it cannot hold them, the chunk is dropped instead.
fn take_chunk(size: usize, src: &mut BytesMut, held: &mut Held<'_>) -> Step {
    let buffered = src.len().min(size);
    if !held.cover(buffered) {
        let remaining = (size - buffered) as u64;
        src.advance(buffered);
        held.drop_message(src);
        return Step::Switch(Mode::SkipChunk(remaining, Dropped::Budget));
    }
    if src.len() < size {
        return Step::Pending;
    }
    *held.octets += size;
    Step::Yield(Frame::Chunk(src.split_to(size).freeze()))
}

/// Drops chunk octets as they arrive; the last one yields the frame
/// `dropped` says.
fn skip_chunk(remaining: &mut u64, dropped: Dropped, src: &mut BytesMut) -> Step {
    let buffered = u64::try_from(src.len()).unwrap_or(u64::MAX);
    let skipped = buffered.min(*remaining);
    // `dropped <= src.len()`, so it fits in usize.
    src.advance(usize::try_from(skipped).unwrap_or(src.len()));
    *remaining -= skipped;
    if *remaining == 0 {
        Step::Yield(dropped.chunk_frame())
    } else {
        Step::Pending
    }
}

// === impl Body ===

/// A body collected in place at the front of the buffer.
///
/// Invariant: `write <= pending <= next_index <= src.len()`, and the
/// unstuffed body read so far is `src[..write] ++ src[pending..next_index]`
/// (less a trailing CR while `scan` is [`Scan::DotCr`], which is body text
/// only if no LF follows). Without stuffed dots `write == pending` and no
/// byte is ever moved; each stuffed dot moves the stretch before it down once,
/// so every byte is copied at most once.
#[derive(Debug)]
struct Body {
    scan: Scan,
    next_index: usize,
    write: usize,
    pending: usize,
}

impl Body {
    const fn new() -> Self {
        Self {
            // The DATA line's own CRLF precedes the body.
            scan: Scan::LineStart,
            next_index: 0,
            write: 0,
            pending: 0,
        }
    }

    /// The body so far counts against the budget at each read; a body the
    /// budget cannot hold is drained like an oversize one.
    fn decode(&mut self, src: &mut BytesMut, max: usize, held: &mut Held<'_>) -> Step {
        if self.next_index > src.len() {
            // The buffer was emptied behind our back (see `SmtpCodec::reset`):
            // start over rather than index out of bounds.
            *self = Self::new();
        }
        loop {
            match self.scan.run(src, self.next_index) {
                Event::Dot(at) => {
                    // A dot at line start is dropped: stuffing, or the
                    // terminator's dot (then the body ends right before it).
                    if self.write != self.pending {
                        src.copy_within(self.pending..at, self.write);
                    }
                    self.write += at - self.pending;
                    self.pending = at + 1;
                    self.next_index = at + 1;
                    if self.write > max {
                        src.advance(self.next_index);
                        held.drop_message(src);
                        return Step::Switch(Mode::Draining(self.scan, Dropped::Limit));
                    }
                }
                Event::End(end) => {
                    if self.write > max {
                        src.advance(end);
                        held.drop_message(src);
                        return Step::Yield(Frame::MessageTooLarge);
                    }
                    if !held.cover(self.write) {
                        src.advance(end);
                        held.drop_message(src);
                        return Step::Yield(Frame::OverBudget);
                    }
                    *held.octets += self.write;
                    let mut message = src.split_to(end);
                    message.truncate(self.write);
                    return Step::Yield(Frame::Message(message.freeze()));
                }
                Event::Exhausted => {
                    self.next_index = src.len();
                    let tentative_cr = usize::from(self.scan == Scan::DotCr);
                    let size = self.write + (self.next_index - self.pending) - tentative_cr;
                    let dropped = if size > max {
                        Dropped::Limit
                    } else if !held.cover(size) {
                        Dropped::Budget
                    } else {
                        return Step::Pending;
                    };
                    src.clear();
                    held.drop_message(src);
                    return Step::Switch(Mode::Draining(self.scan, dropped));
                }
            }
        }
    }
}

// === impl Scan ===

/// Where the scanner stands relative to a `<CRLF>.<CRLF>` terminator. Only
/// CRLF ends a line; a bare CR or LF is text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// After CRLF, or at the start of the body: a dot here is stuffing or
    /// the start of the terminator.
    LineStart,
    /// Inside a line, after anything but CR.
    Text,
    /// After a CR inside a line; an LF ends the line.
    Cr,
    /// After a (dropped) dot at line start.
    Dot,
    /// After `.` CR at line start; an LF ends the body.
    DotCr,
}

/// What [`Scan::run`] stopped at.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// Every byte was scanned.
    Exhausted,
    /// A dot at line start at this index; resume after it.
    Dot(usize),
    /// The terminator's LF ends right before this index.
    End(usize),
}

impl Scan {
    /// Scans `buf[from..]`, stopping at each line-start dot and at the
    /// terminator. The state carries over between calls, so a terminator
    /// split across reads is found without looking back.
    fn run(&mut self, buf: &[u8], mut from: usize) -> Event {
        while from < buf.len() {
            if *self == Self::Text {
                // Nothing matters inside a line until its CR.
                match find(b'\r', &buf[from..]) {
                    Some(offset) => {
                        from += offset + 1;
                        *self = Self::Cr;
                        continue;
                    }
                    None => return Event::Exhausted,
                }
            }
            let byte = buf[from];
            from += 1;
            *self = match (*self, byte) {
                (Self::LineStart, b'.') => {
                    *self = Self::Dot;
                    return Event::Dot(from - 1);
                }
                (Self::DotCr, b'\n') => {
                    *self = Self::LineStart;
                    return Event::End(from);
                }
                (Self::Cr, b'\n') => Self::LineStart,
                (Self::Dot, b'\r') => Self::DotCr,
                (_, b'\r') => Self::Cr,
                _ => Self::Text,
            };
        }
        Event::Exhausted
    }
}

/// After a message larger than this, the read buffer is moved into a new,
/// small allocation.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Moves what `src` holds into a new allocation of one read's size (or
/// what it holds, if more), freeing the one it had grown to.
fn renew(src: &mut BytesMut) {
    let mut fresh = BytesMut::with_capacity(src.len().max(READ_SIZE));
    fresh.extend_from_slice(src);
    *src = fresh;
}

/// The capacity [`renew`] leaves: the size of a socket read.
const READ_SIZE: usize = 8 * 1024;

/// Index of the first `needle` in `haystack`. A plain loop is fast enough
/// here (bodies decode at several GiB/s, see `benches/codec.rs`) and spares
/// a dependency.
fn find(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&byte| byte == needle)
}

#[cfg(test)]
mod tests;
