//! Double opt-in: subscription and unsubscription requests, their confirmation, and
//! the per-member unsubscribe token (docs/standards.md, sections C and D).
//!
//! A request never reveals whether the address is a member: every outcome maps to the
//! same neutral answer in the front ends. Mail is only enqueued, in the transaction
//! that records the request or the change.

use super::outbox::{Mail, over_daily_limit};
use super::{App, AppError};
use crate::domain::{
    ConfirmToken, EmailAddress, Evidence, List, MailtoToken, MemberStatus, Purpose, RequestKind,
    Role, Source, Subscription, UnsubscribeToken,
};
use crate::store;
use crate::store::members::NewMembership;
use crate::store::pending::NewPending;
use serde_json::json;
use sqlx::PgConnection;
use time::{Duration, OffsetDateTime};

/// Per address and list: one confirmation per 10 minutes, three per day (docs/standards.md#27).
const CONFIRM_SPACING: Duration = Duration::minutes(10);
const CONFIRMS_PER_DAY: i64 = 3;

/// A request to join or leave, from any front end.
#[derive(Debug, Clone)]
pub struct Request {
    pub address: EmailAddress,
    pub name: Option<String>,
    pub source: Source,
    pub evidence: Evidence,
    /// When the request arrived by mail: the Message-ID to answer (`auto-replied`).
    pub in_reply_to: Option<String>,
}

/// What became of a request. Front ends show the same neutral answer for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    ConfirmationSent,
    /// Nothing to do: already subscribed (for joins) or not a member (for leaves).
    NothingToDo,
    /// Too many requests for this address; nothing sent.
    RateLimited,
}

/// What a confirmation token leads to, for the page that shows its button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenView {
    Subscribe {
        list: List,
        address: String,
    },
    Unsubscribe {
        list: List,
        address: String,
    },
    /// Already used: where the address stands now (the holder of the token is the
    /// person it was mailed to, so the page may tell them).
    Used {
        list: List,
        address: String,
        standing: Standing,
    },
    Expired {
        list: List,
    },
    Unknown,
}

/// Where an address stands on a list, for the pages of links already used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Subscribed,
    /// Confirmed by the mailbox, waiting for an owner.
    AwaitingApproval,
    NotSubscribed,
}

/// What pressing the button (or replying to the mail) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    Subscribed {
        list: List,
        address: String,
    },
    /// The mailbox confirmed; an owner must approve (`confirm-then-moderate`).
    AwaitingApproval {
        list: List,
        address: String,
    },
    Unsubscribed {
        list: List,
        address: String,
    },
    /// Already used; see [`TokenView::Used`].
    Used {
        list: List,
        address: String,
        standing: Standing,
    },
    Expired {
        list: List,
    },
    Unknown,
}

/// How a confirmation arrived.
#[derive(Debug, Clone)]
pub enum ConfirmVia {
    Web { ip: Option<String> },
    Mail { message_id: Option<String> },
}

impl ConfirmVia {
    /// How the confirmation came, as recorded with the membership.
    fn method(&self) -> Source {
        match self {
            ConfirmVia::Web { .. } => Source::Web,
            ConfirmVia::Mail { .. } => Source::Mail,
        }
    }

    /// The evidence of the confirmation (docs/standards.md#29).
    fn evidence(&self) -> Evidence {
        match self {
            ConfirmVia::Web { ip } => Evidence {
                ip: ip.clone(),
                ..Evidence::default()
            },
            ConfirmVia::Mail { message_id } => Evidence {
                message_id: message_id.clone(),
                ..Evidence::default()
            },
        }
    }
}

/// An address read back from the database.
fn stored_address(address: &str) -> Result<EmailAddress, AppError> {
    Ok(EmailAddress::parse(address).map_err(|e| anyhow::anyhow!("stored address: {e}"))?)
}

/// The result of a one-click unsubscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsubscribeOutcome {
    Unsubscribed { list: List, address: String },
    AlreadyGone { list: List, address: String },
    InvalidToken,
}

