//! Reading received mail: who sent it, what it says, and whether a machine sent it.

use super::storable;
use crate::domain::EmailAddress;
use mail_parser::MessageParser;

/// What listd needs from a received message.
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    /// The From: address, when it parses.
    pub from: Option<EmailAddress>,
    pub subject: String,
    pub message_id: Option<String>,
    /// Sent by a program (docs/standards.md#24, #26, #32): never answered, never acted on.
    pub automatic: bool,
    /// Sent by a program for its own reasons (null sender, `Auto-Submitted`,
    /// `Precedence: bulk|junk`, a robot's address), as opposed to relayed by another
    /// list: such a post is never relayed unseen.
    pub robot: bool,
    /// The list-ids of the `List-Id` fields it carries, lower-case, without brackets.
    pub list_ids: Vec<String>,
    /// How many `Received` fields it carries (hops taken).
    pub received: usize,
    /// The first text part, decoded.
    pub text: String,
}

/// Parses a raw message; `mail_from` is the envelope sender (`None` for `<>`).
pub fn read_incoming(raw: &[u8], mail_from: Option<&str>) -> Incoming {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Incoming {
            automatic: mail_from.is_none(),
            ..Incoming::default()
        };
    };
    let from = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .and_then(|a| EmailAddress::parse(a).ok())
        .or_else(|| from_line(raw));
    let header = |name: &str| msg.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
    let auto_submitted = header("Auto-Submitted").is_some_and(|v| !v.starts_with("no"));
    let precedence = header("Precedence");
    let bulk = precedence
        .as_deref()
        .is_some_and(|v| matches!(v, "bulk" | "junk"));
    let list_precedence = precedence.as_deref() == Some("list");
    // read from the raw value: mail-parser takes List-Id for an address list
    let list_ids: Vec<String> = msg
        .headers()
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case("List-Id"))
        .filter_map(|h| raw.get(h.offset_start as usize..h.offset_end as usize))
        .filter_map(|v| {
            let v = String::from_utf8_lossy(v);
            let inner = v.rsplit_once('<')?.1;
            let id = inner.split('>').next().unwrap_or_default().trim();
            (!id.is_empty()).then(|| storable(&id.to_ascii_lowercase()))
        })
        .collect();
    let list_mail = msg.header_raw("List-Id").is_some();
    let received = msg.header_values("Received").count();
    let robot_sender = from.as_ref().is_some_and(|f| {
        let local = f.local_part().to_ascii_lowercase();
        local == "mailer-daemon"
            || local.ends_with("-request")
            || local.starts_with("owner-")
            || local == "postmaster"
    });
    let robot = mail_from.is_none() || auto_submitted || bulk || robot_sender;
    Incoming {
        automatic: robot || list_precedence || list_mail,
        robot,
        list_ids,
        received,
        from,
        subject: storable(msg.subject().unwrap_or("")),
        // no real Message-ID is longer than a line may be; a longer one would not fit
        // the index that finds repeats, so it counts as none
        message_id: msg
            .message_id()
            .filter(|id| id.len() <= super::rewrite::MAX_LINE)
            .map(|id| format!("<{}>", storable(id))),
        text: storable(&msg.body_text(0).unwrap_or_default()),
    }
}

/// Reads the From field on its own. mail-parser 0.11.9 can swallow the line after a
/// Date that ends in an obsolete zone letter (`Z`, `UT`), hiding a From that follows it.
fn from_line(raw: &[u8]) -> Option<EmailAddress> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        if line.len() >= 5 && line.is_char_boundary(5) && line[..5].eq_ignore_ascii_case("from:") {
            let mut field = line.to_string();
            while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                field.push_str(next);
                lines.next();
            }
            let alone = format!("{field}\r\n\r\n");
            let msg = MessageParser::default().parse(alone.as_bytes())?;
            let address = msg.from()?.first()?.address()?.to_string();
            return EmailAddress::parse(&address).ok();
        }
    }
    None
}

/// A command found in a mail to `-request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Subscribe,
    Unsubscribe,
    Confirm(String),
    Help,
}

/// Finds the first command in the Subject, then in the first lines of the body
/// (quoted lines and signatures ignored), as Mailman does.
pub fn find_command(incoming: &Incoming) -> Option<Command> {
    let lines = std::iter::once(incoming.subject.as_str()).chain(
        incoming
            .text
            .lines()
            .take_while(|l| l.trim_end() != "--")
            .filter(|l| !l.trim_start().starts_with('>'))
            .take(20),
    );
    lines.filter_map(parse_command).next()
}

