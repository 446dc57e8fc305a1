//! The connection pool to the SMTP relay.
//!
//! lettre speaks the protocol; this pool owns the sockets so that every one has
//! `TCP_NODELAY` set. lettre writes a message and its final `CRLF.CRLF` in two writes;
//! with Nagle's algorithm on, the second waits for the receiver's delayed ACK, about
//! 40 ms per message. Idle connections are reused without lettre's NOOP probe: a
//! reused connection that turns out dead is replaced once, transparently.

use super::SendError;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::rustls;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
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

/// A bounded pool of SMTP connections to one relay.
pub struct SmtpPool {
    target: RelayTarget,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
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

    /// Sends one message on a pooled connection.
    pub async fn send(&self, envelope: &Envelope, body: &[u8]) -> Result<(), SendError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| SendError::Transient("the relay pool is closed".into()))?;
        let (mut conn, reused) = match self.take_idle() {
            Some(c) => (c, true),
            None => (self.connect().await?, false),
        };
        let mut result = timed(conn.send(envelope, body)).await;
        if reused
            && result
                .as_ref()
                .is_err_and(|e| !e.is_permanent() && !e.is_transient())
        {
            // the idle connection had been closed by the relay: try once on a new one
            conn.abort().await;
            conn = self.connect().await?;
            result = timed(conn.send(envelope, body)).await;
        }
        match result {
            Ok(_) => {
                self.put_idle(conn);
                Ok(())
            }
            Err(e) => {
                let text = e.to_string();
                let permanent = e.is_permanent();
                if conn.has_broken() || !(permanent || e.is_transient()) {
                    conn.abort().await;
                } else {
                    // a refused transaction leaves the connection usable after RSET
                    if timed(conn.command(lettre::transport::smtp::commands::Rset))
                        .await
                        .is_ok()
                    {
                        self.put_idle(conn);
                    } else {
                        conn.abort().await;
                    }
                }
                Err(if permanent {
                    SendError::Permanent(text)
                } else {
                    SendError::Transient(text)
                })
            }
        }
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < IDLE_LIMIT && !conn.has_broken() {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, conn: AsyncSmtpConnection) {
        if !conn.has_broken() {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((conn, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
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
                    .connect(name, tcp)
                    .await
                    .map_err(|e| transient("TLS with", &e))?;
                Box::new(TlsStream(tls))
            }
            None => Box::new(tcp),
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
        Ok(conn)
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

/// A client TLS stream lettre can drive (implicit TLS, `smtps://`).
#[derive(Debug)]
struct TlsStream(tokio_rustls::client::TlsStream<TcpStream>);

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
        self.0.get_ref().0.peer_addr()
    }
}