impl App {
    /// Asks the address's mailbox to confirm a subscription.
    pub async fn request_subscription(
        &self,
        list: &List,
        req: Request,
    ) -> Result<RequestOutcome, AppError> {
        metrics::counter!("listd_subscription_requests_total", "source" => req.source.as_str())
            .increment(1);
        let mut tx = store::pending::begin_for_address(&self.db, list.id, &req.address).await?;
        let state = self
            .request_state(&mut tx, list, RequestKind::Subscribe, &req.address)
            .await?;
        if state.member_status == Some(MemberStatus::Subscribed) {
            return Ok(RequestOutcome::NothingToDo);
        }
        if rate_limited(list, RequestKind::Subscribe, &state.counts) {
            return Ok(RequestOutcome::RateLimited);
        }
        // the address does not exist: a confirmation to it bounced hard lately
        let since = OffsetDateTime::now_utc() - Duration::days(30);
        if store::bounces::find_pending_hard_bounce(&mut *tx, list.id, &req.address, since).await? {
            tracing::info!(list = %list.address, "no confirmation sent: the last one bounced hard");
            return Ok(RequestOutcome::NothingToDo);
        }
        let new_member = state.member_status.is_none();
        self.send_confirmation(&mut tx, list, RequestKind::Subscribe, &req, new_member)
            .await?;
        tx.commit().await?;
        self.wakeups.outbound();
        Ok(RequestOutcome::ConfirmationSent)
    }

    /// Asks a member's mailbox to confirm leaving. Non-members get nothing from the web
    /// form, but the caller cannot tell the difference.
    pub async fn request_unsubscription(
        &self,
        list: &List,
        req: Request,
    ) -> Result<RequestOutcome, AppError> {
        let mut tx = store::pending::begin_for_address(&self.db, list.id, &req.address).await?;
        let state = self
            .request_state(&mut tx, list, RequestKind::Unsubscribe, &req.address)
            .await?;
        let is_member = state.member_status == Some(MemberStatus::Subscribed);
        // By mail, members and non-members get the same confirmation (docs/standards.md#18): it
        // goes to the sender's own mailbox, and confirming does nothing for a stranger.
        // The web form, which anyone can fill in for any address, sends nothing then.
        if !is_member && req.source != Source::Mail {
            return Ok(RequestOutcome::NothingToDo);
        }
        if rate_limited(list, RequestKind::Unsubscribe, &state.counts) {
            return Ok(RequestOutcome::RateLimited);
        }
        self.send_confirmation(&mut tx, list, RequestKind::Unsubscribe, &req, false)
            .await?;
        tx.commit().await?;
        self.wakeups.outbound();
        Ok(RequestOutcome::ConfirmationSent)
    }

    /// What a confirmation link would do, without doing it (GET must change nothing).
    pub async fn inspect_confirmation(&self, token: &str) -> Result<TokenView, AppError> {
        let Some(token) = ConfirmToken::parse(token) else {
            return Ok(TokenView::Unknown);
        };
        let mut tx = self.db.begin().await?;
        let Some(p) = store::pending::find_pending_for_update(&mut *tx, &token.hash()).await?
        else {
            return Ok(TokenView::Unknown);
        };
        tx.rollback().await?;
        let Some(list) = store::lists::find_list_by_id(&self.db, p.list_id).await? else {
            return Ok(TokenView::Unknown);
        };
        Ok(if p.used_at.is_some() {
            let standing = self.standing(&list, &p.address).await?;
            TokenView::Used {
                list,
                address: p.address,
                standing,
            }
        } else if p.expires_at < OffsetDateTime::now_utc() {
            TokenView::Expired { list }
        } else if p.kind == RequestKind::Unsubscribe {
            TokenView::Unsubscribe {
                list,
                address: p.address,
            }
        } else {
            TokenView::Subscribe {
                list,
                address: p.address,
            }
        })
    }

    /// Where an address stands on a list now.
    async fn standing(&self, list: &List, address: &str) -> Result<Standing, AppError> {
        let Ok(address) = EmailAddress::parse(address) else {
            return Ok(Standing::NotSubscribed);
        };
        let member = store::members::find_member(&self.db, list.id, Role::Member, &address).await?;
        Ok(match member {
            Some(m) if m.status == MemberStatus::Subscribed => Standing::Subscribed,
            Some(m) if m.status == MemberStatus::Pending && m.consent.confirmed_at.is_some() => {
                Standing::AwaitingApproval
            }
            _ => Standing::NotSubscribed,
        })
    }

