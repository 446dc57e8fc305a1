//! What a delivery failure means for the member: the class of a bounce from its
//! RFC 3463 status code, the DSN action and the words of the receiving system.
//!
//! The reasons are those of the best bounce classifiers (Sisimai's userunknown,
//! hostunknown, suspend, hasmoved, mailboxfull, filtered, rejected, blocked,
//! spamdetected, policyviolation, expired, …), folded into listd's classes: a
//! mailbox that does not exist or is closed is `hard`; a full mailbox, a temporary
//! failure or a refusal of the message's size is `soft`; a receiving system refusing
//! the list's mail (spam, DMARC/SPF/DKIM, blocklists, a sender refused) is `policy`,
//! the list's problem and not the member's.
//!
//! The most specific evidence wins. A 4.x.x status or a `delayed` action is never
//! more than soft. The receiving server's own words come next: servers send generic
//! codes (`5.0.0`, `5.3.0`, `5.5.0`) with "User unknown", and some misuse specific
//! ones ("5.1.1 … has sent to too many recipients"). Then a specific status code,
//! then the rest of the notice's words, then what the code's class says.

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

/// Phrases, lower case, grouped by what they say, each group with its class. The
/// groups are tried in this order, so a closed account is not read as a policy
/// "block" and a full mailbox is not read as an unknown one.
const REASONS: &[(BounceClass, &[&str])] = &[
    // rejected: the list's sender address refused (which may name a domain "not
    // found": the list's, not the member's)
    (
        BounceClass::Policy,
        &[
            "sender address",
            "sender domain",
            "sender rejected",
            "sender verify",
            "sender denied",
            "sender not allowed",
            "unroutable sender",
            "envelope sender",
            "sender's domain",
            "domain of sender",
            "sender was rejected",
            "sender is rejected",
        ],
    ),
    // speeding, toomanyconn: the sending host went too fast, for now
    (
        BounceClass::Soft,
        &[
            "frequency limit",
            "rate limit",
            "ratelimit",
            "too many connections",
            "too many messages",
            "too many recipients",
            "sent to too many",
            "sending rate",
            "too many concurrent",
        ],
    ),
    // suspend: the mailbox exists but is closed, disabled or frozen
    (
        BounceClass::Hard,
        &[
            "disabled or discontinued",
            "account has been disabled",
            "account is disabled",
            "account disabled",
            "account that you tried to reach is disabled",
            "mailbox disabled",
            "mailbox is disabled",
            "disabled recipient",
            "recipient is disabled",
            "user disabled",
            "account has been suspended",
            "account is suspended",
            "account suspended",
            "account has been deactivated",
            "account is inactive",
            "inactive account",
            "inactive email address",
            "inactive user",
            "inactive mailbox",
            "mailbox is inactive",
            "mailbox is frozen",
            "account is frozen",
            "recipient account is blocked",
            "account has expired",
            "account expired",
            "account closed",
            "account has been closed",
            "no longer active",
            "no longer in use",
            "no longer valid",
            "no longer exists",
            "discontinued",
        ],
    ),
    // mailboxfull
    (
        BounceClass::Soft,
        &[
            "mailbox full",
            "mailbox is full",
            "mailbox has exceeded",
            "mailbox exceeded",
            "mailbox size limit",
            "mailbox limit",
            "mailfolder is full",
            "mail box full",
            "inbox is full",
            "account is full",
            "user is over",
            "over quota",
            "overquota",
            "over the quota",
            "quota exceeded",
            "exceeded quota",
            "exceeds quota",
            "exceeded its quota",
            "exceeds allowed size",
            "exceeded storage",
            "insufficient storage",
            "not enough storage",
            "disk quota",
            "storage limit",
            "quota full",
            "exceeded the local limit",
            "exceeds the local limit",
            "full mailbox",
        ],
    ),
    // userunknown and hasmoved: no such mailbox here
    (
        BounceClass::Hard,
        &[
            "user unknown",
            "unknown user",
            "user is unknown",
            "no such user",
            "no such recipient",
            "no such mailbox",
            "no such account",
            "no such address",
            "no such person",
            "no such local user",
            "unknown recipient",
            "recipient unknown",
            "unknown address",
            "address unknown",
            "addressee unknown",
            "unknown mailbox",
            "mailbox unknown",
            "unknown local part",
            "unknown local-part",
            "unknown or illegal alias",
            "unknown e-mail address",
            "unknown email address",
            "user not found",
            "recipient not found",
            "recipnotfound",
            "mailbox not found",
            "address not found",
            "account not found",
            "addressee not found",
            "user not exist",
            "user does not exist",
            "recipient does not exist",
            "mailbox does not exist",
            "address does not exist",
            "account does not exist",
            "does not exist",
            "doesn't exist",
            "not exist",
            "does not have an account",
            "user doesn't have a",
            "user does not have a",
            "doesn't have an account",
            "has no account",
            "not a valid mailbox",
            "not a valid user",
            "not a valid recipient",
            "invalid recipient",
            "invalid mailbox",
            "invalid user",
            "invalid address",
            "invalid final delivery userid",
            "recipient address rejected: access denied",
            "recipient name is not recognized",
            "not listed in",
            "is not a known user",
            "mailbox unavailable",
            "mailbox is unavailable",
            "mailbox not available",
            "no mailbox",
            "no mail box",
            "bad destination mailbox",
            "unrouteable address",
            "no valid recipients",
            "not our customer",
            "user has moved",
            "address has moved",
            "has moved to",
            "no longer at this address",
            "no longer accepts mail",
            "addresses were unknown",
            "address was unknown",
            "recipient was unknown",
            "not a known recipient",
        ],
    ),
    // hostunknown, notaccept: no such domain, or a domain that takes no mail
    (
        BounceClass::Hard,
        &[
            "host unknown",
            "unknown host",
            "host not found",
            "no such domain",
            "domain not found",
            "domain does not exist",
            "unknown domain",
            "domain unknown",
            "invalid domain",
            "name service error",
            "unrouteable mail domain",
            "domain is not reachable",
            "host or domain name not found",
            "name or service not known",
            "bad destination system",
            "nxdomain",
            "does not accept mail",
            "null mx",
            "non-existent host",
            "nonexistent host",
            "unrouteable domain",
            "couldn't find any host",
            "could not find any host",
            "no host named",
        ],
    ),
    // blocked, spamdetected, virusdetected, authfailure, policyviolation, rejected
    // (the list's sender refused), norelaying, securityerror
    (
        BounceClass::Policy,
        &[
            "spam",
            "unsolicited",
            "dmarc",
            " spf",
            "dkim",
            "blocklist",
            "blacklist",
            "block list",
            "black list",
            "blocked",
            "dnsbl",
            "reputation",
            "policy",
            "policies",
            "virus",
            "malware",
            "content rejected",
            "mail rejected",
            "message rejected",
            "email rejected",
            "not allowed",
            "message content",
            "bulk mail",
            "sender rejected",
            "sender address rejected",
            "sender verify failed",
            "sender denied",
            "sender not allowed",
            "not allowed to send",
            "not authorized to send",
            "relay access denied",
            "relaying denied",
            "relay denied",
            "relay not permitted",
            "unable to relay",
            "not permitted to relay",
            "authentication required",
            "access denied",
            "banned",
            "not accepted",
            "reverse dns",
            "ptr record",
            "do not have permission",
            "media error",
            "8-bit data",
            "8bit data",
            "protocol violation",
            "message filtered",
            "filtered",
            "client host",
            "client ip",
            "mismatches client",
            "rdns",
            "forbidden",
            "invalid ip",
            "don't have permission",
            "not authorized",
        ],
    ),
    // expired, networkerror, toomanyconn, speeding, systemerror, mesgtoobig: not the
    // member's doing, and may pass
    (
        BounceClass::Soft,
        &[
            "temporar",
            "warning message only",
            "do not need to resend",
            "will be retried",
            "will keep trying",
            "still trying",
            "will continue trying",
            "not yet been delivered",
            "delivery delayed",
            "delayed mail",
            "has been delayed",
            "is delayed",
            "been postponed",
            "advisory",
            "no action is required",
            "could not be delivered for",
            "has not been delivered for",
            "in the queue too long",
            "queue too long",
            "too long in",
            "time limit",
            "failing for a long time",
            "system error",
            "internal error",
            "limit exceeded",
            "for the last",
            "multiple retries",
            "receiving mail at a rate",
            "socket error",
            "requests to connect",
            "could not connect",
            "unable to connect",
            "connection reset",
            "connection closed",
            "network error",
            "no route to host",
            "host unreachable",
            "not reachable",
            "not accepting connections",
            "support tls",
            "starttls",
            "loops back",
            "try again later",
            "please try again",
            "retry timeout",
            "retry time",
            "delivery time expired",
            "message expired",
            "expired",
            "timed out",
            "timeout",
            "connection refused",
            "too many",
            "rate limit",
            "frequency limit",
            "try later",
            "deferred",
            "greylist",
            "graylist",
            "routing loop",
            "hop count exceeded",
            "message too big",
            "message is too big",
            "message too large",
            "message is too large",
            "size limit",
            "message size",
            "exceeds size",
            "too large",
            "service unavailable",
            "service currently unavailable",
        ],
    ),
];

