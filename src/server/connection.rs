//! Drives one connection: reads frames, steps the [`Session`], calls the
//! stack, writes replies. Replies to pipelined commands are queued and go out
//! with one flush once no complete command is left in the read buffer.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ProtocolVersion;
use tokio_rustls::server::TlsStream;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};
use tracing::{Instrument, field};

use super::pace::{BodyClock, Expired, Timeouts};
use super::transport::Transport;
use crate::smtp::codec::{CodecError, Frame, MemoryBudget, Outbound, SmtpCodec};
use crate::smtp::command::Command;
use crate::smtp::reply::Reply;
use crate::smtp::session::{Action, Session, SessionConfig};
use crate::smtp::{RequestKind, SmtpRequest, SmtpResponse, TlsInfo};
use crate::stack::SmtpService;
use crate::telemetry::{ErrorChain, Metrics, Printable};

type SmtpFramed = Framed<Transport, SmtpCodec>;

/// Initial capacity of a connection's read and write buffers: a command
/// line or a batch of replies; DATA grows the read buffer.
const INITIAL_BUFFER: usize = 1024;

/// What every connection shares, built once by the server.
#[derive(Clone)]
pub struct ConnectionContext {
    pub session: Arc<SessionConfig>,
    pub tls: Option<TlsAcceptor>,
    pub timeouts: Timeouts,
    pub max_message_size: usize,
    /// Message octets held by all connections together.
    pub memory: MemoryBudget,
    pub metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("TLS handshake failed")]
    Handshake(#[source] std::io::Error),
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    /// The client stopped reading: a write or flush did not finish in time.
    #[error("write to the client timed out")]
    WriteTimeout,
    /// The session asked for STARTTLS without an acceptor or inside TLS,
    /// or the implicit-TLS port has no acceptor; neither happens (the
    /// session and the server know), so this is a bug, not a client error.
    #[error("TLS requested where no upgrade is possible")]
    NoUpgrade,
}

impl From<std::io::Error> for ConnectionError {
    fn from(error: std::io::Error) -> Self {
        Self::Codec(CodecError::Io(error))
    }
}

/// What woke the session up.
enum Wakeup {
    Frame(Frame),
    Closed,
    Expired(Expired),
    Shutdown,
}

/// How a connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The SMTP port: plain text, STARTTLS offered.
    Plain,
    /// The implicit-TLS port (RFC 8314 §3): the TLS handshake first.
    ImplicitTls,
}

/// Serves one client until it quits, is closed, or the server shuts down.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Listener,
    context: Arc<ConnectionContext>,
    service: SmtpService,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!(
        "smtp.session",
        "client.address" = %peer.ip(),
        "client.port" = i64::from(peer.port()),
        "smtp.tls" = false,
        "smtp.implicit_tls" = listener == Listener::ImplicitTls,
        "smtp.helo" = field::Empty,
        "smtp.auth.user" = field::Empty,
    );
    let metrics = context.metrics.clone();
    metrics.session_opened();
    let mut connection = Connection {
        session: Session::new(context.session.clone(), peer),
        context,
        service,
        shutdown,
        body: None,
    };
    if let Err(error) = connection.run(stream, listener).instrument(span).await {
        tracing::debug!(%peer, error = %ErrorChain(&error), "connection ended with an error");
    }
    metrics.session_closed(connection.session.is_tls());
}

struct Connection {
    session: Session,
    context: Arc<ConnectionContext>,
    service: SmtpService,
    shutdown: CancellationToken,
    /// Set while a message body is read (after `354`, or between `BDAT`
    /// chunks), for its minimum rate.
    body: Option<BodyClock>,
}