    /// Carries out a pending request: the mailbox has confirmed it.
    pub async fn confirm(&self, token: &str, via: ConfirmVia) -> Result<ConfirmOutcome, AppError> {
        let Some(token) = ConfirmToken::parse(token) else {
            return Ok(ConfirmOutcome::Unknown);
        };
        let mut tx = self.db.begin().await?;
        let Some(p) = store::pending::find_pending_for_update(&mut *tx, &token.hash()).await?
        else {
            return Ok(ConfirmOutcome::Unknown);
        };
        let Some(list) = store::lists::find_list_by_id(&mut *tx, p.list_id).await? else {
            return Ok(ConfirmOutcome::Unknown);
        };
        if p.used_at.is_some() {
            let standing = self.standing(&list, &p.address).await?;
            return Ok(ConfirmOutcome::Used {
                list,
                address: p.address,
                standing,
            });
        }
        if p.expires_at < OffsetDateTime::now_utc() {
            return Ok(ConfirmOutcome::Expired { list });
        }
        store::pending::update_pending_used(&mut *tx, p.id).await?;
        let outcome = if p.kind == RequestKind::Unsubscribe {
            self.confirm_leaving(&mut tx, list, p, &via).await?
        } else {
            self.confirm_joining(&mut tx, list, p, &via).await?
        };
        tx.commit().await?;
        self.wakeups.outbound();
        Ok(outcome)
    }

    /// A confirmed unsubscription: the member leaves (confirming twice is harmless).
    async fn confirm_leaving(
        &self,
        tx: &mut PgConnection,
        list: List,
        p: store::pending::PendingRequest,
        via: &ConfirmVia,
    ) -> Result<ConfirmOutcome, AppError> {
        let address = stored_address(&p.address)?;
        match store::members::find_member(&mut *tx, list.id, Role::Member, &address).await? {
            Some(m) if m.status == MemberStatus::Subscribed => {
                store::members::update_member_left(
                    &mut *tx,
                    m.id,
                    MemberStatus::Unsubscribed,
                    via.method().as_str(),
                )
                .await?;
                self.enqueue_goodbye(tx, &list, &m.address).await?;
            }
            _ => {} // already gone: confirming again is harmless
        }
        Ok(ConfirmOutcome::Unsubscribed {
            list,
            address: p.address,
        })
    }

    /// A confirmed subscription, with the request's and the confirmation's evidence:
    /// a member now, or waiting for an owner on a moderated list.
    async fn confirm_joining(
        &self,
        tx: &mut PgConnection,
        list: List,
        p: store::pending::PendingRequest,
        via: &ConfirmVia,
    ) -> Result<ConfirmOutcome, AppError> {
        let address = stored_address(&p.address)?;
        let request = Evidence {
            ip: p.ip.clone(),
            user_agent: p.user_agent.clone(),
            message_id: p.message_id.clone(),
            form_text: p.form_text.clone(),
        };
        let confirm = via.evidence();
        let m = NewMembership {
            address: &address,
            name: p.name.as_deref(),
            role: Role::Member,
            request_source: p.source,
            requested_at: Some(p.requested_at),
            request: &request,
            confirm_method: via.method(),
            confirm: &confirm,
        };
        if list.settings.subscription == Subscription::ConfirmThenModerate {
            // the mailbox has confirmed; the membership waits for an owner
            store::members::upsert_confirmed_member(&mut *tx, list.id, &m, MemberStatus::Pending)
                .await?;
            return Ok(ConfirmOutcome::AwaitingApproval {
                list,
                address: p.address,
            });
        }
        let member = store::members::upsert_confirmed_member(
            &mut *tx,
            list.id,
            &m,
            MemberStatus::Subscribed,
        )
        .await?;
        self.enqueue_welcome(tx, &list, &member).await?;
        Ok(ConfirmOutcome::Subscribed {
            list,
            address: p.address,
        })
    }

    /// The list, address and status of the membership an unsubscribe token belongs
    /// to, if it is genuine.
    pub async fn inspect_unsubscribe_token(
        &self,
        token: &str,
    ) -> Result<Option<(List, String, MemberStatus)>, AppError> {
        let mut tx = self.db.begin().await?;
        let found = self.member_for_token(&mut tx, token).await?;
        tx.rollback().await?;
        Ok(found.map(|(list, member)| (list, member.address, member.status)))
    }

    /// Unsubscribes at once with a member's token (the List-Unsubscribe one-click).
    pub async fn unsubscribe_with_token(
        &self,
        token: &str,
        method: &str,
    ) -> Result<UnsubscribeOutcome, AppError> {
        let mut tx = self.db.begin().await?;
        let found = self.member_for_token(&mut tx, token).await?;
        self.unsubscribe_found(tx, found, method).await
    }

    /// Unsubscribes at once the member a `L+unsubscribe+TOKEN@D` address names.
    pub async fn unsubscribe_with_mailto(
        &self,
        list: &List,
        token: &str,
    ) -> Result<UnsubscribeOutcome, AppError> {
        let mut tx = self.db.begin().await?;
        let found = match MailtoToken::parse_key(token) {
            Some(key) => {
                match store::members::find_member_id_by_unsubscribe_key(&mut *tx, list.id, &key)
                    .await?
                {
                    Some(id) => store::members::find_member_by_id_for_update(&mut *tx, id)
                        .await?
                        .map(|m| (list.clone(), m)),
                    None => None,
                }
            }
            // earlier versions put the link's token into the address
            None => self.member_for_token(&mut tx, token).await?,
        };
        self.unsubscribe_found(tx, found, "mail").await
    }

