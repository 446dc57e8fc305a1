//! Delivery workers: claim queued messages, hand them to the relay, record the result.
//!
//! The only module that speaks SMTP outward (through lettre). Rows are leased with
//! `FOR UPDATE SKIP LOCKED` and `locked_until`, so no transaction stays open during an
//! SMTP conversation and several processes share the queue without sending a row
//! twice; a worker that dies leaves its lease to expire and the row is sent again.
//! 4xx answers and connection failures are retried with exponential backoff for up
//! to four days; a 5xx answer is final and its reason kept in `last_error`.
//!
//! A copy of a post is a row naming the post and the member; the worker builds it when
//! it is sent: the member's VERP envelope sender and `List-Unsubscribe` lines, then the
//! bytes every copy shares, read once per post and kept in a small cache. A copy of a
//! digest is made the same way from the bytes of its edition (`mail::digest`). Copies
//! for members who left before their turn came are cancelled, not sent.

use crate::config::RelayUrl;
use crate::domain::bounce::{classify_relay_refusal, find_status_code};
use crate::domain::headers::UnsubscribeTokens;
use crate::domain::{
    Delivery, ListAddress, MailtoToken, MemberStatus, SecretKey, UnsubscribeToken, VerpToken,
};
use crate::mail::dkim::{self, BodyHash, SignedHeaders, SigningKey};
use crate::mail::footer::CopyLayout;
use crate::mail::rewrite::{write_copy, write_copy_with_footer};
use crate::store;
use crate::store::outbound::{Claimed, Content, CopyMember, CopyOf, Entry};
use anyhow::Context;
use lettre::address::Envelope;
use lettre::{AsyncFileTransport, AsyncTransport, Tokio1Executor};
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// How long a claimed row stays reserved for the worker that claimed it. A live
/// worker renews the leases of the rows it holds every [`RENEW_EVERY`], however long
/// a send takes; the rows of a worker that died are due again this long after its
/// last renewal, so a crash delays them by about a minute.
const LEASE: Duration = Duration::from_secs(60);
const RENEW_EVERY: Duration = Duration::from_secs(15);
/// How long a message is retried before it is given up.
const GIVE_UP_AFTER: time::Duration = time::Duration::days(4);
/// A batch of deliveries is written once it holds this many, or this long after its
/// first: what a crash sends twice is what was sent but not yet recorded.
const RECORD_BATCH: usize = 32;
const RECORD_EVERY: Duration = Duration::from_millis(10);
/// How long writing a batch of successes is retried before the drain gives up (and
/// sends nothing more until the next one).
const RECORD_RETRY_FOR: Duration = Duration::from_secs(30);
/// Polling interval when no notification arrives (a lost NOTIFY, a retry coming due).
const POLL: Duration = Duration::from_secs(5);

mod signing;
mod smtp;

/// Where mail goes: an SMTP relay, or a directory of `.eml` files.
#[derive(Clone)]
pub enum Relay {
    Smtp(Arc<smtp::SmtpPool>),
    File(AsyncFileTransport<Tokio1Executor>),
}

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The relay refused for good (5xx); never retried.
    #[error("{0}")]
    Permanent(String),
    /// Worth retrying (4xx, connection trouble).
    #[error("{0}")]
    Transient(String),
    /// listd could not even hand the message over (an address it cannot write into
    /// SMTP, say): not the relay's answer and never a bounce. Kept queued and retried,
    /// so that a fix (or an upgrade) delivers it; the owners are told.
    #[error("{0}")]
    Local(String),
}

impl Relay {
    /// Builds the one shared transport (and its connection pool) for a relay URL.
    pub fn new(url: &RelayUrl, concurrency: usize, hostname: &str) -> anyhow::Result<Relay> {
        match url {
            RelayUrl::File(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating the outbox {}", dir.display()))?;
                Ok(Relay::File(AsyncFileTransport::new(dir)))
            }
            RelayUrl::Smtp {
                host,
                port,
                implicit_tls,
                credentials,
            } => {
                let target = smtp::RelayTarget {
                    host: host.clone(),
                    port: *port,
                    implicit_tls: *implicit_tls,
                    credentials: credentials.clone(),
                    hello: hostname.to_string(),
                };
                Ok(Relay::Smtp(Arc::new(
                    smtp::SmtpPool::new(target, concurrency).context("setting up the relay")?,
                )))
            }
        }
    }