fn parse_command(line: &str) -> Option<Command> {
    let mut words = line.split_whitespace();
    let mut first = words.next()?.to_ascii_lowercase();
    // replies: "Re: confirm TOKEN", "AW: …", "Fwd: …"
    while first.ends_with(':') && first.len() <= 4 {
        first = words.next()?.to_ascii_lowercase();
    }
    match first.as_str() {
        "subscribe" | "join" => Some(Command::Subscribe),
        "unsubscribe" | "leave" => Some(Command::Unsubscribe),
        "help" => Some(Command::Help),
        "confirm" => words.next().map(|t| {
            Command::Confirm(
                t.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_')
                    .to_string(),
            )
        }),
        _ => None,
    }
}

/// What a moderator's reply to a held post's notice asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModerationReply {
    Approve,
    Discard,
    /// With the rest of the line as the reason, when there is one.
    Reject(Option<String>),
}

/// Reads the first line of the reply's text that is neither blank nor quoted: it must
/// start with `approve`, `discard` or `reject` (any case; after `reject`, the rest of
/// the line is the reason). Anything else is no decision.
pub fn find_moderation_reply(incoming: &Incoming) -> Option<ModerationReply> {
    let line = incoming
        .text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('>'))?;
    let (word, rest) = line
        .split_once(|c: char| c.is_whitespace())
        .unwrap_or((line, ""));
    let word = word
        .trim_end_matches(|c: char| c.is_ascii_punctuation())
        .to_ascii_lowercase();
    match word.as_str() {
        "approve" => Some(ModerationReply::Approve),
        "discard" => Some(ModerationReply::Discard),
        "reject" => {
            let reason = rest.trim().trim_start_matches([':', '-']).trim();
            Some(ModerationReply::Reject(
                (!reason.is_empty()).then(|| reason.to_string()),
            ))
        }
        _ => None,
    }
}

