//! A list and its settings (docs/contract.md#policies), and the rules for changing them.

use super::digest::Frequency;
use super::footer::Template;
use super::{EmailAddress, ListAddress, UnknownValue, text_enum};
use time::OffsetDateTime;
use uuid::Uuid;

text_enum! {
    /// How a subscription becomes a membership.
    Subscription { Confirm = "confirm", ConfirmThenModerate = "confirm-then-moderate" }
}
text_enum! {
    /// Who may post.
    Posting { Open = "open", Members = "members", Moderated = "moderated", Announce = "announce" }
}
text_enum! {
    /// What happens to a post from a non-member on a `members` list.
    NonmemberAction { Hold = "hold", Reject = "reject", Discard = "discard" }
}
text_enum! {
    /// Where replies go.
    ReplyTo { Poster = "poster", List = "list" }
}
text_enum! {
    /// Who may read the list's archive (docs/contract.md#archive).
    Archive { Public = "public", Members = "members", Off = "off" }
}
text_enum! {
    /// How From is treated for authors whose domain publishes a strict DMARC policy.
    Dmarc { WhenNeeded = "when-needed", Always = "always", Never = "never", Wrap = "wrap" }
}
text_enum! {
    /// Whether each copy of a post ends with the list's footer (docs/standards.md#19).
    Footer { On = "on", Off = "off" }
}

/// Longest subject prefix accepted; it is repeated in every subject line.
const MAX_PREFIX_LEN: usize = 64;
const MAX_NAME_LEN: usize = 200;
const MAX_DESCRIPTION_LEN: usize = 5000;
/// Most addresses in a list's sender allow-list.
const MAX_ACCEPT_SENDERS: usize = 1000;

/// Every setting a list owner can change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListSettings {
    pub name: String,
    pub description: String,
    pub subscription: Subscription,
    pub posting: Posting,
    pub nonmember_action: NonmemberAction,
    pub subject_prefix: String,
    pub reply_to: ReplyTo,
    pub dmarc: Dmarc,
    pub advertised: bool,
    pub bounce_score_threshold: i32,
    pub bounce_stale_days: i32,
    pub bounce_warnings: i32,
    pub bounce_warning_interval_days: i32,
    /// Addresses whose posts are accepted as a member's would be, as written.
    pub accept_senders: Vec<String>,
    pub archive: Archive,
    pub footer: Footer,
    /// The footer's template (`domain::footer`); empty for the built-in one.
    pub footer_text: String,
    /// Members in a digest mode get digests (off: single copies, like everyone).
    pub digest: bool,
    /// A digest goes out as soon as the waiting posts reach this many KiB.
    pub digest_size_kb: i32,
    pub digest_frequency: Frequency,
}

/// A setting that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("unknown setting `{0}`; settings are {keys}", keys = ListSettings::KEYS.join(", "))]
    UnknownKey(String),
    #[error("unknown member setting `{0}`; members have {keys}", keys = super::member::MemberChange::KEYS.join(", "))]
    UnknownMemberKey(String),
    #[error("`{0}` is not of the form KEY=VALUE")]
    NotKeyValue(String),
    #[error("bad value for `{key}`: {problem}")]
    BadValue { key: String, problem: String },
}

