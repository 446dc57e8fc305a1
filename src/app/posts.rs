//! Posts to a list: the posting policy, moderation of held posts, and the fan-out of
//! an accepted post to every member (docs/contract.md#policies, and `held` in
//! docs/contract.md#cli; docs/standards.md sections A and B, and #31 to #33).
//!
//! An accepted post is rewritten once (`mail::rewrite`), archived with the bytes all
//! its copies share, and fanned out as one queued row per member in the transaction
//! that accepts it. The delivery workers build each member's copy when they send it.

use super::outbox::{Mail, Staff, daily_limit_reached};
use super::{App, AppError};
use crate::domain::footer::{FooterValues, Rendered, Template};
use crate::domain::headers::ListHeaders;
use crate::domain::post::{
    DUPLICATE_WINDOW_DAYS, PostFacts, PostStatus, Poster, Reason, Verdict, decide,
};
use crate::domain::{
    Archive, Dmarc, EmailAddress, Footer, List, ListRef, MemberStatus, ModerateToken, Posting,
    Purpose, ReplyTo, Role,
};
use crate::mail::footer::FooterText;
use crate::mail::inbound::{Incoming, read_incoming};
use crate::mail::rewrite::{FromMode, Prepared, Rewrite, prepare};
use crate::store;
use crate::store::posts::{NewPost, PostRow};
use serde_json::json;
use sqlx::PgConnection;
use time::{Duration, OffsetDateTime};

/// A post as it arrived, with what was read from it.
pub struct ReceivedPost<'a> {
    pub inbound_id: Option<i64>,
    pub mail_from: Option<&'a str>,
    pub raw: &'a [u8],
    pub incoming: &'a Incoming,
}

/// What became of a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    Relayed {
        post_id: i64,
        copies: u64,
    },
    Held {
        post_id: i64,
        reason: String,
    },
    Rejected {
        post_id: i64,
        reason: String,
    },
    Discarded {
        post_id: i64,
        reason: String,
    },
    /// The list already had a post with this Message-ID (a retried delivery).
    Duplicate {
        post_id: i64,
    },
}

/// A moderator's decision on a held post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moderation {
    Approve,
    /// Refused; the poster is told, with the reason when one is given.
    Reject,
    /// Dropped without a word to the poster.
    Discard,
    /// Approved, and the sender's later posts accepted as a member's would be (the
    /// sender joins the list's `accept-senders`).
    AcceptSender,
}

/// What a moderation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModerationOutcome {
    Approved {
        copies: u64,
    },
    Rejected,
    Discarded,
    /// The post was no longer held: someone (or the policy) had decided already.
    AlreadyDecided(Decision),
}

/// A decision made on a post: what became of it, who decided, and when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// Accepted, rejected or discarded.
    pub status: PostStatus,
    /// `policy`, `cli`, an API token's name, or a person's address.
    pub by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.status.as_str())?;
        if let Some(by) = &self.by {
            write!(f, " by {by}")?;
        }
        if let Some(at) = self.at.and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        }) {
            write!(f, " at {at}")?;
        }
        Ok(())
    }
}

/// A post as the moderation commands show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldPost {
    pub id: i64,
    /// The list's posting address.
    pub list: String,
    pub from: String,
    pub subject: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

/// A held post as the console shows it: with the first lines of its text.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldItem {
    #[serde(flatten)]
    pub post: HeldPost,
    /// The first lines of the text, as plain text (an HTML-only post's text is read
    /// out of its HTML, which is never shown).
    pub preview: String,
}

/// A post a person decided, as the console shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecidedItem {
    pub id: i64,
    pub from: String,
    pub subject: String,
    #[serde(flatten)]
    pub decision: Decision,
}

/// Lines of a held post's text the console shows, at most, and characters per line.
const PREVIEW_LINES: usize = 6;
const PREVIEW_LINE_CHARS: usize = 160;

/// One post with everything kept of it.
#[derive(Debug, Clone)]
pub struct PostDetail {
    pub post: HeldPost,
    pub status: PostStatus,
    pub mail_from: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
    pub copies: i32,
    pub raw: Vec<u8>,
}

