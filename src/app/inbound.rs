//! Mail to a list's addresses: resolving recipients at RCPT, storing the message
//! before it is acknowledged, and processing it afterwards (docs/standards.md#24 to #27,
//! and section E).
//!
//! Processing never answers or acts on automatic mail (bounces, auto-replies, list
//! traffic), and answers a person at most ten times a day.

use super::outbox::{Mail, Staff, daily_limit_reached, staff_addresses};
use super::posts::{Moderation, ModerationOutcome, PostOutcome, ReceivedPost};
use super::subscriptions::{
    ConfirmOutcome, ConfirmVia, Request, RequestOutcome, UnsubscribeOutcome,
};
use super::{App, AppError};
use crate::domain::route::{Action, Protocol, readings};
use crate::domain::{EmailAddress, Evidence, List, ModerateToken, Purpose, Source};
use crate::mail::forward::{loop_line, with_loop_marker};
use crate::mail::inbound::{
    Command, Incoming, ModerationReply, find_command, find_moderation_reply, find_tokens,
    read_incoming,
};
use crate::mail::storable;
use crate::store;
use crate::store::inbound::{InboundRecipient, InboundRow, NewInbound};
use serde_json::json;
use time::OffsetDateTime;

/// A recipient listd answers for: a list and what the mail asks of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub list: List,
    pub action: Action,
}

/// How a message arrived (kept with it).
#[derive(Debug, Clone)]
pub struct Arrival<'a> {
    pub mail_from: Option<&'a str>,
    pub helo: &'a str,
    pub peer: Option<String>,
    pub tls: bool,
    pub protocol: Protocol,
}

/// A received message as an operator sees it (`listd inbound ls|show`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct InboundView {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// The envelope sender; `None` for `MAIL FROM:<>`.
    pub envelope_from: Option<String>,
    /// The addresses it was accepted for.
    pub recipients: Vec<String>,
    pub from: Option<String>,
    pub subject: String,
    pub peer: Option<String>,
    pub protocol: String,
    /// `new` (waiting or being retried), `done` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub size: i32,
}

/// What `retry_inbound` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// Due now, with a fresh count of attempts.
    Queued,
    /// It was processed; nothing to do (its outcome says what became of it).
    AlreadyDone,
}

/// Messages `listd inbound ls` shows at most.
const INBOUND_SHOWN: i64 = 500;

/// Mailboxes every mail domain must have (RFC 5321 §4.5.1, RFC 2142 §2), answered at
/// every list domain unless a list has that name.
const ROLE_ACCOUNTS: &[&str] = &["postmaster", "abuse"];
/// A message that still fails after this many attempts is marked failed.
const MAX_ATTEMPTS: i32 = 5;

impl App {
    /// Reads a RCPT TO address as a list and an action; `None` for anything that is
    /// not exactly one of the forms of docs/contract.md#addresses for an existing list.
    pub async fn resolve_recipient(&self, address: &str) -> Result<Option<Route>, AppError> {
        // `<postmaster>` with no domain names this host's postmaster (RFC 5321 §4.5.1)
        if address.eq_ignore_ascii_case("postmaster") {
            return self.role_account(None).await;
        }
        let Ok(address) = EmailAddress::parse_recipient(address) else {
            return Ok(None);
        };
        for (list_address, action) in readings(&address) {
            if let Some(list) = store::lists::find_list(&self.db, &list_address.list_id()).await? {
                return Ok(Some(Route { list, action }));
            }
        }
        if ROLE_ACCOUNTS.contains(&address.local_part().to_ascii_lowercase().as_str()) {
            return self.role_account(Some(address.domain())).await;
        }
        Ok(None)
    }

    /// `postmaster@` or `abuse@` a domain that has a list: mail for the site admins,
    /// sent on in the name of the domain's first list.
    async fn role_account(&self, domain: Option<&str>) -> Result<Option<Route>, AppError> {
        let Some(list_id) = store::lists::find_first_list_id(&self.db, domain).await? else {
            return Ok(None);
        };
        Ok(store::lists::find_list(&self.db, &list_id)
            .await?
            .map(|list| Route {
                list,
                action: Action::Postmaster,
            }))
    }

