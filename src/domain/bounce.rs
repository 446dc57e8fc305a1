//! What a delivery failure means for the member (STANDARDS 36): the class of a
//! bounce from its RFC 3463 status, the DSN action and the diagnostic text.

use super::text_enum;

text_enum! {
    /// How a bounce counts.
    BounceClass {
        Hard = "hard",
        Soft = "soft",
        Policy = "policy",
        Complaint = "complaint",
        Unknown = "unknown",
    }
}

/// Status codes that say the address itself is bad.
const HARD: &[&str] = &["5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.2.1"];

/// Words of receiving systems refusing mail for policy reasons rather than the address.
const POLICY_WORDS: &[&str] = &[
    "dmarc",
    "spf",
    "dkim",
    "spam",
    "blocklist",
    "blacklist",
    "block list",
    "black list",
    "policy reasons",
    "not accepted for policy",
    "reputation",
];

/// Words of reply texts that say the mailbox does not exist.
const NO_SUCH_USER_WORDS: &[&str] = &[
    "user unknown",
    "unknown user",
    "no such user",
    "does not exist",
    "mailbox unavailable",
    "mailbox not found",
    "recipient rejected",
    "address rejected",
    "invalid recipient",
];

/// Classifies a bounce. A status code decides when it is one of the hard codes or a
/// 4.x.x; policy wording (or 5.7.x) beats any other 5.x.x, since a receiving system
/// refusing the list's mail is the list's problem, not the member's.
pub fn classify(status: Option<&str>, action: Option<&str>, diagnostic: &str) -> BounceClass {
    let status = status
        .and_then(find_status_code)
        .or_else(|| find_status_code(diagnostic));
    let text = diagnostic.to_ascii_lowercase();
    let policy = POLICY_WORDS.iter().any(|w| text.contains(w));
    if action.is_some_and(|a| a.trim().eq_ignore_ascii_case("delayed")) {
        return BounceClass::Soft;
    }
    if let Some(code) = status.as_deref() {
        if HARD.contains(&code) {
            return BounceClass::Hard;
        }
        if code.starts_with("4.") || code == "5.2.2" {
            return BounceClass::Soft;
        }
        if code.starts_with("5.7.") || policy {
            return BounceClass::Policy;
        }
        return BounceClass::Unknown;
    }
    if policy {
        return BounceClass::Policy;
    }
    match find_reply_code(diagnostic) {
        Some(code) if code.starts_with('4') => BounceClass::Soft,
        Some("550" | "551" | "553") if NO_SUCH_USER_WORDS.iter().any(|w| text.contains(w)) => {
            BounceClass::Hard
        }
        _ => BounceClass::Unknown,
    }
}

/// The class of a refusal the relay gave for a member's copy (a 5xx, final): like a
/// hard bounce (STANDARDS 49), unless its code or wording says policy or a full
/// mailbox.
pub fn classify_relay_refusal(reply: &str) -> BounceClass {
    match classify(None, None, reply) {
        BounceClass::Unknown => BounceClass::Hard,
        class => class,
    }
}

