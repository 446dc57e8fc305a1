//! The connection pool to the SMTP relay.
//!
//! lettre speaks the protocol; this pool owns the sockets so that every one has
//! `TCP_NODELAY` set. lettre writes a message and its final `CRLF.CRLF` in two writes;
//! with Nagle's algorithm on, the second waits for the receiver's delayed ACK, about
//! 40 ms per message. Idle connections are reused without lettre's NOOP probe: a
//! reused connection that turns out dead is replaced once, transparently.
//!
//! When the relay offers PIPELINING (RFC 2920), `MAIL`, `RCPT` and `DATA` go out in
//! one write and their three replies are read after it: two round trips per message
//! instead of four. lettre does not pipeline, but its connection sends any command
//! text and reads replies one by one, which is all pipelining needs. lettre does not
//! keep the PIPELINING keyword either, so a second EHLO after connecting reads it.
//!
//! The socket is [`Corked`]: what lettre writes is held until it waits for a reply,
//! so a message and its final `CRLF.CRLF` (two writes in lettre) leave in one segment.

use super::SendError;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Noop, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::rustls;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// One command's reply (RFC 5321 §4.5.3.2 asks for minutes; 3 is the shortest it names).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
/// One whole message, connecting included; the queue's lease is longer.
pub const SEND_LIMIT: Duration = Duration::from_secs(600);
/// Idle connections older than this are closed rather than reused.
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// How to reach the relay.
#[derive(Clone)]
pub struct RelayTarget {
    pub host: String,
    pub port: u16,
    pub implicit_tls: bool,
    pub credentials: Option<(String, String)>,
    pub hello: String,
}

/// A connection to the relay and whether it takes pipelined commands.
struct Connection {
    conn: AsyncSmtpConnection,
    pipelining: bool,
    /// Out of step with the relay (it waits for data we will not send): never reused.
    spoiled: bool,
}

/// A failed send, and whether the message may have reached the relay anyway (the
/// reply to its final dot was lost): such a send is not repeated on another
/// connection at once (RFC 1047), only retried later like any 4xx.
struct SendFailure {
    failure: Failure,
    maybe_delivered: bool,
}

impl SendFailure {
    fn before_data(failure: Failure) -> Self {
        SendFailure {
            failure,
            maybe_delivered: false,
        }
    }
    fn after_data(failure: Failure) -> Self {
        SendFailure {
            failure,
            maybe_delivered: true,
        }
    }
}

impl Connection {
    async fn send(&mut self, envelope: &Envelope, body: &[u8]) -> Result<(), SendFailure> {
        let info = self.conn.server_info();
        let eight_bit = !body.is_ascii();
        let utf8 = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        // anything unusual goes through lettre's own checks and errors; lettre's send
        // does not say how far it got, so its failures count as after the data
        if !self.pipelining
            || envelope.to().len() != 1
            || (eight_bit && !info.supports_feature(Extension::EightBitMime))
            || (utf8 && !info.supports_feature(Extension::SmtpUtfEight))
        {
            return timed(self.conn.send(envelope, body))
                .await
                .map(|_| ())
                .map_err(SendFailure::after_data);
        }
        let mut params = Vec::new();
        if utf8 {
            params.push(MailParameter::SmtpUtfEight);
        }
        if eight_bit {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let group = format!(
            "{}{}{}",
            Mail::new(envelope.from().cloned(), params),
            Rcpt::new(envelope.to()[0].clone(), vec![]),
            Data
        );
        // all three replies are read whatever they say, so the stream stays in step
        let mail = timed(self.conn.command(group)).await;
        if mail.as_ref().is_err_and(Failure::is_broken) {
            return mail.map(|_| ()).map_err(SendFailure::before_data);
        }
        let rcpt = timed(self.conn.read_response()).await;
        if rcpt.as_ref().is_err_and(Failure::is_broken) {
            self.spoiled = true;
            return rcpt.map(|_| ()).map_err(SendFailure::before_data);
        }
        let data = timed(self.conn.read_response()).await;
        match (mail, rcpt, data) {
            (Ok(_), Ok(_), Ok(_)) => timed(self.conn.message(body))
                .await
                .map(|_| ())
                .map_err(SendFailure::after_data),
            (mail, rcpt, data) => {
                // a relay that says 354 after refusing the recipient waits for data
                // we will not send: the connection is given up, not reused
                self.spoiled = data.is_ok() || data.as_ref().is_err_and(Failure::is_broken);
                Err(SendFailure::before_data(
                    [mail.err(), rcpt.err(), data.err()]
                        .into_iter()
                        .flatten()
                        .next()
                        .unwrap_or(Failure::Timeout),
                ))
            }
        }
    }

    /// Whether the connection can carry another message.
    fn reusable(&self) -> bool {
        !self.spoiled && !self.conn.has_broken()
    }
}

/// A bounded pool of SMTP connections to one relay.
pub struct SmtpPool {
    target: RelayTarget,
    idle: Mutex<Vec<(Connection, Instant)>>,
    slots: Semaphore,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl SmtpPool {
    pub fn new(target: RelayTarget, max_connections: usize) -> anyhow::Result<Self> {
        let tls = if target.implicit_tls {
            use rustls_platform_verifier::BuilderVerifierExt;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_platform_verifier()?
                .with_no_client_auth();
            Some(Arc::new(config))
        } else {
            None
        };
        Ok(SmtpPool {
            target,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(max_connections.max(1)),
            tls,
        })
    }

    /// Sends one message on a pooled connection, within [`SEND_LIMIT`].
    pub async fn send(&self, envelope: &Envelope, body: &[u8]) -> Result<(), SendError> {
        match tokio::time::timeout(SEND_LIMIT, self.send_now(envelope, body)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Transient(
                "the relay took too long over the message".into(),
            )),
        }
    }

