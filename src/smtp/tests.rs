//! Protocol tests for the SMTP/LMTP front end: sessions driven over in-memory pipes with
//! a small in-memory backend, a few over real TCP through `serve`, and property tests
//! that throw random and randomly split input at a session.

use super::*;
use proptest::prelude::*;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

const HOST: &str = "mx.test";
const PIPE: usize = 1 << 20;

// ---------------------------------------------------------------------------------------
// The test backend: addresses at lists.example are lists, busy@… fails temporarily.

#[derive(Clone, Default)]
struct TestBackend {
    recorded: Arc<Mutex<Recorded>>,
}

#[derive(Default)]
struct Recorded {
    messages: Vec<Inbound<String>>,
    resolved: Vec<String>,
    fail_accept: bool,
}

impl TestBackend {
    fn messages(&self) -> Vec<Inbound<String>> {
        self.recorded.lock().unwrap().messages.clone()
    }

    fn fail_accept(&self) {
        self.recorded.lock().unwrap().fail_accept = true;
    }
}

impl Backend for TestBackend {
    type Route = String;

    async fn resolve_recipient(&self, address: &str) -> Result<Option<String>, Temporary> {
        self.recorded
            .lock()
            .unwrap()
            .resolved
            .push(address.to_owned());
        if address.starts_with("busy@") {
            return Err(Temporary("the database is away".into()));
        }
        Ok(address
            .to_ascii_lowercase()
            .strip_suffix("@lists.example")
            .map(|list| format!("list:{list}")))
    }