    /// Sends prebuilt bytes to one recipient.
    pub async fn send(
        &self,
        envelope_from: &str,
        recipient: &str,
        message: &[u8],
    ) -> Result<(), SendError> {
        let from = envelope_sender(envelope_from)?;
        let to = recipient
            .parse()
            .map_err(|e| SendError::Local(format!("cannot write the recipient into SMTP: {e}")))?;
        let envelope = Envelope::new(Some(from), vec![to])
            .map_err(|e| SendError::Local(format!("cannot build the envelope: {e}")))?;
        // lettre terminates DATA with CRLF.CRLF itself: a final CRLF of ours would add a blank line
        let body = message.strip_suffix(b"\r\n").unwrap_or(message);
        match self {
            Relay::Smtp(pool) => pool.send(&envelope, body).await,
            Relay::File(t) => t
                .send_raw(&envelope, message)
                .await
                .map(|_| ())
                .map_err(|e| SendError::Transient(e.to_string())),
        }
    }
}

/// The envelope sender as lettre takes it. listd writes these addresses itself
/// (`L+bounces+TOKEN@D`), and for a list name longer than 32 octets their local part
/// may pass the 64 octets lettre's own check allows: RFC 5321 §4.5.3.1 lets a server
/// accept longer ones, and the relay decides. What could break the SMTP command line
/// is refused here.
fn envelope_sender(address: &str) -> Result<lettre::Address, SendError> {
    let fault = || {
        SendError::Local(format!(
            "cannot write the envelope sender {address:?} into SMTP"
        ))
    };
    let (user, domain) = address.rsplit_once('@').ok_or_else(fault)?;
    let unsafe_char = |c: char| c.is_control() || c.is_whitespace() || "<>@\\\"".contains(c);
    if user.is_empty() || user.chars().any(unsafe_char) || address.len() > 254 {
        return Err(fault());
    }
    // the domain goes through lettre's own check
    lettre::Address::new("postmaster", domain).map_err(|_| fault())?;
    Ok(lettre::Address::new_dangerous(user, domain))
}

/// What building a member's copy of a post needs.
#[derive(Clone)]
pub struct CopySettings {
    pub secret_key: SecretKey,
    /// Base of the unsubscribe links, without a trailing slash.
    pub public_url: String,
}

/// Posts whose copies are being sent, by id (a few at a time, so a small map).
const CACHED_POSTS: usize = 16;

/// What every copy of a post shares.
struct SharedPost {
    list: ListAddress,
    shared: Vec<u8>,
    /// The copies with the list's footer, when they have one.
    layout: Option<CopyLayout>,
    /// What a DKIM signature of any copy shares.
    signing: PostSigning,
}

/// The part of a DKIM signature every copy of a post shares: the signed header
/// fields but the member's own, and the body hash, whole or up to the first footer
/// (docs/standards.md#60).
struct PostSigning {
    headers: SignedHeaders,
    body: BodyHash,
    /// Octets of each copy, after the member's own lines, already in `body`; `None`
    /// when `body` is the whole body.
    resume_at: Option<usize>,
}

/// The member's own header fields, first in every copy of a post.
const OWN_FIELDS: &[&str] = &["list-unsubscribe", "list-unsubscribe-post"];

impl PostSigning {
    fn new(shared: &[u8], layout: Option<&CopyLayout>) -> PostSigning {
        let mut body = BodyHash::default();
        match layout {
            Some(layout) => {
                let (fields, _) = dkim::header_fields(layout.head());
                body.update(layout.first_slot());
                PostSigning {
                    headers: SignedHeaders::new(&fields, OWN_FIELDS),
                    body,
                    resume_at: Some(layout.head().len() + layout.first_slot().len()),
                }
            }
            None => {
                let (fields, body_start) = dkim::header_fields(shared);
                body.update(&shared[body_start..]);
                PostSigning {
                    headers: SignedHeaders::new(&fields, OWN_FIELDS),
                    body,
                    resume_at: None,
                }
            }
        }
    }

