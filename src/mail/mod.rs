//! Building the messages listd writes itself (confirmations, welcomes, notices).
//!
//! Every header value that carries user input goes through mail-builder, which
//! encodes and folds it, so nothing a requester types can add a header line.

use crate::domain::ListAddress;
use crate::domain::headers::list_id_header;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;

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
    /// Domain part of the Message-ID.
    pub hostname: &'a str,
}

/// The envelope sender of mail about a list: its bounce address, never null.
pub fn system_envelope_from(list: &ListAddress) -> String {
    list.with_suffix("bounces")
}

/// Serialises a system mail with CRLF line ends.
pub fn compose_system_mail(m: &SystemMail<'_>) -> Vec<u8> {
    let from = m.list.with_suffix("owner");
    let message_id = format!("{}@{}", uuid::Uuid::new_v4().simple(), m.hostname);
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
        .header("X-Auto-Response-Suppress", Raw::new("All"))
        .text_body(m.body.to_string());
    if let Some(r) = m.reply_to {
        b = b.reply_to(r.to_string());
    }
    if let Some(id) = m.in_reply_to {
        b = b.in_reply_to(id.trim_matches(['<', '>']).to_string());
    }
    b.write_to_vec().expect("writing to a Vec cannot fail")
}
