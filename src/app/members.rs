//! Owner actions on members: add, remove, list, show, change.

use super::outbox::Mail;
use super::subscriptions::{Request, RequestOutcome};
use super::{App, AppError};
use crate::domain::{
    Delivery, EmailAddress, Evidence, List, ListRef, Member, MemberChange, MemberStatus, Purpose,
    Role, Source,
};
use crate::store;
use crate::store::members::NewMembership;

/// What `members add` did for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    AlreadyMember,
    /// A confirmation was sent instead (`--invite`).
    Invited,
    /// The invitation was not sent: the address had too many requests lately.
    InviteRateLimited,
    /// The person left (or bounced out, or complained): only their own new
    /// confirmation can bring them back (docs/standards.md#30).
    NeedsInvite(MemberStatus),
}

/// A member as `members show --json` (and the API) prints it: the membership's
/// fields, then `roles` and `bounces`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberDetail {
    #[serde(flatten)]
    pub member: Member,
    pub roles: Vec<Role>,
    pub bounces: Vec<crate::domain::bounce::BounceRecord>,
}

/// Filter for `members ls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Status(MemberStatus),
    /// Subscribed, with delivery disabled.
    DeliveryDisabled,
    All,
}

impl std::str::FromStr for StatusFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "all" => Ok(StatusFilter::All),
            "disabled" => Ok(StatusFilter::DeliveryDisabled),
            other => other
                .parse::<MemberStatus>()
                .map(StatusFilter::Status)
                .map_err(|_| {
                    format!(
                        "`{s}` is not a status; use {}, disabled or all",
                        MemberStatus::choices()
                    )
                }),
        }
    }
}

/// How an owner adds people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddHow {
    /// At once; new members get the list's welcome (with how to leave) unless `quiet`.
    Add { quiet: bool },
    /// A confirmation request instead: they join when they confirm.
    Invite,
}

/// What the console's member search asks for.
#[derive(Debug, Clone, Default)]
pub struct MemberQuery {
    /// Part of an address or a name (any case).
    pub text: Option<String>,
    /// One role, or every role.
    pub role: Option<Role>,
    pub status: Option<StatusFilter>,
}

/// Where a page of the member search ends: the last row's address key and role.
pub type MemberCursor = (String, Role);

/// What an owner's decision on a waiting subscription did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestDecision {
    /// Subscribed; the new member is welcomed.
    Approved,
    /// Refused; the requester is told.
    Refused,
    /// Nothing waits for this address (decided already, or never asked).
    NotWaiting,
}

/// Longest search text taken (an address is at most 254 octets).
const MAX_SEARCH_LEN: usize = 254;
/// Shortest search text: the trigram index finds parts of three characters or more.
pub const MIN_SEARCH_LEN: usize = 3;