    /// Stores a received message durably; only then may the sender be told 250.
    pub async fn receive_mail(
        &self,
        arrival: &Arrival<'_>,
        recipients: &[(String, Route)],
        raw: &[u8],
    ) -> Result<i64, AppError> {
        let recipients: Vec<InboundRecipient> = recipients
            .iter()
            .map(|(address, r)| InboundRecipient {
                address: address.clone(),
                list_id: r.list.address.list_id(),
                action: r.action.clone(),
            })
            .collect();
        let row = NewInbound {
            mail_from: arrival.mail_from,
            recipients: &recipients,
            helo: arrival.helo,
            peer: arrival.peer.clone(),
            tls: arrival.tls,
            protocol: arrival.protocol.as_str(),
            raw,
        };
        let id = store::inbound::insert_inbound(&self.db, &row).await?;
        self.wakeups.inbound();
        Ok(id)
    }

    /// The newest received messages, of one status (`new`, `done`, `failed`) or all.
    pub async fn inbound_messages(
        &self,
        status: Option<&str>,
    ) -> Result<Vec<InboundView>, AppError> {
        if let Some(s) = status
            && !matches!(s, "new" | "done" | "failed")
        {
            return Err(AppError::Refused(format!(
                "there is no status {s}: use new, done or failed"
            )));
        }
        let records = store::inbound::list_inbound_records(&self.db, status, INBOUND_SHOWN).await?;
        Ok(records.into_iter().map(|r| inbound_view(r, None)).collect())
    }

    /// One received message and its bytes.
    pub async fn inbound_message(&self, id: i64) -> Result<(InboundView, Vec<u8>), AppError> {
        let (record, raw) = store::inbound::find_inbound_record(&self.db, id)
            .await?
            .ok_or(AppError::NoSuchPost(id))?;
        let view = inbound_view(record, Some(&raw));
        Ok((view, raw))
    }

    /// Makes a message that failed processing due again, for when its cause is fixed.
    pub async fn retry_inbound(&self, id: i64) -> Result<RetryOutcome, AppError> {
        let before = store::inbound::update_inbound_retry(&self.db, id)
            .await?
            .ok_or(AppError::NoSuchPost(id))?;
        if before == "done" {
            return Ok(RetryOutcome::AlreadyDone);
        }
        tracing::info!(id, "received mail queued again for processing");
        self.wakeups.inbound();
        Ok(RetryOutcome::Queued)
    }

    /// Processes a batch of stored messages; returns how many were claimed.
    pub async fn process_inbound_batch(&self) -> Result<usize, AppError> {
        let rows = store::inbound::claim_inbound(&self.db, 32, 300.0).await?;
        let n = rows.len();
        for row in rows {
            match self.process_inbound(&row).await {
                Ok(outcome) => {
                    store::inbound::update_inbound_done(&self.db, row.id, &outcome).await?
                }
                Err(e) => {
                    let give_up = row.attempts >= MAX_ATTEMPTS;
                    crate::error_limited!(
                        "processing a received message failed",
                        e,
                        id = row.id,
                        attempts = row.attempts,
                        give_up
                    );
                    let error = storable(&format!("{e:#}"));
                    store::inbound::update_inbound_error(&self.db, row.id, &error, give_up).await?;
                    if give_up {
                        self.report_unprocessed(&row, &error).await?;
                    }
                }
            }
        }
        Ok(n)
    }