    /// The `DKIM-Signature` fields of one copy.
    fn sign(&self, keys: &[Arc<SigningKey>], copy: &[u8], now: i64) -> Vec<u8> {
        let (fields, _) = dkim::header_fields(copy);
        let own: Vec<&[u8]> = fields.iter().take(OWN_FIELDS.len()).copied().collect();
        let own_len: usize = own.iter().map(|f| f.len()).sum();
        let body = match self.resume_at {
            Some(at) => {
                let mut body = self.body.clone();
                body.update(copy.get(own_len + at..).unwrap_or_default());
                body.finish()
            }
            None => self.body.clone().finish(),
        };
        dkim::sign_copy(keys, &self.headers, &own, body, now)
    }
}

/// The DKIM keys in memory, by domain, and the ids they were loaded from.
#[derive(Default)]
struct DkimKeys {
    ids: Vec<i64>,
    by_domain: std::collections::HashMap<String, Vec<Arc<SigningKey>>>,
}

/// The most recently used posts and digests.
type PostCache = Mutex<Vec<(CopyOf, Arc<SharedPost>)>>;

/// A delivery worker of one process.
#[derive(Clone)]
pub struct Worker {
    db: PgPool,
    relay: Relay,
    concurrency: usize,
    copies: Arc<CopySettings>,
    posts: Arc<PostCache>,
    dkim: Arc<Mutex<Arc<DkimKeys>>>,
    /// The signing threads, started when the first message is signed.
    signers: Arc<std::sync::OnceLock<signing::Signers>>,
}

/// A message ready for the relay, or why a queued row is not to be sent.
enum Ready {
    Send {
        envelope_from: String,
        message: Vec<u8>,
        /// The post a copy is of, whose signing state it uses.
        post: Option<Arc<SharedPost>>,
    },
    Cancel(&'static str),
    /// listd cannot build this copy: see [`SendError::Local`].
    Fault(String),
}

impl Worker {
    pub fn new(db: PgPool, relay: Relay, concurrency: usize, copies: CopySettings) -> Self {
        Worker {
            db,
            relay,
            concurrency: concurrency.max(1),
            copies: Arc::new(copies),
            posts: Arc::new(Mutex::new(Vec::with_capacity(CACHED_POSTS))),
            dkim: Arc::default(),
            signers: Arc::default(),
        }
    }

    /// Reloads the DKIM keys when the keys in the database are not those in memory
    /// (asked before each batch, so a removed key signs nothing claimed after).
    async fn refresh_keys(&self) -> anyhow::Result<()> {
        let ids = store::dkim::dkim_key_ids(&self.db)
            .await
            .context("reading the DKIM keys")?;
        if self.dkim.lock().expect("dkim keys").ids == ids {
            return Ok(());
        }
        let rows = store::dkim::signing_keys(&self.db)
            .await
            .context("reading the DKIM keys")?;
        let mut keys = DkimKeys::default();
        for row in rows {
            let algorithm = match row.algorithm.parse() {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(domain = %row.domain, selector = %row.selector, error = %e, "DKIM key not used");
                    continue;
                }
            };
            match SigningKey::from_pkcs8(&row.domain, &row.selector, algorithm, &row.private_key) {
                Ok(key) => {
                    keys.ids.push(row.id);
                    keys.by_domain
                        .entry(row.domain)
                        .or_default()
                        .push(Arc::new(key));
                }
                Err(e) => {
                    tracing::error!(domain = %row.domain, selector = %row.selector, error = %e, "DKIM key not used")
                }
            }
        }
        keys.ids = ids;
        *self.dkim.lock().expect("dkim keys") = Arc::new(keys);
        Ok(())
    }

    /// The keys that sign mail from `domain` (none: unsigned).
    fn keys_for(&self, domain: &str) -> Vec<Arc<SigningKey>> {
        let keys = self.dkim.lock().expect("dkim keys");
        if keys.by_domain.is_empty() {
            return Vec::new();
        }
        // list domains are stored in lower case, as keys' domains are
        keys.by_domain.get(domain).cloned().unwrap_or_default()
    }

    /// The message with one `DKIM-Signature` per key of the sender's domain first
    /// (docs/contract.md#dkim), signed on a blocking thread.
    async fn signed(
        &self,
        envelope_from: &str,
        message: Vec<u8>,
        post: Option<Arc<SharedPost>>,
    ) -> anyhow::Result<Vec<u8>> {
        let keys = match &post {
            Some(p) => self.keys_for(p.list.domain()),
            None => self.keys_for(
                &envelope_from
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_ascii_lowercase())
                    .unwrap_or_default(),
            ),
        };
        if keys.is_empty() {
            return Ok(message);
        }
        let signers = match self.signers.get() {
            Some(s) => s,
            None => {
                let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
                let started =
                    signing::Signers::start(cores).context("starting the signing threads")?;
                self.signers.get_or_init(|| started)
            }
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        signers
            .run(move || {
                let fields = match &post {
                    Some(post) => post.signing.sign(&keys, &message, now),
                    None => dkim::sign_message(&keys, &message, now),
                };
                let mut signed = Vec::with_capacity(fields.len() + message.len());
                signed.extend_from_slice(&fields);
                signed.extend_from_slice(&message);
                signed
            })
            .await
            .context("signing a message")
    }

