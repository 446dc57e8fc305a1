//! One SMTP or LMTP conversation: the state machine that turns client bytes into
//! replies and, at the end of DATA, into an [`Inbound`] for the backend.
//!
//! Input goes through a single [`Session::ingest`], whatever its shape: a lone command,
//! a pipelined batch, a batch ending inside a message, a message split over many reads.
//! The replies one read produces are written back with one write, which keeps
//! pipelined round trips short.
//!
//! Framing is ours, parsing is smtp-proto's: command lines are cut here (so that the
//! 512-octet limit of RFC 5321 §4.5.3.1.4 holds and a bad line can never run into the
//! next one) and each complete line goes to `Request::parse`. Message content goes
//! through smtp-proto's `DataReceiver`, with three corrections made here: it does not
//! see the CRLF that ended the DATA command (so it is primed with one), it lets bare
//! CR and LF through (refused here, against SMTP smuggling), and it also ends data on
//! `<CRLF>.<CR><CR>…<LF>` (not an end here: only `<CRLF>.<CRLF>` is).

use super::replies::{self, Fixed};
use super::{Backend, Inbound, Protocol, SmtpConfig};
use smtp_proto::request::receiver::DataReceiver;
use smtp_proto::{
    Error as ParseError, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_BY_NOTIFY,
    MAIL_BY_RETURN, MAIL_BY_TRACE, MAIL_CONPERM, MAIL_REQUIRETLS, MAIL_RET_FULL, MAIL_RET_HDRS,
    MAIL_SMTPUTF8, MailFrom, RCPT_CONNEG, RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE,
    RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS, RCPT_RRVS_CONTINUE, RCPT_RRVS_REJECT, RcptTo, Request,
};
use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

/// The longest command line, CRLF included (RFC 5321 §4.5.3.1.4).
const MAX_LINE: usize = 512;
/// The longest address, in octets (RFC 5321 §4.5.3.1.3, less the angle brackets).
const MAX_ADDRESS: usize = 254;
/// How much is read from the client at a time.
const READ_BUFFER: usize = 32 * 1024;
/// The only end of message content this front end accepts.
const END_OF_DATA: [u8; 5] = *b"\r\n.\r\n";
/// The line break that `DataReceiver` has not seen before the first line of content.
const PRIMER: &[u8] = b"\r\n";
/// For the 421 sent when a session is ended by us: the peer may no longer read.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection, from greeting to close.
pub struct Session<S: AsyncRead + AsyncWrite + Unpin, B: Backend> {
    stream: S,
    config: Arc<SmtpConfig>,
    backend: B,
    peer: Option<SocketAddr>,
    tls: bool,
    /// The name from EHLO/HELO/LHLO; `None` until one was accepted.
    helo: Option<String>,
    state: State<B::Route>,
    /// A command line still waiting for its LF.
    line: Vec<u8>,
    /// The current command line is over the limit: drop it up to its LF.
    line_too_long: bool,
    /// Replies not yet written.
    out: Vec<u8>,
    deadline: Instant,
    stop: Option<watch::Receiver<bool>>,
    /// When the command line being received began (it must end in `command_timeout`).
    partial_since: Option<Instant>,
    /// RCPTs refused in this session (unknown lists, bad syntax).
    rejected_recipients: usize,
}

/// Where the conversation stands.
enum State<R> {
    /// No transaction (EHLO may or may not have been given: see `Session::helo`).
    Idle,
    /// MAIL was accepted; RCPTs are being collected.
    Mail(Envelope<R>),
    /// After 354: message content until `<CRLF>.<CRLF>`.
    Data(Envelope<R>, Box<Content>),
}

struct Envelope<R> {
    mail_from: Option<String>,
    recipients: Vec<(String, R)>,
}

/// What `ingest` wants done next.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    /// Keep reading.
    Continue,
    /// QUIT was answered: write the replies and close.
    Close,
    /// STARTTLS was answered: write the replies, then start the handshake.
    StartTls,
}

