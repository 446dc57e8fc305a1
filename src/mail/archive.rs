//! Reading a message for the archive (docs/contract.md#archive): what threading and
//! search need from it, and what a page shows of it.
//!
//! HTML is never passed on as it was sent (docs/standards.md#57): a message with a
//! text part is shown as that text; an HTML-only message is cleaned by ammonia, which
//! keeps only harmless tags and attributes (no script, style, event handlers, forms or
//! frames) and here also drops images, so no page loads anything from elsewhere.

use super::storable;
use crate::domain::archive::{ancestors, bare_id};
use crate::domain::{EmailAddress, ListAddress};
use mail_parser::{MessageParser, MimeHeaders, PartType};
use time::OffsetDateTime;

/// Longest text kept for search and display of one message (bytes).
pub const MAX_TEXT: usize = 256 * 1024;

/// What the archive keeps about a message besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The Message-ID without angle brackets, or one derived from the content.
    pub message_id: String,
    /// Whether the message had a Message-ID of its own.
    pub has_message_id: bool,
    /// The Date header, when it reads as a real date.
    pub date: Option<OffsetDateTime>,
    pub subject: String,
    /// The author's display name, or the local part of their address.
    pub from_name: String,
    /// The ancestors it names, nearest first.
    pub refs: Vec<String>,
    /// Its own text (an HTML-only message's converted to text), for search: lines
    /// quoted from other messages (`> …`) are left out, as they are found in those.
    pub text: String,
}

/// The list a message was relayed by: its From may have been rewritten for DMARC
/// (`"Anne via Dev" <dev@…>`), and the archive names the author, not the list.
#[derive(Debug, Clone, Copy)]
pub struct Relayer<'a> {
    pub address: &'a ListAddress,
    pub name: &'a str,
}

/// Reads what the archive keeps about `raw` (CRLF line ends).
pub fn read_facts(raw: &[u8], relayer: Option<Relayer<'_>>) -> Facts {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Facts {
            message_id: derived_id(raw),
            has_message_id: false,
            date: None,
            subject: String::new(),
            from_name: String::new(),
            refs: Vec::new(),
            text: String::new(),
        };
    };
    let own = msg
        .message_id()
        .map(bare_id)
        .filter(|id| !id.is_empty() && id.len() <= 900 && !id.contains(char::is_whitespace))
        .map(storable);
    let has_message_id = own.is_some();
    let message_id = own.unwrap_or_else(|| derived_id(raw));
    let refs = ancestors_named(&msg, &message_id);
    let date = msg
        .date()
        .filter(|d| d.is_valid())
        .and_then(|d| OffsetDateTime::from_unix_timestamp(d.to_timestamp()).ok());
    Facts {
        has_message_id,
        date,
        subject: storable(msg.subject().unwrap_or("").trim()),
        from_name: storable(&cut(&author_name(&msg, relayer), 200)),
        refs,
        text: storable(&cut(&own_text(&text_parts(&msg)), MAX_TEXT)),
        message_id,
    }
}

/// The ancestors `msg` names (In-Reply-To, References), nearest first, as stored.
fn ancestors_named(msg: &mail_parser::Message<'_>, message_id: &str) -> Vec<String> {
    let list = |v: &mail_parser::HeaderValue<'_>| -> Vec<String> {
        match v {
            mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
            mail_parser::HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
            _ => Vec::new(),
        }
    };
    ancestors(
        message_id,
        &list(msg.in_reply_to()),
        &list(msg.references()),
    )
    .into_iter()
    .filter(|r| r.len() <= 900 && !r.contains(char::is_whitespace))
    .map(|r| storable(&r))
    .collect()
}