    async fn unsubscribe_found(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Postgres>,
        found: Option<(List, crate::domain::Member)>,
        method: &str,
    ) -> Result<UnsubscribeOutcome, AppError> {
        let Some((list, member)) = found else {
            return Ok(UnsubscribeOutcome::InvalidToken);
        };
        if member.status != MemberStatus::Subscribed {
            return Ok(UnsubscribeOutcome::AlreadyGone {
                list,
                address: member.address,
            });
        }
        self.leave(tx, &list, &member, method).await?;
        Ok(UnsubscribeOutcome::Unsubscribed {
            list,
            address: member.address,
        })
    }

    /// A member leaves at once (their own decision, by any front end): the row keeps
    /// the withdrawal, a goodbye is queued, and the transaction commits.
    pub(crate) async fn leave(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        list: &List,
        member: &crate::domain::Member,
        method: &str,
    ) -> Result<(), AppError> {
        store::members::update_member_left(&mut *tx, member.id, MemberStatus::Unsubscribed, method)
            .await?;
        self.enqueue_goodbye(&mut tx, list, &member.address).await?;
        tx.commit().await?;
        self.wakeups.outbound();
        Ok(())
    }

    /// Whether a member's token may resume their delivery: the token is genuine, the
    /// membership lasts, and bounces (not an owner) turned delivery off.
    pub async fn inspect_resume_token(
        &self,
        token: &str,
    ) -> Result<Option<(List, String)>, AppError> {
        let mut tx = self.db.begin().await?;
        let found = self.member_paused_by_bounces(&mut tx, token).await?;
        tx.rollback().await?;
        Ok(found.map(|(list, member)| (list, member.address)))
    }

    /// Turns delivery back on with a member's own token (the link in the notice sent
    /// when bounces turned it off); forgets the bounces. `None` unless
    /// [`App::inspect_resume_token`] would accept the token.
    pub async fn resume_delivery_with_token(
        &self,
        token: &str,
    ) -> Result<Option<(List, String)>, AppError> {
        let mut tx = self.db.begin().await?;
        let Some((list, member)) = self.member_paused_by_bounces(&mut tx, token).await? else {
            return Ok(None);
        };
        let resumed = crate::domain::Member {
            delivery: crate::domain::Delivery::Enabled,
            ..member.clone()
        };
        store::members::update_member_attributes(&mut *tx, &resumed).await?;
        store::bounces::update_member_bounces_cleared(&mut *tx, member.id).await?;
        tx.commit().await?;
        Ok(Some((list, member.address)))
    }

    /// The member (locked) and list a token belongs to, when its signature holds.
    pub(crate) async fn member_for_token(
        &self,
        tx: &mut PgConnection,
        token: &str,
    ) -> Result<Option<(List, crate::domain::Member)>, AppError> {
        let Some(id) = UnsubscribeToken::claimed_member(token) else {
            return Ok(None);
        };
        let Some(member) = store::members::find_member_by_id_for_update(&mut *tx, id).await? else {
            return Ok(None);
        };
        if !self.token_matches(token, &member) {
            return Ok(None);
        }
        let list = store::lists::find_list_by_id(&mut *tx, member.list_id).await?;
        Ok(list.map(|l| (l, member)))
    }

    /// [`App::member_for_token`], for a subscribed member whose delivery bounces paused
    /// (an owner's decision stays the owner's).
    async fn member_paused_by_bounces(
        &self,
        tx: &mut PgConnection,
        token: &str,
    ) -> Result<Option<(List, crate::domain::Member)>, AppError> {
        let Some((list, member)) = self.member_for_token(tx, token).await? else {
            return Ok(None);
        };
        if member.status != MemberStatus::Subscribed {
            return Ok(None);
        }
        let paused = store::bounces::find_bounce_state_for_update(&mut *tx, member.id)
            .await?
            .is_some_and(|b| b.disabled_at.is_some());
        Ok(paused.then_some((list, member)))
    }

    /// The token that unsubscribes this membership (for List-Unsubscribe and links).
    pub fn unsubscribe_token(&self, member: &crate::domain::Member) -> Option<UnsubscribeToken> {
        let since = member.subscribed_at?;
        Some(UnsubscribeToken::for_membership(
            &self.settings.secret_key,
            member.id,
            since,
        ))
    }