/// Why a session ended, for the log.
#[derive(Debug)]
enum End {
    Quit,
    ClientClosed,
    IdleTimeout,
    SessionTimeout,
    /// A command or a message arrived slower than the limits allow.
    TooSlow,
    Shutdown,
    StartTls,
    Io(std::io::Error),
    TlsHandshake(std::io::Error),
}

impl<S: AsyncRead + AsyncWrite + Unpin, B: Backend> Session<S, B> {
    /// A session over an accepted connection; nothing happens until [`Session::run`].
    pub fn new(stream: S, config: Arc<SmtpConfig>, backend: B, peer: Option<SocketAddr>) -> Self {
        let deadline = Instant::now() + config.session_timeout;
        Session {
            stream,
            config,
            backend,
            peer,
            tls: false,
            helo: None,
            state: State::Idle,
            line: Vec::new(),
            line_too_long: false,
            out: Vec::new(),
            deadline,
            stop: None,
            partial_since: None,
            rejected_recipients: 0,
        }
    }

    /// Makes the session close (with `421 4.3.2`) when `true` is sent on `stop`, unless it
    /// is receiving a message, which it may finish first.
    pub fn stop_on(mut self, stop: watch::Receiver<bool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Converses until QUIT, EOF, a timeout, an I/O error or a stop; errors are logged
    /// here, once.
    pub async fn run(mut self) {
        let peer = self.peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let span = tracing::debug_span!("smtp", %peer, protocol = ?self.config.protocol);
        async move {
            tracing::debug!("session started");
            replies::greeting(&mut self.out, &self.config.hostname, self.config.protocol);
            let end = match self.converse().await {
                End::StartTls => self.upgrade().await,
                end => end,
            };
            match end {
                End::Io(e) => tracing::debug!(error = %e, "session ended by an I/O error"),
                End::TlsHandshake(e) => tracing::debug!(error = %e, "TLS handshake failed"),
                end => tracing::debug!(?end, "session ended"),
            }
        }
        .instrument(span)
        .await
    }

    /// Runs the TLS handshake and the rest of the conversation over TLS. The state
    /// from before is forgotten (RFC 3207 §4.2): the client must say EHLO again.
    async fn upgrade(self) -> End {
        let Some(tls) = self.config.tls.clone() else {
            return End::StartTls;
        };
        let Session {
            stream,
            config,
            backend,
            peer,
            deadline,
            stop,
            ..
        } = self;
        let handshake =
            tokio::time::timeout(config.idle_timeout, TlsAcceptor::from(tls).accept(stream));
        let stream = match handshake.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return End::TlsHandshake(e),
            Err(_) => return End::IdleTimeout,
        };
        tracing::debug!("TLS established");
        let mut session = Session::new(stream, config, backend, peer);
        session.tls = true;
        session.deadline = deadline;
        session.stop = stop;
        match session.converse().await {
            // Cannot happen (a second STARTTLS is refused), and must not recurse.
            End::StartTls => End::Quit,
            end => end,
        }
    }

    /// Reads, ingests and answers until the conversation is over.
    async fn converse(&mut self) -> End {
        let mut buf = vec![0; READ_BUFFER];
        loop {
            if let Err(e) = self.flush().await {
                return End::Io(e);
            }
            let n = match self.read_some(&mut buf).await {
                Ok(n) => n,
                Err(end) => return end,
            };
            let end = match self.ingest(&buf[..n]).await {
                Flow::Continue => continue,
                Flow::Close => End::Quit,
                Flow::StartTls => End::StartTls,
            };
            return match self.flush().await {
                Ok(()) => end,
                Err(e) => End::Io(e),
            };
        }
    }