impl App {
    /// One page of a list's members matching `query`, after `after`, and the cursor
    /// of the next page (`None` on the last).
    pub async fn search_members(
        &self,
        list: &ListRef,
        query: &MemberQuery,
        after: Option<&MemberCursor>,
        limit: usize,
    ) -> Result<(Vec<Member>, Option<MemberCursor>), AppError> {
        let list = self.get_list(list).await?;
        let (status, disabled_only) = match query.status.unwrap_or(StatusFilter::All) {
            StatusFilter::Status(s) => (Some(s), false),
            StatusFilter::DeliveryDisabled => (Some(MemberStatus::Subscribed), true),
            StatusFilter::All => (None, false),
        };
        let text = query
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| t.chars().take(MAX_SEARCH_LEN).collect::<String>());
        if let Some(t) = &text
            && t.chars().count() < MIN_SEARCH_LEN
        {
            return Err(AppError::BadSetting(
                crate::domain::SettingError::BadValue {
                    key: "q".into(),
                    problem: format!("type at least {MIN_SEARCH_LEN} characters to search"),
                },
            ));
        }
        let limit = limit.clamp(1, 1000);
        let rows = store::members::search_members(
            &self.db,
            list.id,
            &store::members::MemberSearch {
                text: text.as_deref(),
                role: query.role,
                status,
                delivery_disabled_only: disabled_only,
                after: after.map(|(k, r)| (k.as_str(), *r)),
                limit: limit as i64 + 1,
            },
        )
        .await?;
        let more = rows.len() > limit;
        let page: Vec<Member> = rows.into_iter().take(limit).collect();
        let next = more
            .then(|| page.last())
            .flatten()
            .and_then(|m| Some((EmailAddress::parse(&m.address).ok()?.key(), m.role)));
        Ok((page, next))
    }

    /// Subscriptions confirmed by their mailbox and waiting for an owner
    /// (`subscription=confirm-then-moderate`), oldest first.
    pub async fn waiting_requests(&self, list: &List) -> Result<Vec<Member>, AppError> {
        Ok(store::members::list_waiting_members(&self.db, list.id, 500).await?)
    }

    /// Approves or refuses a waiting subscription; the requester is told either way.
    pub async fn decide_request(
        &self,
        list: &List,
        address: &EmailAddress,
        approve: bool,
    ) -> Result<RequestDecision, AppError> {
        let mut tx = store::pending::begin_for_address(&self.db, list.id, address).await?;
        let waiting = store::members::find_member(&mut *tx, list.id, Role::Member, address)
            .await?
            .filter(|m| m.status == MemberStatus::Pending && m.consent.confirmed_at.is_some());
        let Some(m) = waiting else {
            return Ok(RequestDecision::NotWaiting);
        };
        let outcome = if approve {
            store::members::update_member_approved(&mut *tx, m.id).await?;
            let member = store::members::find_member_by_id_for_update(&mut *tx, m.id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("an approved member vanished"))?;
            self.enqueue_welcome(&mut tx, list, &member).await?;
            RequestDecision::Approved
        } else {
            store::members::update_member_left(&mut *tx, m.id, MemberStatus::Removed, "refused")
                .await?;
            let ctx = serde_json::json!({
                "list_name": list.settings.name,
                "list_address": list.address.to_string(),
                "address": m.address,
                "owner_address": list.address.with_suffix("owner"),
            });
            let mail = Mail::new(
                Purpose::Notice,
                &m.address,
                "email/request_refused.txt",
                ctx,
            );
            self.queue(&mut tx, list, mail).await?;
            RequestDecision::Refused
        };
        tx.commit().await?;
        self.wakeups.outbound();
        tracing::info!(list = %list.address, approve, "a waiting subscription was decided");
        Ok(outcome)
    }

    /// Adds addresses at once (an owner's explicit act), or invites them.
    pub async fn add_members(
        &self,
        list: &ListRef,
        addresses: &[EmailAddress],
        role: Role,
        how: AddHow,
    ) -> Result<Vec<(EmailAddress, AddOutcome)>, AppError> {
        let invite = how == AddHow::Invite;
        let welcome = how == AddHow::Add { quiet: false } && role == Role::Member;
        let current_list = self.get_list(list).await?;
        let mut out = Vec::with_capacity(addresses.len());
        for address in addresses {
            if invite && role == Role::Member {
                let req = Request {
                    address: address.clone(),
                    name: None,
                    source: Source::Admin,
                    evidence: Evidence::default(),
                    in_reply_to: None,
                };
                let outcome = match self.request_subscription(&current_list, req).await? {
                    RequestOutcome::ConfirmationSent => AddOutcome::Invited,
                    RequestOutcome::NothingToDo => AddOutcome::AlreadyMember,
                    RequestOutcome::RateLimited => AddOutcome::InviteRateLimited,
                };
                out.push((address.clone(), outcome));
                continue;
            }
            let mut tx =
                store::pending::begin_for_address(&self.db, current_list.id, address).await?;
            let existing =
                store::members::find_member(&mut *tx, current_list.id, role, address).await?;
            let outcome = match existing.as_ref() {
                Some(m) if m.status == MemberStatus::Subscribed => AddOutcome::AlreadyMember,
                Some(m) if m.status.needs_new_consent() && !invite => {
                    AddOutcome::NeedsInvite(m.status)
                }
                // confirmed by the mailbox, waiting for an owner (confirm-then-moderate):
                // approving keeps that confirmation as the consent record
                Some(m)
                    if m.status == MemberStatus::Pending && m.consent.confirmed_at.is_some() =>
                {
                    store::members::update_member_approved(&mut *tx, m.id).await?;
                    if welcome
                        && let Some(m) =
                            store::members::find_member_by_id_for_update(&mut *tx, m.id).await?
                    {
                        self.enqueue_welcome(&mut tx, &current_list, &m).await?;
                    }
                    AddOutcome::Added
                }
                _ => {
                    let added = add_by_admin(&mut tx, current_list.id, address, role).await?;
                    if welcome {
                        self.enqueue_welcome(&mut tx, &current_list, &added).await?;
                    }
                    AddOutcome::Added
                }
            };
            tx.commit().await?;
            out.push((address.clone(), outcome));
        }
        if welcome {
            self.wakeups.outbound();
        }
        Ok(out)
    }

    /// Takes addresses off a list (every role they hold); false for non-members.
    pub async fn remove_members(
        &self,
        list: &ListRef,
        addresses: &[EmailAddress],
    ) -> Result<Vec<(EmailAddress, bool)>, AppError> {
        let list = self.get_list(list).await?;
        let mut out = Vec::with_capacity(addresses.len());
        for address in addresses {
            let mut tx = self.db.begin().await?;
            let mut removed = false;
            for m in store::members::find_member_roles(&mut *tx, list.id, address).await? {
                removed |= store::members::update_member_left(
                    &mut *tx,
                    m.id,
                    MemberStatus::Removed,
                    "admin",
                )
                .await?;
            }
            tx.commit().await?;
            out.push((address.clone(), removed));
        }
        Ok(out)
    }

    /// Members of a list, by role and status.
    pub async fn members(
        &self,
        list: &ListRef,
        role: Option<Role>,
        status: StatusFilter,
    ) -> Result<Vec<Member>, AppError> {
        let list = self.get_list(list).await?;
        let by_status = match status {
            StatusFilter::Status(s) => Some(s),
            StatusFilter::DeliveryDisabled => Some(MemberStatus::Subscribed),
            StatusFilter::All => None,
        };
        let members = store::members::list_members(&self.db, list.id, role, by_status).await?;
        Ok(members
            .into_iter()
            .filter(|m| {
                status != StatusFilter::DeliveryDisabled || m.delivery == Delivery::Disabled
            })
            .collect())
    }

    /// One page of members of a role, and the cursor of the next page (`None` on the
    /// last). The cursor is the last address key of the page.
    pub async fn members_page(
        &self,
        list: &ListRef,
        role: Role,
        status: StatusFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Member>, Option<String>), AppError> {
        let list = self.get_list(list).await?;
        let (by_status, disabled_only) = match status {
            StatusFilter::Status(s) => (Some(s), false),
            StatusFilter::DeliveryDisabled => (Some(MemberStatus::Subscribed), true),
            StatusFilter::All => (None, false),
        };
        let limit = limit.clamp(1, 1000);
        let rows = store::members::list_members_page(
            &self.db,
            list.id,
            role,
            by_status,
            disabled_only,
            after,
            limit as i64 + 1,
        )
        .await?;
        let more = rows.len() > limit;
        let page: Vec<Member> = rows.into_iter().take(limit).collect();
        // the cursor is the last member's comparison key, the column pages are ordered by
        let next = more
            .then(|| {
                page.last()
                    .and_then(|m| EmailAddress::parse(&m.address).ok())
            })
            .flatten()
            .map(|a| a.key());
        Ok((page, next))
    }

    /// What `members show` tells of an address: its membership (the member role when
    /// it has one), every role it holds, and its last bounces.
    pub async fn member_detail(
        &self,
        list: &ListRef,
        address: &EmailAddress,
    ) -> Result<MemberDetail, AppError> {
        let roles = self.member(list, address).await?;
        let member = roles
            .iter()
            .find(|m| m.role == Role::Member)
            .unwrap_or(&roles[0])
            .clone();
        let bounces = self.member_bounces(&member).await?;
        Ok(MemberDetail {
            roles: roles.iter().map(|m| m.role).collect(),
            member,
            bounces,
        })
    }

    /// Every role an address holds on a list, with its consent record.
    pub async fn member(
        &self,
        list: &ListRef,
        address: &EmailAddress,
    ) -> Result<Vec<Member>, AppError> {
        let l = self.get_list(list).await?;
        let roles = store::members::find_member_roles(&self.db, l.id, address).await?;
        if roles.is_empty() {
            return Err(AppError::NoSuchMember {
                list: list.to_string(),
                address: address.to_string(),
                role: "member".into(),
            });
        }
        Ok(roles)
    }

    /// Changes `delivery`, `mode`, `name`, `role` or `own-posts` of a member, as an
    /// owner (`members set`, the API, the console).
    pub async fn update_member(
        &self,
        list: &ListRef,
        address: &EmailAddress,
        change: &MemberChange,
    ) -> Result<Member, AppError> {
        let l = self.get_list(list).await?;
        let mut tx = self.db.begin().await?;
        let roles = store::members::find_member_roles(&mut *tx, l.id, address).await?;
        let Some(member) = roles
            .iter()
            .find(|m| m.role == Role::Member)
            .or(roles.first())
            .cloned()
        else {
            return Err(AppError::NoSuchMember {
                list: list.to_string(),
                address: address.to_string(),
                role: "member".into(),
            });
        };
        let member = apply_member_change(&mut tx, member, change).await?;
        tx.commit().await?;
        Ok(member)
    }
}