/// The verdict on a received post, before anything is stored.
struct Judged {
    verdict: Verdict,
    /// The copy to relay, for a post accepted.
    prepared: Option<Prepared>,
    /// Why an accepted post is held instead: it cannot be rewritten.
    unrelayable: Option<String>,
}

/// A post as stored.
struct Recorded {
    post_id: i64,
    author: Option<String>,
    reason: String,
    /// The token of a held post's reply address.
    moderate_token: Option<ModerateToken>,
}

/// A post being accepted: what is relayed, what came, and who decided.
struct Acceptance<'a> {
    post_id: i64,
    prepared: &'a Prepared,
    /// The post as it came, and its envelope sender.
    raw: &'a [u8],
    mail_from: Option<&'a str>,
    author: Option<&'a EmailAddress>,
    decided: Decided<'a>,
}

/// Who accepted a post (`policy` or a moderator), and their note.
#[derive(Debug, Clone, Copy)]
struct Decided<'a> {
    by: &'a str,
    note: Option<&'a str>,
}

/// What a poster is told.
#[derive(Debug, Clone, Copy)]
enum Notice {
    Held,
    Rejected,
}

impl App {
    /// Decides on a received post and acts: relays it, holds it for the moderators,
    /// rejects it (telling a human sender why) or discards it.
    pub async fn accept_post(
        &self,
        list: &List,
        post: ReceivedPost<'_>,
    ) -> Result<PostOutcome, AppError> {
        // the rewrite (and its DNS look-up) happens before the transaction opens
        let judged = self.judge_post(list, &post).await?;
        let lock = format!(
            "post/{}/{}",
            list.id,
            post.incoming.message_id.as_deref().unwrap_or("")
        );
        let mut tx = store::begin_locked(&self.db, &lock).await?;
        if let Some(post_id) = find_duplicate(&mut tx, list, &post).await? {
            return Ok(PostOutcome::Duplicate { post_id });
        }
        let recorded = record_post(&mut tx, list, &post, &judged).await?;
        let outcome = self
            .act_on_post(&mut tx, list, &post, judged, recorded)
            .await?;
        tx.commit().await?;
        self.wakeups.outbound();
        Ok(outcome)
    }

    /// The verdict on a post and, when it is to be relayed, its rewritten copy; a post
    /// that cannot be rewritten is held instead.
    async fn judge_post(&self, list: &List, post: &ReceivedPost<'_>) -> Result<Judged, AppError> {
        let incoming = post.incoming;
        let facts = PostFacts {
            poster: self.poster(list, incoming.from.as_ref()).await?,
            carries_own_list_id: incoming.list_ids.contains(&list.address.list_id()),
            received: incoming.received,
            automatic: incoming.robot,
        };
        let verdict = decide(
            list.settings.posting,
            list.settings.nonmember_action,
            &facts,
        );
        if verdict != Verdict::Accept {
            return Ok(Judged {
                verdict,
                prepared: None,
                unrelayable: None,
            });
        }
        Ok(
            match self.rewrite(list, post.raw, incoming.from.as_ref()).await {
                Ok(p) => Judged {
                    verdict,
                    prepared: Some(p),
                    unrelayable: None,
                },
                // held for the record; only reject or discard can end it
                Err(e) => Judged {
                    verdict: Verdict::Hold(Reason::Moderated),
                    prepared: None,
                    unrelayable: Some(format!(
                        "the message cannot be relayed as it is ({e}); reject or discard it"
                    )),
                },
            },
        )
    }

