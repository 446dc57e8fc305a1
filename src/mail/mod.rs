//! Building the messages listd writes itself (confirmations, welcomes, notices).
//!
//! Every header value that carries user input goes through mail-builder, which
//! encodes and folds it, so nothing a requester types can add a header line.

pub mod archive;
pub mod bounce;
pub mod digest;
pub mod dkim;
pub mod dmarc;
pub mod footer;
pub mod forward;
pub mod inbound;
pub mod mbox;
pub mod rewrite;

use crate::domain::ListAddress;
use crate::domain::headers::list_id_header;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

/// Whether the message starts a conversation or answers a mail (RFC 3834).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auto {
    Generated,
    Replied,
}

/// A message from the list to one person.
pub struct SystemMail<'a> {
    pub list: &'a ListAddress,
    pub list_name: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub auto: Auto,
    pub reply_to: Option<&'a str>,
    pub in_reply_to: Option<&'a str>,
    /// A received message sent along with the text (to the people who must act on it).
    pub attachment: Option<&'a [u8]>,
}

/// Text read from a received message, fit to be stored: PostgreSQL's `text` refuses
/// the NUL character, which anyone can put into a header, so it becomes U+FFFD.
pub fn storable(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text.to_string()
    }
}

/// A received message as an attachment: `message/rfc822` when it can travel as 8bit
/// text (RFC 2046 §5.2.1 allows no other encoding), else the bytes in base64 as a
/// `.eml` file, so that a NUL or an endless line cannot break the notice itself.
fn attached_message(raw: &[u8]) -> MimePart<'static> {
    // received over SMTP, the bytes hold no bare CR or LF: lines end in CRLF
    let clean = !raw.contains(&0) && raw.split(|&b| b == b'\n').all(|l| l.len() <= 999);
    if clean {
        MimePart::new("message/rfc822", raw.to_vec()).transfer_encoding("8bit")
    } else {
        MimePart::new("application/octet-stream", raw.to_vec())
            .attachment("message.eml")
            .transfer_encoding("base64")
    }
}

/// The envelope sender of mail about a list: its bounce address, never null.
pub fn system_envelope_from(list: &ListAddress) -> String {
    list.with_suffix("bounces")
}

/// A text/plain part. Bodies whose lines fit SMTP's limit travel unencoded (7bit or
/// 8bit), so links stay whole for people and tools reading the raw message; others
/// get mail-builder's own choice of encoding.
fn text_part(body: &str) -> MimePart<'static> {
    let crlf = body
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\n', "\r\n");
    let ctype = ContentType::new("text/plain").attribute("charset", "utf-8");
    if crlf.split("\r\n").all(|l| l.len() <= 998) {
        let cte = if crlf.is_ascii() { "7bit" } else { "8bit" };
        MimePart::new(ctype, crlf).transfer_encoding(cte)
    } else {
        MimePart::new(ctype, crlf)
    }
}

/// Serialises a system mail with CRLF line ends.
pub fn compose_system_mail(m: &SystemMail<'_>) -> Vec<u8> {
    let from = m.list.with_suffix("owner");
    // the list's domain: a real domain the list's mail comes from
    let message_id = format!("{}@{}", uuid::Uuid::new_v4().simple(), m.list.domain());
    let mut b = MessageBuilder::new()
        .from(Address::new_address(Some(m.list_name.to_string()), from))
        .to(m.to.to_string())
        .subject(m.subject.to_string())
        .message_id(message_id)
        .header("List-Id", Raw::new(list_id_header(m.list_name, m.list)))
        .header(
            "Auto-Submitted",
            Raw::new(match m.auto {
                Auto::Generated => "auto-generated",
                Auto::Replied => "auto-replied",
            }),
        )
        .header("X-Auto-Response-Suppress", Raw::new("All"));
    b = match m.attachment {
        None => b.body(text_part(m.body)),
        Some(raw) => b.body(MimePart::new(
            "multipart/mixed",
            vec![text_part(m.body), attached_message(raw)],
        )),
    };
    if let Some(r) = m.reply_to {
        b = b.reply_to(r.to_string());
    }
    if let Some(id) = m.in_reply_to {
        b = b.in_reply_to(id.trim_matches(['<', '>']).to_string());
    }
    b.write_to_vec().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(body: &str) -> String {
        let list = ListAddress::parse("dev@lists.example.org").unwrap();
        let m = SystemMail {
            list: &list,
            list_name: "Dev",
            to: "anne@example.net",
            subject: "Hello",
            body,
            auto: Auto::Generated,
            reply_to: None,
            in_reply_to: None,
            attachment: None,
        };
        String::from_utf8(compose_system_mail(&m)).unwrap()
    }

    #[test]
    fn short_lines_travel_unencoded_so_links_stay_whole() {
        let link = format!("https://lists.example.org/unsubscribe/{}", "x".repeat(60));
        let text = mail(&format!("Leave here:\n\n  {link}\n"));
        assert!(text.contains(&link), "{text}");
        assert!(text.contains("Content-Transfer-Encoding: 7bit"), "{text}");
        assert!(
            text.contains("\r\n\r\nLeave here:\r\n\r\n"),
            "CRLF line ends: {text:?}"
        );
        assert!(!text.replace("\r\n", "").contains('\n'), "no bare LF");
        let utf8 = mail("Grüße\n");
        assert!(
            utf8.contains("Content-Transfer-Encoding: 8bit") && utf8.contains("Grüße"),
            "{utf8}"
        );
    }

    #[test]
    fn system_mail_carries_the_list_headers() {
        let text = mail("body\n");
        assert!(text.contains("List-Id: \"Dev\" <dev.lists.example.org>\r\n"));
        assert!(text.contains("Auto-Submitted: auto-generated\r\n"));
        assert!(text.contains("From: \"Dev\" <dev+owner@lists.example.org>\r\n"));
        assert!(!text.contains("List-Unsubscribe-Post"));
    }
}