/// Every word of the Subject and then the body that could be a confirmation token
/// (either form), in order: replies quote the request, whose subject and link carry it,
/// and a 20-letter word of the text may look like one too, so the caller tries each.
pub fn find_tokens(incoming: &Incoming) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for text in [incoming.subject.as_str(), incoming.text.as_str()] {
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
            if let Some(token) = crate::domain::ConfirmToken::parse(word)
                && !out.iter().any(|t| t == token.as_str())
            {
                out.push(token.as_str().to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(headers: &str, body: &str) -> Incoming {
        read_incoming(
            format!("{headers}\r\n\r\n{body}").as_bytes(),
            Some("anne@example.net"),
        )
    }

    #[test]
    fn a_person_is_not_automatic() {
        let i = incoming(
            "From: Anne <anne@example.net>\r\nSubject: hi\r\nMessage-ID: <a@b>",
            "hello",
        );
        assert!(!i.automatic);
        assert_eq!(i.from.unwrap().to_string(), "anne@example.net");
        assert_eq!(i.message_id.as_deref(), Some("<a@b>"));
    }

    #[test]
    fn a_from_after_an_obsolete_date_zone_is_still_read() {
        let i = incoming(
            "Date: Mon, 6 Jan 2025 10:00:00 Z\r\nFrom: Anne <anne@example.net>\r\nSubject: join",
            "",
        );
        assert_eq!(
            i.from.map(|f| f.to_string()).as_deref(),
            Some("anne@example.net")
        );
    }

    #[test]
    fn machines_are_recognised() {
        for h in [
            "From: a@example.net\r\nAuto-Submitted: auto-replied",
            "From: a@example.net\r\nPrecedence: bulk",
            "From: a@example.net\r\nPrecedence: list",
            "From: a@example.net\r\nList-Id: <x.example.net>",
            "From: MAILER-DAEMON@example.net",
            "From: dev-request@example.net",
            "From: owner-dev@example.net",
        ] {
            assert!(incoming(h, "x").automatic, "{h}");
        }
        assert!(!incoming("From: a@example.net\r\nAuto-Submitted: no", "x").automatic);
        assert!(
            read_incoming(b"From: a@example.net\r\n\r\nx", None).automatic,
            "MAIL FROM:<>"
        );
    }

    #[test]
    fn commands_come_from_the_subject_or_the_body() {
        assert_eq!(
            find_command(&incoming("From: a@example.net\r\nSubject: subscribe", "")),
            Some(Command::Subscribe)
        );
        assert_eq!(
            find_command(&incoming(
                "From: a@example.net\r\nSubject: Re: confirm abc_DEF",
                ""
            )),
            Some(Command::Confirm("abc_DEF".into()))
        );
        assert_eq!(
            find_command(&incoming(
                "From: a@example.net\r\nSubject: question",
                "\r\n> subscribe\r\nunsubscribe\r\n"
            )),
            Some(Command::Unsubscribe)
        );
        assert_eq!(
            find_command(&incoming(
                "From: a@example.net\r\nSubject: hello",
                "how are you"
            )),
            None
        );
    }

    #[test]
    fn a_moderators_reply_is_read_from_its_first_unquoted_line() {
        let reply = |body: &str| {
            find_moderation_reply(&incoming(
                "From: mod@example.net\r\nSubject: Re: dev: a post awaits moderation",
                body,
            ))
        };
        assert_eq!(
            reply("approve\r\n\r\n> A message"),
            Some(ModerationReply::Approve)
        );
        assert_eq!(reply("\r\n  Approve.\r\n"), Some(ModerationReply::Approve));
        assert_eq!(reply("DISCARD"), Some(ModerationReply::Discard));
        assert_eq!(
            reply("> approve\r\nreject: off topic here\r\nthanks"),
            Some(ModerationReply::Reject(Some("off topic here".into())))
        );
        assert_eq!(reply("reject"), Some(ModerationReply::Reject(None)));
        assert_eq!(reply("I think we should approve"), None);
        assert_eq!(reply("approved it already\r\napprove"), None);
        assert_eq!(reply("> approve"), None);
        assert_eq!(reply(""), None);
    }

    #[test]
    fn tokens_are_found_in_quoted_and_encoded_replies() {
        let token = "vx5NlcHNmADXxOrM9Pm94FFKj0i1I9LcCe4GSdI6Hok";
        let qp = "From: a@example.net\r\nSubject: =?us-ascii?Q?Re:_Confirm_(vx5NlcHNmADXxOrM9P?=\r\n =?us-ascii?Q?m94FFKj0i1I9LcCe4GSdI6Hok)?=\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable";
        assert_eq!(
            find_tokens(&incoming(qp, "yes"))
                .first()
                .map(String::as_str),
            Some(token)
        );
        let b64 = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("> http://x/confirm/{token}\r\n"),
        );
        let i = incoming(
            "From: a@example.net\r\nSubject: ok\r\nContent-Transfer-Encoding: base64",
            &b64,
        );
        assert_eq!(find_tokens(&i).first().map(String::as_str), Some(token));
    }

    /// A message's header section built from pieces that include NUL and bytes that
    /// are not UTF-8, in every field that ends up in a `text` column.
    fn hostile_message() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let junk = proptest::collection::vec(
            prop_oneof![Just(0u8), Just(0xffu8), Just(0xc3u8), 0x20u8..0x7f],
            0..40,
        );
        (junk.clone(), junk.clone(), junk.clone(), junk).prop_map(|(subject, id, list, body)| {
            let mut m = b"From: a@example.net\r\nSubject: ".to_vec();
            m.extend(subject);
            m.extend(b"\r\nMessage-ID: <");
            m.extend(id);
            m.extend(b"@x>\r\nList-Id: <");
            m.extend(list);
            m.extend(b">\r\n\r\n");
            m.extend(body);
            m.extend(b"\r\n");
            m
        })
    }

    proptest::proptest! {
        #[test]
        fn what_is_read_can_always_be_stored(raw in hostile_message()) {
            let i = read_incoming(&raw, Some("a@example.net"));
            let texts = [Some(&i.subject), i.message_id.as_ref(), Some(&i.text)];
            for text in texts.into_iter().flatten().chain(&i.list_ids) {
                proptest::prop_assert!(!text.contains('\0'), "{text:?}");
            }
        }

        #[test]
        fn any_bytes_are_read_without_panicking(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let i = read_incoming(&raw, None);
            proptest::prop_assert!(!i.subject.contains('\0'));
        }
    }

    #[test]
    fn every_word_that_may_be_a_token_is_a_candidate_in_order() {
        let link = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
        let i = incoming(
            "From: a@example.net\r\nSubject: Re: internationalization (abcdefghijklmnopqrst)",
            &format!("> https://x.example/confirm/{link}"),
        );
        assert_eq!(
            find_tokens(&i),
            vec![
                "internationalization".to_string(),
                "abcdefghijklmnopqrst".to_string(),
                link.to_string()
            ]
        );
    }
}