    /// Reads what the client sends next into `buf`; or ends the session (saying
    /// goodbye when there is a reason to give) when a deadline passes, the client
    /// goes, or the server stops.
    async fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, End> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(self.session_too_long().await);
        }
        let slow_deadline = self.slow_deadline();
        if slow_deadline.is_some_and(|d| now >= d) {
            return Err(self.too_slow().await);
        }
        let wait = self
            .config
            .idle_timeout
            .min(self.deadline - now)
            .min(slow_deadline.map_or(Duration::MAX, |d| d - now));
        // A stop interrupts a session between transactions only: a message being
        // received gets the grace period to finish.
        let interruptible = !matches!(self.state, State::Data(..));
        let stop = &mut self.stop;
        let stopping = async move {
            match stop {
                Some(stop) if interruptible => {
                    if stop.wait_for(|stop| *stop).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                _ => std::future::pending().await,
            }
        };
        let read = tokio::select! {
            read = tokio::time::timeout(wait, self.stream.read(buf)) => read,
            () = stopping => {
                return Err(self.goodbye(replies::shutting_down(&self.config.hostname), End::Shutdown).await);
            }
        };
        match read {
            Ok(Ok(0)) => Err(End::ClientClosed),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(End::Io(e)),
            Err(_) if Instant::now() >= self.deadline => Err(self.session_too_long().await),
            Err(_) if slow_deadline.is_some_and(|d| Instant::now() >= d) => {
                Err(self.too_slow().await)
            }
            Err(_) => Err(self
                .goodbye(
                    replies::idle_timeout(&self.config.hostname),
                    End::IdleTimeout,
                )
                .await),
        }
    }

    /// `421` for a session past its whole-session limit.
    async fn session_too_long(&mut self) -> End {
        self.goodbye(
            replies::session_too_long(&self.config.hostname),
            End::SessionTimeout,
        )
        .await
    }

    /// When the command line or message under way must be complete: a command line
    /// within `command_timeout` of its first byte; message content at
    /// `min_data_rate` after a first `command_timeout`. A client that trickles a byte
    /// at a time cannot keep a session for longer (the idle timeout alone is reset by
    /// every byte).
    fn slow_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Data(_, content) => {
                let rate = self.config.min_data_rate.max(1) as f64;
                let earned = Duration::from_secs_f64(content.received as f64 / rate);
                Some(content.started + self.config.command_timeout + earned)
            }
            _ => self.partial_since.map(|t| t + self.config.command_timeout),
        }
    }

    async fn too_slow(&mut self) -> End {
        super::limit_hit(self.peer, "slow client (command or data rate)");
        self.goodbye(replies::too_slow(&self.config.hostname), End::TooSlow)
            .await
    }

    /// Writes everything pending with one write (and a flush, which TLS needs).
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let write = async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.config.idle_timeout, write).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client does not read its replies",
                ));
            }
        }
        self.out.clear();
        Ok(())
    }

    /// Says a last 421 (best effort: the client may be gone or stuck) and ends.
    async fn goodbye(&mut self, reply: smtp_proto::Response<String>, end: End) -> End {
        replies::reply(&mut self.out, &reply);
        let write = async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await?;
            self.stream.shutdown().await
        };
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, write).await;
        self.out.clear();
        end
    }

    /// Feeds client bytes through the protocol and queues the replies. Everything after
    /// QUIT or STARTTLS in `bytes` is dropped: after STARTTLS that is required (RFC 3207
    /// §4.2, CVE-2011-0411), as those bytes came before encryption.
    async fn ingest(&mut self, mut bytes: &[u8]) -> Flow {
        while !bytes.is_empty() {
            if let State::Data(_, content) = &mut self.state {
                let (used, finished) = content.feed(bytes, self.config.max_message_bytes);
                if used == 0 && !finished {
                    // DataReceiver always takes something; never spin if that changes.
                    break;
                }
                bytes = &bytes[used..];
                if finished {
                    self.handle_data_end().await;
                }
                continue;
            }
            let Some(lf) = bytes.iter().position(|&b| b == b'\n') else {
                self.buffer_partial_line(bytes);
                break;
            };
            let (chunk, rest) = bytes.split_at(lf + 1);
            bytes = rest;
            let flow = match self.complete_line(chunk) {
                Some(parsed) => self.handle_command(parsed).await,
                None => {
                    self.reply(&replies::LINE_TOO_LONG);
                    Flow::Continue
                }
            };
            if flow != Flow::Continue {
                return flow;
            }
        }
        Flow::Continue
    }

    fn buffer_partial_line(&mut self, bytes: &[u8]) {
        self.partial_since.get_or_insert_with(Instant::now);
        if !self.line_too_long && self.line.len() + bytes.len() < MAX_LINE {
            self.line.extend_from_slice(bytes);
        } else {
            // No LF can make it short again; keep nothing of it.
            self.line_too_long = true;
            self.line = Vec::new();
        }
    }

    /// Parses the line ending with `chunk` (which ends in LF); `None` if it was too long.
    fn complete_line(&mut self, chunk: &[u8]) -> Option<Result<Request<String>, ParseError>> {
        self.partial_since = None;
        if std::mem::take(&mut self.line_too_long) || self.line.len() + chunk.len() > MAX_LINE {
            self.line.clear();
            return None;
        }
        let parsed = if self.line.is_empty() {
            parse(chunk)
        } else {
            self.line.extend_from_slice(chunk);
            let parsed = parse(&self.line);
            self.line.clear();
            parsed
        };
        Some(parsed)
    }

    async fn handle_command(&mut self, parsed: Result<Request<String>, ParseError>) -> Flow {
        let lmtp = self.config.protocol == Protocol::Lmtp;
        let request = match parsed {
            Ok(request) => request,
            Err(e) => {
                self.parse_error(e);
                return self.unless_too_many_errors();
            }
        };
        match request {
            Request::Ehlo { .. } | Request::Helo { .. } if lmtp => self.reply(&replies::USE_LHLO),
            Request::Lhlo { .. } if !lmtp => self.reply(&replies::USE_EHLO),
            Request::Ehlo { host } | Request::Lhlo { host } => self.handle_ehlo(host, true),
            Request::Helo { host } => self.handle_ehlo(host, false),
            Request::Mail { from } => self.handle_mail_from(from),
            Request::Rcpt { to } => {
                self.handle_rcpt_to(to).await;
                return self.unless_too_many_errors();
            }
            Request::Data => self.handle_data(),
            Request::Rset => {
                self.reset();
                self.reply(&replies::OK);
            }
            Request::Noop { .. } => self.reply(&replies::OK),
            Request::Quit => {
                self.reply(&replies::BYE);
                return Flow::Close;
            }
            Request::StartTls => return self.handle_starttls(),
            Request::Vrfy { .. } => self.reply(&replies::VRFY),
            Request::Help { .. } => self.reply(&replies::HELP),
            // EXPN would list a list's members; CHUNKING and AUTH are not offered.
            Request::Expn { .. }
            | Request::Bdat { .. }
            | Request::Auth { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.reply(&replies::NOT_IMPLEMENTED),
        }
        Flow::Continue
    }

    fn parse_error(&mut self, error: ParseError) {
        match error {
            ParseError::InvalidSenderAddress => self.reply(&replies::BAD_SENDER),
            ParseError::InvalidRecipientAddress => self.reject_recipient(&replies::BAD_RECIPIENT),
            ParseError::SyntaxError { syntax } => self.reply(&replies::bad_arguments(syntax)),
            ParseError::InvalidParameter { param } => {
                self.reply(&replies::invalid_parameter(param))
            }
            ParseError::UnsupportedParameter { param } => {
                self.reply(&replies::unsupported_parameter(&param))
            }
            // Includes a whole line that the parser still found unfinished.
            ParseError::UnknownCommand
            | ParseError::NeedsMoreData { .. }
            | ParseError::ResponseTooLong
            | ParseError::InvalidResponse { .. } => self.reply(&replies::UNRECOGNIZED),
        }
    }

    /// EHLO, LHLO (`extended`) or HELO: a new start, as RSET (RFC 5321 §4.1.4).
    fn handle_ehlo(&mut self, host: String, extended: bool) {
        self.reset();
        if extended {
            let offer_tls = self.config.tls.is_some() && !self.tls;
            replies::ehlo(
                &mut self.out,
                &self.config.hostname,
                self.config.max_message_bytes,
                offer_tls,
            );
        } else {
            replies::helo(&mut self.out, &self.config.hostname);
        }
        self.helo = Some(host);
    }

    fn handle_mail_from(&mut self, from: MailFrom<String>) {
        if self.helo.is_none() || !matches!(self.state, State::Idle) {
            return self.reply(&replies::BAD_SEQUENCE);
        }
        if let Some(param) = unsupported_mail_parameter(&from) {
            return self.reply(&replies::unsupported_parameter(param));
        }
        if from.size > self.config.max_message_bytes {
            return self.reply(&replies::MESSAGE_TOO_BIG);
        }
        if !valid_address(&from.address) {
            return self.reply(&replies::BAD_SENDER);
        }
        let mail_from = Some(from.address).filter(|a| !a.is_empty());
        self.state = State::Mail(Envelope {
            mail_from,
            recipients: Vec::new(),
        });
        self.reply(&replies::SENDER_OK);
    }

    async fn handle_rcpt_to(&mut self, to: RcptTo<String>) {
        let State::Mail(envelope) = &self.state else {
            return self.reply(&replies::BAD_SEQUENCE);
        };
        if let Some(param) = unsupported_rcpt_parameter(&to) {
            return self.reply(&replies::unsupported_parameter(param));
        }
        // smtp-proto reads both `<>` and `<postmaster>` as "": the only one that is a
        // valid recipient is postmaster (RFC 5321 §4.5.1).
        let address = if to.address.is_empty() {
            "postmaster".to_owned()
        } else {
            to.address
        };
        if !valid_address(&address) {
            return self.reject_recipient(&replies::BAD_RECIPIENT);
        }
        if envelope.recipients.len() >= self.config.max_recipients {
            return self.reply(&replies::TOO_MANY_RECIPIENTS);
        }
        let resolved = self.backend.resolve_recipient(&address).await;
        match resolved {
            Ok(Some(route)) => {
                if let State::Mail(envelope) = &mut self.state {
                    envelope.recipients.push((address, route));
                }
                self.reply(&replies::RECIPIENT_OK);
            }
            Ok(None) => self.reject_recipient(&replies::no_such_list(&address)),
            Err(e) => {
                tracing::debug!(error = %e, recipient = %address, "cannot resolve a recipient");
                self.reply(&replies::TEMPORARY_FAILURE);
            }
        }
    }

    fn handle_data(&mut self) {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Mail(envelope) if !envelope.recipients.is_empty() => {
                self.state = State::Data(envelope, Box::new(Content::new()));
                self.out.extend_from_slice(replies::START_DATA);
            }
            State::Mail(envelope) => {
                self.state = State::Mail(envelope);
                self.reply(&replies::NO_VALID_RECIPIENTS);
            }
            other => {
                self.state = other;
                self.reply(&replies::BAD_SEQUENCE);
            }
        }
    }

    fn handle_starttls(&mut self) -> Flow {
        if self.config.tls.is_none() {
            self.reply(&replies::NOT_IMPLEMENTED);
            return Flow::Continue;
        }
        if self.tls {
            self.reply(&replies::BAD_SEQUENCE);
            return Flow::Continue;
        }
        self.reply(&replies::READY_FOR_TLS);
        Flow::StartTls
    }

    /// The message is complete: refuse it, or hand it to the backend; then the envelope
    /// starts afresh.
    async fn handle_data_end(&mut self) {
        let State::Data(envelope, content) = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        let recipients: Vec<String> = envelope.recipients.iter().map(|(a, _)| a.clone()).collect();
        let refusal = if content.too_big {
            Some(&replies::MESSAGE_TOO_BIG)
        } else if content.bare_newline {
            Some(&replies::BARE_NEWLINE)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            tracing::debug!(reason = refusal.message, "message refused");
            return self.answer_data(&recipients, refusal, false);
        }
        let message = Inbound {
            mail_from: envelope.mail_from,
            recipients: envelope.recipients,
            data: content.into_message(),
            helo: self.helo.clone().unwrap_or_default(),
            peer: self.peer,
            tls: self.tls,
            protocol: self.config.protocol,
        };
        let size = message.data.len();
        match self.backend.accept_message(message).await {
            Ok(()) => {
                tracing::debug!(size, recipients = recipients.len(), "message accepted");
                self.answer_data(&recipients, &replies::MESSAGE_ACCEPTED, true);
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot store an incoming message");
                self.answer_data(&recipients, &replies::TEMPORARY_FAILURE, false);
            }
        }
    }

    /// SMTP answers the end of DATA once; LMTP once per accepted recipient, in RCPT order
    /// (RFC 2033 §4.2): "delivered" if `delivered`, else `reply` naming the recipient.
    fn answer_data(&mut self, recipients: &[String], reply: &Fixed, delivered: bool) {
        if self.config.protocol == Protocol::Smtp {
            return self.reply(reply);
        }
        for address in recipients {
            let answer = if delivered {
                replies::delivered(address)
            } else {
                replies::for_recipient(reply, address)
            };
            self.reply(&answer);
        }
    }

    /// Forgets the transaction (not the EHLO).
    fn reset(&mut self) {
        self.state = State::Idle;
    }

    fn reply<T: Display>(&mut self, reply: &smtp_proto::Response<T>) {
        replies::reply(&mut self.out, reply);
    }

    /// Refuses a recipient, and counts it: a client guessing addresses (a dictionary
    /// attack, or a spammer's list) is cut off after `max_rejected_recipients`.
    /// The refusal over the limit is answered by `too_many_errors` instead.
    fn reject_recipient<T: Display>(&mut self, reply: &smtp_proto::Response<T>) {
        self.rejected_recipients += 1;
        if self.rejected_recipients <= self.config.max_rejected_recipients {
            self.reply(reply);
        }
    }

    /// Closes the session once it had more refused recipients than allowed.
    fn unless_too_many_errors(&mut self) -> Flow {
        if self.rejected_recipients <= self.config.max_rejected_recipients {
            return Flow::Continue;
        }
        super::limit_hit(self.peer, "refused recipients per session");
        self.reply(&replies::too_many_errors(&self.config.hostname));
        Flow::Close
    }
}