    async fn accept_message(&self, message: Inbound<String>) -> Result<(), Temporary> {
        let mut recorded = self.recorded.lock().unwrap();
        if recorded.fail_accept {
            return Err(Temporary("the disk is full".into()));
        }
        recorded.messages.push(message);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The test client: sends text, reads whole replies.

struct Client<T> {
    io: T,
    buf: Vec<u8>,
    patience: Duration,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Client<T> {
    fn new(io: T) -> Self {
        Client {
            io,
            buf: Vec::new(),
            patience: Duration::from_secs(10),
        }
    }

    async fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes()).await;
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
        self.io.flush().await.unwrap();
    }

    /// Sends, or says why not (the server may have closed the connection).
    async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// One reply line without its CRLF; `None` at EOF.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Some(String::from_utf8(line[..pos].to_vec()).unwrap());
            }
            let mut chunk = [0; 4096];
            let n = tokio::time::timeout(self.patience, self.io.read(&mut chunk))
                .await
                .expect("no reply in time")
                .unwrap_or(0);
            if n == 0 {
                assert!(self.buf.is_empty(), "unterminated reply {:?}", self.buf);
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One reply, its lines joined with `\n`.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let line = self
                .line()
                .await
                .expect("connection closed instead of a reply");
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    async fn expect(&mut self, prefix: &str) -> String {
        let reply = self.reply().await;
        assert!(
            reply.starts_with(prefix),
            "expected `{prefix}…`, got `{reply}`"
        );
        reply
    }

    async fn command(&mut self, command: &str, prefix: &str) -> String {
        self.send(&format!("{command}\r\n")).await;
        self.expect(prefix).await
    }

    async fn expect_eof(&mut self) {
        assert_eq!(self.line().await, None, "expected the connection to close");
    }
}

fn config(protocol: Protocol) -> SmtpConfig {
    SmtpConfig {
        max_message_bytes: 1000,
        ..SmtpConfig::new(HOST, protocol)
    }
}

fn peer() -> Option<SocketAddr> {
    Some("192.0.2.7:40000".parse().unwrap())
}

/// A session over a duplex pipe, greeting already read.
async fn start(config: SmtpConfig) -> (Client<DuplexStream>, TestBackend, JoinHandle<()>) {
    let backend = TestBackend::default();
    let (client, server) = tokio::io::duplex(PIPE);
    let session = Session::new(server, Arc::new(config), backend.clone(), peer());
    let task = tokio::spawn(session.run());
    let mut client = Client::new(client);
    client.expect("220 ").await;
    (client, backend, task)
}

async fn smtp() -> (Client<DuplexStream>, TestBackend, JoinHandle<()>) {
    let (mut client, backend, task) = start(config(Protocol::Smtp)).await;
    client.command("EHLO client.example", "250").await;
    (client, backend, task)
}

async fn lmtp() -> (Client<DuplexStream>, TestBackend, JoinHandle<()>) {
    let (mut client, backend, task) = start(config(Protocol::Lmtp)).await;
    client.command("LHLO mta.local", "250").await;
    (client, backend, task)
}

// ---------------------------------------------------------------------------------------
// Greeting, EHLO, HELO, LHLO

#[tokio::test]
async fn greets_as_esmtp_or_lmtp() {
    for (protocol, greeting) in [
        (Protocol::Smtp, "220 mx.test ESMTP listd"),
        (Protocol::Lmtp, "220 mx.test LMTP listd"),
    ] {
        let (client, server) = tokio::io::duplex(PIPE);
        let session = Session::new(
            server,
            Arc::new(config(protocol)),
            TestBackend::default(),
            None,
        );
        tokio::spawn(session.run());
        let mut client = Client::new(client);
        assert_eq!(client.reply().await, greeting);
    }
}

fn keywords(ehlo_reply: &str) -> Vec<String> {
    let mut lines = ehlo_reply.lines();
    let first = lines.next().unwrap();
    assert!(first.starts_with("250-mx.test"), "{first}");
    let mut keywords: Vec<String> = lines.map(|l| l[4..].to_owned()).collect();
    keywords.sort();
    keywords
}

#[tokio::test]
async fn ehlo_advertises_exactly_the_implemented_extensions() {
    let (mut client, _, _) = start(config(Protocol::Smtp)).await;
    let reply = client.command("EHLO client.example", "250-").await;
    assert_eq!(
        keywords(&reply),
        [
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "PIPELINING",
            "SIZE 1000",
            "SMTPUTF8"
        ]
    );
}

#[tokio::test]
async fn ehlo_offers_starttls_when_configured() {
    let (mut client, _, _) = start(tls_config(Protocol::Smtp)).await;
    let reply = client.command("EHLO client.example", "250-").await;
    assert_eq!(
        keywords(&reply),
        [
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "PIPELINING",
            "SIZE 1000",
            "SMTPUTF8",
            "STARTTLS"
        ]
    );
}

#[tokio::test]
async fn helo_works_without_extensions() {
    let (mut client, backend, _) = start(config(Protocol::Smtp)).await;
    assert_eq!(
        client.command("HELO old.example", "250").await,
        "250 mx.test"
    );
    deliver_one(&mut client).await;
    assert_eq!(backend.messages()[0].helo, "old.example");
}

#[tokio::test]
async fn lmtp_requires_lhlo() {
    let (mut client, _, _) = start(config(Protocol::Lmtp)).await;
    client.command("EHLO mta.local", "500 5.5.1").await;
    client.command("HELO mta.local", "500 5.5.1").await;
    client
        .command("MAIL FROM:<a@example.org>", "503 5.5.1")
        .await;
    let reply = client.command("LHLO mta.local", "250-").await;
    assert!(reply.contains("PIPELINING"), "{reply}");
    client
        .command("MAIL FROM:<a@example.org>", "250 2.1.0")
        .await;
}

#[tokio::test]
async fn smtp_refuses_lhlo() {
    let (mut client, _, _) = start(config(Protocol::Smtp)).await;
    client.command("LHLO mta.local", "500 5.5.1").await;
    client
        .command("MAIL FROM:<a@example.org>", "503 5.5.1")
        .await;
}

// ---------------------------------------------------------------------------------------
// MAIL, RCPT

#[tokio::test]
async fn mail_needs_a_greeting_first() {
    let (mut client, _, _) = start(config(Protocol::Smtp)).await;
    assert_eq!(
        client.command("MAIL FROM:<a@example.org>", "503").await,
        "503 5.5.1 Bad sequence of commands"
    );
}

#[tokio::test]
async fn nested_mail_is_a_bad_sequence() {
    let (mut client, _, _) = smtp().await;
    client
        .command("MAIL FROM:<a@example.org>", "250 2.1.0 OK")
        .await;
    client
        .command("MAIL FROM:<b@example.org>", "503 5.5.1")
        .await;
}

#[tokio::test]
async fn mail_parameters_of_advertised_extensions_only() {
    let (mut client, _, _) = smtp().await;
    client
        .command(
            "MAIL FROM:<a@example.org> SIZE=500 BODY=8BITMIME SMTPUTF8",
            "250 2.1.0",
        )
        .await;
    client.command("RSET", "250 2.0.0 OK").await;
    client
        .command("MAIL FROM:<a@example.org> RET=FULL", "555 5.5.4")
        .await;
    client
        .command("MAIL FROM:<a@example.org> BODY=BINARYMIME", "555 5.5.4")
        .await;
    client
        .command("MAIL FROM:<a@example.org> FOO=BAR", "555 5.5.4")
        .await;
    client
        .command("MAIL FROM:<a@example.org> SIZE=abc", "501 5.5.4")
        .await;
    client
        .command("MAIL FROM:<a@example.org>", "250 2.1.0")
        .await;
    assert_eq!(
        client
            .command("RCPT TO:<l@lists.example> NOTIFY=NEVER", "555")
            .await,
        "555 5.5.4 Unsupported parameter: NOTIFY"
    );
    client
        .command("RCPT TO:<l@lists.example> ORCPT=rfc822;x@y", "555 5.5.4")
        .await;
}

#[tokio::test]
async fn postmaster_reaches_the_backend_by_name() {
    let (mut client, backend, _) = smtp().await;
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client
        .command("RCPT TO:<Postmaster>", "550 5.1.1 <postmaster>")
        .await;
    assert_eq!(backend.recorded.lock().unwrap().resolved, ["postmaster"]);
}

#[tokio::test]
async fn declared_size_over_the_limit_is_refused_at_mail() {
    let (mut client, _, _) = smtp().await;
    client
        .command("MAIL FROM:<a@example.org> SIZE=1001", "552 5.3.4")
        .await;
    client
        .command("MAIL FROM:<a@example.org> SIZE=1000", "250 2.1.0")
        .await;
}

#[tokio::test]
async fn null_sender_is_none() {
    let (mut client, backend, _) = smtp().await;
    client.command("MAIL FROM:<>", "250 2.1.0").await;
    client
        .command("RCPT TO:<news@lists.example>", "250 2.1.5")
        .await;
    client.command("DATA", "354 ").await;
    client.command("bounce\r\n.", "250 2.0.0").await;
    assert_eq!(backend.messages()[0].mail_from, None);
}

#[tokio::test]
async fn rcpt_needs_mail_first() {
    let (mut client, _, _) = smtp().await;
    client
        .command("RCPT TO:<news@lists.example>", "503 5.5.1")
        .await;
}

#[tokio::test]
async fn unknown_recipients_are_refused_and_failures_are_temporary() {
    let (mut client, backend, _) = smtp().await;
    client
        .command("MAIL FROM:<a@example.org>", "250 2.1.0")
        .await;
    assert_eq!(
        client
            .command("RCPT TO:<someone@elsewhere.example>", "550")
            .await,
        "550 5.1.1 <someone@elsewhere.example>: Recipient address rejected: no such list here"
    );
    client
        .command("RCPT TO:<busy@lists.example>", "451 4.3.0")
        .await;
    assert_eq!(
        client.command("RCPT TO:<News@Lists.Example>", "250").await,
        "250 2.1.5 OK"
    );
    client.command("DATA", "354").await;
    client.command("hi\r\n.", "250 2.0.0").await;
    let messages = backend.messages();
    assert_eq!(
        messages[0].recipients,
        [("News@Lists.Example".to_owned(), "list:news".to_owned())]
    );
}

#[tokio::test]
async fn too_many_recipients_keeps_the_earlier_ones() {
    let (mut client, backend, _) = start(SmtpConfig {
        max_recipients: 2,
        ..config(Protocol::Smtp)
    })
    .await;
    client.command("EHLO c", "250").await;
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client
        .command("RCPT TO:<one@lists.example>", "250 2.1.5")
        .await;
    client
        .command("RCPT TO:<two@lists.example>", "250 2.1.5")
        .await;
    assert_eq!(
        client.command("RCPT TO:<three@lists.example>", "452").await,
        "452 4.5.3 Too many recipients"
    );
    client.command("DATA", "354").await;
    client.command("x\r\n.", "250 2.0.0").await;
    let recipients: Vec<_> = backend.messages()[0]
        .recipients
        .iter()
        .map(|(a, _)| a.clone())
        .collect();
    assert_eq!(recipients, ["one@lists.example", "two@lists.example"]);
}

#[tokio::test]
async fn overlong_addresses_are_refused_cleanly() {
    let (mut client, backend, _) = smtp().await;
    client.command("MAIL FROM:<a@example.org>", "250").await;
    for local_len in [255 - "@lists.example".len(), 300] {
        let address = format!("{}@lists.example", "a".repeat(local_len));
        assert!(address.len() > 254);
        client
            .command(&format!("RCPT TO:<{address}>"), "501 5.1.3")
            .await;
    }
    let fits = format!("{}@lists.example", "b".repeat(254 - "@lists.example".len()));
    client
        .command(&format!("RCPT TO:<{fits}>"), "250 2.1.5")
        .await;
    client.command("NOOP", "250 2.0.0").await;
    assert_eq!(backend.recorded.lock().unwrap().resolved, [fits]);
    client.command("RSET", "250").await;
    let long_sender = format!("{}@example.org", "s".repeat(250));
    client
        .command(&format!("MAIL FROM:<{long_sender}>"), "501 5.1.7")
        .await;
}

#[tokio::test]
async fn overlong_lines_are_refused_and_skipped() {
    let (mut client, _, _) = smtp().await;
    // 512 octets with the CRLF: the limit, allowed.
    let at_limit = format!("NOOP {}", "x".repeat(512 - 7));
    assert_eq!(at_limit.len() + 2, 512);
    client.command(&at_limit, "250 2.0.0").await;
    let over = format!("NOOP {}", "x".repeat(512 - 6));
    assert_eq!(
        client.command(&over, "500").await,
        "500 5.5.2 Line too long"
    );
    // Over the limit in pieces, and with a command hidden past the limit: one reply.
    client.send(&format!("RCPT TO:<{}", "y".repeat(400))).await;
    tokio::task::yield_now().await;
    client.send(&"z".repeat(400)).await;
    client.send("QUIT\r\nNOOP\r\n").await;
    client.expect("500 5.5.2 Line too long").await;
    client.expect("250 2.0.0").await;
    // A long line of junk without any LF at all, then a good line.
    client.send_bytes(&[b'q'; 100_000]).await;
    client.send("\r\nNOOP\r\n").await;
    client.expect("500 5.5.2 Line too long").await;
    client.expect("250 2.0.0").await;
}

// ---------------------------------------------------------------------------------------
// DATA

/// A whole transaction to news@lists.example.
async fn deliver_one<T: AsyncRead + AsyncWrite + Unpin>(client: &mut Client<T>) {
    client
        .command("MAIL FROM:<a@example.org>", "250 2.1.0")
        .await;
    client
        .command("RCPT TO:<news@lists.example>", "250 2.1.5")
        .await;
    client.command("DATA", "354").await;
    assert_eq!(
        client.command("Subject: hi\r\n\r\nhello\r\n.", "250").await,
        "250 2.0.0 Message accepted"
    );
}

#[tokio::test]
async fn a_message_reaches_the_backend_unstuffed_and_the_envelope_resets() {
    let (mut client, backend, _) = smtp().await;
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client.command("RCPT TO:<news@lists.example>", "250").await;
    assert_eq!(
        client.command("DATA", "354").await,
        "354 Start mail input; end with <CRLF>.<CRLF>"
    );
    client
        .command(
            "..first line\r\nSubject: x\r\n\r\n..\r\n...two\r\nend.\r\n.",
            "250",
        )
        .await;
    // the envelope is gone: a new transaction needs MAIL again
    client
        .command("RCPT TO:<news@lists.example>", "503 5.5.1")
        .await;
    client.command("DATA", "503 5.5.1").await;
    deliver_one(&mut client).await;
    let messages = backend.messages();
    assert_eq!(messages.len(), 2);
    let first = &messages[0];
    assert_eq!(
        first.data,
        b".first line\r\nSubject: x\r\n\r\n.\r\n..two\r\nend.\r\n"
    );
    assert_eq!(first.mail_from.as_deref(), Some("a@example.org"));
    assert_eq!(first.helo, "client.example");
    assert_eq!(first.peer, peer());
    assert!(!first.tls);
    assert_eq!(first.protocol, Protocol::Smtp);
    assert_eq!(messages[1].data, b"Subject: hi\r\n\r\nhello\r\n");
}

#[tokio::test]
async fn an_empty_message_ends_at_the_first_dot() {
    let (mut client, backend, _) = smtp().await;
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client.command("RCPT TO:<news@lists.example>", "250").await;
    client.command("DATA", "354").await;
    client.command(".", "250 2.0.0").await;
    assert_eq!(backend.messages()[0].data, b"");
}

#[tokio::test]
async fn data_needs_an_accepted_recipient() {
    for protocol in [Protocol::Smtp, Protocol::Lmtp] {
        let (mut client, _, _) = start(config(protocol)).await;
        let hello = if protocol == Protocol::Smtp {
            "EHLO c"
        } else {
            "LHLO c"
        };
        client.command(hello, "250").await;
        client.command("DATA", "503 5.5.1").await;
        client.command("MAIL FROM:<a@example.org>", "250").await;
        client.command("DATA", "503 5.5.1").await;
        client.command("RCPT TO:<nobody@example.org>", "550").await;
        client.command("DATA", "503 5.5.1").await;
        // the transaction is still open
        client.command("RCPT TO:<news@lists.example>", "250").await;
        client.command("DATA", "354").await;
    }
}

#[tokio::test]
async fn an_undeclared_oversize_message_is_read_to_the_end_then_refused() {
    let (mut client, backend, _) = smtp().await;
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client.command("RCPT TO:<news@lists.example>", "250").await;
    client.command("DATA", "354").await;
    let line = format!("{}\r\n", "m".repeat(98));
    for _ in 0..30 {
        client.send(&line).await;
    }
    client.send(".\r\n").await;
    client.expect("552 5.3.4").await;
    assert!(backend.messages().is_empty());
    // the session goes on
    deliver_one(&mut client).await;
    // exactly at the limit is fine
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client.command("RCPT TO:<news@lists.example>", "250").await;
    client.command("DATA", "354").await;
    let body = format!("{}\r\n", "n".repeat(998));
    client.send(&body).await;
    client.command(".", "250 2.0.0").await;
    assert_eq!(backend.messages()[1].data.len(), 1000);
}

#[tokio::test]
async fn bare_cr_or_lf_in_data_is_refused_after_the_end() {
    for body in [
        "a bare\nLF\r\n",
        "a bare\rCR\r\n",
        "ends with CR\r",
        "\n",
        "x\r\n.\n",
        "CR CR LF\r\r\n",
    ] {
        let (mut client, backend, _) = smtp().await;
        client.command("MAIL FROM:<a@example.org>", "250").await;
        client.command("RCPT TO:<news@lists.example>", "250").await;
        client.command("DATA", "354").await;
        client.send(body).await;
        assert_eq!(
            client.command("\r\n.", "550").await,
            "550 5.6.11 Bare CR or LF not allowed",
            "{body:?}"
        );
        assert!(backend.messages().is_empty(), "{body:?}");
        client.command("NOOP", "250 2.0.0").await;
    }
}

/// The SMTP smuggling attack: `<LF>.<LF>` (and smtp-proto's other end,
/// `<CRLF>.<CR><CR><LF>`) must not end the data, so the "smuggled" commands after it
/// are content, and the whole is refused.
#[tokio::test]
async fn smuggled_messages_stay_inside_the_first_one() {
    for end in [
        "\n.\n",
        "\r\n.\n",
        "\n.\r\n",
        "\r.\r\n",
        "\r\n.\r\r\n",
        "\r\n.\r\r\r\n",
    ] {
        let (mut client, backend, _) = smtp().await;
        client.command("MAIL FROM:<a@example.org>", "250").await;
        client.command("RCPT TO:<news@lists.example>", "250").await;
        client.command("DATA", "354").await;
        client
            .send(&format!(
                "Subject: first\r\n\r\nbody{end}MAIL FROM:<evil@example.org>\r\n\
                 RCPT TO:<news@lists.example>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\nNOOP\r\n"
            ))
            .await;
        assert_eq!(
            client.reply().await,
            "550 5.6.11 Bare CR or LF not allowed",
            "{end:?}"
        );
        // the next reply answers NOOP: nothing of the smuggled transaction was a command
        client.expect("250 2.0.0 OK").await;
        assert!(backend.messages().is_empty(), "{end:?}");
    }
}

#[tokio::test]
async fn a_failing_backend_gets_a_temporary_failure() {
    let (mut client, backend, _) = smtp().await;
    backend.fail_accept();
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client.command("RCPT TO:<news@lists.example>", "250").await;
    client.command("DATA", "354").await;
    assert_eq!(
        client.command("x\r\n.", "451").await,
        "451 4.3.0 Temporary failure, please try again later"
    );
    client.command("MAIL FROM:<a@example.org>", "250").await;
}

#[tokio::test]
async fn lmtp_answers_once_per_accepted_recipient() {
    let (mut client, backend, _) = lmtp().await;
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client.command("RCPT TO:<one@lists.example>", "250").await;
    client.command("RCPT TO:<nobody@example.org>", "550").await;
    client.command("RCPT TO:<two@lists.example>", "250").await;
    client.command("DATA", "354").await;
    client.send("x\r\n.\r\n").await;
    assert_eq!(
        client.reply().await,
        "250 2.1.5 <one@lists.example> delivered"
    );
    assert_eq!(
        client.reply().await,
        "250 2.1.5 <two@lists.example> delivered"
    );
    client.command("NOOP", "250 2.0.0").await;
    assert_eq!(backend.messages()[0].protocol, Protocol::Lmtp);

    backend.fail_accept();
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client.command("RCPT TO:<one@lists.example>", "250").await;
    client.command("RCPT TO:<two@lists.example>", "250").await;
    client.command("DATA", "354").await;
    client.send("x\r\n.\r\n").await;
    client.expect("451 4.3.0 <one@lists.example>").await;
    client.expect("451 4.3.0 <two@lists.example>").await;

    // refusals after the end of data are per recipient too
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client.command("RCPT TO:<one@lists.example>", "250").await;
    client.command("RCPT TO:<two@lists.example>", "250").await;
    client.command("DATA", "354").await;
    client.send("bare\nLF\r\n.\r\n").await;
    client.expect("550 5.6.11 <one@lists.example>").await;
    client.expect("550 5.6.11 <two@lists.example>").await;
    client.command("NOOP", "250 2.0.0").await;
}

#[tokio::test]
async fn bdat_is_not_offered() {
    let (mut client, _, _) = smtp().await;
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client.command("RCPT TO:<news@lists.example>", "250").await;
    client.command("BDAT 10 LAST", "502 5.5.1").await;
}

// ---------------------------------------------------------------------------------------
// Pipelining

#[tokio::test]
async fn a_pipelined_transaction_is_answered_in_order() {
    let (mut client, backend, _) = smtp().await;
    client
        .send(
            "MAIL FROM:<a@example.org>\r\nRCPT TO:<one@lists.example>\r\n\
             RCPT TO:<nobody@example.org>\r\nRCPT TO:<two@lists.example>\r\nDATA\r\n",
        )
        .await;
    client.expect("250 2.1.0").await;
    client.expect("250 2.1.5").await;
    client.expect("550 5.1.1").await;
    client.expect("250 2.1.5").await;
    client.expect("354").await;
    client.command("x\r\n.", "250 2.0.0").await;
    assert_eq!(backend.messages()[0].recipients.len(), 2);
}

#[tokio::test]
async fn a_pipelined_transaction_with_no_valid_recipient_gets_503_at_data() {
    let (mut client, backend, _) = smtp().await;
    client
        .send(
            "MAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.org>\r\n\
             RCPT TO:<busy@lists.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nNOOP\r\n",
        )
        .await;
    for prefix in [
        "250 2.1.0",
        "550 5.1.1",
        "451 4.3.0",
        "550 5.1.1",
        "503 5.5.1",
        "250 2.0.0",
    ] {
        client.expect(prefix).await;
    }
    assert!(backend.messages().is_empty());
}

#[tokio::test]
async fn a_whole_transaction_in_one_write_including_the_message() {
    let (mut client, backend, _) = start(config(Protocol::Smtp)).await;
    client
        .send(
            "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<one@lists.example>\r\n\
             RCPT TO:<two@lists.example>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n.\r\n\
             MAIL FROM:<b@example.org>\r\nRCPT TO:<three@lists.example>\r\nDATA\r\n.\r\nQUIT\r\n",
        )
        .await;
    for prefix in [
        "250-mx.test",
        "250 2.1.0",
        "250 2.1.5",
        "250 2.1.5",
        "354 ",
        "250 2.0.0 Message accepted",
        "250 2.1.0",
        "250 2.1.5",
        "354 ",
        "250 2.0.0 Message accepted",
        "221 2.0.0 Bye",
    ] {
        client.expect(prefix).await;
    }
    client.expect_eof().await;
    let messages = backend.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].data, b"Subject: s\r\n\r\nbody\r\n");
    assert_eq!(messages[1].mail_from.as_deref(), Some("b@example.org"));
}

