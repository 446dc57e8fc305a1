//! Feeds arbitrary bytes to an SMTP or LMTP session over an in-memory pipe, in pieces,
//! and checks what comes out: no panic, the session ends at EOF, every reply is
//! well-formed, and no message the backend gets breaks the DATA rules.

#![no_main]

use libfuzzer_sys::fuzz_target;
use listd::smtp::{Backend, Inbound, Protocol, Session, SmtpConfig, Temporary};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX_MESSAGE: usize = 2048;

/// Lists are the addresses ending in `@l`; `busy@…` fails temporarily; a message
/// starting with `!` cannot be stored.
#[derive(Clone)]
struct Sink;

impl Backend for Sink {
    type Route = ();

    async fn resolve_recipient(&self, address: &str) -> Result<Option<()>, Temporary> {
        if address.starts_with("busy@") {
            return Err(Temporary("busy".into()));
        }
        Ok(address.ends_with("@l").then_some(()))
    }

    async fn accept_message(&self, message: Inbound<()>) -> Result<(), Temporary> {
        let data = &message.data;
        assert!(
            data.len() <= MAX_MESSAGE,
            "an oversized message was accepted"
        );
        assert!(
            !message.recipients.is_empty(),
            "a message without recipients"
        );
        for (i, &b) in data.iter().enumerate() {
            let bare_cr = b == b'\r' && data.get(i + 1) != Some(&b'\n');
            let bare_lf = b == b'\n' && (i == 0 || data[i - 1] != b'\r');
            assert!(!bare_cr && !bare_lf, "a bare CR or LF reached the backend");
        }
        assert!(
            data.is_empty() || data.ends_with(b"\r\n"),
            "data does not end in CRLF"
        );
        if data.first() == Some(&b'!') {
            return Err(Temporary("full".into()));
        }
        Ok(())
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, input)) = input.split_first() else {
        return;
    };
    let protocol = if control & 1 == 0 {
        Protocol::Smtp
    } else {
        Protocol::Lmtp
    };
    // 0 sends the input in one piece; otherwise in pieces of this size, each its own read
    let piece = usize::from(control >> 1);
    let config = SmtpConfig {
        max_message_bytes: MAX_MESSAGE,
        max_recipients: 4,
        ..SmtpConfig::new("fuzz.test", protocol)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = runtime.block_on(async move {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let session = tokio::spawn(Session::new(server, Arc::new(config), Sink, None).run());
        let (mut reader, mut writer) = tokio::io::split(client);
        let write = async move {
            let pieces: Vec<&[u8]> = if piece == 0 {
                vec![input]
            } else {
                input.chunks(piece).collect()
            };
            for piece in pieces {
                if writer.write_all(piece).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            let _ = writer.shutdown().await;
        };
        let read = async move {
            let mut out = Vec::new();
            reader.read_to_end(&mut out).await.unwrap();
            out
        };
        let ((), out) = tokio::join!(write, read);
        session.await.expect("the session panicked");
        out
    });
    check_replies(&out);
});

fn check_replies(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("replies are not UTF-8");
    assert!(text.ends_with("\r\n"), "unterminated reply");
    for line in text.split_terminator("\r\n") {
        let b = line.as_bytes();
        assert!(
            b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && (b[3] == b' ' || b[3] == b'-'),
            "malformed reply line {line:?}"
        );
        assert!(!line.contains('\r') && !line.contains('\n'));
    }
}