fn parse(line: &[u8]) -> Result<Request<String>, ParseError> {
    Request::parse(&mut line.iter()).map(Request::into_owned)
}

/// Not too long, and valid UTF-8 (smtp-proto replaces invalid sequences with U+FFFD
/// rather than refusing them).
fn valid_address(address: &str) -> bool {
    address.len() <= MAX_ADDRESS && !address.contains(char::REPLACEMENT_CHARACTER)
}

/// MAIL parameters smtp-proto knows as flags, for extensions we do not advertise.
const UNSUPPORTED_MAIL_FLAGS: [(u64, &str); 6] = [
    (MAIL_BODY_BINARYMIME, "BODY=BINARYMIME"),
    (MAIL_RET_FULL | MAIL_RET_HDRS, "RET"),
    (MAIL_REQUIRETLS, "REQUIRETLS"),
    (MAIL_BY_NOTIFY | MAIL_BY_RETURN | MAIL_BY_TRACE, "BY"),
    (MAIL_CONPERM, "CONPERM"),
    (!0, "(unknown)"),
];

/// smtp-proto parses every MAIL parameter it knows: accept only those of the extensions
/// advertised (SIZE, 8BITMIME, SMTPUTF8), as RFC 5321 §4.1.1.11 asks.
fn unsupported_mail_parameter(from: &MailFrom<String>) -> Option<&'static str> {
    let flags = from.flags & !(MAIL_BODY_7BIT | MAIL_BODY_8BITMIME | MAIL_SMTPUTF8);
    if let Some((_, name)) = UNSUPPORTED_MAIL_FLAGS
        .iter()
        .find(|(bits, _)| flags & bits != 0)
    {
        return Some(name);
    }
    [
        (from.env_id.is_some(), "ENVID"),
        (from.trans_id.is_some(), "TRANSID"),
        (from.solicit.is_some(), "SOLICIT"),
        (from.mtrk.is_some(), "MTRK"),
        (from.auth.is_some(), "AUTH"),
        (from.by != 0, "BY"),
        (from.hold_for != 0, "HOLDFOR"),
        (from.hold_until != 0, "HOLDUNTIL"),
        (from.mt_priority != 0, "MT-PRIORITY"),
    ]
    .into_iter()
    .find_map(|(given, name)| given.then_some(name))
}