/// The author's display name, or the local part of their address.
fn author_name(msg: &mail_parser::Message<'_>, relayer: Option<Relayer<'_>>) -> String {
    let from = msg.from().and_then(|f| f.first());
    let address = from
        .and_then(|a| a.address())
        .and_then(|a| EmailAddress::parse(a).ok());
    let mut from_name = from
        .and_then(|a| a.name())
        .map(|n| n.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    // a list that rewrote From for DMARC (this one, Mailman, Google Groups) put its
    // own address there and the author's name before " via": the archive names the author
    let list_post = msg
        .header_raw("List-Post")
        .and_then(|v| v.split("mailto:").nth(1))
        .map(|v| {
            v.split(['>', '?', ','])
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if let Some(address) = &address {
        let key = address.key();
        let by_list = relayer.is_some_and(|r| key == r.address.to_string().to_ascii_lowercase())
            || list_post.as_deref() == Some(key.as_str());
        if by_list && let Some(at) = from_name.rfind(" via ") {
            let author = from_name[..at].trim().trim_matches('\'').trim();
            if !author.is_empty() {
                from_name = author.to_string();
            }
        }
    }
    if from_name.is_empty() {
        from_name = address
            .as_ref()
            .map(|a| a.local_part().to_string())
            .or_else(|| {
                from.and_then(|a| a.address())
                    .map(|a| a.split('@').next().unwrap_or("").to_string())
            })
            .unwrap_or_default();
    }
    from_name
}

/// The message's text parts joined (an HTML-only message's converted to text), up to
/// a part past [`MAX_TEXT`].
fn text_parts(msg: &mail_parser::Message<'_>) -> String {
    let mut text = String::new();
    for i in 0..msg.text_body_count() {
        if let Some(t) = msg.body_text(i) {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&t);
        }
        if text.len() > MAX_TEXT {
            break;
        }
    }
    text
}

/// A stable Message-ID for a message without one: from a hash of its bytes, so that
/// importing it again finds it.
pub fn derived_id(raw: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(raw);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}@archive.invalid")
}

/// The lines of `text` that are not quoted (`>`), with LF line ends.
fn own_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if !line.trim_start().starts_with('>') {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Text with LF line ends, as pages and search show it.
fn lf(text: &str) -> String {
    text.replace("\r\n", "\n")
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// A message as a page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// The text parts, when there are any.
    pub text: Option<String>,
    /// Cleaned HTML, for a message that has only HTML.
    pub html: Option<String>,
    pub attachments: Vec<AttachmentInfo>,
}

/// An attachment as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttachmentInfo {
    /// Its number, from 0, in the message's attachments.
    pub index: usize,
    pub name: String,
    pub content_type: String,
    pub size: usize,
}

/// Renders `raw` for a page.
pub fn render(raw: &[u8]) -> Rendered {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Rendered {
            text: Some(String::from_utf8_lossy(raw).into_owned()),
            ..Rendered::default()
        };
    };
    let mut text = String::new();
    let mut html = String::new();
    for part in msg.text_bodies() {
        match &part.body {
            PartType::Text(t) => {
                if !text.is_empty() {
                    text.push_str("\n\n");
                }
                text.push_str(t);
            }
            PartType::Html(h) => {
                html.push_str(&clean_html(h));
            }
            _ => {}
        }
    }
    let attachments = msg
        .attachments()
        .enumerate()
        .map(|(index, part)| AttachmentInfo {
            index,
            name: attachment_name(part, index),
            content_type: part
                .content_type()
                .map(|c| match c.subtype() {
                    Some(s) => format!("{}/{}", c.ctype(), s),
                    None => c.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into()),
            size: part.contents().len(),
        })
        .collect();
    Rendered {
        text: (!text.is_empty() || html.is_empty()).then(|| cut(&lf(&text), MAX_TEXT)),
        html: (text.is_empty() && !html.is_empty()).then_some(html),
        attachments,
    }
}

fn attachment_name(part: &mail_parser::MessagePart<'_>, index: usize) -> String {
    part.attachment_name()
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control() && !matches!(c, '/' | '\\'))
                .collect::<String>()
        })
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("attachment-{}", index + 1))
}

/// One attachment's name and bytes (decoded).
pub fn attachment(raw: &[u8], index: usize) -> Option<(String, Vec<u8>)> {
    let msg = MessageParser::default().parse(raw)?;
    let part = msg.attachments().nth(index)?;
    Some((attachment_name(part, index), part.contents().to_vec()))
}