/// Applies a change to one member row in the caller's transaction (owners' changes and
/// a member's own, from `/me` or the preferences page).
pub(crate) async fn apply_member_change(
    tx: &mut sqlx::PgConnection,
    mut member: Member,
    change: &MemberChange,
) -> Result<Member, AppError> {
    let before = member.clone();
    if let Some(d) = change.delivery {
        member.delivery = d;
    }
    if let Some(m) = change.mode {
        member.mode = m;
    }
    if let Some(o) = change.own_posts {
        member.own_posts = o;
    }
    if let Some(n) = &change.name {
        member.name = n.clone();
    }
    store::members::update_member_attributes(&mut *tx, &member).await?;
    if before.delivery == Delivery::Disabled && member.delivery == Delivery::Enabled {
        // turning delivery back on forgets the bounces that turned it off
        store::bounces::update_member_bounces_cleared(&mut *tx, member.id).await?;
        member.bounce_score = 0;
    }
    if let Some(role) = change.role
        && role != member.role
    {
        match store::members::update_member_role(&mut *tx, member.id, role).await {
            Ok(()) => member.role = role,
            Err(e) if store::unique_violation(&e).is_some() => {
                return Err(AppError::Refused(format!(
                    "{} is already a {role} of this list",
                    member.address
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(member)
}

/// Makes `address` a subscribed `role` of a list on an owner's or admin's word (no
/// request, no confirmation: the consent evidence says `admin`).
pub(super) async fn add_by_admin(
    tx: &mut sqlx::PgConnection,
    list_id: uuid::Uuid,
    address: &EmailAddress,
    role: Role,
) -> Result<Member, AppError> {
    let admin = Evidence::default();
    let m = NewMembership {
        address,
        name: None,
        role,
        request_source: Source::Admin,
        requested_at: None,
        request: &admin,
        confirm_method: Source::Admin,
        confirm: &admin,
    };
    Ok(
        store::members::upsert_confirmed_member(&mut *tx, list_id, &m, MemberStatus::Subscribed)
            .await?,
    )
}