    fn token_matches(&self, token: &str, member: &crate::domain::Member) -> bool {
        // a membership that never began has no token; verify anyway so timing does not tell
        let since = member
            .subscribed_at
            .map(|t| t.unix_timestamp_nanos() / 1000)
            .unwrap_or(i128::MIN);
        UnsubscribeToken::verify(&self.settings.secret_key, token, member.id, since)
            && member.subscribed_at.is_some()
    }

    async fn request_state(
        &self,
        tx: &mut PgConnection,
        list: &List,
        kind: RequestKind,
        address: &EmailAddress,
    ) -> Result<store::pending::RequestState, AppError> {
        let now = OffsetDateTime::now_utc();
        Ok(store::pending::find_request_state(
            &mut *tx,
            list.id,
            kind,
            address,
            now - CONFIRM_SPACING,
            now - Duration::DAY,
            Purpose::AUTOMATIC,
        )
        .await?)
    }

    async fn send_confirmation(
        &self,
        tx: &mut PgConnection,
        list: &List,
        kind: RequestKind,
        req: &Request,
        new_member: bool,
    ) -> Result<(), AppError> {
        let token = ConfirmToken::generate();
        let reply_token = ConfirmToken::generate_short();
        let expires_at = OffsetDateTime::now_utc() + self.settings.confirm_expiry;
        let pending = NewPending {
            list_id: list.id,
            kind,
            address: &req.address,
            name: req.name.as_deref(),
            token_hash: &token.hash(),
            reply_hash: &reply_token.hash(),
            expires_at,
            source: req.source,
            evidence: &req.evidence,
            new_member,
        };
        // the requester's own words (the name field) are never put into the mail
        // (docs/standards.md#25)
        let ctx = json!({
            "list_name": list.settings.name,
            "list_address": list.address.to_string(),
            "address": req.address.to_string(),
            "token": reply_token.as_str(),
            "confirm_url": format!("{}/confirm/{}", self.settings.public_url, token.as_str()),
            "expiry_hours": self.settings.confirm_expiry.as_secs() / 3600,
        });
        let template = if kind == RequestKind::Unsubscribe {
            "email/confirm_unsubscribe.txt"
        } else {
            "email/confirm_subscribe.txt"
        };
        let reply_to = list
            .address
            .with_suffix(&format!("confirm+{}", reply_token.as_str()));
        let to = req.address.to_string();
        let mut mail = Mail::new(Purpose::Confirm, &to, template, ctx).reply_to(Some(&reply_to));
        if req.in_reply_to.is_some() {
            mail = mail.replying_to(req.in_reply_to.as_deref());
        }
        let composed = self.compose(list, &mail)?;
        // the request and its mail in one statement: this runs for every form post
        store::pending::insert_pending(
            &mut *tx,
            &pending,
            &composed.outbound(list, Purpose::Confirm, &to),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn enqueue_welcome(
        &self,
        tx: &mut PgConnection,
        list: &List,
        member: &crate::domain::Member,
    ) -> Result<(), AppError> {
        let token = self
            .unsubscribe_token(member)
            .ok_or_else(|| anyhow::anyhow!("a new member has no start time"))?;
        let ctx = json!({
            "list_name": list.settings.name,
            "list_address": list.address.to_string(),
            "address": member.address,
            "list_url": self.list_url(list),
            "unsubscribe_url": format!("{}/unsubscribe/{}", self.settings.public_url, token.as_str()),
        });
        let mail = Mail::new(Purpose::Welcome, &member.address, "email/welcome.txt", ctx);
        self.queue(tx, list, mail).await
    }

    async fn enqueue_goodbye(
        &self,
        tx: &mut PgConnection,
        list: &List,
        address: &str,
    ) -> Result<(), AppError> {
        let ctx = json!({
            "list_name": list.settings.name,
            "list_address": list.address.to_string(),
            "address": address,
            "list_url": self.list_url(list),
        });
        let mail = Mail::new(Purpose::Goodbye, address, "email/goodbye.txt", ctx);
        self.queue(tx, list, mail).await
    }
}

/// The per-address limits of docs/standards.md#27.
fn rate_limited(list: &List, kind: RequestKind, counts: &store::pending::RecentCounts) -> bool {
    let limited = counts.recent >= 1
        || counts.today >= CONFIRMS_PER_DAY
        || over_daily_limit(counts.automatic_today);
    if limited {
        tracing::info!(list = %list.address, kind = kind.as_str(), "request not sent: per-address limit reached");
    }
    limited
}