    /// Relays an accepted post, or tells the moderators and the poster of one held or
    /// rejected, in `tx`.
    async fn act_on_post(
        &self,
        tx: &mut PgConnection,
        list: &List,
        post: &ReceivedPost<'_>,
        judged: Judged,
        recorded: Recorded,
    ) -> Result<PostOutcome, AppError> {
        let incoming = post.incoming;
        let Recorded {
            post_id,
            author,
            reason,
            moderate_token,
        } = recorded;
        let in_reply_to = incoming.message_id.as_deref();
        Ok(match (judged.verdict, judged.prepared) {
            (Verdict::Accept, Some(prepared)) => {
                let accepted = Acceptance {
                    post_id,
                    prepared: &prepared,
                    raw: post.raw,
                    mail_from: post.mail_from,
                    author: incoming.from.as_ref(),
                    decided: Decided {
                        by: "policy",
                        note: None,
                    },
                };
                let copies = self.fan_out(tx, list, accepted).await?;
                PostOutcome::Relayed { post_id, copies }
            }
            (Verdict::Reject(_), _) => {
                let row = held_view(list, post_id, &author, incoming, &reason);
                if !incoming.automatic {
                    self.notify_poster(tx, list, &row, Notice::Rejected, in_reply_to)
                        .await?;
                }
                PostOutcome::Rejected { post_id, reason }
            }
            (Verdict::Discard(_), _) => PostOutcome::Discarded { post_id, reason },
            _ => {
                let row = held_view(list, post_id, &author, incoming, &reason);
                self.notify_moderators(tx, list, &row, moderate_token.as_ref())
                    .await?;
                if !incoming.automatic {
                    self.notify_poster(tx, list, &row, Notice::Held, in_reply_to)
                        .await?;
                }
                PostOutcome::Held { post_id, reason }
            }
        })
    }

    /// Held posts, oldest first: of one list, or of every list.
    pub async fn held_posts(&self, list: Option<&ListRef>) -> Result<Vec<HeldPost>, AppError> {
        let list = match list {
            Some(l) => Some(self.get_list(l).await?),
            None => None,
        };
        let rows = store::posts::list_held(&self.db, list.as_ref().map(|l| l.id)).await?;
        Ok(rows
            .into_iter()
            .map(|r| HeldPost {
                id: r.id,
                list: format!("{}@{}", r.local_part, r.domain),
                from: r.author.or(r.mail_from).unwrap_or_default(),
                subject: r.subject,
                reason: r.reason.unwrap_or_default(),
                received_at: r.received_at,
            })
            .collect())
    }

    /// One post, held or decided, with its raw message.
    pub async fn post_detail(&self, id: i64) -> Result<PostDetail, AppError> {
        let post = store::posts::find_post(&self.db, id)
            .await?
            .ok_or(AppError::NoSuchPost(id))?;
        let list = store::lists::find_list_by_id(&self.db, post.list_id)
            .await?
            .ok_or(AppError::NoSuchPost(id))?;
        Ok(PostDetail {
            post: row_view(&list, &post),
            status: post.status,
            mail_from: post.mail_from,
            decided_by: post.decided_by,
            decided_at: post.decided_at,
            copies: post.copies,
            raw: post.raw,
        })
    }

    /// Approves, rejects or discards a held post, with the moderator's reason (told to
    /// the poster on rejection, kept with the post otherwise). Approval relays it as
    /// if the policy had accepted it. `by` is who decided: `cli`, an API token's name,
    /// or the address of the person in the console or replying by mail. A post that is
    /// no longer held is left alone, and the outcome says who decided it and when.
    pub async fn moderate(
        &self,
        id: i64,
        decision: Moderation,
        reason: Option<&str>,
        by: &str,
    ) -> Result<ModerationOutcome, AppError> {
        self.moderate_on(None, id, decision, reason, by).await
    }

    /// [`App::moderate`] for a post of `list` only: a post of another list is
    /// `NoSuchPost`, as one that does not exist (the console's pages are per list).
    pub async fn moderate_on_list(
        &self,
        list: &List,
        id: i64,
        decision: Moderation,
        reason: Option<&str>,
        by: &str,
    ) -> Result<ModerationOutcome, AppError> {
        self.moderate_on(Some(list.id), id, decision, reason, by)
            .await
    }