    /// The bytes of a row: its own, or a member's copy of a post built now.
    async fn ready(&self, id: i64, content: Content) -> anyhow::Result<Ready> {
        match content {
            Content::Whole {
                envelope_from,
                message,
            } => Ok(Ready::Send {
                envelope_from: self.personal_sender(envelope_from, id),
                message,
                post: None,
            }),
            Content::Copy {
                of,
                member_id,
                member,
            } => self.member_copy(of, member_id, member).await,
            Content::Unreadable(why) => Ok(Ready::Fault(format!("unreadable queued row: {why}"))),
        }
    }

    /// A member's copy of a post or digest, unless the member or the post is gone.
    async fn member_copy(
        &self,
        of: CopyOf,
        member_id: uuid::Uuid,
        member: Option<CopyMember>,
    ) -> anyhow::Result<Ready> {
        let Some((member, since)) = member.and_then(|m| m.since.map(|since| (m, since))) else {
            return Ok(Ready::Cancel("the member no longer exists"));
        };
        if member.status != MemberStatus::Subscribed {
            return Ok(Ready::Cancel("the member left before the copy was sent"));
        }
        if member.delivery == Delivery::Disabled {
            return Ok(Ready::Cancel(
                "the member turned delivery off before the copy was sent",
            ));
        }
        let Some(post) = self.shared_post(of).await? else {
            return Ok(Ready::Cancel(
                "the post or digest no longer exists (its list was deleted)",
            ));
        };
        let key = &self.copies.secret_key;
        let Some(mailto) = MailtoToken::from_key(&member.unsubscribe_key) else {
            return Ok(Ready::Fault(
                "the member's unsubscribe key is unreadable".into(),
            ));
        };
        let link = UnsubscribeToken::for_membership(key, member_id, since);
        let verp = VerpToken::for_member(key, member.short_id);
        let mut message = Vec::new();
        let tokens = UnsubscribeTokens {
            link: link.as_str(),
            mailto: mailto.as_str(),
        };
        match &post.layout {
            Some(layout) => write_copy_with_footer(
                &mut message,
                &post.list,
                &self.copies.public_url,
                tokens,
                layout,
            ),
            None => write_copy(
                &mut message,
                &post.list,
                &self.copies.public_url,
                tokens,
                &post.shared,
            ),
        }
        Ok(Ready::Send {
            envelope_from: post.list.with_suffix(&format!("bounces+{}", verp.as_str())),
            message,
            post: Some(post),
        })
    }

    /// A message to one person that was queued with the list's plain bounce address
    /// (`L+bounces@D`) goes out with one naming its queue row (`L+bounces+oTOKEN@D`),
    /// so that its bounce says whose address failed without reading the report.
    fn personal_sender(&self, envelope_from: String, outbound_id: i64) -> String {
        let Some((local, domain)) = envelope_from.rsplit_once('@') else {
            return envelope_from;
        };
        match local.strip_suffix("+bounces") {
            Some(list) if !list.is_empty() => {
                let token = VerpToken::for_message(&self.copies.secret_key, outbound_id);
                format!("{list}+bounces+{}@{domain}", token.as_str())
            }
            _ => envelope_from,
        }
    }