    async fn send_now(&self, envelope: &Envelope, body: &[u8]) -> Result<(), SendError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| SendError::Transient("the relay pool is closed".into()))?;
        let (mut conn, reused) = match self.take_idle().await {
            Some(c) => (c, true),
            None => (self.connect().await?, false),
        };
        let mut result = conn.send(envelope, body).await;
        if reused
            && let Err(f) = &result
            && f.failure.is_broken()
            && !f.maybe_delivered
        {
            // the idle connection had been closed by the relay before it saw the
            // message: try once on a new one (dropping a connection closes it)
            conn = self.connect().await?;
            result = conn.send(envelope, body).await;
        }
        match result {
            Ok(()) => {
                self.put_idle(conn);
                Ok(())
            }
            Err(SendFailure { failure, .. }) => {
                let text = failure.to_string();
                let permanent = failure.is_permanent();
                // a refused transaction leaves the connection usable after RSET
                if conn.reusable()
                    && !failure.is_broken()
                    && timed(conn.conn.command(Rset)).await.is_ok()
                {
                    self.put_idle(conn);
                }
                Err(if permanent {
                    SendError::Permanent(text)
                } else {
                    SendError::Transient(text)
                })
            }
        }
    }

    /// An idle connection that still works. A pipelining one shows a closed socket
    /// at its first reply, before any message data (and is then replaced); others are
    /// asked with NOOP first, since lettre's send does not say how far it got.
    async fn take_idle(&self) -> Option<Connection> {
        loop {
            let (mut conn, since) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
            if since.elapsed() >= IDLE_LIMIT || !conn.reusable() {
                continue;
            }
            if conn.pipelining || timed(conn.conn.command(Noop)).await.is_ok() {
                return Some(conn);
            }
        }
    }

    fn put_idle(&self, conn: Connection) {
        if conn.reusable() {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((conn, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<Connection, SendError> {
        let t = &self.target;
        let transient = |what: &str, e: &dyn std::fmt::Display| {
            SendError::Transient(format!("{what} {}:{}: {e}", t.host, t.port))
        };
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((t.host.as_str(), t.port)),
        )
        .await
        .map_err(|e| transient("connecting to", &e))?
        .map_err(|e| transient("connecting to", &e))?;
        tcp.set_nodelay(true)
            .map_err(|e| transient("configuring the socket to", &e))?;
        let hello = ClientId::Domain(t.hello.clone());
        let stream: Box<dyn AsyncTokioStream> = match &self.tls {
            Some(config) => {
                let name =
                    rustls::pki_types::ServerName::try_from(t.host.clone()).map_err(|e| {
                        SendError::Permanent(format!("relay host name {}: {e}", t.host))
                    })?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, Corked::new(tcp))
                    .await
                    .map_err(|e| transient("TLS with", &e))?;
                Box::new(TlsStream(tls))
            }
            None => Box::new(Corked::new(tcp)),
        };
        let mut conn = timed(AsyncSmtpConnection::connect_with_transport(stream, &hello))
            .await
            .map_err(|e| transient("greeting from", &e))?;
        if self.tls.is_none() && conn.can_starttls() {
            let params = TlsParameters::new(t.host.clone())
                .map_err(|e| transient("TLS parameters for", &e))?;
            timed(conn.starttls(params, &hello))
                .await
                .map_err(|e| transient("STARTTLS with", &e))?;
        }
        // lettre keeps no PIPELINING keyword: ask again (before AUTH, which an EHLO
        // would not survive on every server)
        let ehlo = timed(conn.command(Ehlo::new(hello.clone())))
            .await
            .map_err(|e| transient("EHLO to", &e))?;
        let pipelining = ehlo.message().any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
        });
        if let Some((user, pass)) = &t.credentials {
            let creds = Credentials::new(user.clone(), pass.clone());
            timed(conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds))
                .await
                .map_err(|e| {
                    if e.is_permanent() {
                        SendError::Transient(format!("the relay refused the credentials: {e}"))
                    } else {
                        transient("authenticating with", &e)
                    }
                })?;
        }
        Ok(Connection {
            conn,
            pipelining,
            spoiled: false,
        })
    }
}

