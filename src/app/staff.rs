//! Who runs a list: the one answer to "what may this address do on this list?", for
//! the console, moderation by reply and anything else that asks.
//!
//! Owners and moderators are the subscribed `owner` and `moderator` rows of a list;
//! site admins (`LISTD_ADMINS`) are owners of every list. As in Mailman, moderators
//! decide held posts and waiting subscriptions; owners also change the list's settings
//! and its members (docs/contract.md#console).

use super::{App, AppError};
use crate::domain::{EmailAddress, List, MemberStatus, Role};
use crate::store;

/// What an address may do on a list, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Authority {
    /// Nothing: the list's console pages do not exist for this address.
    None,
    /// Decides held posts and waiting subscriptions.
    Moderator,
    /// Everything a moderator does, and the settings and the members.
    Owner,
}

impl Authority {
    pub fn may_moderate(self) -> bool {
        self >= Authority::Moderator
    }

    pub fn may_administer(self) -> bool {
        self == Authority::Owner
    }

    fn of_role(role: Option<&str>) -> Authority {
        match role {
            Some("owner") => Authority::Owner,
            Some("moderator") => Authority::Moderator,
            _ => Authority::None,
        }
    }
}

/// A list as the console's first page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunList {
    pub address: String,
    pub list_id: String,
    pub name: String,
    pub authority: Authority,
    pub held: i64,
    /// Subscriptions waiting for an owner.
    pub waiting: i64,
}

impl App {
    /// What `address` may do on `list`.
    pub async fn authority(
        &self,
        list: &List,
        address: &EmailAddress,
    ) -> Result<Authority, AppError> {
        if self.is_site_admin(address) {
            return Ok(Authority::Owner);
        }
        let roles = store::members::find_member_roles(&self.db, list.id, address).await?;
        Ok(roles
            .iter()
            .filter(|m| m.status == MemberStatus::Subscribed)
            .map(|m| match m.role {
                Role::Owner => Authority::Owner,
                Role::Moderator => Authority::Moderator,
                Role::Member => Authority::None,
            })
            .max()
            .unwrap_or(Authority::None))
    }

    /// The lists `address` runs (every list for a site admin), with their held posts
    /// and waiting subscriptions.
    pub async fn lists_run_by(&self, address: &EmailAddress) -> Result<Vec<RunList>, AppError> {
        let admin = self.is_site_admin(address);
        let rows = store::lists::list_lists_run_by(&self.db, &address.key(), admin).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let list = crate::domain::ListAddress::from_parts(&r.local_part, &r.domain);
                RunList {
                    address: list.to_string(),
                    list_id: list.list_id(),
                    name: r.name,
                    authority: if admin {
                        Authority::Owner
                    } else {
                        Authority::of_role(r.role.as_deref())
                    },
                    held: r.held,
                    waiting: r.waiting,
                }
            })
            .collect())
    }
}