    async fn moderate_on(
        &self,
        list_id: Option<uuid::Uuid>,
        id: i64,
        decision: Moderation,
        reason: Option<&str>,
        by: &str,
    ) -> Result<ModerationOutcome, AppError> {
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let peek = store::posts::find_post(&self.db, id)
            .await?
            .filter(|p| list_id.is_none_or(|l| l == p.list_id))
            .ok_or(AppError::NoSuchPost(id))?;
        let list = store::lists::find_list_by_id(&self.db, peek.list_id)
            .await?
            .ok_or(AppError::NoSuchPost(id))?;
        let incoming = read_incoming(&peek.raw, peek.mail_from.as_deref());
        if peek.status != PostStatus::Held {
            return Ok(ModerationOutcome::AlreadyDecided(decision_of(&peek)));
        }
        let prepared = match decision {
            Moderation::Approve | Moderation::AcceptSender => Some(
                self.rewrite(&list, &peek.raw, incoming.from.as_ref())
                    .await
                    .map_err(|e| {
                        AppError::Refused(format!("message {id} cannot be relayed: {e}"))
                    })?,
            ),
            _ => None,
        };
        let mut tx = self.db.begin().await?;
        // locked until the end of the transaction: of two moderators acting at once,
        // the second sees the first one's decision
        let post = store::posts::find_post(&mut *tx, id)
            .await?
            .ok_or(AppError::NoSuchPost(id))?;
        if post.status != PostStatus::Held {
            return Ok(ModerationOutcome::AlreadyDecided(decision_of(&post)));
        }
        let outcome = match (decision, prepared) {
            (Moderation::Approve | Moderation::AcceptSender, Some(prepared)) => {
                let copies = self
                    .fan_out(
                        &mut tx,
                        &list,
                        Acceptance {
                            post_id: id,
                            prepared: &prepared,
                            raw: &peek.raw,
                            mail_from: peek.mail_from.as_deref(),
                            author: incoming.from.as_ref(),
                            decided: Decided { by, note: reason },
                        },
                    )
                    .await?;
                if decision == Moderation::AcceptSender
                    && let Some(sender) = incoming.from.as_ref()
                {
                    store::posts::update_list_accept_sender(&mut *tx, list.id, &sender.to_string())
                        .await?;
                    tracing::info!(list = %list.address, by, "a sender joins accept-senders");
                }
                ModerationOutcome::Approved { copies }
            }
            (Moderation::Reject, _) => {
                let reason = reason.unwrap_or("a moderator declined it");
                self.reject_held(&mut tx, &list, &post, reason, by).await?;
                ModerationOutcome::Rejected
            }
            _ => {
                store::posts::update_post_decided(&mut *tx, id, PostStatus::Discarded, reason, by)
                    .await?;
                ModerationOutcome::Discarded
            }
        };
        tx.commit().await?;
        self.wakeups.outbound();
        Ok(outcome)
    }

    /// Rejects a held post, telling a human poster why.
    async fn reject_held(
        &self,
        tx: &mut PgConnection,
        list: &List,
        post: &PostRow,
        reason: &str,
        by: &str,
    ) -> Result<(), AppError> {
        store::posts::update_post_decided(
            &mut *tx,
            post.id,
            PostStatus::Rejected,
            Some(reason),
            by,
        )
        .await?;
        if !post.automatic {
            let row = HeldPost {
                reason: reason.to_string(),
                ..row_view(list, post)
            };
            self.notify_poster(tx, list, &row, Notice::Rejected, post.message_id.as_deref())
                .await?;
        }
        Ok(())
    }

