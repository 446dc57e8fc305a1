//! The SMTP and LMTP front end: the protocol only.
//!
//! This module owns the conversation with a sending MTA: greeting, EHLO/LHLO, the
//! envelope (MAIL, RCPT), DATA with dot-unstuffing, STARTTLS, pipelining, limits and
//! timeouts. What an address means and where a message goes is the [`Backend`]'s
//! business: this module never relays, and answers `250` to the end of DATA only
//! once [`Backend::accept_message`] has stored the message durably.
//!
//! ```text
//!  TcpListener ─► serve (accept loop, session cap, stop) ─► Session::run (one per connection)
//!                                                              │ Backend::resolve_recipient (RCPT)
//!                                                              └ Backend::accept_message (end of DATA)
//! ```
//!
//! Command lines are parsed by `smtp-proto`; every reply text lives in `replies`.
//!
//! LMTP ([RFC 2033]) is for hand-over from a local MTA, never for the Internet: its
//! listener must not be on port 25 (`config` refuses that), and it speaks the same
//! protocol as SMTP except that it requires LHLO and answers the end of DATA once per
//! accepted recipient.
//!
//! [RFC 2033]: https://www.rfc-editor.org/rfc/rfc2033

use anyhow::Context;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::rustls;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

mod backend;
mod replies;
mod session;
#[cfg(test)]
mod tests;

pub use backend::AppBackend;
pub use session::Session;

/// How long a stopping server waits for running sessions before it aborts them.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long to back off when `accept` fails (out of file descriptors, typically).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the rest of listd provides to the SMTP front end.
pub trait Backend: Clone + Send + Sync + 'static {
    /// A resolved recipient (opaque to this module; listd uses a typed route).
    type Route: Clone + Send + Sync + std::fmt::Debug + 'static;

    /// Resolves a RCPT TO address. `Ok(None)` => `550 5.1.1` (never an open relay).
    /// `Err(Temporary)` => `451 4.3.0`.
    ///
    /// `address` is as the client wrote it (case kept, at most 254 octets, valid UTF-8,
    /// quotes of a quoted local part removed by smtp-proto). `<postmaster>` arrives as
    /// `postmaster`, and so does `<>`, which smtp-proto does not tell apart from it.
    fn resolve_recipient(
        &self,
        address: &str,
    ) -> impl std::future::Future<Output = Result<Option<Self::Route>, Temporary>> + Send;

    /// Stores an accepted message durably. Only when this returns `Ok` may the session
    /// answer 250. `Err(Temporary)` => `451 4.3.0` (the sending MTA retries; nothing is
    /// lost).
    fn accept_message(
        &self,
        message: Inbound<Self::Route>,
    ) -> impl std::future::Future<Output = Result<(), Temporary>> + Send;
}

/// A failure worth retrying: the session answers `451 4.3.0` and the client tries later.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Temporary(pub String);

/// A message received in one SMTP transaction (or one LMTP transaction, for all of its
/// accepted recipients at once).
#[derive(Debug, Clone)]
pub struct Inbound<R> {
    /// The reverse path; `None` for `MAIL FROM:<>` (a bounce), and for
    /// `MAIL FROM:<postmaster>`, which smtp-proto reads the same way.
    pub mail_from: Option<String>,
    /// The accepted recipients in RCPT order, each with what `resolve_recipient` made of
    /// it. A recipient given twice is here twice.
    pub recipients: Vec<(String, R)>,
    /// The content, un-dot-stuffed, lines ending in CRLF as received. Never holds a bare
    /// CR or LF (such messages are refused).
    pub data: Vec<u8>,
    /// The name the client gave in EHLO, HELO or LHLO.
    pub helo: String,
    pub peer: Option<SocketAddr>,
    /// Whether the message came over TLS (after STARTTLS).
    pub tls: bool,
    pub protocol: Protocol,
}

pub use crate::domain::route::Protocol;

/// The settings of one listener.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Our name, in the greeting and the EHLO reply.
    pub hostname: String,
    pub protocol: Protocol,
    /// Largest message content accepted (advertised as `SIZE`).
    pub max_message_bytes: usize,
    /// RCPTs accepted per transaction; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// A client silent this long is disconnected.
    pub idle_timeout: Duration,
    /// No connection lasts longer than this.
    pub session_timeout: Duration,
    /// Concurrent sessions per listener; more connections get `421 4.3.2`.
    pub max_sessions: usize,
    /// Concurrent sessions per client IP address; more get `421 4.7.0`, so that one
    /// client cannot take every session (as Postfix's
    /// `smtpd_client_connection_count_limit`). An LMTP listener's only client is
    /// the local MTA: give it `max_sessions`.
    pub max_sessions_per_ip: usize,
    /// A command line must be complete this long after its first byte, and message
    /// content gets this long before `min_data_rate` applies.
    pub command_timeout: Duration,
    /// Message content must arrive at this many octets per second (averaged from the
    /// start of the content), or the session is closed with `421 4.4.2`.
    pub min_data_rate: u64,
    /// Refused RCPTs a session may have; one more closes it with `421 4.7.0`.
    pub max_rejected_recipients: usize,
    /// When set, STARTTLS is offered.
    pub tls: Option<Arc<ServerConfig>>,
}