impl Connection {
    async fn run(&mut self, stream: TcpStream, listener: Listener) -> Result<(), ConnectionError> {
        let transport = match listener {
            Listener::Plain => Transport::plain(stream),
            Listener::ImplicitTls => Transport::tls(self.handshake(stream).await?, 0),
        };
        // Small initial buffers keep idle sessions cheap (Framed::new takes 8 KB
        // each); the read buffer grows as input needs, and replies are still
        // batched up to 8 KB before a write.
        let mut framed = Framed::with_capacity(
            transport,
            SmtpCodec::with_budget(self.context.max_message_size, &self.context.memory),
            INITIAL_BUFFER,
        );
        framed.set_backpressure_boundary(8 * 1024);
        let greeting = self.session.greeting();
        self.send(&mut framed, &greeting).await?;

        loop {
            let frame = match self.next_event(&mut framed).await? {
                Wakeup::Frame(frame) => frame,
                Wakeup::Closed => return Ok(()),
                Wakeup::Expired(Expired::Idle) => {
                    let reply = self.session.idle_timeout();
                    return self.close_with(&mut framed, &reply).await;
                }
                Wakeup::Expired(Expired::TooSlow) => {
                    tracing::info!("message arriving too slowly, closing the session");
                    return self.close_with(&mut framed, &Reply::too_slow()).await;
                }
                Wakeup::Shutdown => {
                    return self.close_with(&mut framed, &Reply::shutting_down()).await;
                }
            };
            let verb = verb_label(&frame, self.session.awaits_chunk());
            let greets = matches!(
                frame,
                Frame::Command(Ok(Command::Ehlo(_) | Command::Helo(_)))
            );
            self.session
                .set_buffers_full(!framed.codec().budget_has_room());
            let action = self.session.on_frame(frame);
            // Recorded once per greeting: the fmt subscriber appends every
            // record to the span's text, so a record per reply grew it (and
            // every log line in the session) by one `helo=` per reply.
            if let Some(helo) = self.session.helo().filter(|_| greets) {
                tracing::Span::current().record("smtp.helo", field::display(Printable(helo)));
            }
            let reply = match action {
                Action::Reply(reply) => reply,
                Action::Close(reply) => {
                    self.context.metrics.command(verb, reply.code);
                    return self.close_with(&mut framed, &reply).await;
                }
                Action::Call(kind) => {
                    let auth = matches!(kind, RequestKind::Auth(_));
                    let response = self.call(kind).await;
                    let reply = self.session.on_response(response);
                    if let Some(user) = self.session.authenticated().filter(|_| auth) {
                        tracing::Span::current()
                            .record("smtp.auth.user", field::display(Printable(user)));
                    }
                    reply
                }
                Action::ReadResponse(reply) => {
                    self.context.metrics.command(verb, reply.code);
                    self.send(&mut framed, &reply).await?;
                    framed.codec_mut().start_response();
                    continue;
                }
                Action::StartData(reply) => {
                    self.context.metrics.command(verb, reply.code);
                    self.send(&mut framed, &reply).await?;
                    framed.codec_mut().start_data();
                    continue;
                }
                Action::ReadChunk { size, keep } => {
                    framed.codec_mut().start_chunk(size, keep);
                    continue;
                }
                Action::StartTls(reply) => {
                    self.context.metrics.command(verb, reply.code);
                    self.send(&mut framed, &reply).await?;
                    self.write(framed.flush()).await?;
                    framed = self.start_tls(framed).await?;
                    continue;
                }
            };
            if !self.session.in_data() {
                // Answered, refused or reset: the message octets are gone,
                // and so is the memory the read buffer grew to for them.
                let mut buffer = std::mem::take(framed.read_buffer_mut());
                framed.codec_mut().release_message(&mut buffer);
                *framed.read_buffer_mut() = buffer;
            }
            self.context.metrics.command(verb, reply.code);
            if reply.closes_connection() {
                return self.close_with(&mut framed, &reply).await;
            }
            self.send(&mut framed, &reply).await?;
        }
    }

    /// The next frame, flushing queued replies first unless another complete
    /// command is already buffered (pipelining, RFC 2920 §3.1). The wait is
    /// bounded as [`Timeouts`] says.
    async fn next_event(&mut self, framed: &mut SmtpFramed) -> Result<Wakeup, ConnectionError> {
        if let Some(item) = framed.next().now_or_never() {
            return event(item);
        }
        self.write(framed.flush()).await?;
        let timeouts = self.context.timeouts;
        let ready = Instant::now();
        // A session reading a body is let finish; the server bounds the wait.
        let in_body = self.session.in_data();
        if !in_body {
            self.body = None;
        } else if self.body.is_none() {
            self.body = Some(BodyClock::start(ready, framed.get_ref().bytes_read()));
        }
        loop {
            let now = Instant::now();
            let deadline = match &mut self.body {
                Some(clock) => {
                    match timeouts.body_deadline(clock, now, framed.get_ref().bytes_read()) {
                        Ok(deadline) => deadline,
                        Err(expired) => return Ok(Wakeup::Expired(expired)),
                    }
                }
                None => timeouts.command_deadline(ready),
            };
            tokio::select! {
                biased;
                () = self.shutdown.cancelled(), if !in_body => return Ok(Wakeup::Shutdown),
                item = tokio::time::timeout_at(deadline, framed.next()) => match item {
                    Ok(item) => return event(item),
                    // A body may have progressed: its deadline moves.
                    Err(_) if self.body.is_some() => {}
                    Err(_) => return Ok(Wakeup::Expired(Expired::Idle)),
                },
            }
        }
    }