    /// A list's held posts for the console, oldest first, with the first lines of
    /// their text.
    pub async fn held_on_list(&self, list: &List) -> Result<Vec<HeldItem>, AppError> {
        let rows = store::posts::list_held_heads(&self.db, list.id, 200).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let incoming = read_incoming(&r.head, r.mail_from.as_deref());
                HeldItem {
                    post: HeldPost {
                        id: r.id,
                        list: list.address.to_string(),
                        from: r.author.or(r.mail_from).unwrap_or_default(),
                        subject: r.subject,
                        reason: r.reason.unwrap_or_default(),
                        received_at: r.received_at,
                    },
                    preview: preview(&incoming.text),
                }
            })
            .collect())
    }

    /// The posts of a list that people decided lately, newest first: who decided
    /// what, and when.
    pub async fn recent_decisions(&self, list: &List) -> Result<Vec<DecidedItem>, AppError> {
        let rows = store::posts::list_recent_decisions(&self.db, list.id, 20).await?;
        Ok(rows
            .into_iter()
            .map(|r| DecidedItem {
                id: r.id,
                from: r.author.or(r.mail_from).unwrap_or_default(),
                subject: r.subject,
                decision: Decision {
                    status: r.status,
                    by: r.decided_by,
                    at: r.decided_at,
                },
            })
            .collect())
    }

    /// Who the author is to the list.
    async fn poster(&self, list: &List, from: Option<&EmailAddress>) -> Result<Poster, AppError> {
        let Some(from) = from else {
            return Ok(Poster::Stranger);
        };
        let rows = store::members::find_member_roles(&self.db, list.id, from).await?;
        let subscribed = |role: Role| {
            rows.iter()
                .any(|m| m.role == role && m.status == MemberStatus::Subscribed)
        };
        Ok(if subscribed(Role::Owner) || subscribed(Role::Moderator) {
            Poster::Privileged
        } else if subscribed(Role::Member) {
            Poster::Member
        } else if list.settings.accepts_sender(from) {
            Poster::AcceptedSender
        } else {
            Poster::Stranger
        })
    }

    /// The list's footer rendered for its copies, all but each member's link; `None`
    /// with `footer=off` (docs/standards.md#19). Posts and digests end with it.
    pub(crate) fn footer(&self, list: &List) -> Option<Rendered> {
        if list.settings.footer != Footer::On {
            return None;
        }
        let public_url = self.settings.public_url.trim_end_matches('/');
        // the setting was checked when it was set; a template that no longer parses
        // (an older rule) falls back to the built-in one
        let template = Template::parse(&list.settings.footer_text)
            .or_else(|_| Template::parse(""))
            .expect("the built-in footer parses");
        Some(template.render(&FooterValues {
            list_name: &list.settings.name,
            list_description: &list.settings.description,
            list_address: &list.address.to_string(),
            list_id: &list.address.list_id(),
            list_url: &self.list_url(list),
            owner_address: &list.address.with_suffix("owner"),
            subscribe_address: &list.address.with_suffix("subscribe"),
            me_url: &format!("{public_url}/me"),
        }))
    }

    /// The start of every member's unsubscribe link: `{PUBLIC_URL}/unsubscribe/`.
    pub(crate) fn unsubscribe_link_base(&self) -> String {
        format!(
            "{}/unsubscribe/",
            self.settings.public_url.trim_end_matches('/')
        )
    }

    /// Rewrites a post for the list, deciding the From treatment (docs/standards.md, section B).
    async fn rewrite(
        &self,
        list: &List,
        raw: &[u8],
        author: Option<&EmailAddress>,
    ) -> Result<Prepared, crate::mail::rewrite::RewriteError> {
        let from_mode = match list.settings.dmarc {
            Dmarc::Never => FromMode::Keep,
            Dmarc::Always => FromMode::Munge,
            Dmarc::Wrap => FromMode::Wrap,
            Dmarc::WhenNeeded => match author {
                Some(a) if self.dmarc.requires_from_rewrite(a.domain()).await => FromMode::Munge,
                _ => FromMode::Keep,
            },
        };
        let list_url = self.list_url(list);
        // copies name the archive and their place in it (docs/standards.md#56)
        let archived = list.settings.archive != Archive::Off;
        let archive_url = self.archive_url(list);
        let archived_at = format!("{archive_url}/m/");
        let link_base = self.unsubscribe_link_base();
        let rendered = self.footer(list);
        let rw = Rewrite {
            headers: ListHeaders {
                list: &list.address,
                list_name: &list.settings.name,
                list_url: &list_url,
                announce_only: list.settings.posting == Posting::Announce,
                archive_url: archived.then_some(archive_url.as_str()),
            },
            subject_prefix: &list.settings.subject_prefix,
            reply_to_list: list.settings.reply_to == ReplyTo::List,
            from_mode,
            archived_at: archived.then_some(archived_at.as_str()),
            footer: rendered.as_ref().map(|rendered| FooterText {
                rendered,
                link_base: &link_base,
            }),
        };
        prepare(raw, &rw)
    }

    /// Queues a copy for every member, archives the post and marks it accepted, in
    /// `tx`.
    async fn fan_out(
        &self,
        tx: &mut PgConnection,
        list: &List,
        accepted: Acceptance<'_>,
    ) -> Result<u64, AppError> {
        let Acceptance {
            post_id,
            prepared,
            raw,
            mail_from,
            author,
            decided,
        } = accepted;
        // the shared copy as relayed; a wrapped post's archive keeps the author's message
        let archived = if list.settings.dmarc == Dmarc::Wrap {
            raw
        } else {
            prepared.shared()
        };
        self.archive_post(
            tx,
            list,
            post_id,
            archived,
            prepared.message_id(),
            mail_from,
        )
        .await?;
        let author_key = author.map(|a| a.key());
        // read under a share lock: turning digests off waits for this fan-out to end,
        // and a fan-out after it sees the new value
        let digests = store::digests::find_digest_on_for_share(&mut *tx, list.id).await?;
        let fan = store::posts::insert_post_copies(
            &mut *tx,
            list.id,
            post_id,
            author_key.as_deref(),
            digests,
        )
        .await?;
        let copies = u64::try_from(fan.copies).unwrap_or(0);
        store::posts::update_post_accepted(
            &mut *tx,
            post_id,
            prepared.shared(),
            prepared.layout().map(|l| l.to_bytes()).as_deref(),
            i32::try_from(copies).unwrap_or(i32::MAX),
            decided.by,
            decided.note,
        )
        .await?;
        tracing::info!(list = %list.address, post_id, copies, owed = fan.owed, "post accepted");
        if fan.owed > 0 {
            self.post_owed(tx, list, post_id, prepared.shared().len())
                .await?;
        }
        Ok(copies)
    }

    /// One notice per held post to every owner and moderator: what it is, why it was
    /// held, and how to act on it.
    async fn notify_moderators(
        &self,
        tx: &mut PgConnection,
        list: &List,
        held: &HeldPost,
        token: Option<&ModerateToken>,
    ) -> Result<(), AppError> {
        // a reply to the notice decides the post: approve, discard or reject <reason>
        let reply_to = token.map(|t| {
            list.address
                .with_suffix(&format!("moderate+{}", t.as_str()))
        });
        let ctx = json!({
            "id": held.id,
            "from": held.from,
            "subject": held.subject,
            "reason": held.reason,
            "by_reply": reply_to.is_some(),
            "console_url": format!(
                "{}/admin/lists/{}/held",
                self.settings.public_url,
                list.address.list_id()
            ),
        });
        let told = self
            .notify_staff(
                tx,
                list,
                Staff::OwnersAndModerators,
                "email/held_notice.txt",
                ctx,
                reply_to.as_deref(),
            )
            .await?;
        if told == 0 {
            tracing::warn!(list = %list.address, id = held.id, "a post is held but the list has no owners or moderators to tell");
        }
        Ok(())
    }

    /// Tells a poster their post was rejected or awaits a moderator, within the
    /// daily limit of automatic mail per address.
    async fn notify_poster(
        &self,
        tx: &mut PgConnection,
        list: &List,
        post: &HeldPost,
        notice: Notice,
        in_reply_to: Option<&str>,
    ) -> Result<(), AppError> {
        let Ok(to) = EmailAddress::parse(&post.from) else {
            return Ok(());
        };
        let to = to.to_string();
        if daily_limit_reached(tx, &to).await? {
            tracing::info!(list = %list.address, "poster not told: per-address limit reached");
            return Ok(());
        }
        let ctx = json!({
            "list_name": list.settings.name,
            "list_address": list.address.to_string(),
            "subject": post.subject,
            "reason": post.reason,
            "owner_address": list.address.with_suffix("owner"),
        });
        let template = match notice {
            Notice::Held => "email/post_held.txt",
            Notice::Rejected => "email/post_rejected.txt",
        };
        let mail = Mail::new(Purpose::Reply, &to, template, ctx).replying_to(in_reply_to);
        self.queue(tx, list, mail).await
    }
}