    async fn shared_post(&self, key: CopyOf) -> anyhow::Result<Option<Arc<SharedPost>>> {
        let cached = |posts: &Vec<(CopyOf, Arc<SharedPost>)>| {
            posts
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, p)| p.clone())
        };
        if let Some(p) = cached(&self.posts.lock().expect("post cache")) {
            return Ok(Some(p));
        }
        // the copies of a post or a digest carry the list's footer when it has one (a layout)
        let found = match key {
            CopyOf::Post(id) => store::posts::find_relayed_post(&self.db, id)
                .await
                .context("reading a post to send")?
                .map(|r| (r.local_part, r.domain, r.relayed, r.copy_layout)),
            CopyOf::Digest(id) => store::digests::find_digest_edition(&self.db, id)
                .await
                .context("reading a digest to send")?
                .map(|r| (r.local_part, r.domain, r.message, r.copy_layout)),
        };
        let Some((local_part, domain, shared, copy_layout)) = found else {
            return Ok(None);
        };
        let layout = match copy_layout.as_deref() {
            Some(stored) => Some(
                CopyLayout::from_bytes(stored)
                    .with_context(|| format!("{key:?}: unreadable copy layout"))?,
            ),
            None => None,
        };
        // the body hash of a post or a digest is computed once here, for every copy
        let signing = PostSigning::new(&shared, layout.as_ref());
        let post = Arc::new(SharedPost {
            list: ListAddress::from_parts(&local_part, &domain),
            shared,
            layout,
            signing,
        });
        let mut posts = self.posts.lock().expect("post cache");
        if posts.len() >= CACHED_POSTS {
            posts.remove(0);
        }
        posts.push((key, post.clone()));
        Ok(Some(post))
    }

    /// Delivers everything due now and returns how many rows it claimed (tests use it
    /// to make delivery deterministic; messages scheduled for a later retry are left
    /// alone).
    pub async fn dispatch_all_pending(&self) -> anyhow::Result<usize> {
        self.drain(None).await
    }

    /// Sends until nothing is due (or `stop` is set). Four parts run at once: a
    /// feeder claims batches into a bounded channel (the next batch is claimed while
    /// the current one is being sent), `concurrency` senders take rows from it, a
    /// recorder writes successes in batches, and a heartbeat renews the leases of the
    /// rows this process holds. When `stop` is set, the rows claimed but not yet sent
    /// are handed back, due at once for another process or the next start. A row is
    /// never sent once its lease may have lapsed (the heartbeat failing, say): it is
    /// left to whoever claims it next.
    async fn drain(&self, stop: Option<&watch::Receiver<bool>>) -> anyhow::Result<usize> {
        let batch = self.concurrency * 16;
        let (rows_tx, rows_rx) = mpsc::channel::<(Instant, Claimed)>(batch);
        let (done_tx, done_rx) = mpsc::unbounded_channel::<i64>();
        let leases = Arc::new(Leases::default());
        let senders = self.spawn_senders(rows_rx, done_tx, stop.cloned(), &leases);
        let senders_done = tokio::sync::Notify::new();
        let (claimed, (), recorded, ()) = tokio::join!(
            self.feed(rows_tx, batch, stop, &leases),
            async {
                for sender in senders {
                    if let Err(e) = sender.await {
                        tracing::error!(error = %e, "a delivery task failed");
                    }
                }
                senders_done.notify_one();
            },
            self.record(done_rx, &leases),
            self.renew(&leases, &senders_done),
        );
        let handed_back = leases.take_handed_back();
        if !handed_back.is_empty() {
            store::outbound::update_outbound_handed_back(&self.db, &handed_back)
                .await
                .context("handing back claimed mail")?;
            tracing::info!(rows = handed_back.len(), "handed back claimed mail");
            // another process's workers take them now rather than at their next poll
            let _ = store::wakeup::notify(&self.db, store::wakeup::OUTBOUND).await;
        }
        // if recording fails the leases expire and those copies are sent again: at
        // least once, never lost
        recorded?;
        claimed
    }

    /// Claims batches into `rows` until nothing is due or `stop` is set; returns how
    /// many rows it claimed. It owns the sending side: when it ends, the channel closes
    /// and the senders stop once they have emptied it.
    async fn feed(
        &self,
        rows: mpsc::Sender<(Instant, Claimed)>,
        batch: usize,
        stop: Option<&watch::Receiver<bool>>,
        leases: &Leases,
    ) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            if stop.is_some_and(|s| *s.borrow()) {
                return Ok(total);
            }
            // the keys of this batch: one removed by now signs none of it
            self.refresh_keys().await?;
            // before the claim: the lease may start as early as the statement does
            let now = Instant::now();
            let claimed = store::outbound::claim_due(&self.db, batch as i64, LEASE.as_secs_f64())
                .await
                .context("claiming queued mail")?;
            if claimed.is_empty() {
                return Ok(total);
            }
            if total == 0 && claimed.len() == batch {
                fresh_statistics(&self.db).await;
            }
            total += claimed.len();
            leases.hold(claimed.iter().map(|r| r.entry.id));
            for row in claimed {
                if rows.send((now, row)).await.is_err() {
                    return Ok(total);
                }
            }
        }
    }

    /// Starts `concurrency` senders that take rows from `rows` until it closes and
    /// report each success on `done`. Tasks of their own, so that copies are built and
    /// sent on every core.
    fn spawn_senders(
        &self,
        rows: mpsc::Receiver<(Instant, Claimed)>,
        done: mpsc::UnboundedSender<i64>,
        stop: Option<watch::Receiver<bool>>,
        leases: &Arc<Leases>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let rows = Arc::new(tokio::sync::Mutex::new(rows));
        (0..self.concurrency)
            .map(|_| {
                let (rows, done) = (rows.clone(), done.clone());
                let (me, stop, leases) = (self.clone(), stop.clone(), leases.clone());
                tokio::spawn(async move {
                    loop {
                        let next = rows.lock().await.recv().await;
                        let Some((claimed_at, row)) = next else {
                            return;
                        };
                        if stop.as_ref().is_some_and(|s| *s.borrow()) {
                            leases.hand_back(row.entry.id);
                            continue;
                        }
                        if !leases.safe(claimed_at) || leases.abandoned() {
                            leases.release(row.entry.id);
                            continue;
                        }
                        let id = row.entry.id;
                        match me.deliver(row).await {
                            Ok(Some(id)) => {
                                let _ = done.send(id);
                            }
                            Ok(None) => leases.release(id),
                            Err(e) => {
                                leases.release(id);
                                crate::error_limited!("recording a delivery failed", e)
                            }
                        }
                    }
                })
            })
            .collect()
    }

    /// Renews the leases of the rows this process holds every [`RENEW_EVERY`], until
    /// `done` is notified.
    async fn renew(&self, leases: &Leases, done: &tokio::sync::Notify) {
        loop {
            tokio::select! {
                _ = done.notified() => return,
                _ = tokio::time::sleep(RENEW_EVERY) => {}
            }
            let started = Instant::now();
            let held = leases.held();
            if held.is_empty() {
                leases.renewed(started);
                continue;
            }
            match store::outbound::update_outbound_leases(&self.db, &held, LEASE.as_secs_f64())
                .await
            {
                Ok(()) => leases.renewed(started),
                Err(e) => crate::warn_limited!("renewing the leases of claimed mail failed", e),
            }
        }
    }

    /// Records successes as they come, until every sender is done: a batch holds
    /// everything that waits when it is written, and a small one waits at most
    /// [`RECORD_EVERY`] for more. Under load the batches grow to what arrives while the
    /// previous one is written, so recording keeps up; when it is quiet, a success is
    /// recorded within milliseconds, which is what a crash can send twice.
    async fn record(
        &self,
        mut done: mpsc::UnboundedReceiver<i64>,
        leases: &Leases,
    ) -> anyhow::Result<()> {
        let mut sent = Vec::with_capacity(RECORD_BATCH);
        let mut finished = false;
        while !finished {
            let Some(first) = done.recv().await else {
                return Ok(());
            };
            sent.push(first);
            let deadline = tokio::time::Instant::now() + RECORD_EVERY;
            loop {
                while let Ok(id) = done.try_recv() {
                    sent.push(id);
                }
                if sent.len() >= RECORD_BATCH {
                    break;
                }
                match tokio::time::timeout_at(deadline, done.recv()).await {
                    Ok(Some(id)) => sent.push(id),
                    Ok(None) => {
                        finished = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if let Err(e) = self.record_sent(&sent).await {
                // nothing more is sent on leases whose results cannot be written: what
                // was sent unrecorded goes out again when its lease lapses, at least once
                leases.abandon();
                return Err(e);
            }
            for id in sent.drain(..) {
                leases.release(id);
            }
        }
        Ok(())
    }

    /// Writes a batch of successes, trying again for a while when the database fails
    /// (a pool timeout under load, a failover): a batch not written is a batch sent twice.
    async fn record_sent(&self, ids: &[i64]) -> anyhow::Result<()> {
        let mut wait = Duration::from_millis(100);
        let give_up = Instant::now() + RECORD_RETRY_FOR;
        loop {
            match store::outbound::update_outbound_sent(&self.db, ids).await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() + wait < give_up => {
                    crate::warn_limited!("recording deliveries failed; trying again", e);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e).context("recording deliveries"),
            }
        }
    }

    /// Sends one message; returns its id when the relay accepted it (the caller records
    /// the batch's successes together) and records failures itself.
    async fn deliver(&self, row: Claimed) -> anyhow::Result<Option<i64>> {
        let Claimed {
            entry: row,
            content,
        } = row;
        let copy = matches!(content, Content::Copy { .. });
        let (envelope_from, message) = match self.ready(row.id, content).await? {
            Ready::Send {
                envelope_from,
                message,
                post,
            } => {
                let message = self.signed(&envelope_from, message, post).await?;
                (envelope_from, message)
            }
            Ready::Cancel(reason) => {
                metrics::counter!("listd_deliveries_total", "outcome" => "cancelled").increment(1);
                tracing::info!(id = row.id, to = %row.recipient, reason, "not sent");
                store::outbound::update_outbound_cancelled(&self.db, &[row.id], reason).await?;
                return Ok(None);
            }
            Ready::Fault(reason) => {
                self.record_fault(&row, &reason).await?;
                return Ok(None);
            }
        };
        match self
            .relay
            .send(&envelope_from, &row.recipient, &message)
            .await
        {
            Err(SendError::Local(reason)) => self.record_fault(&row, &reason).await?,
            Ok(()) => {
                metrics::counter!("listd_deliveries_total", "outcome" => "sent").increment(1);
                tracing::debug!(id = row.id, to = %row.recipient, "delivered");
                return Ok(Some(row.id));
            }
            Err(SendError::Permanent(reason)) => {
                metrics::counter!("listd_deliveries_total", "outcome" => "failed").increment(1);
                tracing::warn!(id = row.id, to = %row.recipient, %reason, "refused by the relay; giving up");
                store::outbound::update_outbound_failed(&self.db, row.id, &reason).await?;
                if copy {
                    // a member's copy refused for good counts as a bounce (docs/standards.md#49)
                    let class = classify_relay_refusal(&reason);
                    let status = find_status_code(&reason);
                    store::bounces::insert_relay_bounce(
                        &self.db,
                        row.id,
                        class.as_str(),
                        status.as_deref(),
                        &reason,
                    )
                    .await?;
                }
            }
            Err(SendError::Transient(reason)) => self.record_deferral(&row, &reason).await?,
        }
        Ok(None)
    }

    /// Keeps a message the relay put off (4xx, connection trouble) queued for another
    /// try after a backoff; given up after four days.
    async fn record_deferral(&self, row: &Entry, reason: &str) -> anyhow::Result<()> {
        metrics::counter!("listd_deliveries_total", "outcome" => "deferred").increment(1);
        self.retry_or_give_up(row, reason, false).await
    }

    /// Keeps a message listd could not hand over queued, with its error, for a later
    /// try: logged at error level, counted, and marked for the owners' alert; never a
    /// bounce. Given up (still no bounce) after the usual four days.
    async fn record_fault(&self, row: &Entry, reason: &str) -> anyhow::Result<()> {
        metrics::counter!("listd_deliveries_total", "outcome" => "fault").increment(1);
        let reason = format!("listd could not hand this message to the relay: {reason}");
        self.retry_or_give_up(row, &reason, true).await
    }

    /// Schedules another try after a backoff, or, once the message is older than
    /// [`GIVE_UP_AFTER`], marks it failed. `fault` says it is listd's own fault (logged
    /// as an error, and marked for the owners' alert) rather than the relay's answer.
    async fn retry_or_give_up(&self, row: &Entry, reason: &str, fault: bool) -> anyhow::Result<()> {
        if time::OffsetDateTime::now_utc() - row.created_at > GIVE_UP_AFTER {
            let reason = if fault {
                tracing::error!(id = row.id, to = %row.recipient, %reason, "giving up");
                reason.to_string()
            } else {
                let reason = format!("gave up after {} attempts: {reason}", row.attempts);
                tracing::warn!(id = row.id, to = %row.recipient, %reason, "giving up");
                reason
            };
            store::outbound::update_outbound_failed(&self.db, row.id, &reason).await?;
            return Ok(());
        }
        let delay = backoff(row.attempts);
        let retry_in_secs = delay.as_secs();
        if fault {
            tracing::error!(id = row.id, to = %row.recipient, %reason, retry_in_secs, "cannot send; kept queued");
        } else {
            tracing::info!(id = row.id, to = %row.recipient, %reason, retry_in_secs, "will retry");
        }
        store::outbound::update_outbound_retry(
            &self.db,
            row.id,
            delay.as_secs_f64(),
            reason,
            fault,
        )
        .await?;
        Ok(())
    }

    /// Delivers until `stop` is set: woken by NOTIFY on `listd_outbound`, polling as a
    /// fallback. In-flight deliveries finish before it returns.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut wakeup = store::wakeup::Wakeup::new(&self.db, store::wakeup::OUTBOUND).await;
        loop {
            if *stop.borrow() {
                return;
            }
            match self.drain(Some(&stop)).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => crate::error_limited!("delivery round failed", e),
            }
            // sleep until the next retry is due, a new message is queued, or POLL
            let wait = match store::outbound::seconds_until_next_due(&self.db).await {
                Ok(Some(s)) if s > 0.0 => Duration::from_secs_f64(s.min(POLL.as_secs_f64())),
                Ok(Some(_)) => Duration::from_millis(50),
                _ => POLL,
            };
            wakeup.wait(wait, &mut stop).await;
        }
    }
}

