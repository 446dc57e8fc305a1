//! Building a digest: the bytes every member's copy of one issue shares
//! (docs/contract.md#digests, docs/standards.md#59).
//!
//! Built once per list, issue and format, like a post's shared bytes: the header
//! block (the list's headers, From `L+request@D`, To and Reply-To `L@D`, the issue's
//! Subject) and the body. The delivery workers put each member's own header lines
//! (`List-Unsubscribe`, `List-Unsubscribe-Post`) in front when they send a copy.
//!
//! Two formats: MIME (RFC 2046 §5.1.5: a `multipart/mixed` of the table of contents
//! and a `multipart/digest` of one `message/rfc822` part per post, each post's bytes
//! as relayed) and plain (RFC 1153: the posts' text parts, an HTML-only post turned
//! into text, a line of 70 dashes after the table of contents and lines of 30 dashes
//! between messages).
//!
//! The list's footer (docs/standards.md#19), when it has one, ends every copy with the
//! member's own unsubscribe link: the issue is laid out once ([`CopyLayout`]) and each
//! copy fills in the member's token, as copies of posts do. In a MIME digest it is a
//! last inline `text/plain` part of the outer `multipart/mixed`, after the
//! `multipart/digest`; in a plain one it is a last message, `Subject: Digest Footer`,
//! before the `End of` trailer, which keeps its two lines (RFC 1153 §3, as Mailman
//! does).

use super::footer::{CopyLayout, FooterText, plan, plan_text_at};
use super::text_part;
use crate::domain::digest::IssueNumber;
use crate::domain::headers::ListHeaders;
use mail_builder::headers::Header;
use mail_builder::headers::date::Date;
use mail_builder::headers::text::Text;
use mail_builder::mime::MimePart;
use mail_parser::MessageParser;
use time::OffsetDateTime;

/// One post as a digest carries it.
#[derive(Debug, Clone, Copy)]
pub struct DigestItem<'a> {
    pub subject: &'a str,
    pub author: Option<&'a str>,
    /// The bytes every single copy of the post shared (CRLF line ends).
    pub relayed: &'a [u8],
}

/// One issue of a list's digest, in one format.
pub struct Digest<'a> {
    pub headers: ListHeaders<'a>,
    pub issue: IssueNumber,
    pub date: OffsetDateTime,
    pub items: &'a [DigestItem<'a>],
    /// RFC 1153 text rather than MIME.
    pub plain: bool,
    /// The list's footer, or none (`footer=off`).
    pub footer: Option<FooterText<'a>>,
}

/// An issue as its copies share it.
pub struct BuiltDigest {
    /// The header block and body without a footer, CRLF line ends.
    pub message: Vec<u8>,
    /// The copies with the list's footer, when it has one.
    pub layout: Option<CopyLayout>,
}

/// The Subject of the plain digest's last message, which holds the footer.
const FOOTER_SUBJECT: &str = "Digest Footer";

/// The line after an RFC 1153 digest's table of contents.
const LINE_70: &str = "----------------------------------------------------------------------";
/// The line between two messages of an RFC 1153 digest.
const LINE_30: &str = "------------------------------";

