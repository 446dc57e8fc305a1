//! Reading a recipient address as a list and an action (docs/contract.md#addresses).
//!
//! `dev+subscribe@D` may mean "subscribe to dev", or be the posting address of a list
//! named `dev+subscribe` (impossible: list names have no `+`) — and `dev-join@D` may
//! be a join request for `dev` or a list named `dev-join`. [`readings`] lists every
//! interpretation, the exact list address first; the caller takes the first whose
//! list exists.

use super::{EmailAddress, ListAddress, text_enum};

text_enum! {
    /// Which of the two dialects a listener speaks, and a message came by: SMTP, or
    /// LMTP (RFC 2033; never on port 25).
    Protocol { Smtp = "smtp", Lmtp = "lmtp" }
}

/// What mail to an address of a list asks for.
///
/// Stored with a received message as `{"action": NAME, "token": TOKEN}` (the token
/// only for the actions that carry one): the names are [`Action::name`]'s, and rows
/// written by earlier versions, with `"token": null` for every action, read the same.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", content = "token", rename_all = "kebab-case")]
pub enum Action {
    Post,
    Subscribe,
    Unsubscribe,
    /// `L+unsubscribe+TOKEN@D`, from a List-Unsubscribe mailto: immediate.
    UnsubscribeToken(String),
    /// `L+confirm+TOKEN@D`: a reply to a confirmation request.
    Confirm(String),
    /// `L+moderate+TOKEN@D`: a moderator's reply to a held post's notice.
    Moderate(String),
    /// `L-request@D`: commands in the Subject or body.
    Request,
    Owner,
    /// Delivery status notifications, with the VERP token when there is one.
    Bounces(Option<String>),
    Help,
    /// `postmaster@D` or `abuse@D` (RFC 5321 §4.5.1, RFC 2142): for the site admins.
    Postmaster,
}

impl Action {
    /// A short name for logs and the inbound record.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Post => "post",
            Action::Subscribe => "subscribe",
            Action::Unsubscribe => "unsubscribe",
            Action::UnsubscribeToken(_) => "unsubscribe-token",
            Action::Confirm(_) => "confirm",
            Action::Moderate(_) => "moderate",
            Action::Request => "request",
            Action::Owner => "owner",
            Action::Bounces(_) => "bounces",
            Action::Help => "help",
            Action::Postmaster => "postmaster",
        }
    }
}

/// Suffixes without a token, by separator: `+` forms and `-` forms.
const PLAIN: &[(&str, Action)] = &[
    ("+subscribe", Action::Subscribe),
    ("-subscribe", Action::Subscribe),
    ("-join", Action::Subscribe),
    ("+unsubscribe", Action::Unsubscribe),
    ("-unsubscribe", Action::Unsubscribe),
    ("-leave", Action::Unsubscribe),
    ("+request", Action::Request),
    ("-request", Action::Request),
    ("+owner", Action::Owner),
    ("-owner", Action::Owner),
    ("+bounces", Action::Bounces(None)),
    ("-bounces", Action::Bounces(None)),
    ("+help", Action::Help),
];