/// No RCPT parameter is supported (DSN and the like are not advertised).
fn unsupported_rcpt_parameter(to: &RcptTo<String>) -> Option<&'static str> {
    let notify = RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_DELAY | RCPT_NOTIFY_NEVER;
    [
        (to.orcpt.is_some(), "ORCPT"),
        (to.flags & notify != 0, "NOTIFY"),
        (
            to.rrvs != 0 || to.flags & (RCPT_RRVS_REJECT | RCPT_RRVS_CONTINUE) != 0,
            "RRVS",
        ),
        (to.flags & RCPT_CONNEG != 0, "CONNEG"),
        (to.flags != 0, "(unknown)"),
    ]
    .into_iter()
    .find_map(|(given, name)| given.then_some(name))
}

/// Message content being received: smtp-proto's `DataReceiver` for dot-unstuffing,
/// plus the checks it does not make.
struct Content {
    receiver: DataReceiver,
    /// The unstuffed content, after `PRIMER`; emptied once the message is too big.
    buf: Vec<u8>,
    too_big: bool,
    bare_newline: bool,
    /// The last raw byte was a CR.
    after_cr: bool,
    /// The last five raw bytes, to check how data ended.
    tail: [u8; 5],
    /// When the content began, and how many raw bytes have come since (for the
    /// minimum data rate).
    started: Instant,
    received: u64,
}