/// The bytes every member's copy of the issue shares, built once.
pub fn build_digest(d: &Digest<'_>) -> BuiltDigest {
    let size: usize = d.items.iter().map(|i| i.relayed.len() + 256).sum();
    let mut out = Vec::with_capacity(size + 4096);
    let list = d.headers.list;
    let title = d.issue.title(d.headers.list_name);
    d.headers.write_common(&mut out);
    out.extend_from_slice(b"Date: ");
    Date::new(d.date.unix_timestamp()).write_header(&mut out, 6);
    out.extend_from_slice(format!("From: {}\r\n", list.with_suffix("request")).as_bytes());
    out.extend_from_slice(format!("To: {list}\r\nReply-To: {list}\r\n").as_bytes());
    out.extend_from_slice(b"Subject: ");
    Text::new(title.as_str()).write_header(&mut out, 9);
    out.extend_from_slice(
        format!(
            "Message-ID: <{}@{}>\r\nMIME-Version: 1.0\r\n",
            uuid::Uuid::new_v4().simple(),
            list.domain()
        )
        .as_bytes(),
    );
    let toc = contents(&title, d.items);
    if !d.plain {
        let posts = d
            .items
            .iter()
            .map(|i| MimePart::new("message/rfc822", i.relayed.to_vec()).transfer_encoding("8bit"))
            .collect::<Vec<_>>();
        MimePart::new(
            "multipart/mixed",
            vec![text_part(&toc), MimePart::new("multipart/digest", posts)],
        )
        .write_part(&mut out);
        // the footer: a last part of the multipart/mixed
        let layout = d.footer.as_ref().map(|footer| {
            let (header, body) = split_message(&out);
            plan(header, body, footer)
        });
        return BuiltDigest {
            message: out,
            layout,
        };
    }
    let (messages, trailer) = plain_body(toc, &title, d.items);
    let mut message = out.clone();
    text_part(&format!("{messages}{trailer}")).write_part(&mut message);
    let Some(footer) = &d.footer else {
        return BuiltDigest {
            message,
            layout: None,
        };
    };
    // the footer as the last message: its lines go between the pseudo-message's
    // header and the separator that ends it
    let before = format!("{messages}Subject: {FOOTER_SUBJECT}\n\n");
    let after = format!("\n{LINE_30}\n\n{trailer}");
    let mut with_footer = out;
    text_part(&format!("{before}{after}")).write_part(&mut with_footer);
    let (header, body) = split_message(&with_footer);
    let at = body.len().saturating_sub(after.replace('\n', "\r\n").len());
    let placed = body[..at].ends_with(format!("Subject: {FOOTER_SUBJECT}\r\n\r\n").as_bytes());
    let layout = match plan_text_at(header, body, at, footer) {
        Some(layout) if placed => layout,
        // a text too wide for 8bit went out encoded: the footer goes at its end
        _ => {
            let (header, body) = split_message(&message);
            plan(header, body, footer)
        }
    };
    BuiltDigest {
        message,
        layout: Some(layout),
    }
}

/// A message's header lines (each ending in CRLF, without the blank line) and body.
fn split_message(message: &[u8]) -> (&[u8], &[u8]) {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |p| p + 2);
    let body = message.get(end + 2..).unwrap_or_default();
    (&message[..end], body)
}