impl ListSettings {
    /// The keys of `listd lists set`, as spelled there.
    pub const KEYS: &'static [&'static str] = &[
        "name",
        "description",
        "subscription",
        "posting",
        "nonmember-action",
        "subject-prefix",
        "reply-to",
        "dmarc",
        "advertised",
        "bounce-score-threshold",
        "bounce-stale-days",
        "bounce-warnings",
        "bounce-warning-interval-days",
        "accept-senders",
        "archive",
        "footer",
        "footer-text",
        "digest",
        "digest-size-kb",
        "digest-frequency",
    ];

    /// The defaults for a new list (docs/contract.md#policies).
    pub fn defaults_for(address: &ListAddress) -> Self {
        ListSettings {
            name: address.local_part().to_string(),
            description: String::new(),
            subscription: Subscription::Confirm,
            posting: Posting::Members,
            nonmember_action: NonmemberAction::Hold,
            subject_prefix: format!("[{}]", address.local_part()),
            reply_to: ReplyTo::Poster,
            dmarc: Dmarc::WhenNeeded,
            advertised: true,
            bounce_score_threshold: 5,
            bounce_stale_days: 7,
            bounce_warnings: 3,
            bounce_warning_interval_days: 7,
            accept_senders: Vec::new(),
            archive: Archive::Public,
            footer: Footer::On,
            footer_text: String::new(),
            digest: true,
            digest_size_kb: 30,
            digest_frequency: Frequency::Daily,
        }
    }

    /// Applies one `KEY=VALUE` pair as typed by an owner.
    pub fn apply_pair(&mut self, pair: &str) -> Result<(), SettingError> {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| SettingError::NotKeyValue(pair.to_string()))?;
        self.apply(key, value)
    }

    /// Applies one setting. Keys accept `-` or `_` between words.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let key = key.trim().to_ascii_lowercase().replace('_', "-");
        let bad = |problem: String| SettingError::BadValue {
            key: key.clone(),
            problem,
        };
        let from_enum = |e: UnknownValue| bad(e.to_string());
        match key.as_str() {
            "name" => self.name = single_line(value, MAX_NAME_LEN, false).map_err(bad)?,
            "description" => {
                if value.chars().count() > MAX_DESCRIPTION_LEN {
                    return Err(bad(format!("longer than {MAX_DESCRIPTION_LEN} characters")));
                }
                self.description = value.trim().to_string()
            }
            "subscription" => self.subscription = value.parse().map_err(from_enum)?,
            "posting" => self.posting = value.parse().map_err(from_enum)?,
            "nonmember-action" => self.nonmember_action = value.parse().map_err(from_enum)?,
            "subject-prefix" => {
                self.subject_prefix = single_line(value, MAX_PREFIX_LEN, true).map_err(bad)?
            }
            "reply-to" => self.reply_to = value.parse().map_err(from_enum)?,
            "dmarc" => self.dmarc = value.parse().map_err(from_enum)?,
            "advertised" => self.advertised = on_off(value).map_err(bad)?,
            "digest" => self.digest = on_off(value).map_err(bad)?,
            "digest-size-kb" => self.digest_size_kb = positive(value, 1).map_err(bad)?,
            "digest-frequency" => self.digest_frequency = value.parse().map_err(from_enum)?,
            "bounce-score-threshold" => {
                self.bounce_score_threshold = positive(value, 1).map_err(bad)?
            }
            "bounce-stale-days" => self.bounce_stale_days = positive(value, 1).map_err(bad)?,
            "bounce-warnings" => self.bounce_warnings = positive(value, 0).map_err(bad)?,
            "bounce-warning-interval-days" => {
                self.bounce_warning_interval_days = positive(value, 1).map_err(bad)?
            }
            "accept-senders" => {
                let addresses = parse_addresses(value).map_err(bad)?;
                if addresses.len() > MAX_ACCEPT_SENDERS {
                    return Err(bad(format!("more than {MAX_ACCEPT_SENDERS} addresses")));
                }
                self.accept_senders = addresses.iter().map(ToString::to_string).collect();
            }
            "archive" => self.archive = value.parse().map_err(from_enum)?,
            "footer" => self.footer = value.parse().map_err(from_enum)?,
            "footer-text" => {
                Template::parse(value).map_err(|e| bad(e.to_string()))?;
                // line ends kept as `\n`, one form whatever the owner typed
                self.footer_text = value.trim().replace("\r\n", "\n").replace('\r', "\n")
            }
            _ => return Err(SettingError::UnknownKey(key)),
        }
        Ok(())
    }

    /// Whether posts from `sender` are accepted as a member's would be.
    pub fn accepts_sender(&self, sender: &EmailAddress) -> bool {
        let key = sender.key();
        self.accept_senders
            .iter()
            .filter_map(|a| EmailAddress::parse(a).ok())
            .any(|a| a.key() == key)
    }

    /// Adds `sender` to the allow-list; false when it was there already.
    pub fn add_accept_sender(&mut self, sender: &EmailAddress) -> Result<bool, SettingError> {
        if self.accepts_sender(sender) {
            return Ok(false);
        }
        if self.accept_senders.len() >= MAX_ACCEPT_SENDERS {
            return Err(SettingError::BadValue {
                key: "accept-senders".into(),
                problem: format!("more than {MAX_ACCEPT_SENDERS} addresses"),
            });
        }
        self.accept_senders.push(sender.to_string());
        Ok(true)
    }

    /// Advice for the owner about combinations that work against them.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.subject_prefix.is_empty() && self.dmarc == Dmarc::Never {
            out.push(
                "the subject prefix breaks authors' DKIM signatures, and with dmarc=never mail from \
                 domains with a strict DMARC policy will be rejected or sent to spam; set dmarc=when-needed \
                 or subject-prefix= (empty)"
                    .to_string(),
            );
        }
        out
    }
}

fn on_off(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        other => Err(format!("`{other}` is not on or off (true or false)")),
    }
}

/// Addresses separated by commas, semicolons, spaces or new lines (an empty text is
/// none); each must parse, and repeats (in any case) count once.
pub fn parse_addresses(value: &str) -> Result<Vec<EmailAddress>, String> {
    let mut out: Vec<EmailAddress> = Vec::new();
    for word in value
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        let a = EmailAddress::parse(word).map_err(|e| format!("`{word}`: {e}"))?;
        if !out.iter().any(|o| o.key() == a.key()) {
            out.push(a);
        }
    }
    Ok(out)
}

fn single_line(value: &str, max: usize, allow_empty: bool) -> Result<String, String> {
    let v = value.trim();
    if v.chars().any(char::is_control) {
        return Err("must be a single line of text".into());
    }
    if v.is_empty() && !allow_empty {
        return Err("must not be empty".into());
    }
    if v.chars().count() > max {
        return Err(format!("longer than {max} characters"));
    }
    Ok(v.to_string())
}