/// The post this one repeats, if any: the same received message processed again
/// after a crash, or the same Message-ID lately.
async fn find_duplicate(
    tx: &mut PgConnection,
    list: &List,
    post: &ReceivedPost<'_>,
) -> Result<Option<i64>, AppError> {
    if let Some(inbound_id) = post.inbound_id
        && let Some(post_id) =
            store::posts::find_post_by_inbound(&mut *tx, list.id, inbound_id).await?
    {
        return Ok(Some(post_id));
    }
    if let Some(message_id) = post.incoming.message_id.as_deref() {
        let since = OffsetDateTime::now_utc() - Duration::days(DUPLICATE_WINDOW_DAYS);
        return Ok(store::posts::find_recent_post(&mut *tx, list.id, message_id, since).await?);
    }
    Ok(None)
}

/// Stores the post with its verdict (and, when held, the hash of its reply token).
async fn record_post(
    tx: &mut PgConnection,
    list: &List,
    post: &ReceivedPost<'_>,
    judged: &Judged,
) -> Result<Recorded, AppError> {
    let incoming = post.incoming;
    let (status, reason) = match judged.verdict {
        Verdict::Accept => (PostStatus::Accepted, None),
        Verdict::Hold(r) => (
            PostStatus::Held,
            Some(judged.unrelayable.clone().unwrap_or_else(|| r.to_string())),
        ),
        Verdict::Reject(r) => (PostStatus::Rejected, Some(r.to_string())),
        Verdict::Discard(r) => (PostStatus::Discarded, Some(r.to_string())),
    };
    let author = incoming.from.as_ref().map(|a| a.to_string());
    // the token of the held post's reply address (docs/contract.md#console)
    let moderate_token = (status == PostStatus::Held).then(ModerateToken::generate);
    let moderate_hash = moderate_token.as_ref().map(|t| t.hash());
    let post_id = store::posts::insert_post(
        &mut *tx,
        &NewPost {
            list_id: list.id,
            inbound_id: post.inbound_id,
            message_id: incoming.message_id.as_deref(),
            mail_from: post.mail_from,
            author: author.as_deref(),
            subject: &incoming.subject,
            raw: post.raw,
            status,
            reason: reason.as_deref(),
            automatic: incoming.automatic,
            moderate_hash: moderate_hash.as_ref().map(|h| &h.0[..]),
        },
    )
    .await?;
    Ok(Recorded {
        post_id,
        author,
        reason: reason.unwrap_or_default(),
        moderate_token,
    })
}

fn held_view(
    list: &List,
    id: i64,
    author: &Option<String>,
    incoming: &Incoming,
    reason: &str,
) -> HeldPost {
    HeldPost {
        id,
        list: list.address.to_string(),
        from: author.clone().unwrap_or_default(),
        subject: incoming.subject.clone(),
        reason: reason.to_string(),
        received_at: OffsetDateTime::now_utc(),
    }
}

/// The first lines of a text that are not blank, each cut to a length, with no
/// control characters.
fn preview(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .take(PREVIEW_LINES)
        .map(|l| {
            l.chars()
                .filter(|c| !c.is_control() || *c == '\t')
                .take(PREVIEW_LINE_CHARS)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn decision_of(post: &PostRow) -> Decision {
    Decision {
        status: post.status,
        by: post.decided_by.clone(),
        at: post.decided_at,
    }
}

fn row_view(list: &List, post: &PostRow) -> HeldPost {
    HeldPost {
        id: post.id,
        list: list.address.to_string(),
        from: post
            .author
            .clone()
            .or(post.mail_from.clone())
            .unwrap_or_default(),
        subject: post.subject.clone(),
        reason: post.reason.clone().unwrap_or_default(),
        received_at: post.received_at,
    }
}
