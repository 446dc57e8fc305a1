//! Signing in without passwords: a link mailed to the address, a session in the
//! database, and what a signed-in person may change of their own memberships
//! (docs/contract.md#signin, docs/standards.md#51 to #53).
//!
//! Who may sign in: an address that is a subscribed member of some list (delivery on or
//! off), an owner or moderator of some list, or a site admin. Everyone else gets the
//! same answer and no mail, so the form tells nobody who is a member.

use super::members::apply_member_change;
use super::outbox::{Mail, over_daily_limit};
use super::{App, AppError};
use crate::domain::session::{SESSION_DAYS, SIGNIN_MINUTES, csrf_matches, csrf_token};
use crate::domain::{
    ConfirmToken, EmailAddress, List, ListRef, Member, MemberChange, MemberStatus, Purpose,
    ReturnPath, Role, SessionId, TokenHash,
};
use crate::store;
use serde_json::json;
use time::{Duration, OffsetDateTime};

/// One sign-in mail per address per 10 minutes, three a day (docs/standards.md#27).
const SIGNIN_SPACING: Duration = Duration::minutes(10);
const SIGNINS_PER_DAY: i64 = 3;

/// What became of a request for a sign-in link (the form shows the same page for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigninRequestOutcome {
    Sent,
    /// Not a member, owner, moderator or admin: nothing sent.
    NotEligible,
    RateLimited,
}

/// What a sign-in link leads to (GET shows it; only POST uses it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigninView {
    Valid { address: String },
    Used,
    Expired,
    Unknown,
}

/// What pressing the sign-in button did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInOutcome {
    /// The new session's id goes into the cookie.
    SignedIn {
        session: SessionId,
        address: String,
        /// The page the person was going to when asked to sign in, if any.
        return_path: Option<ReturnPath>,
    },
    Used,
    Expired,
    Unknown,
}

/// A signed-in person, as every page under `/me` and `/admin` sees them.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub address: EmailAddress,
    /// The value of the hidden `csrf` field of every form of this session.
    pub csrf: String,
    pub is_site_admin: bool,
    session: TokenHash,
}

/// One list on `/me`: the person's membership (if they are a member) and their staff
/// role (if they own or moderate it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MyList {
    #[serde(skip)]
    id: uuid::Uuid,
    pub list_id: String,
    pub address: String,
    pub name: String,
    pub membership: Option<Member>,
    /// `owner` or `moderator`.
    pub staff: Option<Role>,
    /// The archive's page, when the list keeps one.
    pub archive_url: Option<String>,
    /// The Atom feed of the archive; for a members-only archive, the person's own URL.
    pub feed_url: Option<String>,
}

/// A change to one's own membership from `/me`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MyChange {
    Set(MemberChange),
    Leave,
}

/// What a change from `/me` or the preferences page did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // made once per form post and matched at once
pub enum MyChangeOutcome {
    Changed {
        list: List,
        member: Box<Member>,
    },
    Left {
        list: List,
    },
    /// Not a (current) member of that list.
    NotAMember,
}

impl App {
    /// Mails a sign-in link to an address that may sign in (within the per-address
    /// limits); called by the workers for the web form's stored requests. The link
    /// leads to `return_path` once used, when given.
    pub async fn request_signin(
        &self,
        address: &EmailAddress,
        ip: Option<&str>,
        return_path: Option<&ReturnPath>,
    ) -> Result<SigninRequestOutcome, AppError> {
        let Some(list) = self.signin_sender(address).await? else {
            return Ok(SigninRequestOutcome::NotEligible);
        };
        let mut tx = store::begin_locked(&self.db, &format!("signin/{}", address.key())).await?;
        let now = OffsetDateTime::now_utc();
        let counts = store::sessions::find_signin_counts(
            &mut *tx,
            address,
            now - SIGNIN_SPACING,
            now - Duration::DAY,
            Purpose::AUTOMATIC,
        )
        .await?;
        if counts.recent >= 1
            || counts.today >= SIGNINS_PER_DAY
            || over_daily_limit(counts.automatic_today)
        {
            tracing::info!("sign-in link not sent: per-address limit reached");
            return Ok(SigninRequestOutcome::RateLimited);
        }
        let link = self
            .new_signin_link(&mut tx, address, ip, return_path)
            .await?;
        let ctx = json!({
            "address": address.to_string(),
            "signin_url": link,
            "site_url": self.settings.public_url,
            "expiry_minutes": SIGNIN_MINUTES,
            "list_name": list.settings.name,
        });
        let to = address.to_string();
        let mail = Mail::new(Purpose::Signin, &to, "email/signin.txt", ctx);
        self.queue(&mut tx, &list, mail).await?;
        tx.commit().await?;
        self.wakeups.outbound();
        Ok(SigninRequestOutcome::Sent)
    }