impl SmtpConfig {
    /// A configuration with the usual limits: 10 MiB messages, 100 recipients, 5 min
    /// idle (RFC 5321 §4.5.3.2.7), 30 min per session, 200 sessions of which 20 per
    /// client IP, 60 s per command line, content at 1 KiB/s at least, 20 refused
    /// recipients per session, no TLS.
    pub fn new(hostname: impl Into<String>, protocol: Protocol) -> SmtpConfig {
        SmtpConfig {
            hostname: hostname.into(),
            protocol,
            max_message_bytes: 10 * 1024 * 1024,
            max_recipients: 100,
            idle_timeout: Duration::from_secs(5 * 60),
            session_timeout: Duration::from_secs(30 * 60),
            max_sessions: 200,
            max_sessions_per_ip: 20,
            command_timeout: Duration::from_secs(60),
            min_data_rate: 1024,
            max_rejected_recipients: 20,
            tls: None,
        }
    }
}

/// Loads LISTD_TLS_CERT / LISTD_TLS_KEY PEM files into a rustls ServerConfig (ring
/// provider); errors name the file.
pub fn load_tls(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the TLS certificates in {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate found in {}", cert.display());
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the TLS private key in {}", key.display()))?;
    // An explicit provider: the process may link more than one, and then rustls has no
    // default to pick.
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("no TLS protocol version available")?
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .with_context(|| {
                format!(
                    "the TLS key in {} does not fit the certificate in {}",
                    key.display(),
                    cert.display()
                )
            })?;
    Ok(Arc::new(config))
}

/// Sessions per client IP address.
#[derive(Clone, Default)]
struct PerIp(Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>);

/// One session's place in [`PerIp`]; given back when dropped.
struct IpPermit {
    counts: PerIp,
    ip: IpAddr,
}

impl PerIp {
    fn acquire(&self, ip: IpAddr, max: usize) -> Option<IpPermit> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpPermit {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A session's places: one of the listener's and one of its client IP's. `None` when
/// either is full, after telling the client so with a `421`.
fn admit(
    stream: &tokio::net::TcpStream,
    peer: SocketAddr,
    config: &SmtpConfig,
    slots: &Arc<Semaphore>,
    per_ip: &PerIp,
) -> Option<(tokio::sync::OwnedSemaphorePermit, IpPermit)> {
    // A fresh socket's send buffer is empty, so these writes cannot block; if one
    // fails the client sees a plain close, which is just as good.
    let Some(ip_permit) = per_ip.acquire(peer.ip(), config.max_sessions_per_ip) else {
        limit_hit(Some(peer), "sessions per client IP");
        let _ = stream.try_write(replies::TOO_MANY_CONNECTIONS_FROM_YOU);
        return None;
    };
    let Ok(permit) = slots.clone().try_acquire_owned() else {
        limit_hit(Some(peer), "sessions in all");
        let _ = stream.try_write(replies::TOO_MANY_CONNECTIONS);
        return None;
    };
    Some((permit, ip_permit))
}

/// Logs a client hitting a limit: one line per limit a minute at most, with the
/// client's address and how many more hits there were since the last line.
pub(crate) fn limit_hit(peer: Option<SocketAddr>, limit: &'static str) {
    metrics::counter!("listd_smtp_limit_hits_total", "limit" => limit).increment(1);
    if let Some(suppressed) = crate::log_limit::LOG_LIMIT.admit(limit) {
        let peer = peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
        tracing::warn!(%peer, limit, suppressed, "SMTP client hit a limit");
    }
}

/// Accepts connections until `true` is sent on `stop` (or its sender is dropped), one
/// [`Session`] each, at most `config.max_sessions` at a time. Then it stops accepting,
/// asks idle sessions to close, and gives the others up to 30 s to finish their
/// transaction before aborting them.
pub async fn serve<B: Backend>(
    listener: TcpListener,
    config: SmtpConfig,
    backend: B,
    mut stop: watch::Receiver<bool>,
) {
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.max_sessions));
    let per_ip = PerIp::default();
    let mut sessions = JoinSet::new();
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(done) = sessions.join_next(), if !sessions.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "SMTP session panicked");
                }
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot accept an SMTP connection");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let Some(permits) = admit(&stream, peer, &config, &slots, &per_ip) else {
                    continue;
                };
                // Replies are written whole, one write per batch: Nagle would only add
                // latency to each round trip.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                let session = Session::new(stream, config.clone(), backend.clone(), Some(peer))
                    .stop_on(stop.clone());
                metrics::counter!("listd_smtp_sessions_total").increment(1);
                sessions.spawn(async move {
                    session.run().await;
                    drop(permits);
                });
            }
        }
    }
    drop(listener);
    let running = sessions.len();
    if running > 0 {
        tracing::debug!(running, "SMTP listener stopped; waiting for sessions");
    }
    let finished = tokio::time::timeout(STOP_GRACE, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            aborted = sessions.len(),
            "SMTP sessions still running after {} s; aborting them",
            STOP_GRACE.as_secs()
        );
        sessions.shutdown().await;
    }
}