/// A failed exchange with the relay.
#[derive(Debug)]
enum Failure {
    Smtp(lettre::transport::smtp::Error),
    Timeout,
}

impl Failure {
    /// The relay answered 5xx.
    fn is_permanent(&self) -> bool {
        matches!(self, Failure::Smtp(e) if e.is_permanent())
    }
    /// The relay answered 4xx.
    fn is_transient(&self) -> bool {
        matches!(self, Failure::Smtp(e) if e.is_transient())
    }
    /// Not an answer: the connection is gone or out of step.
    fn is_broken(&self) -> bool {
        !self.is_permanent() && !self.is_transient()
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Smtp(e) => e.fmt(f),
            Failure::Timeout => f.write_str("the relay did not answer in time"),
        }
    }
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(COMMAND_TIMEOUT, f).await {
        Ok(r) => r.map_err(Failure::Smtp),
        Err(_) => Err(Failure::Timeout),
    }
}

/// Writes held back until there is something to wait for.
const CORK_LIMIT: usize = 64 * 1024;

/// A socket that holds what is written until the next read (or until a large
/// message fills [`CORK_LIMIT`]), then sends it in as few segments as possible.
/// A conversation always reads a reply after what it wrote, so nothing waits for
/// long; shutting down sends what is held first.
#[derive(Debug)]
struct Corked {
    tcp: TcpStream,
    held: Vec<u8>,
}

impl Corked {
    fn new(tcp: TcpStream) -> Self {
        Corked {
            tcp,
            held: Vec::new(),
        }
    }

    /// Sends everything held.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.held.is_empty() {
            match Pin::new(&mut self.tcp).poll_write(cx, &self.held) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.held.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Corked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.poll_release(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.tcp).poll_read(cx, buf),
            other => other,
        }
    }
}

impl AsyncWrite for Corked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.held.len() + buf.len() <= CORK_LIMIT {
            self.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        match self.poll_release(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.tcp).poll_write(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
    /// Holds on: what is written goes out when a reply is awaited.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.poll_release(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.tcp).poll_shutdown(cx),
            other => other,
        }
    }
}

impl AsyncTokioStream for Corked {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.tcp.peer_addr()
    }
}

/// A client TLS stream lettre can drive (implicit TLS, `smtps://`).
#[derive(Debug)]
struct TlsStream(tokio_rustls::client::TlsStream<Corked>);

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.tcp.peer_addr()
    }
}