/// Words that say a delivery failed for good, without saying why (said of a delay,
/// they are caught first by the words of a delay).
const PERMANENT: &[&str] = &[
    "undeliverable",
    "could not be delivered",
    "couldn't be delivered",
    "cannot be delivered",
    "can't be delivered",
    "was not delivered",
    "were not delivered",
    "not be delivered",
    "delivery failed",
    "delivery has failed",
    "delivery failure",
    "unable to deliver",
    "could not deliver",
    "wasn't able to deliver",
    "did not reach",
    "did not receive this message",
    "could not be reached",
    "failure notice",
    "returned mail",
    "permanent error",
    "permanent failure",
    "permanent fatal error",
    "failed permanently",
    "permanently failed",
    "permanently rejected",
    "i've given up",
    "permanent fatal errors",
    "permanent delivery errors",
];

/// The class the words of a text give, if they name a reason.
pub fn class_of_words(text: &str) -> Option<BounceClass> {
    let text = normalize(text);
    REASONS
        .iter()
        .find(|(_, phrases)| phrases.iter().any(|p| text.contains(p)))
        .map(|(class, _)| *class)
}

/// Lower case, one space between words, a space at each end (so a phrase with
/// spaces round it matches a whole word at the start or the end).
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push(' ');
    for word in text.split_whitespace() {
        out.push_str(&word.to_lowercase());
        out.push(' ');
    }
    out
}

