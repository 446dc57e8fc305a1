//! Members: their roles, the states of a membership, and where a request came from.

use super::text_enum;

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