impl Content {
    fn new() -> Content {
        let mut content = Content {
            receiver: DataReceiver::new(),
            buf: Vec::new(),
            too_big: false,
            bare_newline: false,
            after_cr: false,
            tail: [0, 0, 0, b'\r', b'\n'],
            started: Instant::now(),
            received: 0,
        };
        content.prime();
        content
    }

    /// `DataReceiver` starts as if in the middle of a line: without this, a first line
    /// `.` would not end the data and a first line `..x` would not be unstuffed.
    fn prime(&mut self) {
        self.receiver = DataReceiver::new();
        self.receiver.ingest(&mut PRIMER.iter(), &mut self.buf);
    }

    /// Takes content bytes; returns how many it used and whether the data has ended.
    fn feed(&mut self, bytes: &[u8], max: usize) -> (usize, bool) {
        let mut rest = bytes.iter();
        let mut ended = self.receiver.ingest(&mut rest, &mut self.buf);
        let used = bytes.len() - rest.as_slice().len();
        let raw = &bytes[..used];
        self.received += used as u64;
        self.check_line_breaks(raw);
        for &b in raw.iter().rev().take(self.tail.len()).rev() {
            self.tail.rotate_left(1);
            self.tail[4] = b;
        }
        if ended && self.tail != END_OF_DATA {
            // `<CRLF>.<CR><CR><LF>`: smtp-proto's end, not ours (and a bare CR, so the
            // message is refused anyway). The next line starts afresh.
            self.bare_newline = true;
            self.prime();
            ended = false;
        }
        if self.too_big || self.buf.len().saturating_sub(PRIMER.len()) > max {
            // Keep reading to the end, to answer in step, but keep nothing.
            if !self.too_big {
                self.too_big = true;
                self.buf = Vec::new();
            }
            self.buf.clear();
        }
        (used, ended)
    }

    /// A CR must be followed by LF and an LF preceded by CR, everywhere (the bare forms
    /// are how SMTP smuggling hides a second message in the first).
    fn check_line_breaks(&mut self, raw: &[u8]) {
        for &b in raw {
            if self.after_cr != (b == b'\n') {
                self.bare_newline = true;
            }
            self.after_cr = b == b'\r';
        }
    }

    fn into_message(mut self) -> Vec<u8> {
        self.buf.drain(..PRIMER.len());
        self.buf
    }
}