/// The table of contents: the title, then one numbered line per post.
fn contents(title: &str, items: &[DigestItem<'_>]) -> String {
    let mut toc = format!("{title}\n\nToday's Topics:\n\n");
    for (n, item) in items.iter().enumerate() {
        let subject = one_line(item.subject);
        let subject = if subject.is_empty() {
            "(no subject)"
        } else {
            subject.as_str()
        };
        match item.author {
            Some(a) => toc.push_str(&format!("   {:>2}. {subject} ({a})\n", n + 1)),
            None => toc.push_str(&format!("   {:>2}. {subject}\n", n + 1)),
        }
    }
    toc
}

/// An RFC 1153 digest's text: contents, the 70-dash line, then each message (a few
/// of its header fields and its text) followed by a 30-dash line; and the trailer.
fn plain_body(toc: String, title: &str, items: &[DigestItem<'_>]) -> (String, String) {
    let mut text = toc;
    text.push('\n');
    text.push_str(LINE_70);
    text.push_str("\n\n");
    for item in items {
        let (head, body) = readable(item);
        text.push_str(&head);
        text.push('\n');
        for line in body.lines() {
            // a line of the message that would read as a separator is set off by a space
            if line.starts_with(LINE_30) {
                text.push(' ');
            }
            text.push_str(line.trim_end_matches('\r'));
            text.push('\n');
        }
        text.push('\n');
        text.push_str(LINE_30);
        text.push_str("\n\n");
    }
    let mut trailer = format!("End of {title}\n");
    trailer.push_str(&"*".repeat(title.chars().count().clamp(30, 70) + 7));
    trailer.push('\n');
    (text, trailer)
}

/// A message's Date, From, Subject and Message-ID lines, and its text: every text
/// part, an HTML part turned into text when it has no text of its own.
fn readable(item: &DigestItem<'_>) -> (String, String) {
    let Some(msg) = MessageParser::default().parse(item.relayed) else {
        return (
            format!("Subject: {}\n", one_line(item.subject)),
            String::from_utf8_lossy(item.relayed).into_owned(),
        );
    };
    let mut head = String::new();
    if let Some(date) = msg.header_raw("Date") {
        head.push_str(&format!("Date: {}\n", one_line(date)));
    }
    if let Some(from) = msg.from().and_then(|f| f.first()) {
        let address = from.address().unwrap_or_default();
        match from.name() {
            Some(name) if !name.is_empty() => {
                head.push_str(&format!("From: {} <{address}>\n", one_line(name)))
            }
            _ => head.push_str(&format!("From: {address}\n")),
        }
    }
    head.push_str(&format!(
        "Subject: {}\n",
        one_line(msg.subject().unwrap_or(item.subject))
    ));
    if let Some(id) = msg.message_id() {
        head.push_str(&format!("Message-ID: <{}>\n", one_line(id)));
    }
    let mut body = String::new();
    for n in 0..msg.text_body_count() {
        if let Some(text) = msg.body_text(n) {
            if !body.is_empty() && !body.ends_with('\n') {
                body.push('\n');
            }
            body.push_str(&text.replace("\r\n", "\n"));
        }
    }
    (head, body.trim_end_matches('\n').to_string())
}

/// Text on one line: runs of whitespace and control characters become one space.
fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ListAddress;
    use crate::domain::footer::{FooterValues, Rendered, Template};
    use mail_parser::{MimeHeaders, PartType};
    use time::macros::datetime;

    const POST_A: &[u8] = b"From: Anne <anne@example.net>\r\nTo: dev@lists.example.org\r\n\
Subject: [dev] First\r\nDate: Tue, 17 Mar 2026 10:00:00 +0000\r\nMessage-ID: <a@example.net>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello from Anne.\r\n\
------------------------------\r\nStill Anne.\r\n";
    const POST_B: &[u8] = b"From: bob@example.net\r\nTo: dev@lists.example.org\r\n\
Subject: [dev] HTML only\r\nDate: Tue, 17 Mar 2026 11:00:00 +0000\r\nMessage-ID: <b@example.net>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Bold <b>words</b> here</p>\r\n";

    fn build(plain: bool) -> Vec<u8> {
        build_with(plain, None).message
    }

    fn footer() -> Rendered {
        Template::parse("")
            .unwrap()
            .render(&FooterValues::example("Dev", ""))
    }

    /// A member's copy of an issue with the footer (without their header lines).
    fn with_footer(plain: bool) -> Vec<u8> {
        let rendered = footer();
        let built = build_with(
            plain,
            Some(FooterText {
                rendered: &rendered,
                link_base: "https://lists.example.org/unsubscribe/",
            }),
        );
        let layout = built.layout.expect("a layout");
        assert_eq!(
            CopyLayout::from_bytes(&layout.to_bytes()).as_ref(),
            Some(&layout)
        );
        let mut copy = Vec::new();
        layout.write(&mut copy, "TOKEN");
        copy
    }

    fn build_with(plain: bool, footer: Option<FooterText<'_>>) -> BuiltDigest {
        let list = ListAddress::parse("dev@lists.example.org").unwrap();
        let items = [
            DigestItem {
                subject: "First",
                author: Some("anne@example.net"),
                relayed: POST_A,
            },
            DigestItem {
                subject: "HTML only",
                author: Some("bob@example.net"),
                relayed: POST_B,
            },
        ];
        build_digest(&Digest {
            headers: ListHeaders {
                list: &list,
                list_name: "Dev",
                list_url: "https://lists.example.org/lists/dev.lists.example.org",
                announce_only: false,
                archive_url: None,
            },
            issue: IssueNumber {
                volume: 2026,
                number: 4,
            },
            date: datetime!(2026-03-18 0:00 UTC),
            items: &items,
            plain,
            footer,
        })
    }

    #[test]
    fn mime_digest_holds_contents_and_each_post_as_relayed() {
        let raw = build(false);
        let msg = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(msg.subject(), Some("Dev Digest, Vol 2026, Issue 4"));
        assert_eq!(
            msg.from().unwrap().first().unwrap().address(),
            Some("dev+request@lists.example.org")
        );
        assert_eq!(
            msg.reply_to().unwrap().first().unwrap().address(),
            Some("dev@lists.example.org")
        );
        assert_eq!(msg.content_type().unwrap().subtype(), Some("mixed"));
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("Auto-Submitted"));
        assert!(text.contains("List-Id: \"Dev\" <dev.lists.example.org>\r\n"));
        let toc = msg.body_text(0).unwrap();
        assert!(toc.contains(" 1. First (anne@example.net)"), "{toc}");
        assert!(toc.contains(" 2. HTML only (bob@example.net)"), "{toc}");
        let digest = msg
            .parts
            .iter()
            .find(|p| p.content_type().and_then(|c| c.subtype()) == Some("digest"))
            .expect("a multipart/digest part");
        let PartType::Multipart(children) = &digest.body else {
            panic!("multipart");
        };
        assert_eq!(children.len(), 2);
        for (child, original) in children.iter().zip([POST_A, POST_B]) {
            let part = &msg.parts[*child as usize];
            assert_eq!(part.content_type().unwrap().ctype(), "message");
            let PartType::Message(inner) = &part.body else {
                panic!("message/rfc822")
            };
            assert_eq!(inner.raw_message(), original);
        }
        assert!(!text.replace("\r\n", "").contains('\n'), "CRLF only");
    }

    #[test]
    fn plain_digest_follows_rfc_1153() {
        let raw = build(true);
        let msg = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(msg.content_type().unwrap().ctype(), "text");
        let body = msg.body_text(0).unwrap().replace("\r\n", "\n");
        let (toc, rest) = body.split_once(&format!("\n{LINE_70}\n")).unwrap();
        assert!(toc.starts_with("Dev Digest, Vol 2026, Issue 4\n"), "{toc}");
        assert!(toc.contains(" 1. First"), "{toc}");
        let messages: Vec<&str> = rest.split(&format!("\n{LINE_30}\n")).collect();
        assert_eq!(messages.len(), 3, "{rest}");
        assert!(messages[0].contains("From: Anne <anne@example.net>"));
        assert!(messages[0].contains("Subject: [dev] First"));
        assert!(messages[0].contains("Hello from Anne."));
        // the post's own separator-like line is set off
        assert!(messages[0].contains(&format!(" {LINE_30}\nStill Anne.")));
        assert!(messages[1].contains("Bold words here"), "{}", messages[1]);
        assert!(!messages[1].contains("<p>"));
        assert!(messages[2].contains("End of Dev Digest, Vol 2026, Issue 4"));
    }

    #[test]
    fn the_mime_footer_is_the_last_part_after_the_digest() {
        let raw = with_footer(false);
        let msg = MessageParser::default().parse(&raw).unwrap();
        let PartType::Multipart(top) = &msg.parts[0].body else {
            panic!("multipart/mixed");
        };
        assert_eq!(top.len(), 3, "contents, digest, footer");
        let kinds: Vec<_> = top
            .iter()
            .map(|i| {
                let ct = msg.parts[*i as usize].content_type().unwrap();
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default())
            })
            .collect();
        assert_eq!(kinds, ["text/plain", "multipart/digest", "text/plain"]);
        let footer = msg.parts[top[2] as usize].text_contents().unwrap();
        assert!(
            footer.contains("Leave the list: https://lists.example.org/unsubscribe/TOKEN"),
            "{footer}"
        );
        // the posts inside are as relayed, without it
        let text = String::from_utf8_lossy(&raw);
        assert_eq!(text.matches("/unsubscribe/").count(), 1);
        assert!(!text.replace("\r\n", "").contains('\n'), "CRLF only");
    }

    #[test]
    fn the_plain_footer_is_a_last_message_before_the_trailer() {
        let raw = with_footer(true);
        let msg = MessageParser::default().parse(&raw).unwrap();
        let body = msg.body_text(0).unwrap().replace("\r\n", "\n");
        let (_, rest) = body.split_once(&format!("\n{LINE_70}\n")).unwrap();
        let messages: Vec<&str> = rest.split(&format!("\n{LINE_30}\n")).collect();
        assert_eq!(messages.len(), 4, "{rest}");
        assert!(messages[1].contains("Bold words here"));
        let footer = messages[2].trim();
        assert!(footer.starts_with("Subject: Digest Footer\n\n"), "{footer}");
        assert!(
            footer.ends_with("Your subscriptions: https://lists.example.org/me"),
            "{footer}"
        );
        assert!(footer.contains("Leave the list: https://lists.example.org/unsubscribe/TOKEN"));
        // the trailer keeps its two lines
        let trailer: Vec<&str> = messages[3].trim().lines().collect();
        assert_eq!(trailer.len(), 2, "{trailer:?}");
        assert_eq!(trailer[0], "End of Dev Digest, Vol 2026, Issue 4");
        assert!(trailer[1].chars().all(|c| c == '*'));
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.replace("\r\n", "").contains('\n'), "CRLF only");
    }
}
