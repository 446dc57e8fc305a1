//! Feeds arbitrary bytes, as a received message, through everything listd does with
//! one before it reaches the database: reading it (sender, subject, Message-ID,
//! List-Id, commands, tokens), reading it as a bounce, and rewriting it for the list in
//! each From mode. Checks that nothing panics, that every text bound for a `text`
//! column can be stored (no NUL), and that a post that can be relayed gets copies
//! with CRLF line ends only and no line over 998 octets.

#![no_main]

use libfuzzer_sys::fuzz_target;
use listd::domain::ListAddress;
use listd::domain::headers::ListHeaders;
use listd::mail::bounce::read_bounce;
use listd::mail::inbound::{find_command, find_token, read_incoming};
use listd::mail::rewrite::{FromMode, MAX_LINE, Rewrite, prepare};

fn storable(text: &str) {
    assert!(!text.contains('\0'), "a NUL would reach PostgreSQL: {text:?}");
}

fuzz_target!(|raw: &[u8]| {
    let incoming = read_incoming(raw, Some("sender@example.net"));
    storable(&incoming.subject);
    storable(&incoming.text);
    incoming.message_id.as_deref().map(storable);
    incoming.list_ids.iter().for_each(|id| storable(id));
    let _ = find_command(&incoming);
    let _ = find_token(&incoming);

    for report in read_bounce(raw) {
        for text in [&report.recipient, &report.action, &report.status, &report.diagnostic] {
            text.as_deref().map(storable);
        }
    }

    let list = ListAddress::parse("dev@lists.example.org").unwrap();
    for from_mode in [FromMode::Keep, FromMode::Munge, FromMode::Wrap] {
        let rw = Rewrite {
            headers: ListHeaders {
                list: &list,
                list_name: "Dev",
                list_url: "https://lists.example.org/lists/dev.lists.example.org",
                announce_only: false,
                archive_url: None,
            },
            subject_prefix: "[dev]",
            reply_to_list: false,
            from_mode,
            hostname: "listd.test",
        };
        let Ok(prepared) = prepare(raw, &rw) else {
            continue;
        };
        let copy = prepared.for_member("https://lists.example.org", "TOKEN");
        for (i, line) in copy.split(|&b| b == b'\n').enumerate() {
            let last = i == copy.split(|&b| b == b'\n').count() - 1;
            if !last {
                assert!(line.ends_with(b"\r"), "{from_mode:?}: a bare LF in the copy");
            }
            let len = line.strip_suffix(b"\r").unwrap_or(line).len();
            assert!(len <= MAX_LINE, "{from_mode:?}: a line of {len} octets");
        }
    }
});