/// Whether a status code is generic: its detail is 0 (`5.0.0`, `5.3.0`, `5.5.0`,
/// `4.0.0`, `5.1.0`), so it names no reason of its own.
fn generic(code: &str) -> bool {
    code.ends_with(".0")
}

/// The class a specific 5.x.x status code gives (RFC 3463 and its registry), if any.
fn class_of_code(code: &str) -> Option<BounceClass> {
    if generic(code) && !code.starts_with("5.7.") {
        return None;
    }
    match code {
        // bad mailbox, bad system, bad syntax, moved, mailbox disabled, no such domain
        // (RFC 3463 3.2, 3.3; X.1.10 is RFC 7505's null MX, X.7.13 "user account
        // disabled" of the IANA registry)
        "5.1.1" | "5.1.2" | "5.1.3" | "5.1.6" | "5.1.10" | "5.2.1" | "5.4.4" | "5.7.13" => {
            Some(BounceClass::Hard)
        }
        // full mailbox, message too big for the mailbox or the system, expired
        "5.2.2" | "5.2.3" | "5.3.4" | "5.4.7" => Some(BounceClass::Soft),
        // the list's sender address refused
        "5.1.7" | "5.1.8" => Some(BounceClass::Policy),
        _ if code.starts_with("5.7.") => Some(BounceClass::Policy),
        _ => None,
    }
}

/// Classifies one recipient's failure from its status code, DSN action and the
/// receiving server's diagnostic.
pub fn classify(status: Option<&str>, action: Option<&str>, diagnostic: &str) -> BounceClass {
    classify_notice(status, action, diagnostic, "")
}

