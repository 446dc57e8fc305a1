//! Members: their roles, the states of a membership, and where a request came from.

use super::{UnknownValue, text_enum};

text_enum! {
    /// What a person is on a list. One address can hold several roles, one row each.
    Role { Member = "member", Owner = "owner", Moderator = "moderator" }
}
text_enum! {
    /// Where a membership stands.
    MemberStatus {
        Pending = "pending",
        Subscribed = "subscribed",
        Unsubscribed = "unsubscribed",
        Removed = "removed",
        Bounced = "bounced",
        Complained = "complained",
    }
}
text_enum! {
    /// Whether posts are sent to the member.
    Delivery { Enabled = "enabled", Disabled = "disabled" }
}
text_enum! {
    /// How posts reach a member: one copy each, or gathered into digests (MIME or
    /// RFC 1153 plain text).
    Mode { Each = "each", Digest = "digest", DigestPlain = "digest-plain" }
}
text_enum! {
    /// What a pending request asks, once confirmed.
    RequestKind { Subscribe = "subscribe", Unsubscribe = "unsubscribe" }
}
text_enum! {
    /// Which front door a request came through (consent evidence, docs/standards.md#29).
    Source { Web = "web", Mail = "mail", Admin = "admin", Import = "import" }
}

impl MemberStatus {
    /// The person left or was taken off by the system: only a fresh double opt-in
    /// brings them back (docs/standards.md#30). An owner's removal is not such a withdrawal.
    pub fn needs_new_consent(self) -> bool {
        matches!(
            self,
            MemberStatus::Unsubscribed | MemberStatus::Bounced | MemberStatus::Complained
        )
    }
}

/// One role of one address on one list, with its consent record. Serialised as
/// owners see it (`members show --json`), without the internal ids.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    #[serde(skip)]
    pub id: uuid::Uuid,
    #[serde(skip)]
    pub list_id: uuid::Uuid,
    pub address: String,
    pub name: Option<String>,
    pub role: Role,
    pub status: MemberStatus,
    pub delivery: Delivery,
    pub mode: Mode,
    pub bounce_score: i32,
    /// Receives copies of their own posts (the default, as in Mailman).
    pub own_posts: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub subscribed_at: Option<time::OffsetDateTime>,
    pub consent: Consent,
}

/// The stable fields of a member in listings (`members ls --json`, docs/contract.md#cli, and the
/// API's member pages).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberSummary<'a> {
    pub address: &'a str,
    pub name: Option<&'a str>,
    pub role: Role,
    pub status: MemberStatus,
    pub delivery: Delivery,
    pub mode: Mode,
    #[serde(with = "time::serde::rfc3339::option")]
    pub subscribed_at: Option<time::OffsetDateTime>,
}

impl Member {
    pub fn summary(&self) -> MemberSummary<'_> {
        MemberSummary {
            address: &self.address,
            name: self.name.as_deref(),
            role: self.role,
            status: self.status,
            delivery: self.delivery,
            mode: self.mode,
            subscribed_at: self.subscribed_at,
        }
    }
}

/// How the membership came about and ended (docs/standards.md#29).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Consent {
    #[serde(with = "time::serde::rfc3339::option")]
    pub requested_at: Option<time::OffsetDateTime>,
    pub request_source: Option<Source>,
    pub request_ip: Option<String>,
    pub request_user_agent: Option<String>,
    pub request_message_id: Option<String>,
    pub request_form_text: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub confirmed_at: Option<time::OffsetDateTime>,
    pub confirm_method: Option<String>,
    pub confirm_ip: Option<String>,
    pub confirm_message_id: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub unsubscribed_at: Option<time::OffsetDateTime>,
    pub unsubscribe_method: Option<String>,
}

/// Where a request came from, as recorded in the consent evidence.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evidence {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub message_id: Option<String>,
    /// The wording of the form the person submitted.
    pub form_text: Option<String>,
}

/// A change to one member's own settings, from any front end: `members set`'s
/// `KEY=VALUE` pairs, the API's `PATCH`, `/me` and the preferences page. `None` leaves
/// a value as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberChange {
    pub delivery: Option<Delivery>,
    pub mode: Option<Mode>,
    pub own_posts: Option<bool>,
    /// `Some(None)` clears the name.
    pub name: Option<Option<String>>,
    pub role: Option<Role>,
}

impl MemberChange {
    /// The keys of `listd members set`.
    pub const KEYS: &'static [&'static str] = &["delivery", "mode", "own-posts", "name", "role"];

    /// Reads `KEY=VALUE` pairs.
    pub fn from_pairs(pairs: &[String]) -> Result<Self, super::SettingError> {
        let mut change = MemberChange::default();
        for pair in pairs {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| super::SettingError::NotKeyValue(pair.clone()))?;
            change.apply(key, value)?;
        }
        Ok(change)
    }

    /// Sets one value, checked.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), super::SettingError> {
        let key = key.trim().to_ascii_lowercase();
        let bad = |problem: String| super::SettingError::BadValue {
            key: key.clone(),
            problem,
        };
        match key.as_str() {
            "delivery" => {
                self.delivery = Some(
                    value
                        .parse()
                        .map_err(|e: UnknownValue| bad(e.to_string()))?,
                )
            }
            "mode" => {
                self.mode = Some(
                    value
                        .parse()
                        .map_err(|e: UnknownValue| bad(e.to_string()))?,
                )
            }
            "own-posts" | "own_posts" => {
                self.own_posts = Some(match value.trim().to_ascii_lowercase().as_str() {
                    "enabled" | "true" | "yes" | "on" => true,
                    "disabled" | "false" | "no" | "off" => false,
                    _ => return Err(bad("must be enabled or disabled".into())),
                })
            }
            "name" => {
                let v = value.trim();
                if v.chars().any(char::is_control) || v.chars().count() > 200 {
                    return Err(bad("must be one line of at most 200 characters".into()));
                }
                self.name = Some((!v.is_empty()).then(|| v.to_string()));
            }
            "role" => {
                self.role = Some(
                    value
                        .parse()
                        .map_err(|e: UnknownValue| bad(e.to_string()))?,
                )
            }
            _ => return Err(super::SettingError::UnknownMemberKey(key)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod change_tests {
    use super::*;

    #[test]
    fn pairs_become_a_typed_change() {
        let c = MemberChange::from_pairs(&[
            "delivery=disabled".into(),
            "mode=digest-plain".into(),
            "own-posts=off".into(),
            "name= Anne ".into(),
        ])
        .unwrap();
        assert_eq!(c.delivery, Some(Delivery::Disabled));
        assert_eq!(c.mode, Some(Mode::DigestPlain));
        assert_eq!(c.own_posts, Some(false));
        assert_eq!(c.name, Some(Some("Anne".into())));
        assert_eq!(c.role, None);
        assert_eq!(
            MemberChange::from_pairs(&["name=".into()]).unwrap().name,
            Some(None)
        );
    }

    #[test]
    fn bad_pairs_say_what_is_wrong() {
        let e = MemberChange::from_pairs(&["mode=weekly".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("mode") && e.contains("digest-plain"), "{e}");
        let e = MemberChange::from_pairs(&["colour=red".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour") && e.contains("own-posts"), "{e}");
        assert!(MemberChange::from_pairs(&["delivery".into()]).is_err());
    }
}