fn positive(value: &str, min: i32) -> Result<i32, String> {
    match value.trim().parse::<i32>() {
        Ok(n) if n >= min && n <= 10_000 => Ok(n),
        _ => Err(format!(
            "`{}` is not a whole number from {min} to 10000",
            value.trim()
        )),
    }
}

/// A list as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    pub id: Uuid,
    pub address: ListAddress,
    pub settings: ListSettings,
    pub created_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> ListSettings {
        ListSettings::defaults_for(&ListAddress::parse("dev@lists.example.org").unwrap())
    }

    #[test]
    fn defaults_follow_the_spec() {
        let s = dev();
        assert_eq!(s.subject_prefix, "[dev]");
        assert_eq!(s.posting, Posting::Members);
        assert_eq!(s.dmarc, Dmarc::WhenNeeded);
        assert_eq!(
            (
                s.bounce_score_threshold,
                s.bounce_stale_days,
                s.bounce_warnings
            ),
            (5, 7, 3)
        );
    }

    #[test]
    fn settings_are_changed_by_key_value_pairs() {
        let mut s = dev();
        s.apply_pair("posting=announce").unwrap();
        s.apply_pair("nonmember_action=reject").unwrap();
        s.apply_pair("subject-prefix=").unwrap();
        s.apply_pair("advertised=false").unwrap();
        s.apply_pair("bounce-score-threshold=9").unwrap();
        assert_eq!(s.posting, Posting::Announce);
        assert_eq!(s.nonmember_action, NonmemberAction::Reject);
        assert_eq!(s.subject_prefix, "");
        assert!(!s.advertised);
        assert_eq!(s.bounce_score_threshold, 9);
        s.apply_pair("digest=off").unwrap();
        s.apply_pair("digest-size-kb=100").unwrap();
        s.apply_pair("digest_frequency=weekly").unwrap();
        assert!(!s.digest);
        assert_eq!(s.digest_size_kb, 100);
        assert_eq!(s.digest_frequency, Frequency::Weekly);
        assert!(s.apply_pair("digest-size-kb=0").is_err());
        assert!(s.apply_pair("digest-size-kb=10001").is_err());
        assert!(s.apply_pair("digest-frequency=hourly").is_err());
    }

    #[test]
    fn bad_settings_name_the_problem() {
        let mut s = dev();
        assert!(matches!(
            s.apply_pair("colour=red"),
            Err(SettingError::UnknownKey(_))
        ));
        assert!(matches!(
            s.apply_pair("posting"),
            Err(SettingError::NotKeyValue(_))
        ));
        let e = s.apply_pair("posting=everyone").unwrap_err().to_string();
        assert!(e.contains("posting") && e.contains("announce"), "{e}");
        assert!(s.apply_pair("bounce-stale-days=0").is_err());
        assert!(s.apply_pair("subject-prefix=[a]\r\nBcc: x").is_err());
    }

    #[test]
    fn accept_senders_are_addresses_compared_without_case() {
        let mut s = dev();
        s.apply_pair("accept-senders=Anne@Example.net, bob@example.org\nanne@example.NET")
            .unwrap();
        assert_eq!(s.accept_senders, ["Anne@example.net", "bob@example.org"]);
        let anne = EmailAddress::parse("anne@EXAMPLE.net").unwrap();
        assert!(s.accepts_sender(&anne));
        assert_eq!(s.add_accept_sender(&anne), Ok(false));
        let carol = EmailAddress::parse("carol@example.com").unwrap();
        assert!(!s.accepts_sender(&carol));
        assert_eq!(s.add_accept_sender(&carol), Ok(true));
        assert!(s.accepts_sender(&carol));
        let e = s.apply_pair("accept-senders=not-an-address").unwrap_err();
        assert!(e.to_string().contains("not-an-address"), "{e}");
        assert_eq!(s.accept_senders.len(), 3, "nothing changed by a bad value");
        s.apply_pair("accept-senders=").unwrap();
        assert!(s.accept_senders.is_empty());
    }

    #[test]
    fn the_footer_is_on_by_default_and_its_template_is_checked() {
        let mut s = dev();
        assert_eq!(s.footer, Footer::On);
        s.apply_pair("footer=off").unwrap();
        assert_eq!(s.footer, Footer::Off);
        assert!(s.apply_pair("footer=maybe").is_err());
        s.apply_pair("footer-text=Bye: {unsubscribe_url}\r\nSee {me_url}")
            .unwrap();
        assert_eq!(s.footer_text, "Bye: {unsubscribe_url}\nSee {me_url}");
        let e = s
            .apply_pair("footer-text=no way out")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsubscribe_url"), "{e}");
        assert!(
            s.apply_pair("footer-text={nope} {unsubscribe_url}")
                .is_err()
        );
        s.apply_pair("footer-text=").unwrap();
        assert_eq!(s.footer_text, "");
    }

    #[test]
    fn prefix_with_dmarc_never_warns() {
        let mut s = dev();
        assert!(s.warnings().is_empty());
        s.apply_pair("dmarc=never").unwrap();
        assert_eq!(s.warnings().len(), 1);
        s.apply_pair("subject-prefix=").unwrap();
        assert!(s.warnings().is_empty());
    }
}