/// The rows one `drain` holds under lease: claimed and not yet finished.
#[derive(Default)]
struct Leases {
    state: Mutex<LeaseState>,
}

#[derive(Default)]
struct LeaseState {
    /// Results can no longer be recorded: send nothing more.
    abandoned: bool,
    held: std::collections::HashSet<i64>,
    handed_back: Vec<i64>,
    /// When the heartbeat last renewed every lease held (started before the renewal).
    renewed: Option<Instant>,
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hold(&self, ids: impl Iterator<Item = i64>) {
        self.lock().held.extend(ids);
    }

    /// Finished (sent and recorded, failed, cancelled): no longer renewed.
    fn release(&self, id: i64) {
        self.lock().held.remove(&id);
    }

    /// Not sent because the process is stopping: handed back when the drain ends.
    fn hand_back(&self, id: i64) {
        let mut state = self.lock();
        state.held.remove(&id);
        state.handed_back.push(id);
    }

    fn held(&self) -> Vec<i64> {
        self.lock().held.iter().copied().collect()
    }

    fn renewed(&self, at: Instant) {
        self.lock().renewed = Some(at);
    }

    fn abandon(&self) {
        self.lock().abandoned = true;
    }

    fn abandoned(&self) -> bool {
        self.lock().abandoned
    }