/// Wraps a stream, counting the writes that reach it.
struct CountingWrites<S> {
    inner: S,
    writes: Arc<AtomicUsize>,
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingWrites<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(_)) = result {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn the_replies_to_one_read_go_out_in_one_write() {
    let writes = Arc::new(AtomicUsize::new(0));
    let (client, server) = tokio::io::duplex(PIPE);
    let server = CountingWrites {
        inner: server,
        writes: writes.clone(),
    };
    let session = Session::new(
        server,
        Arc::new(config(Protocol::Smtp)),
        TestBackend::default(),
        None,
    );
    tokio::spawn(session.run());
    let mut client = Client::new(client);
    client.expect("220").await;
    assert_eq!(writes.load(Ordering::SeqCst), 1);
    client
        .send(
            "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<one@lists.example>\r\n\
             RCPT TO:<two@lists.example>\r\nRCPT TO:<three@lists.example>\r\nDATA\r\n",
        )
        .await;
    for _ in 0..6 {
        client.reply().await;
    }
    assert_eq!(writes.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------
// Other commands, QUIT, EOF

#[tokio::test]
async fn small_commands() {
    let (mut client, _, _) = smtp().await;
    assert_eq!(client.command("NOOP", "250").await, "250 2.0.0 OK");
    assert_eq!(client.command("RSET", "250").await, "250 2.0.0 OK");
    client.command("VRFY news@lists.example", "252 2.5.0").await;
    client.command("EXPN news@lists.example", "502 5.5.1").await;
    client.command("HELP", "214 2.0.0").await;
    client.command("AUTH PLAIN AGZvbwBiYXI=", "502 5.5.1").await;
    client.command("ETRN example.org", "502 5.5.1").await;
    client.command("STARTTLS", "502 5.5.1").await;
    client.command("FROB", "500 5.5.2").await;
    client.command("", "500 5.5.2").await;
    client.command("MAIL TO:<a@example.org>", "501 5.5.4").await;
    client
        .command("MAIL FROM:<a..b@example.org>", "501 5.1.7")
        .await;
    client
        .command("MAIL FROM:<\u{e9}t\u{e9}@example.org>", "250 2.1.0")
        .await;
    client.command("RCPT TO:<a@b@c>", "501 5.1.3").await;
    client.send_bytes(b"RCPT TO:<\xff@lists.example>\r\n").await;
    client.expect("501 5.1.3").await;
}

#[tokio::test]
async fn quit_says_bye_and_closes() {
    let (mut client, _, task) = smtp().await;
    client.send("QUIT\r\nNOOP\r\n").await;
    assert_eq!(client.reply().await, "221 2.0.0 Bye");
    client.expect_eof().await;
    task.await.unwrap();
}

#[tokio::test]
async fn client_eof_ends_the_session_quietly() {
    let (client, _, task) = smtp().await;
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the session did not end")
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Timeouts

#[tokio::test(start_paused = true)]
async fn an_idle_client_is_disconnected() {
    let (mut client, _, task) = start(SmtpConfig {
        idle_timeout: Duration::from_secs(60),
        ..config(Protocol::Smtp)
    })
    .await;
    client.patience = Duration::from_secs(3600);
    let started = tokio::time::Instant::now();
    client.command("EHLO c", "250").await;
    assert_eq!(
        client.reply().await,
        "421 4.4.2 mx.test Idle timeout, closing connection"
    );
    assert!(started.elapsed() >= Duration::from_secs(60));
    client.expect_eof().await;
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_session_has_a_time_limit() {
    let (mut client, _, task) = start(SmtpConfig {
        idle_timeout: Duration::from_secs(60),
        session_timeout: Duration::from_secs(200),
        ..config(Protocol::Smtp)
    })
    .await;
    client.patience = Duration::from_secs(3600);
    let started = tokio::time::Instant::now();
    // never idle for long, yet over the session limit
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(45)).await;
        client.command("NOOP", "250 2.0.0 OK").await;
    }
    assert_eq!(
        client.reply().await,
        "421 4.4.2 mx.test Session too long, closing connection"
    );
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(200) && elapsed < Duration::from_secs(210));
    client.expect_eof().await;
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_slow_message_is_also_timed_out() {
    let (mut client, backend, _) = start(SmtpConfig {
        idle_timeout: Duration::from_secs(60),
        ..config(Protocol::Smtp)
    })
    .await;
    client.patience = Duration::from_secs(3600);
    client.command("EHLO c", "250").await;
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client.command("RCPT TO:<news@lists.example>", "250").await;
    client.command("DATA", "354").await;
    client.send("half a message\r\n").await;
    client.expect("421 4.4.2").await;
    client.expect_eof().await;
    assert!(backend.messages().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_command_trickled_a_byte_at_a_time_is_cut_off() {
    let (mut client, _, task) = start(SmtpConfig {
        command_timeout: Duration::from_secs(60),
        ..config(Protocol::Smtp)
    })
    .await;
    client.patience = Duration::from_secs(3600);
    let started = tokio::time::Instant::now();
    // each byte well within the idle timeout: only the command's own deadline ends it
    for b in "EHLO a-name-that-takes-its-time".bytes() {
        tokio::time::sleep(Duration::from_secs(20)).await;
        if client.try_send(&[b]).await.is_err() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    assert_eq!(
        client.reply().await,
        "421 4.4.2 mx.test Data arriving too slowly, closing connection"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5 * 60),
        "not the idle timeout"
    );
    client.expect_eof().await;
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn message_content_must_keep_a_minimum_rate() {
    let (mut client, backend, _) = start(SmtpConfig {
        command_timeout: Duration::from_secs(60),
        min_data_rate: 1024,
        ..config(Protocol::Smtp)
    })
    .await;
    client.patience = Duration::from_secs(3600);
    client.command("EHLO c", "250").await;
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client.command("RCPT TO:<news@lists.example>", "250").await;
    client.command("DATA", "354").await;
    let started = tokio::time::Instant::now();
    // one byte every 20 s: each read resets the idle timer, never the rate
    loop {
        tokio::time::sleep(Duration::from_secs(20)).await;
        if client.try_send(b"x").await.is_err() || started.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    client
        .expect("421 4.4.2 mx.test Data arriving too slowly")
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5 * 60),
        "not the idle timeout"
    );
    client.expect_eof().await;
    assert!(backend.messages().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_fast_large_message_is_not_cut_off() {
    let (mut client, backend, _) = start(SmtpConfig {
        command_timeout: Duration::from_secs(60),
        min_data_rate: 1024,
        max_message_bytes: 1024 * 1024,
        ..config(Protocol::Smtp)
    })
    .await;
    client.patience = Duration::from_secs(3600);
    client.command("EHLO c", "250").await;
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client.command("RCPT TO:<news@lists.example>", "250").await;
    client.command("DATA", "354").await;
    // 200 KiB at 2 KiB/s: slow, but above the minimum rate, and past the first minute
    let line = format!("{}\r\n", "y".repeat(1022));
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        client.send(&line).await;
    }
    client.command(".", "250").await;
    assert_eq!(backend.messages().len(), 1);
}

#[tokio::test]
async fn too_many_refused_recipients_end_the_session() {
    let (mut client, _, task) = start(SmtpConfig {
        max_rejected_recipients: 3,
        ..config(Protocol::Smtp)
    })
    .await;
    client.command("EHLO c", "250").await;
    client.command("MAIL FROM:<a@example.org>", "250").await;
    client.command("RCPT TO:<news@lists.example>", "250").await;
    for i in 0..3 {
        client
            .command(
                &format!("RCPT TO:<guess{i}@elsewhere.example>"),
                "550 5.1.1",
            )
            .await;
    }
    client
        .command(
            "RCPT TO:<guess3@elsewhere.example>",
            "421 4.7.0 mx.test Too many refused recipients, closing connection",
        )
        .await;
    client.expect_eof().await;
    task.await.unwrap();
}

// ---------------------------------------------------------------------------------------
// STARTTLS

struct TestCert {
    _dir: tempfile::TempDir,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
    der: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
}

fn test_cert() -> TestCert {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    TestCert {
        _dir: dir,
        cert_path,
        key_path,
        der: certified.cert.der().clone(),
    }
}

fn tls_config(protocol: Protocol) -> SmtpConfig {
    let cert = test_cert();
    SmtpConfig {
        tls: Some(load_tls(&cert.cert_path, &cert.key_path).unwrap()),
        ..config(protocol)
    }
}

fn tls_connector(cert: &TestCert) -> tokio_rustls::TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn starttls_discards_pipelined_input_and_resets_the_session() {
    let cert = test_cert();
    let (mut client, backend, task) = start(SmtpConfig {
        tls: Some(load_tls(&cert.cert_path, &cert.key_path).unwrap()),
        ..config(Protocol::Smtp)
    })
    .await;
    client.command("EHLO c", "250").await;
    client.command("MAIL FROM:<a@example.org>", "250").await;
    // CVE-2011-0411: the injected commands after STARTTLS must not be executed
    client
        .send("STARTTLS\r\nMAIL FROM:<injected@example.org>\r\nRCPT TO:<news@lists.example>\r\n")
        .await;
    assert_eq!(client.reply().await, "220 2.0.0 Ready to start TLS");
    assert!(client.buf.is_empty());
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tls_connector(&cert).connect(name, client.io).await.unwrap();
    let mut client = Client::new(tls);
    // the first reply over TLS answers NOOP: nothing from before was kept
    client.command("NOOP", "250 2.0.0").await;
    client
        .command("MAIL FROM:<a@example.org>", "503 5.5.1")
        .await;
    let reply = client.command("EHLO again.example", "250-").await;
    assert!(!reply.contains("STARTTLS"), "{reply}");
    client.command("STARTTLS", "503 5.5.1").await;
    deliver_one(&mut client).await;
    client.command("QUIT", "221").await;
    task.await.unwrap();
    let messages = backend.messages();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].tls);
    assert_eq!(messages[0].helo, "again.example");
    assert_eq!(
        backend.recorded.lock().unwrap().resolved,
        ["news@lists.example"]
    );
}

#[tokio::test]
async fn a_failed_handshake_ends_the_session() {
    let (mut client, _, task) = start(tls_config(Protocol::Smtp)).await;
    client.command("EHLO c", "250").await;
    client.command("STARTTLS", "220 2.0.0").await;
    client.send("this is not a TLS client hello\r\n").await;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the session did not end")
        .unwrap();
}

#[test]
fn load_tls_errors_name_the_file() {
    let cert = test_cert();
    let missing = cert.cert_path.with_file_name("missing.pem");
    let e = format!("{:#}", load_tls(&missing, &cert.key_path).unwrap_err());
    assert!(e.contains("missing.pem"), "{e}");
    let e = format!("{:#}", load_tls(&cert.cert_path, &missing).unwrap_err());
    assert!(e.contains("missing.pem"), "{e}");
    // a key file holding no key
    let e = format!(
        "{:#}",
        load_tls(&cert.cert_path, &cert.cert_path).unwrap_err()
    );
    assert!(e.contains("cert.pem"), "{e}");
    // a key that is not the certificate's
    let other = test_cert();
    let e = format!(
        "{:#}",
        load_tls(&cert.cert_path, &other.key_path).unwrap_err()
    );
    assert!(e.contains("key.pem") && e.contains("cert.pem"), "{e}");
    let empty = cert.cert_path.with_file_name("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let e = format!("{:#}", load_tls(&empty, &cert.key_path).unwrap_err());
    assert!(e.contains("empty.pem"), "{e}");
}

// ---------------------------------------------------------------------------------------
// serve, over TCP

async fn listen(
    config: SmtpConfig,
) -> (SocketAddr, TestBackend, watch::Sender<bool>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = TestBackend::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(serve(listener, config, backend.clone(), stop_rx));
    (addr, backend, stop_tx, task)
}

#[tokio::test]
async fn serve_runs_sessions_over_tcp() {
    let (addr, backend, stop, task) = listen(config(Protocol::Smtp)).await;
    let mut client = Client::new(TcpStream::connect(addr).await.unwrap());
    client.expect("220 mx.test ESMTP listd").await;
    client.command("EHLO c", "250").await;
    deliver_one(&mut client).await;
    client.command("QUIT", "221").await;
    client.expect_eof().await;
    let message = &backend.messages()[0];
    assert_eq!(message.peer.unwrap().ip(), std::net::Ipv4Addr::LOCALHOST);
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn serve_starttls_over_tcp() {
    let cert = test_cert();
    let (addr, backend, _stop, _task) = listen(SmtpConfig {
        tls: Some(load_tls(&cert.cert_path, &cert.key_path).unwrap()),
        ..config(Protocol::Smtp)
    })
    .await;
    let mut client = Client::new(TcpStream::connect(addr).await.unwrap());
    client.expect("220").await;
    client.command("EHLO c", "250").await;
    client.command("STARTTLS", "220 2.0.0").await;
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = Client::new(tls_connector(&cert).connect(name, client.io).await.unwrap());
    client.command("EHLO c", "250").await;
    deliver_one(&mut client).await;
    assert!(backend.messages()[0].tls);
}

#[tokio::test]
async fn serve_caps_concurrent_sessions() {
    let (addr, _, _stop, _task) = listen(SmtpConfig {
        max_sessions: 1,
        ..config(Protocol::Smtp)
    })
    .await;
    let mut first = Client::new(TcpStream::connect(addr).await.unwrap());
    first.expect("220").await;
    let mut second = Client::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(
        second.reply().await,
        "421 4.3.2 Too many connections, try again later"
    );
    second.expect_eof().await;
    first.command("QUIT", "221").await;
    first.expect_eof().await;
    // the slot comes back once the first session has ended
    let mut greeted = false;
    for _ in 0..50 {
        let mut third = Client::new(TcpStream::connect(addr).await.unwrap());
        if third.reply().await.starts_with("220") {
            greeted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(greeted);
}

#[tokio::test]
async fn serve_stops_accepting_and_closes_idle_sessions() {
    let (addr, backend, stop, task) = listen(config(Protocol::Smtp)).await;
    let mut idle = Client::new(TcpStream::connect(addr).await.unwrap());
    idle.expect("220").await;
    let mut busy = Client::new(TcpStream::connect(addr).await.unwrap());
    busy.expect("220").await;
    busy.command("EHLO c", "250").await;
    busy.command("MAIL FROM:<a@example.org>", "250").await;
    busy.command("RCPT TO:<news@lists.example>", "250").await;
    busy.command("DATA", "354").await;
    busy.send("Subject: in flight\r\n").await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    stop.send(true).unwrap();
    idle.expect("421 4.3.2 mx.test Service shutting down").await;
    idle.expect_eof().await;
    // the message being received may finish
    busy.command("\r\n.", "250 2.0.0").await;
    busy.expect("421 4.3.2").await;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve did not return")
        .unwrap();
    assert_eq!(backend.messages().len(), 1);
    assert!(TcpStream::connect(addr).await.is_err());
}

// ---------------------------------------------------------------------------------------
// Properties: any input is answered well-formed and the session ends; a pipelined
// transaction is answered the same however it is split.

/// Runs a whole session on `pieces` (written one after the other, the session seeing
/// them as separate reads where it can), then EOF; returns everything the server said.
fn converse(protocol: Protocol, pieces: Vec<Vec<u8>>) -> (Vec<u8>, TestBackend) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let backend = TestBackend::default();
        let (client, server) = tokio::io::duplex(4096);
        let config = SmtpConfig {
            max_message_bytes: 300,
            max_recipients: 3,
            ..config(protocol)
        };
        let session =
            tokio::spawn(Session::new(server, Arc::new(config), backend.clone(), None).run());
        let (mut reader, mut writer) = tokio::io::split(client);
        let write = async move {
            for piece in pieces {
                // the session may have closed (QUIT): the rest is not read
                if writer.write_all(&piece).await.is_err() {
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
        let (_, out) =
            tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(write, read) })
                .await
                .expect("the session neither answered nor closed in time");
        tokio::time::timeout(Duration::from_secs(20), session)
            .await
            .expect("the session did not end")
            .expect("the session panicked");
        (out, backend)
    })
}

/// Checks the framing of everything the server said; returns the number of replies.
fn check_replies(out: &[u8], protocol: Protocol) -> usize {
    let text = std::str::from_utf8(out).expect("replies are UTF-8");
    assert!(text.is_empty() || text.ends_with("\r\n"), "{text:?}");
    let mut replies = 0;
    let mut continued = false;
    for (i, line) in text.split_terminator("\r\n").enumerate() {
        let bytes = line.as_bytes();
        assert!(bytes.len() >= 4, "{line:?}");
        assert!(bytes[..3].iter().all(u8::is_ascii_digit), "{line:?}");
        assert!(bytes[3] == b' ' || bytes[3] == b'-', "{line:?}");
        let exempt = continued
            || bytes[3] == b'-'
            || line.starts_with("354 ")
            || line == "250 mx.test"
            || i == 0;
        if i == 0 {
            let greeting = match protocol {
                Protocol::Smtp => "220 mx.test ESMTP listd",
                Protocol::Lmtp => "220 mx.test LMTP listd",
            };
            assert_eq!(line, greeting);
        }
        if !exempt {
            let esc: Vec<&str> = line[4..].split(' ').next().unwrap().split('.').collect();
            assert_eq!(esc.len(), 3, "no enhanced status code in {line:?}");
            assert_eq!(esc[0], &line[..1], "{line:?}");
            assert!(
                esc.iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            );
        }
        continued = bytes[3] == b'-';
        if !continued {
            replies += 1;
        }
    }
    replies
}

const TRANSACTION: &str = "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<one@lists.example>\r\n\
    RCPT TO:<nobody@example.org>\r\nRCPT TO:<two@lists.example>\r\nDATA\r\n\
    Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n";

fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..40),
        1 => prop::collection::vec(prop::sample::select(b"\r\n. :<>@".to_vec()), 0..8),
        8 => prop::sample::select(vec![
            "EHLO c\r\n", "HELO c\r\n", "LHLO c\r\n", "MAIL FROM:<a@example.org>\r\n",
            "MAIL FROM:<> SIZE=100\r\n", "RCPT TO:<one@lists.example>\r\n",
            "RCPT TO:<busy@lists.example>\r\n", "RCPT TO:<x@example.org>\r\n", "DATA\r\n",
            "BDAT 5\r\n", "RSET\r\n", "NOOP\r\n", "VRFY x\r\n", "STARTTLS\r\n", "\r\n.\r\n",
            ".\r\n", "\n.\n", "\r\n", "x\r\n", "..\r\n",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_input_is_answered_well_formed(
        opening in any::<bool>(),
        mut tokens in prop::collection::vec(token(), 0..60),
        lmtp in any::<bool>(),
        split in any::<bool>(),
    ) {
        let protocol = if lmtp { Protocol::Lmtp } else { Protocol::Smtp };
        if opening {
            // most random inputs would never get past the envelope
            let hello = if lmtp { "LHLO c\r\n" } else { "EHLO c\r\n" };
            let opening = format!("{hello}MAIL FROM:<a@example.org>\r\nRCPT TO:<one@lists.example>\r\nDATA\r\n");
            tokens.insert(0, opening.into_bytes());
        }
        let input: Vec<u8> = tokens.concat();
        let line_ends = input.iter().filter(|&&b| b == b'\n').count();
        let pieces = if split { tokens } else { vec![input] };
        let (out, _) = converse(protocol, pieces);
        let replies = check_replies(&out, protocol);
        prop_assert!(replies >= 1);
        if protocol == Protocol::Smtp {
            // one reply per line at most, plus the greeting
            prop_assert!(replies <= line_ends + 1, "{} replies to {} lines", replies, line_ends);
        }
    }

    #[test]
    fn a_transaction_split_anywhere_is_answered_the_same(
        mut cuts in prop::collection::vec(0..TRANSACTION.len(), 0..12),
    ) {
        cuts.sort_unstable();
        cuts.dedup();
        let bytes = TRANSACTION.as_bytes();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            pieces.push(bytes[from..cut].to_vec());
            from = cut;
        }
        let (out, backend) = converse(Protocol::Smtp, pieces);
        let (expected, _) = converse(Protocol::Smtp, vec![bytes.to_vec()]);
        prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&expected));
        let messages = backend.messages();
        prop_assert_eq!(messages.len(), 1);
        prop_assert_eq!(&messages[0].data, b"Subject: hi\r\n\r\n.dot\r\nbody\r\n");
        prop_assert_eq!(messages[0].recipients.len(), 2);
    }
}

#[test]
fn the_reference_transaction_is_answered_as_expected() {
    let (out, _) = converse(Protocol::Smtp, vec![TRANSACTION.as_bytes().to_vec()]);
    let text = String::from_utf8(out).unwrap();
    let finals: Vec<&str> = text
        .split_terminator("\r\n")
        .filter(|l| l.as_bytes()[3] == b' ')
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        finals,
        [
            "220", "250", "250", "250", "550", "250", "354", "250", "250", "250", "221"
        ]
    );
}