    /// A one-time sign-in URL for `listd signin-link`, or `None` when the address may
    /// not sign in.
    pub async fn signin_link(&self, address: &EmailAddress) -> Result<Option<String>, AppError> {
        if !self.may_sign_in(address).await? {
            return Ok(None);
        }
        let mut tx = self.db.begin().await?;
        let link = self.new_signin_link(&mut tx, address, None, None).await?;
        tx.commit().await?;
        Ok(Some(link))
    }

    /// What a sign-in link would do, without using it.
    pub async fn inspect_signin(&self, token: &str) -> Result<SigninView, AppError> {
        let Some(token) = ConfirmToken::parse(token) else {
            return Ok(SigninView::Unknown);
        };
        let found = store::sessions::find_signin_token(&self.db, &token.hash(), false).await?;
        Ok(match found {
            None => SigninView::Unknown,
            Some(t) if t.used_at.is_some() => SigninView::Used,
            Some(t) if t.expires_at <= OffsetDateTime::now_utc() => SigninView::Expired,
            Some(t) => SigninView::Valid { address: t.address },
        })
    }

    /// Uses a sign-in link: starts a new session (a fresh id whatever the browser held
    /// before, which is ended: no fixation) and returns its id.
    pub async fn sign_in(
        &self,
        token: &str,
        previous: Option<&SessionId>,
    ) -> Result<SignInOutcome, AppError> {
        let Some(token) = ConfirmToken::parse(token) else {
            return Ok(SignInOutcome::Unknown);
        };
        let mut tx = self.db.begin().await?;
        let found = store::sessions::find_signin_token(&mut *tx, &token.hash(), true).await?;
        let t = match found {
            None => return Ok(SignInOutcome::Unknown),
            Some(t) if t.used_at.is_some() => return Ok(SignInOutcome::Used),
            Some(t) if t.expires_at <= OffsetDateTime::now_utc() => {
                return Ok(SignInOutcome::Expired);
            }
            Some(t) => t,
        };
        store::sessions::update_signin_token_used(&mut *tx, &token.hash()).await?;
        if let Some(old) = previous {
            store::sessions::delete_session(&mut *tx, &old.hash()).await?;
        }
        let address = EmailAddress::parse(&t.address)
            .map_err(|e| anyhow::anyhow!("stored sign-in address {}: {e}", t.address))?;
        let session = SessionId::generate();
        store::sessions::insert_session(
            &mut *tx,
            &session.hash(),
            &address.to_string(),
            &address.key(),
            OffsetDateTime::now_utc() + Duration::days(SESSION_DAYS),
        )
        .await?;
        tx.commit().await?;
        tracing::info!("signed in");
        Ok(SignInOutcome::SignedIn {
            session,
            address: address.to_string(),
            // checked again: only a local path leads anywhere but /me
            return_path: t.return_path.as_deref().and_then(ReturnPath::parse),
        })
    }

    /// The person a session cookie belongs to, if the session lasts: it ends after 30
    /// days, at sign-out, and when the address no longer holds a membership or role on
    /// any list and is no site admin.
    pub async fn session_of(&self, cookie: &str) -> Result<Option<Viewer>, AppError> {
        let Some(id) = SessionId::parse(cookie) else {
            return Ok(None);
        };
        let hash = id.hash();
        let Some(row) = store::sessions::find_session(&self.db, &hash).await? else {
            return Ok(None);
        };
        let Ok(address) = EmailAddress::parse(&row.address) else {
            return Ok(None);
        };
        let is_site_admin = self.is_site_admin(&address);
        if !row.has_membership && !is_site_admin {
            store::sessions::delete_session(&self.db, &hash).await?;
            return Ok(None);
        }
        Ok(Some(Viewer {
            csrf: csrf_token(&self.settings.secret_key, &hash),
            address,
            is_site_admin,
            session: hash,
        }))
    }

    /// Whether a form's `csrf` field belongs to the viewer's session.
    pub fn csrf_ok(&self, viewer: &Viewer, submitted: &str) -> bool {
        csrf_matches(&self.settings.secret_key, &viewer.session, submitted)
    }

    /// Ends a session in the database (the cookie alone would not).
    pub async fn sign_out(&self, viewer: &Viewer) -> Result<(), AppError> {
        store::sessions::delete_session(&self.db, &viewer.session).await?;
        tracing::info!("signed out");
        Ok(())
    }

    /// Whether the address is one of `LISTD_ADMINS`.
    pub fn is_site_admin(&self, address: &EmailAddress) -> bool {
        self.settings
            .admins
            .iter()
            .any(|a| a.key() == address.key())
    }