    /// Processes received mail until `stop` is set, woken by NOTIFY on `listd_inbound`.
    pub async fn run_inbound_worker(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut wakeup = store::wakeup::Wakeup::new(&self.db, store::wakeup::INBOUND).await;
        loop {
            if *stop.borrow() {
                return;
            }
            let processed = match self.process_web_requests_batch().await {
                Ok(requests) => self.process_inbound_batch().await.map(|n| n + requests),
                Err(e) => Err(e),
            };
            // bounces recorded by that batch or by the delivery workers (relay 5xx)
            if let Err(e) = self.judge_bounces(OffsetDateTime::now_utc()).await {
                crate::error_limited!("judging bounces failed", e);
            }
            // copies the delivery workers could not hand to the relay
            if let Err(e) = self.alert_delivery_faults(OffsetDateTime::now_utc()).await {
                crate::error_limited!("alerting owners of delivery faults failed", e);
            }
            match processed {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => crate::error_limited!("processing received mail failed", e),
            }
            wakeup
                .wait(std::time::Duration::from_secs(5), &mut stop)
                .await;
        }
    }

    /// Processes everything stored now, web form requests included (tests use it to
    /// make processing deterministic).
    pub async fn process_all_inbound(&self) -> Result<usize, AppError> {
        let mut total = 0;
        loop {
            let n = self.process_web_requests_batch().await? + self.process_inbound_batch().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// Acts on one stored message, recipient by recipient; returns what was done.
    async fn process_inbound(&self, row: &InboundRow) -> Result<String, AppError> {
        let incoming = read_incoming(&row.raw, row.mail_from.as_deref());
        let recipients = row
            .recipients
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut outcomes = Vec::new();
        for rcpt in recipients {
            // read again: the list may have changed, or gone, since the message came
            let Some(list) = store::lists::find_list(&self.db, &rcpt.list_id).await? else {
                outcomes.push(format!("{}: the list no longer exists", rcpt.list_id));
                continue;
            };
            let done = self
                .act_on_mail(&list, &rcpt.action, &incoming, row)
                .await?;
            outcomes.push(format!("{} {}: {done}", list.address, rcpt.action.name()));
        }
        Ok(outcomes.join("; "))
    }

    async fn act_on_mail(
        &self,
        list: &List,
        action: &Action,
        incoming: &Incoming,
        row: &InboundRow,
    ) -> Result<String, AppError> {
        let raw = &row.raw[..];
        match action {
            Action::Post => {
                let post = ReceivedPost {
                    inbound_id: Some(row.id),
                    mail_from: row.mail_from.as_deref(),
                    raw,
                    incoming,
                };
                return Ok(match self.accept_post(list, post).await? {
                    PostOutcome::Relayed { post_id, copies } => {
                        format!("post {post_id} relayed to {copies} member(s)")
                    }
                    PostOutcome::Held { post_id, reason } => {
                        format!("post {post_id} held: {reason}")
                    }
                    PostOutcome::Rejected { post_id, reason } => {
                        format!("post {post_id} rejected: {reason}")
                    }
                    PostOutcome::Discarded { post_id, reason } => {
                        format!("post {post_id} discarded: {reason}")
                    }
                    PostOutcome::Duplicate { post_id } => {
                        format!("not relayed: a repeat of post {post_id}")
                    }
                });
            }
            // recorded here, judged by `judge_bounces` after the batch
            Action::Bounces(verp) => {
                return self
                    .record_bounce_mail(list, verp.as_deref(), row.mail_from.is_none(), raw, row.id)
                    .await;
            }
            Action::Owner => return self.forward_to_owners(list, raw).await,
            Action::Postmaster => return self.forward_to_admins(list, raw).await,
            _ => {}
        }
        if incoming.automatic {
            if let Action::Moderate(_) = action {
                tracing::info!(list = %list.address, "an automatic reply to a held post's notice: ignored");
            }
            return Ok("ignored: automatic mail".into());
        }
        let Some(from) = incoming.from.clone() else {
            return Ok("ignored: no usable From address".into());
        };
        match action {
            Action::Subscribe => self.mail_request(list, from, incoming, true).await,
            Action::Unsubscribe => self.mail_request(list, from, incoming, false).await,
            Action::UnsubscribeToken(token) => self.mail_unsubscribe_token(list, token).await,
            Action::Confirm(token) => self.mail_confirm(list, token, incoming).await,
            Action::Moderate(token) => self.mail_moderate(list, token, &from, incoming).await,
            Action::Help => self.send_help(list, &from, incoming).await,
            Action::Request => match find_command(incoming) {
                Some(Command::Subscribe) => self.mail_request(list, from, incoming, true).await,
                Some(Command::Unsubscribe) => self.mail_request(list, from, incoming, false).await,
                Some(Command::Confirm(token)) => self.mail_confirm(list, &token, incoming).await,
                Some(Command::Help) | None => self.send_help(list, &from, incoming).await,
            },
            Action::Post | Action::Bounces(_) | Action::Owner | Action::Postmaster => {
                unreachable!("handled above")
            }
        }
    }

    async fn mail_request(
        &self,
        list: &List,
        from: EmailAddress,
        incoming: &Incoming,
        join: bool,
    ) -> Result<String, AppError> {
        let req = Request {
            address: from,
            name: None,
            source: Source::Mail,
            evidence: Evidence {
                message_id: incoming.message_id.clone(),
                ..Evidence::default()
            },
            in_reply_to: incoming.message_id.clone(),
        };
        let outcome = if join {
            self.request_subscription(list, req).await?
        } else {
            self.request_unsubscription(list, req).await?
        };
        Ok(match outcome {
            RequestOutcome::ConfirmationSent => "confirmation sent",
            RequestOutcome::NothingToDo => "nothing to do",
            RequestOutcome::RateLimited => "not answered: per-address limit",
        }
        .into())
    }

    async fn mail_confirm(
        &self,
        list: &List,
        token: &str,
        incoming: &Incoming,
    ) -> Result<String, AppError> {
        // a reply may reach the confirm address with a token of its own, or quote it
        // (among other words that look like one: the first that is known counts)
        let candidates = if crate::domain::ConfirmToken::parse(token).is_some() {
            vec![token.to_string()]
        } else {
            find_tokens(incoming)
        };
        let mut outcome = ConfirmOutcome::Unknown;
        for candidate in &candidates {
            let via = ConfirmVia::Mail {
                message_id: incoming.message_id.clone(),
            };
            outcome = self.confirm(candidate, via).await?;
            if outcome != ConfirmOutcome::Unknown {
                break;
            }
        }
        Ok(match outcome {
            ConfirmOutcome::Subscribed { list: l, .. } if l.id == list.id => "subscribed",
            ConfirmOutcome::AwaitingApproval { .. } => "confirmed; awaiting an owner's approval",
            ConfirmOutcome::Unsubscribed { .. } => "unsubscribed",
            ConfirmOutcome::Subscribed { .. } => "subscribed (to the list the token names)",
            ConfirmOutcome::Used { .. } => "token already used",
            ConfirmOutcome::Expired { .. } => "token expired",
            ConfirmOutcome::Unknown => "unknown token",
        }
        .into())
    }

    /// A reply to a held post's notice: decides the post once, when it comes from one
    /// of the list's owners or moderators (or a site admin) and its first unquoted line
    /// is `approve`, `discard` or `reject <reason>`. Anything else changes nothing; every
    /// outcome is logged, and kept with the received message.
    async fn mail_moderate(
        &self,
        list: &List,
        token: &str,
        from: &EmailAddress,
        incoming: &Incoming,
    ) -> Result<String, AppError> {
        let found = match ModerateToken::parse(token) {
            Some(t) => {
                store::posts::find_post_id_by_moderate_hash(&self.db, list.id, &t.hash().0).await?
            }
            None => None,
        };
        let Some(post_id) = found else {
            tracing::info!(list = %list.address, "a moderation reply with an unknown token: ignored");
            return Ok("ignored: unknown moderation token".into());
        };
        if !self.authority(list, from).await?.may_moderate() {
            tracing::warn!(list = %list.address, post_id, "a moderation reply from an address that does not moderate the list: ignored");
            return Ok(format!(
                "ignored: {from} is not an owner or moderator of the list"
            ));
        }
        let (decision, reason) = match find_moderation_reply(incoming) {
            Some(ModerationReply::Approve) => (Moderation::Approve, None),
            Some(ModerationReply::Discard) => (Moderation::Discard, None),
            Some(ModerationReply::Reject(reason)) => (Moderation::Reject, reason),
            None => {
                tracing::info!(list = %list.address, post_id, by = %from, "a moderation reply without approve, discard or reject: nothing decided");
                return Ok(format!(
                    "post {post_id}: nothing decided (the reply's first line is not approve, discard or reject)"
                ));
            }
        };
        let done = match self
            .moderate(post_id, decision, reason.as_deref(), &from.to_string())
            .await
        {
            Ok(ModerationOutcome::Approved { copies }) => {
                format!("post {post_id} approved by {from}: relayed to {copies} member(s)")
            }
            Ok(ModerationOutcome::Rejected) => format!("post {post_id} rejected by {from}"),
            Ok(ModerationOutcome::Discarded) => format!("post {post_id} discarded by {from}"),
            Ok(ModerationOutcome::AlreadyDecided(d)) => {
                format!("post {post_id}: not decided again by {from}; it was {d}")
            }
            // the post cannot be relayed as it is: it stays held
            Err(AppError::Refused(why)) => format!("post {post_id}: {why}"),
            Err(e) => return Err(e),
        };
        tracing::info!(list = %list.address, post_id, by = %from, "{done}");
        Ok(done)
    }

    async fn mail_unsubscribe_token(&self, list: &List, token: &str) -> Result<String, AppError> {
        Ok(match self.unsubscribe_with_mailto(list, token).await? {
            UnsubscribeOutcome::Unsubscribed { list: l, .. } if l.id == list.id => "unsubscribed",
            UnsubscribeOutcome::Unsubscribed { .. } => {
                "unsubscribed (from the list the token names)"
            }
            UnsubscribeOutcome::AlreadyGone { .. } => "already unsubscribed",
            UnsubscribeOutcome::InvalidToken => "invalid token",
        }
        .into())
    }

    async fn send_help(
        &self,
        list: &List,
        to: &EmailAddress,
        incoming: &Incoming,
    ) -> Result<String, AppError> {
        let mut tx = self.db.begin().await?;
        let to = to.to_string();
        if daily_limit_reached(&mut tx, &to).await? {
            return Ok("not answered: per-address limit".into());
        }
        let a = &list.address;
        let ctx = json!({
            "list_name": list.settings.name,
            "list_address": a.to_string(),
            "list_url": self.list_url(list),
            "subscribe_address": a.with_suffix("subscribe"),
            "unsubscribe_address": a.with_suffix("unsubscribe"),
            "owner_address": a.with_suffix("owner"),
            "request_address": a.with_suffix("request"),
        });
        let mail = Mail::new(Purpose::Reply, &to, "email/help.txt", ctx)
            .replying_to(incoming.message_id.as_deref());
        self.queue(&mut tx, list, mail).await?;
        tx.commit().await?;
        self.wakeups.outbound();
        Ok("help sent".into())
    }

    /// Sends the message on to the list's owners, unchanged but for a loop marker.
    async fn forward_to_owners(&self, list: &List, raw: &[u8]) -> Result<String, AppError> {
        let owners = owners(&self.db, list).await?;
        if owners.is_empty() {
            return Ok("not forwarded: the list has no owners".into());
        }
        let marker = list.address.with_suffix("owner");
        self.forward(list, raw, &marker, Purpose::Owner, &owners)
            .await
    }

    /// Sends mail for `postmaster@` or `abuse@` on to the site admins (to the list's
    /// owners when no admin is configured: somebody must read it).
    async fn forward_to_admins(&self, list: &List, raw: &[u8]) -> Result<String, AppError> {
        let mut to: Vec<String> = self.settings.admins.iter().map(|a| a.to_string()).collect();
        if to.is_empty() {
            to = owners(&self.db, list).await?;
        }
        if to.is_empty() {
            tracing::warn!(list = %list.address, "mail for postmaster, but no admins (LISTD_ADMINS) and no owners");
            return Ok("not forwarded: no site admins (LISTD_ADMINS) and no owners".into());
        }
        let marker = format!("postmaster@{}", list.address.domain());
        self.forward(list, raw, &marker, Purpose::Postmaster, &to)
            .await
    }

    /// Queues `raw` for `to`, unchanged but for an `X-Loop: <marker>` line; a message
    /// that already carries that line is not sent round again.
    async fn forward(
        &self,
        list: &List,
        raw: &[u8],
        marker: &str,
        purpose: Purpose,
        to: &[String],
    ) -> Result<String, AppError> {
        let Some(message) = with_loop_marker(raw, marker) else {
            return Ok(format!(
                "not forwarded: it already went through {}",
                loop_line(marker)
            ));
        };
        self.queue_copies(list, purpose, &message, to).await?;
        Ok(format!("forwarded to {} recipient(s)", to.len()))
    }

    /// Tells the owners of each list a message was for, and the site admins (once),
    /// that processing it failed for good, with the message attached: it was accepted
    /// with `250`, so somebody must hear of it.
    async fn report_unprocessed(&self, row: &InboundRow, error: &str) -> Result<(), AppError> {
        let mut admins_told = false;
        let mut tx = self.db.begin().await?;
        for rcpt in row.recipients.iter().flatten() {
            let Some(list) = store::lists::find_list(&mut *tx, &rcpt.list_id).await? else {
                continue;
            };
            let mut to = staff_addresses(&mut tx, &list, Staff::Owners).await?;
            if !admins_told {
                to.extend(self.settings.admins.iter().map(|a| a.to_string()));
                admins_told = true;
            }
            to.sort_by_key(|a| a.to_ascii_lowercase());
            to.dedup_by_key(|a| a.to_ascii_lowercase());
            let ctx = json!({
                "list_name": list.settings.name,
                "recipient": rcpt.address,
                "attempts": row.attempts,
                "mail_from": row.mail_from.as_deref().unwrap_or("<>"),
                "error": error,
                "id": row.id,
            });
            for address in &to {
                let mail = Mail::new(
                    Purpose::Notice,
                    address,
                    "email/inbound_failed.txt",
                    ctx.clone(),
                )
                .attach(&row.raw);
                self.queue(&mut tx, &list, mail).await?;
            }
        }
        tx.commit().await?;
        if !admins_told {
            tracing::error!(
                id = row.id,
                "received mail for no existing list failed; nobody to tell"
            );
        }
        self.wakeups.outbound();
        Ok(())
    }
}

fn inbound_view(r: store::inbound::InboundRecord, raw: Option<&[u8]>) -> InboundView {
    let incoming = raw.map(|raw| read_incoming(raw, r.mail_from.as_deref()));
    InboundView {
        id: r.id,
        received_at: r.received_at,
        envelope_from: r.mail_from,
        recipients: r.recipients,
        from: incoming
            .as_ref()
            .and_then(|i| i.from.as_ref())
            .map(|a| a.to_string()),
        subject: incoming.map(|i| i.subject).unwrap_or_default(),
        peer: r.peer,
        protocol: r.protocol,
        status: r.status,
        attempts: r.attempts,
        outcome: r.outcome,
        error: r.last_error,
        size: r.size,
    }
}

/// The addresses of a list's owners.
async fn owners(db: &sqlx::PgPool, list: &List) -> Result<Vec<String>, AppError> {
    let mut conn = db.acquire().await?;
    staff_addresses(&mut conn, list, Staff::Owners).await
}