/// Classifies a failure from its status code, DSN action, the receiving server's
/// diagnostic and the rest of the notice's own text (not the returned message),
/// which is read only when the diagnostic and the code say nothing specific.
pub fn classify_notice(
    status: Option<&str>,
    action: Option<&str>,
    diagnostic: &str,
    notice: &str,
) -> BounceClass {
    let code = status
        .and_then(find_status_code)
        .or_else(|| find_status_code(diagnostic));
    if action.is_some_and(|a| a.trim().eq_ignore_ascii_case("delayed")) {
        return BounceClass::Soft;
    }
    let reply = find_reply_code(diagnostic);
    let temporary = match code.as_deref() {
        Some(c) => c.starts_with("4."),
        None => reply.is_some_and(|r| r.starts_with('4')),
    };
    if temporary {
        return BounceClass::Soft;
    }
    if let Some(class) = class_of_words(diagnostic) {
        return class;
    }
    if let Some(class) = code.as_deref().and_then(class_of_code) {
        return class;
    }
    if let Some(class) = class_of_words(notice) {
        return class;
    }
    // a final failure that gives no reason counts, like a relay's 5xx
    let text = normalize(&format!("{diagnostic} {notice}"));
    let final_code = match code.as_deref() {
        Some(c) => c.starts_with("5."),
        None => reply.is_some_and(|r| r.starts_with('5')),
    };
    if final_code || PERMANENT.iter().any(|p| text.contains(p)) {
        return BounceClass::Hard;
    }
    BounceClass::Unknown
}

/// The class of a refusal the relay gave for a member's copy (a 5xx, final): like a
/// hard bounce, unless its code or wording says policy or a full mailbox.
pub fn classify_relay_refusal(reply: &str) -> BounceClass {
    match classify(None, None, reply) {
        BounceClass::Unknown => BounceClass::Hard,
        class => class,
    }
}