/// The first RFC 3463 enhanced status code in a text (`5.1.1`, `4.7.0`…).
pub fn find_status_code(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let digits = |from: usize, max: usize| {
        b.get(from..)
            .unwrap_or_default()
            .iter()
            .take(max + 1)
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    (0..b.len()).find_map(|i| {
        let first = *b.get(i)?;
        if !matches!(first, b'2' | b'4' | b'5')
            || i.checked_sub(1)
                .and_then(|p| b.get(p))
                .is_some_and(|p| p.is_ascii_alphanumeric() || *p == b'.')
            || b.get(i + 1) != Some(&b'.')
        {
            return None;
        }
        let second = digits(i + 2, 3);
        if second == 0 || second > 3 || b.get(i + 2 + second) != Some(&b'.') {
            return None;
        }
        let third_at = i + 3 + second;
        let third = digits(third_at, 3);
        if third == 0
            || third > 3
            || b.get(third_at + third)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.')
        {
            return None;
        }
        text.get(i..third_at + third).map(str::to_string)
    })
}

/// The first three-digit SMTP reply code (4xx or 5xx) standing alone in a text.
fn find_reply_code(text: &str) -> Option<&str> {
    text.split(|c: char| !c.is_ascii_alphanumeric()).find(|w| {
        w.len() == 3
            && w.bytes().all(|c| c.is_ascii_digit())
            && matches!(w.as_bytes()[0], b'4' | b'5')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hard_codes_are_hard() {
        for code in ["5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.2.1"] {
            assert_eq!(
                classify(Some(code), Some("failed"), ""),
                BounceClass::Hard,
                "{code}"
            );
        }
        assert_eq!(
            classify(
                None,
                None,
                "550 5.1.1 <x@example.net>: Recipient address rejected"
            ),
            BounceClass::Hard
        );
    }

    #[test]
    fn transient_and_full_mailboxes_are_soft() {
        assert_eq!(classify(Some("4.2.2"), None, ""), BounceClass::Soft);
        assert_eq!(
            classify(Some("5.2.2"), None, "mailbox full"),
            BounceClass::Soft
        );
        assert_eq!(
            classify(Some("5.1.1"), Some("delayed"), ""),
            BounceClass::Soft
        );
        assert_eq!(
            classify(None, None, "451 try again later"),
            BounceClass::Soft
        );
    }

    #[test]
    fn policy_refusals_are_the_lists_problem() {
        assert_eq!(classify(Some("5.7.1"), None, ""), BounceClass::Policy);
        assert_eq!(
            classify(
                Some("5.7.26"),
                None,
                "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy"
            ),
            BounceClass::Policy
        );
        assert_eq!(
            classify(None, None, "554 Message not accepted for policy reasons"),
            BounceClass::Policy
        );
        assert_eq!(
            classify(Some("5.0.0"), None, "blocked: listed on a spam blocklist"),
            BounceClass::Policy
        );
    }

    #[test]
    fn anything_else_is_unknown() {
        assert_eq!(classify(Some("5.0.0"), None, ""), BounceClass::Unknown);
        assert_eq!(
            classify(Some("5.3.4"), None, "message too big"),
            BounceClass::Unknown
        );
        assert_eq!(
            classify(None, None, "something went wrong"),
            BounceClass::Unknown
        );
        assert_eq!(
            classify(None, None, "550 No such user here"),
            BounceClass::Hard,
            "a bare 550 with no-such-user wording"
        );
    }

    #[test]
    fn status_codes_are_found_standing_alone() {
        assert_eq!(
            find_status_code("550 5.1.1 <a@b>: nope").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            find_status_code("550-5.7.26 DMARC").as_deref(),
            Some("5.7.26")
        );
        assert_eq!(find_status_code("version 15.1.12 here"), None);
        assert_eq!(find_status_code("ip 10.5.1.1.2"), None);
        assert_eq!(
            find_status_code("#5.1.10 SMTP; 550").as_deref(),
            Some("5.1.10")
        );
    }

    #[test]
    fn a_final_refusal_from_the_relay_is_hard_unless_it_says_otherwise() {
        assert_eq!(
            classify_relay_refusal("550 unrouteable address"),
            BounceClass::Hard
        );
        assert_eq!(
            classify_relay_refusal("554 5.0.0 rejected"),
            BounceClass::Hard
        );
        assert_eq!(
            classify_relay_refusal("550 5.7.1 relaying denied"),
            BounceClass::Policy
        );
        assert_eq!(
            classify_relay_refusal("552 5.2.2 mailbox full"),
            BounceClass::Soft
        );
    }

    proptest! {
        #[test]
        fn classifying_never_panics(s in ".{0,200}", a in ".{0,20}") {
            let _ = classify(Some(&s), Some(&a), &s);
            let _ = find_status_code(&s);
        }
    }
}