    fn take_handed_back(&self) -> Vec<i64> {
        std::mem::take(&mut self.lock().handed_back)
    }

    /// Whether a row claimed at `claimed_at` is surely still this process's: its
    /// lease was taken or last renewed less than two thirds of a lease ago.
    fn safe(&self, claimed_at: Instant) -> bool {
        let renewed = self
            .lock()
            .renewed
            .map_or(claimed_at, |r| r.max(claimed_at));
        renewed.elapsed() < LEASE * 2 / 3
    }
}

/// Asks PostgreSQL to look at the queue again when a burst of mail begins (a first
/// claim that fills a whole batch). The queue goes from empty to 100,000 copies in a
/// moment, and a claim planned with the statistics of an empty queue reads and sorts
/// every queued copy each time (tens of milliseconds at 100,000; a digest sent after a
/// quiet spell went out at half the rate of a post). Fresh statistics also end the
/// plan each connection had kept for the statement. A failure only costs speed.
async fn fresh_statistics(db: &sqlx::PgPool) {
    if let Err(e) = store::outbound::analyze_queue(db).await {
        tracing::warn!(error = %e, "could not refresh the queue's statistics");
    }
}

/// 1 min, 2 min, 4 min … capped at 4 hours, with ±10 % jitter so retries spread out.
fn backoff(attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 16) as u32 - 1;
    let base = (60u64 << exp).min(4 * 3600) as f64;
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let jitter = (u16::from_le_bytes(b) as f64 / u16::MAX as f64 - 0.5) * 0.2;
    Duration::from_secs_f64(base * (1.0 + jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) >= Duration::from_secs(54) && backoff(1) <= Duration::from_secs(66));
        assert!(backoff(3) >= Duration::from_secs(216));
        assert!(backoff(40) <= Duration::from_secs(4 * 3600 + 1440 + 1));
    }
}