    async fn call(&mut self, kind: RequestKind) -> SmtpResponse {
        let request = SmtpRequest {
            session: self.session.info(),
            kind,
            extensions: http::Extensions::new(),
        };
        // The stack answers every request: its errors are responses.
        let Ok(service) = self.service.ready().await;
        let Ok(response) = service.call(request).await;
        response
    }

    /// Queues a reply; [`Self::next_event`] decides when to flush (a full
    /// write buffer is written at once).
    async fn send(&self, framed: &mut SmtpFramed, reply: &Reply) -> Result<(), ConnectionError> {
        tracing::trace!(reply = %reply, "reply");
        let outbound = Outbound {
            reply,
            enhanced: self.session.enhanced_codes(),
        };
        self.write(framed.feed(outbound)).await
    }

    /// A write, feed, flush or close within the SMTP timeout.
    async fn write(
        &self,
        io: impl Future<Output = Result<(), CodecError>>,
    ) -> Result<(), ConnectionError> {
        tokio::time::timeout(self.context.timeouts.command, io)
            .await
            .map_err(|_| ConnectionError::WriteTimeout)?
            .map_err(ConnectionError::from)
    }

    async fn close_with(
        &self,
        framed: &mut SmtpFramed,
        reply: &Reply,
    ) -> Result<(), ConnectionError> {
        self.send(framed, reply).await?;
        self.write(framed.close()).await
    }

    /// Upgrades in place. Input the client pipelined after STARTTLS is
    /// discarded with the old read buffer (RFC 3207 §5: no command injection).
    async fn start_tls(&mut self, framed: SmtpFramed) -> Result<SmtpFramed, ConnectionError> {
        if self.context.tls.is_none() {
            return Err(ConnectionError::NoUpgrade);
        }
        let parts = framed.into_parts();
        if !parts.read_buf.is_empty() {
            tracing::debug!(
                discarded = parts.read_buf.len(),
                "input pipelined after STARTTLS discarded"
            );
        }
        let Some((tcp, bytes_read)) = parts.io.into_plain() else {
            return Err(ConnectionError::NoUpgrade);
        };
        let tls = self.handshake(tcp).await?;
        let mut codec = parts.codec;
        codec.reset();
        Ok(Framed::new(Transport::tls(tls, bytes_read), codec))
    }

    /// The TLS handshake (after STARTTLS, or first thing on the
    /// implicit-TLS port), within the SMTP timeout; the session then
    /// starts over in TLS.
    async fn handshake(&mut self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, ConnectionError> {
        let Some(acceptor) = self.context.tls.clone() else {
            return Err(ConnectionError::NoUpgrade);
        };
        let tls = tokio::time::timeout(self.context.timeouts.command, acceptor.accept(tcp))
            .await
            .map_err(|_| ConnectionError::HandshakeTimeout)?
            .map_err(ConnectionError::Handshake)?;
        self.session.on_tls_established(tls_info(tls.get_ref().1));
        tracing::Span::current().record("smtp.tls", true);
        Ok(tls)
    }
}

/// What the payload and the span say about a session's TLS.
fn tls_info(connection: &tokio_rustls::rustls::ServerConnection) -> TlsInfo {
    let version = match connection.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    let cipher = connection
        .negotiated_cipher_suite()
        .map(|suite| format!("{:?}", suite.suite()))
        .unwrap_or_default();
    TlsInfo { version, cipher }
}

/// The `verb` label of `maillaser_smtp_commands_total`: a bounded set, so a
/// client cannot create series at will. The end of data counts as `DATA`,
/// a chunk (answered once read) as `BDAT`.
fn verb_label(frame: &Frame, awaits_chunk: bool) -> &'static str {
    match frame {
        Frame::OverBudget if awaits_chunk => "BDAT",
        Frame::OverBudget => "DATA",
        Frame::Command(Ok(Command::NotImplemented(_))) => "OTHER",
        Frame::Command(Ok(command)) => command.verb(),
        Frame::Message(_) | Frame::MessageTooLarge => "DATA",
        Frame::Chunk(_) | Frame::ChunkSkipped => "BDAT",
        Frame::Response(_) => "AUTH",
        Frame::Command(Err(_)) | Frame::LineTooLong => "OTHER",
    }
}

fn event(item: Option<Result<Frame, CodecError>>) -> Result<Wakeup, ConnectionError> {
    match item {
        Some(Ok(frame)) => Ok(Wakeup::Frame(frame)),
        Some(Err(error)) => Err(error.into()),
        None => Ok(Wakeup::Closed),
    }
}