/// Every way to read `address` as (list, action), the exact list address first.
pub fn readings(address: &EmailAddress) -> Vec<(ListAddress, Action)> {
    let local = address.local_part();
    let domain = address.domain();
    let lower = local.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut push = |list_local: &str, action: Action| {
        if let Ok(list) = ListAddress::parse(&format!("{list_local}@{domain}")) {
            out.push((list, action));
        }
    };
    push(local, Action::Post);
    for (suffix, action) in PLAIN {
        if let Some(base) = lower.strip_suffix(suffix) {
            push(base, action.clone());
        }
    }
    // tokenized forms: L+unsubscribe+TOKEN, L+confirm+TOKEN, L-confirm+TOKEN,
    // L+moderate+TOKEN, L+bounces+VERP, L-bounces+VERP
    for (marker, make) in [
        (
            "+unsubscribe+",
            Action::UnsubscribeToken as fn(String) -> Action,
        ),
        ("+confirm+", Action::Confirm),
        ("-confirm+", Action::Confirm),
        ("+moderate+", Action::Moderate),
        ("+bounces+", |t| Action::Bounces(Some(t))),
        ("-bounces+", |t| Action::Bounces(Some(t))),
    ] {
        if let Some(at) = lower.find(marker) {
            // tokens are case-sensitive: take them from the address as written
            let token = &local[at + marker.len()..];
            if !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                push(&lower[..at], make(token.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(a: &str) -> Vec<(String, Action)> {
        readings(&EmailAddress::parse(a).unwrap())
            .into_iter()
            .map(|(l, a)| (l.to_string(), a))
            .collect()
    }

    #[test]
    fn every_address_form_of_the_spec_is_read() {
        let d = "lists.example.org";
        let cases = [
            ("dev", Action::Post),
            ("dev+subscribe", Action::Subscribe),
            ("dev-join", Action::Subscribe),
            ("dev-subscribe", Action::Subscribe),
            ("dev+unsubscribe", Action::Unsubscribe),
            ("dev-leave", Action::Unsubscribe),
            ("dev-unsubscribe", Action::Unsubscribe),
            (
                "dev+unsubscribe+AbC_-9",
                Action::UnsubscribeToken("AbC_-9".into()),
            ),
            ("dev+confirm+XyZ", Action::Confirm("XyZ".into())),
            ("dev-confirm+XyZ", Action::Confirm("XyZ".into())),
            ("dev+moderate+abc234", Action::Moderate("abc234".into())),
            ("dev+request", Action::Request),
            ("dev-request", Action::Request),
            ("dev+owner", Action::Owner),
            ("dev-owner", Action::Owner),
            ("dev+bounces", Action::Bounces(None)),
            ("dev+bounces+Tok", Action::Bounces(Some("Tok".into()))),
            ("dev-bounces+Tok", Action::Bounces(Some("Tok".into()))),
            ("dev+help", Action::Help),
        ];
        for (local, action) in cases {
            let r = read(&format!("{local}@{d}"));
            assert!(
                r.contains(&(format!("dev@{d}"), action.clone())),
                "{local}: {r:?}"
            );
        }
    }

    #[test]
    fn the_exact_list_address_comes_first() {
        let r = read("dev-join@lists.example.org");
        assert_eq!(
            r[0],
            ("dev-join@lists.example.org".to_string(), Action::Post)
        );
        assert_eq!(
            r[1],
            ("dev@lists.example.org".to_string(), Action::Subscribe)
        );
    }

    #[test]
    fn case_is_ignored_in_keywords_and_kept_in_tokens() {
        let r = read("Dev+Confirm+AbCd@Lists.Example.org");
        assert!(
            r.contains(&(
                "dev@lists.example.org".to_string(),
                Action::Confirm("AbCd".into())
            )),
            "{r:?}"
        );
    }

    #[test]
    fn actions_survive_being_stored() {
        for a in [
            Action::Post,
            Action::UnsubscribeToken("u".into()),
            Action::Confirm("t".into()),
            Action::Moderate("m".into()),
            Action::Bounces(None),
            Action::Bounces(Some("v".into())),
            Action::Postmaster,
        ] {
            let stored = serde_json::to_value(&a).unwrap();
            assert_eq!(stored["action"], a.name());
            assert_eq!(serde_json::from_value::<Action>(stored).unwrap(), a);
        }
    }

    #[test]
    fn actions_stored_by_earlier_versions_are_read() {
        // every action was written with its name and a token, null when it had none
        for (name, token, action) in [
            ("post", None, Action::Post),
            ("subscribe", None, Action::Subscribe),
            ("unsubscribe", None, Action::Unsubscribe),
            (
                "unsubscribe-token",
                Some("u"),
                Action::UnsubscribeToken("u".into()),
            ),
            ("confirm", Some("c"), Action::Confirm("c".into())),
            ("moderate", Some("m"), Action::Moderate("m".into())),
            ("request", None, Action::Request),
            ("owner", None, Action::Owner),
            ("bounces", None, Action::Bounces(None)),
            ("bounces", Some("v"), Action::Bounces(Some("v".into()))),
            ("help", None, Action::Help),
            ("postmaster", None, Action::Postmaster),
        ] {
            let stored = serde_json::json!({"action": name, "token": token});
            assert_eq!(
                serde_json::from_value::<Action>(stored).unwrap(),
                action,
                "{name}"
            );
        }
    }
}