    /// Every list the viewer belongs to or runs, for `/me`.
    pub async fn my_lists(&self, viewer: &Viewer) -> Result<Vec<MyList>, AppError> {
        let rows = store::members::find_memberships_of(&self.db, &viewer.address).await?;
        let mut out: Vec<MyList> = Vec::new();
        for m in rows {
            let entry = match out.iter().position(|e| e.id == m.list_id) {
                Some(i) => &mut out[i],
                None => {
                    let Some(list) = store::lists::find_list_by_id(&self.db, m.list_id).await?
                    else {
                        continue;
                    };
                    let (archive_url, feed_url) = match list.settings.archive {
                        crate::domain::Archive::Off => (None, None),
                        _ => (
                            Some(self.archive_url(&list)),
                            self.personal_feed_url(&list, &viewer.address).await?,
                        ),
                    };
                    out.push(MyList {
                        archive_url,
                        feed_url,
                        id: list.id,
                        list_id: list.address.list_id(),
                        address: list.address.to_string(),
                        name: list.settings.name.clone(),
                        membership: None,
                        staff: None,
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            match m.role {
                Role::Member => entry.membership = Some(m),
                Role::Owner => entry.staff = Some(Role::Owner),
                Role::Moderator if entry.staff.is_none() => entry.staff = Some(Role::Moderator),
                Role::Moderator => {}
            }
        }
        Ok(out)
    }

    /// Changes the viewer's own membership of a list, or leaves it, at once.
    pub async fn change_my_membership(
        &self,
        viewer: &Viewer,
        list: &ListRef,
        change: &MyChange,
    ) -> Result<MyChangeOutcome, AppError> {
        let list = match self.get_list(list).await {
            Ok(l) => l,
            Err(AppError::NoSuchList(_)) => return Ok(MyChangeOutcome::NotAMember),
            Err(e) => return Err(e),
        };
        let mut tx = self.db.begin().await?;
        let member = store::members::find_member(&mut *tx, list.id, Role::Member, &viewer.address)
            .await?
            .filter(|m| m.status == MemberStatus::Subscribed);
        let Some(member) = member else {
            return Ok(MyChangeOutcome::NotAMember);
        };
        let member = store::members::find_member_by_id_for_update(&mut *tx, member.id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("a member row vanished"))?;
        match change {
            MyChange::Leave => {
                self.leave(tx, &list, &member, "web").await?;
                Ok(MyChangeOutcome::Left { list })
            }
            MyChange::Set(c) => {
                let own = MemberChange {
                    name: None,
                    role: None,
                    ..c.clone()
                };
                let member = apply_member_change(&mut tx, member, &own).await?;
                tx.commit().await?;
                Ok(MyChangeOutcome::Changed {
                    list,
                    member: Box::new(member),
                })
            }
        }
    }

    /// Changes delivery or mode with a member's unsubscribe token (the preferences
    /// forms of the unsubscribe page: the token is the authority, as for one-click).
    pub async fn update_preferences_with_token(
        &self,
        token: &str,
        change: &MemberChange,
    ) -> Result<MyChangeOutcome, AppError> {
        let mut tx = self.db.begin().await?;
        let Some((list, member)) = self.member_for_token(&mut tx, token).await? else {
            return Ok(MyChangeOutcome::NotAMember);
        };
        if member.status != MemberStatus::Subscribed {
            return Ok(MyChangeOutcome::NotAMember);
        }
        let only = MemberChange {
            delivery: change.delivery,
            mode: change.mode,
            ..MemberChange::default()
        };
        let member = apply_member_change(&mut tx, member, &only).await?;
        tx.commit().await?;
        Ok(MyChangeOutcome::Changed {
            list,
            member: Box::new(member),
        })
    }

    async fn may_sign_in(&self, address: &EmailAddress) -> Result<bool, AppError> {
        Ok(self.is_site_admin(address)
            || store::sessions::find_list_of_address(&self.db, address)
                .await?
                .is_some())
    }

    /// The list whose owner address mails the sign-in link: the one the address most
    /// recently joined, or for a site admin on no list, the first list.
    async fn signin_sender(&self, address: &EmailAddress) -> Result<Option<List>, AppError> {
        if let Some(id) = store::sessions::find_list_of_address(&self.db, address).await? {
            return Ok(store::lists::find_list_by_id(&self.db, id).await?);
        }
        if !self.is_site_admin(address) {
            return Ok(None);
        }
        match store::lists::find_first_list_id(&self.db, None).await? {
            Some(list_id) => match ListRef::parse(&list_id) {
                Ok(r) => Ok(Some(self.get_list(&r).await?)),
                Err(_) => Ok(None),
            },
            None => Ok(None),
        }
    }

    async fn new_signin_link(
        &self,
        tx: &mut sqlx::PgConnection,
        address: &EmailAddress,
        ip: Option<&str>,
        return_path: Option<&ReturnPath>,
    ) -> Result<String, AppError> {
        let token = ConfirmToken::generate();
        let expires = OffsetDateTime::now_utc() + Duration::minutes(SIGNIN_MINUTES);
        store::sessions::insert_signin_token(
            &mut *tx,
            &token.hash(),
            address,
            expires,
            ip,
            return_path.map(ReturnPath::as_str),
        )
        .await?;
        Ok(format!(
            "{}/signin/{}",
            self.settings.public_url,
            token.as_str()
        ))
    }
}