/// HTML made harmless: ammonia's allow-list, without images, links opened without
/// passing on where they came from.
pub fn clean_html(html: &str) -> String {
    ammonia::Builder::default()
        .rm_tags(["img"])
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(html)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_name_the_author_and_the_ancestors() {
        let raw = b"From: \"Anne Example\" <anne@example.net>\r\nSubject: Re: plans\r\n\
                    Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\nReferences: <a@x> <b@x>\r\n\
                    Date: Tue, 5 Mar 2024 10:00:00 +0100\r\n\r\nHello\r\n";
        let f = read_facts(raw, None);
        assert_eq!(f.message_id, "c@x");
        assert_eq!(f.from_name, "Anne Example");
        assert_eq!(f.refs, vec!["b@x".to_string(), "a@x".to_string()]);
        assert_eq!(f.date.unwrap().unix_timestamp(), 1709629200);
        assert_eq!(f.text.trim(), "Hello");
    }

    #[test]
    fn a_message_without_an_id_gets_a_stable_one_and_the_local_part_names_its_author() {
        let raw = b"From: bob@example.org\r\nSubject: x\r\n\r\nbody\r\n";
        let f = read_facts(raw, None);
        assert!(!f.has_message_id);
        assert_eq!(f.message_id, read_facts(raw, None).message_id);
        assert_eq!(f.from_name, "bob");
        assert_eq!(f.date, None);
    }

    #[test]
    fn a_from_rewritten_for_dmarc_still_names_the_author() {
        let list = ListAddress::parse("dev@lists.example.org").unwrap();
        let raw =
            b"From: \"Anne via Developers\" <dev@lists.example.org>\r\nSubject: x\r\n\r\nb\r\n";
        let f = read_facts(
            raw,
            Some(Relayer {
                address: &list,
                name: "Developers",
            }),
        );
        assert_eq!(f.from_name, "Anne");
        let takeout = b"From: 'Bob Example' via InnerSource <innersource@googlegroups.com>\r\n\
            List-Post: <https://groups.google.com/group/innersource/post>, <mailto:innersource@googlegroups.com>\r\n\r\nb\r\n";
        assert_eq!(read_facts(takeout, None).from_name, "Bob Example");
        let plain = b"From: \"Ann via phone\" <ann@example.net>\r\n\r\nb\r\n";
        assert_eq!(read_facts(plain, None).from_name, "Ann via phone");
    }

    #[test]
    fn html_is_cleaned_of_scripts_styles_handlers_and_images() {
        let raw = b"From: a@example.net\r\nContent-Type: text/html\r\n\r\n\
            <style>body{display:none}</style><p onclick=\"x()\" style=\"color:red\">Hi\
            <script>alert(1)</script><img src=\"https://tracker.example/p.gif\">\
            <a href=\"https://example.org\">link</a></p>\r\n";
        let r = render(raw);
        assert_eq!(r.text, None);
        let html = r.html.unwrap();
        for bad in ["script", "style", "onclick", "img", "tracker", "alert"] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
        assert!(
            html.contains(
                "<a href=\"https://example.org\" rel=\"noopener noreferrer nofollow\">link</a>"
            ),
            "{html}"
        );
    }

    #[test]
    fn attachments_are_listed_and_read_back() {
        let raw = b"From: a@example.net\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
            see attached\r\n--b\r\nContent-Type: application/pdf\r\n\
            Content-Disposition: attachment; filename=\"../plan.pdf\"\r\n\
            Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n";
        let r = render(raw);
        assert_eq!(r.text.as_deref().map(str::trim), Some("see attached"));
        assert_eq!(r.attachments.len(), 1);
        assert_eq!(r.attachments[0].name, "..plan.pdf");
        assert_eq!(r.attachments[0].content_type, "application/pdf");
        let (name, bytes) = attachment(raw, 0).unwrap();
        assert_eq!(
            (name.as_str(), bytes.as_slice()),
            ("..plan.pdf", &b"%PDF-"[..])
        );
        assert!(attachment(raw, 1).is_none());
    }
}