/// The first RFC 3463 enhanced status code in a text (`5.1.1`, `4.7.0`…), standing
/// alone: class 2, 4 or 5, subject 0 to 7, detail of one to three digits, and not
/// part of a longer dotted number (a version, an IP address).
pub fn find_status_code(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let digits = |from: usize| {
        b.get(from..)
            .unwrap_or_default()
            .iter()
            .take(4)
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    (0..b.len()).find_map(|i| {
        let first = *b.get(i)?;
        if !matches!(first, b'2' | b'4' | b'5')
            || b.get(i + 1) != Some(&b'.')
            || !status_placed(text.get(..i)?)
        {
            return None;
        }
        let second = digits(i + 2);
        if second == 0 || second > 3 || b.get(i + 2 + second) != Some(&b'.') {
            return None;
        }
        let subject: u32 = text.get(i + 2..i + 2 + second)?.parse().ok()?;
        let third_at = i + 3 + second;
        let third = digits(third_at);
        if subject > 7
            || third == 0
            || third > 3
            || b.get(third_at + third)
                .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_'))
        {
            return None;
        }
        text.get(i..third_at + third).map(str::to_string)
    })
}

/// Whether what comes before a status code is where servers put one: nothing, the
/// start of a line, a reply code ("550 5.1.1", "550-5.1.1"), `#`, a bracket, a colon
/// or semicolon ("Status: 5.1.1", "smtp; 5.1.1"), `<<<` or "said".
fn status_placed(before: &str) -> bool {
    let trimmed = before.trim_end_matches([' ', '\t']);
    if trimmed.len() < before.len() {
        let last = trimmed
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or_default();
        let reply = last.len() == 3 && last.bytes().all(|c| c.is_ascii_digit());
        return trimmed.is_empty()
            || reply
            || trimmed.ends_with(['\n', '\r', '#', '(', '[', ':', ';', '<'])
            || trimmed.to_ascii_lowercase().ends_with("said");
    }
    let b = before.as_bytes();
    match b.last() {
        None | Some(b'\n' | b'\r' | b'#' | b'(' | b'[' | b':' | b';') => true,
        // "550-5.7.26": a reply code's continuation
        Some(b'-') => {
            b.len() >= 4
                && b[b.len() - 4..b.len() - 1].iter().all(u8::is_ascii_digit)
                && (b.len() == 4 || !b[b.len() - 5].is_ascii_alphanumeric())
        }
        _ => false,
    }
}

/// The first SMTP reply code of a failure (4xx or 5xx, its second digit 0 to 5 as
/// RFC 5321 4.2 defines them) that stands where a server's reply does: at the start
/// of the text or of a line, or after a colon, a semicolon or `<<<`, and followed by
/// a space, a hyphen or the end. A phone number's "(480) 624-2500" is not one.
pub fn find_reply_code(text: &str) -> Option<&str> {
    let b = text.as_bytes();
    (0..b.len()).find_map(|i| {
        let code = text.get(i..i + 3)?;
        let c = code.as_bytes();
        if !matches!(c[0], b'4' | b'5') || !(b'0'..=b'5').contains(&c[1]) || !c[2].is_ascii_digit()
        {
            return None;
        }
        let before = text[..i].trim_end_matches([' ', '\t']);
        let placed = before.is_empty()
            || before.ends_with(['\n', '\r', ':', ';', '#'])
            || before.ends_with("<<<")
            || before.to_ascii_lowercase().ends_with(" said");
        let after = b.get(i + 3);
        let ends = match after {
            None | Some(b' ' | b'\t' | b'\r' | b'\n') => true,
            // a multi-line reply ("550-5.1.1 …"), not a number ("480-624-2500")
            Some(b'-') => {
                !b.get(i + 4).is_some_and(u8::is_ascii_digit) || {
                    let rest = text.get(i + 4..).unwrap_or_default();
                    find_status_code(rest).is_some_and(|s| rest.starts_with(&s))
                }
            }
            _ => false,
        };
        (placed && ends).then_some(code)
    })
}

/// One bounce of a member, as `members show` lists them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BounceRecord {
    pub class: String,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    pub source: String,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: time::OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hard_codes_are_hard() {
        for code in [
            "5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1", "5.7.13",
        ] {
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
                "550 5.1.1 <x@example.net>: Recipient address rejected: User unknown"
            ),
            BounceClass::Hard
        );
    }

    #[test]
    fn words_decide_when_the_code_is_generic() {
        for (code, words) in [
            ("5.0.0", "550 User unknown"),
            ("5.3.0", "553 5.3.0 <a@b>... No such user here"),
            (
                "5.5.0",
                "550 Requested action not taken: mailbox unavailable",
            ),
            (
                "5.0.0",
                "554 delivery error: dd This user doesn't have a yahoo.com account",
            ),
            (
                "5.0.0",
                "554 delivery error: dd Sorry your message to a@b cannot be delivered. This account has been disabled or discontinued [#102].",
            ),
            ("5.0.0", "MSEXCH:IMS:ORG 0 (000C05A6) Unknown Recipient"),
            ("5.0.0", "Invalid final delivery userid: a@b"),
            ("5.0.0", "unknown; No such domain."),
        ] {
            assert_eq!(
                classify(Some(code), Some("failed"), words),
                BounceClass::Hard,
                "{code} {words}"
            );
        }
        assert_eq!(
            classify(Some("5.0.0"), None, "blocked: listed on a spam blocklist"),
            BounceClass::Policy
        );
        assert_eq!(
            classify(Some("5.0.0"), None, "552 Mailbox is full"),
            BounceClass::Soft
        );
    }

    #[test]
    fn the_servers_words_beat_a_misused_code() {
        assert_eq!(
            classify(
                Some("5.1.1"),
                None,
                "550 5.1.1 <a@b> - 203.0.113.222 has sent to too many recipients this hour"
            ),
            BounceClass::Soft
        );
        assert_eq!(
            classify(Some("5.1.0"), None, "550 5.1.0 <x@y> sender rejected"),
            BounceClass::Policy
        );
    }

    #[test]
    fn transient_and_full_mailboxes_are_soft() {
        assert_eq!(classify(Some("4.2.2"), None, ""), BounceClass::Soft);
        assert_eq!(
            classify(Some("4.1.1"), None, "450 4.1.1 User unknown"),
            BounceClass::Soft,
            "a temporary failure is never hard"
        );
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
            classify(Some("5.0.0"), None, "550 DMARC check failed."),
            BounceClass::Policy
        );
    }

    #[test]
    fn the_notice_speaks_when_the_diagnostic_does_not() {
        assert_eq!(
            classify_notice(
                Some("5.0.0"),
                Some("failed"),
                "",
                "The e-mail account does not exist at the organization"
            ),
            BounceClass::Hard
        );
        assert_eq!(
            classify_notice(
                Some("5.1.1"),
                Some("failed"),
                "",
                "read our anti-spam policy"
            ),
            BounceClass::Hard,
            "a specific code beats boilerplate"
        );
        assert_eq!(
            classify_notice(None, None, "", "This is a permanent error; I've given up."),
            BounceClass::Hard
        );
    }

    #[test]
    fn a_final_failure_without_a_reason_is_hard_and_anything_else_unknown() {
        assert_eq!(
            classify(Some("5.0.0"), Some("failed"), ""),
            BounceClass::Hard
        );
        assert_eq!(
            classify(Some("5.5.2"), None, "syntax error"),
            BounceClass::Hard
        );
        assert_eq!(
            classify_notice(
                None,
                None,
                "",
                "The following recipients did not receive this message: <a@b>"
            ),
            BounceClass::Hard
        );
        assert_eq!(
            classify_notice(
                None,
                None,
                "",
                "Delivery to the following recipient has been delayed: a@b"
            ),
            BounceClass::Soft
        );
        assert_eq!(
            classify_notice(
                None,
                None,
                "",
                "THIS IS A WARNING MESSAGE ONLY. Message could not be delivered for 4 hours"
            ),
            BounceClass::Soft
        );
        assert_eq!(
            classify(None, None, "something went wrong"),
            BounceClass::Unknown
        );
    }

    #[test]
    fn phrasings_of_many_servers_are_read() {
        use BounceClass::*;
        for (text, class) in [
            (
                "The following destination addresses were unknown: <a@b>",
                Hard,
            ),
            ("user@example.com (user not found)", Hard),
            ("User a (a@b) not listed in Domino Directory", Hard),
            (
                "Sorry, I couldn't find any host named example.com. (#5.1.2)",
                Hard,
            ),
            ("all relevant MX records point to non-existent hosts", Hard),
            ("This address no longer accepts mail.", Hard),
            ("User mailbox exceeds allowed size: a@b", Soft),
            ("retry timeout exceeded", Soft),
            (
                "I'm not going to try again; this message has been in the queue too long.",
                Soft,
            ),
            ("Connected to 192.0.2.1 but sender was rejected.", Policy),
            (
                "You do not have permission to send to this recipient.",
                Policy,
            ),
            ("550 5.7.1 Message rejected as spam", Policy),
        ] {
            assert_eq!(classify(None, None, text), class, "{text}");
        }
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
        assert_eq!(find_status_code("Exim 4.94.2"), None);
        assert_eq!(find_status_code("see 4.16.55.1;"), None);
        assert_eq!(find_status_code("version 5.1.2 of our software"), None);
        assert_eq!(
            find_status_code("X-Mailman-Version: 2.0.13"),
            Some("2.0.13".into())
        );
        assert_eq!(find_status_code("Status: 5.0.0").as_deref(), Some("5.0.0"));
        assert_eq!(
            find_status_code("said: 550 5.2.2 full").as_deref(),
            Some("5.2.2")
        );
        assert_eq!(
            find_status_code("#5.1.10 SMTP; 550").as_deref(),
            Some("5.1.10")
        );
    }

    #[test]
    fn reply_codes_are_found_where_a_server_puts_them() {
        assert_eq!(find_reply_code("550 5.1.1 no"), Some("550"));
        assert_eq!(find_reply_code("remote host said: 554 no"), Some("554"));
        assert_eq!(find_reply_code("x\n550-5.1.1 The email"), Some("550"));
        assert_eq!(find_reply_code("call (480) 624-2500 now"), None);
        assert_eq!(find_reply_code("480-624-2500"), None);
        assert_eq!(find_reply_code("id 550 here"), None);
        assert_eq!(find_reply_code("room 451"), None);
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
            let _ = classify_notice(Some(&s), Some(&a), &s, &s);
            let _ = find_status_code(&s);
            let _ = find_reply_code(&s);
        }

        #[test]
        fn a_temporary_status_is_never_hard(detail in 0u8..8, words in ".{0,80}") {
            let code = format!("4.{detail}.1");
            prop_assert_ne!(classify(Some(&code), Some("failed"), &words), BounceClass::Hard);
        }
    }
}
