//! Creating, reading, changing and deleting lists.

use super::members::add_by_admin;
use super::{App, AppError};
use crate::domain::{EmailAddress, List, ListAddress, ListRef, ListSettings, Role};
use crate::store;
use serde::Serialize;

/// A list as shown to owners: its settings, head counts and owners.
#[derive(Debug, Clone, Serialize)]
pub struct ListInfo {
    pub address: String,
    pub list_id: String,
    #[serde(flatten)]
    pub settings: ListSettings,
    pub members: i64,
    pub pending: i64,
    /// Accepted posts kept in the archive.
    pub posts: i64,
    /// Posts awaiting moderation.
    pub held: i64,
    pub owners: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    /// Advice about settings that work against the owner (docs/standards.md#13).
    pub warnings: Vec<String>,
}

impl App {
    /// Creates a list with the given settings and owners.
    pub async fn create_list(
        &self,
        address: &ListAddress,
        settings: &ListSettings,
        owners: &[EmailAddress],
    ) -> Result<ListInfo, AppError> {
        let mut tx = self.db.begin().await?;
        let list = match store::lists::insert_list(&mut *tx, address, settings).await {
            Ok(list) => list,
            Err(e) if store::unique_violation(&e).is_some() => {
                return Err(AppError::ListExists(format!(
                    "{address} (list-id {})",
                    address.list_id()
                )));
            }
            Err(e) => return Err(e.into()),
        };
        for owner in owners {
            add_by_admin(&mut tx, list.id, owner, Role::Owner).await?;
        }
        tx.commit().await?;
        self.list_info(&ListRef::Address(address.clone())).await
    }

    /// Every list, or only the advertised ones (for the public index).
    pub async fn lists(&self, advertised_only: bool) -> Result<Vec<ListInfo>, AppError> {
        let rows = store::lists::all_lists(&self.db, advertised_only).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let owners = self.owner_addresses(&r.list).await?;
            out.push(info(r.list, r.counts, owners));
        }
        Ok(out)
    }

    /// One list by address or list-id.
    pub async fn list_info(&self, list: &ListRef) -> Result<ListInfo, AppError> {
        let list = self.get_list(list).await?;
        let counts = store::lists::find_counts(&self.db, list.id).await?;
        let owners = self.owner_addresses(&list).await?;
        Ok(info(list, counts, owners))
    }

    /// Changes settings given as `KEY=VALUE` pairs; all or nothing.
    pub async fn update_list(
        &self,
        list: &ListRef,
        pairs: &[String],
    ) -> Result<ListInfo, AppError> {
        let current = self.get_list(list).await?;
        let mut settings = current.settings.clone();
        for pair in pairs {
            settings.apply_pair(pair)?;
        }
        let mut tx = self.db.begin().await?;
        // waits for fan-outs in progress (they hold the row for share): what they
        // recorded as owed is seen by the last digest below
        store::lists::update_list_settings(&mut *tx, current.id, &settings).await?;
        let last_digest = current.settings.digest && !settings.digest;
        if last_digest {
            let updated = List {
                settings,
                ..current
            };
            self.issue_digest(&mut tx, &updated, time::OffsetDateTime::now_utc())
                .await?;
        }
        tx.commit().await?;
        if last_digest {
            self.wakeups.outbound();
        }
        self.list_info(list).await
    }

    /// Changes settings (`KEY=VALUE` pairs) and, when given, replaces the list's owners
    /// and moderators, in one transaction: a bad value changes nothing. Staff who are
    /// no longer named are taken off (their rows keep the record); new ones are added
    /// as an owner's explicit act. A list that has owners keeps at least one.
    pub async fn update_list_and_staff(
        &self,
        list: &ListRef,
        pairs: &[String],
        owners: Option<&[EmailAddress]>,
        moderators: Option<&[EmailAddress]>,
    ) -> Result<ListInfo, AppError> {
        let current = self.get_list(list).await?;
        let mut settings = current.settings.clone();
        for pair in pairs {
            settings.apply_pair(pair)?;
        }
        let mut tx = self.db.begin().await?;
        store::lists::update_list_settings(&mut *tx, current.id, &settings).await?;
        for (role, wanted) in [(Role::Owner, owners), (Role::Moderator, moderators)] {
            let Some(wanted) = wanted else { continue };
            let now = store::members::list_members(
                &mut *tx,
                current.id,
                Some(role),
                Some(crate::domain::MemberStatus::Subscribed),
            )
            .await?;
            if role == Role::Owner && wanted.is_empty() && !now.is_empty() {
                return Err(AppError::BadSetting(
                    crate::domain::SettingError::BadValue {
                        key: "owners".into(),
                        problem: "a list needs at least one owner".into(),
                    },
                ));
            }
            let key = |a: &str| EmailAddress::parse(a).map(|a| a.key()).unwrap_or_default();
            for m in &now {
                if !wanted.iter().any(|w| w.key() == key(&m.address)) {
                    store::members::update_member_left(
                        &mut *tx,
                        m.id,
                        crate::domain::MemberStatus::Removed,
                        "admin",
                    )
                    .await?;
                }
            }
            for w in wanted {
                if now.iter().any(|m| key(&m.address) == w.key()) {
                    continue;
                }
                add_by_admin(&mut tx, current.id, w, role).await?;
            }
        }
        tx.commit().await?;
        self.list_info(list).await
    }

    /// The addresses holding a role on a list (subscribed rows).
    pub async fn staff(&self, list: &List, role: Role) -> Result<Vec<String>, AppError> {
        Ok(store::members::list_members(
            &self.db,
            list.id,
            Some(role),
            Some(crate::domain::MemberStatus::Subscribed),
        )
        .await?
        .into_iter()
        .map(|m| m.address)
        .collect())
    }

    /// Deletes a list with its members and pending requests.
    pub async fn delete_list(&self, list: &ListRef) -> Result<(), AppError> {
        let current = self.get_list(list).await?;
        store::lists::delete_list(&self.db, current.id).await?;
        Ok(())
    }

    /// The list a reference names, or `NoSuchList`.
    pub async fn get_list(&self, list: &ListRef) -> Result<List, AppError> {
        store::lists::find_list(&self.db, &list.list_id())
            .await?
            .ok_or_else(|| AppError::NoSuchList(list.to_string()))
    }

    async fn owner_addresses(&self, list: &List) -> Result<Vec<String>, AppError> {
        let owners = store::members::list_members(
            &self.db,
            list.id,
            Some(Role::Owner),
            Some(crate::domain::MemberStatus::Subscribed),
        )
        .await?;
        Ok(owners.into_iter().map(|m| m.address).collect())
    }
}

fn info(list: List, counts: store::lists::Counts, owners: Vec<String>) -> ListInfo {
    ListInfo {
        address: list.address.to_string(),
        list_id: list.address.list_id(),
        warnings: list.settings.warnings(),
        settings: list.settings,
        members: counts.members,
        pending: counts.pending,
        posts: counts.posts,
        held: counts.held,
        owners,
        created_at: list.created_at,
    }
}
