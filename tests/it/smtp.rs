//! Joining and leaving by mail, end to end: real TCP SMTP sessions from ordinary
//! clients (Python's smtplib, swaks), mail processed from PostgreSQL, the answers read
//! at the relay's sink and replied to by mail.

use crate::harness::{TestServer, find_link, mail, smtplib};
use std::process::Command;

const LIST: &str = "dev@lists.example.org";

async fn server() -> TestServer {
    let s = TestServer::start().await;
    assert_eq!(
        s.cli(&[
            "lists",
            "create",
            LIST,
            "--name",
            "Dev",
            "--owner",
            "owner@example.org"
        ])
        .code,
        0
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_by_mail_and_confirming_by_reply() {
    let s = server().await;
    let port = s.smtp_port();
    smtplib(
        port,
        "anne@example.net",
        &["dev+subscribe@lists.example.org"],
        &mail(
            "Anne <anne@example.net>",
            "dev+subscribe@lists.example.org",
            "join",
            "",
            "",
        ),
    )
    .unwrap();
    s.process().await;
    let confirmation = s.sink.to("anne@example.net");
    assert_eq!(confirmation.len(), 1, "one confirmation (D-26)");
    let c = &confirmation[0];
    assert_eq!(
        c.header("Auto-Submitted").as_deref(),
        Some("auto-replied"),
        "answering mail (D-25)"
    );
    let reply_to = c.reply_to_address();
    assert!(reply_to.starts_with("dev+confirm+"), "{reply_to}");
    assert!(c.header("In-Reply-To").is_some());

    // a plain reply: "Re:" subject, quoted text, quoted-printable body
    let quoted: String = c
        .body_text()
        .lines()
        .map(|l| format!("> {l}\r\n"))
        .collect();
    let reply = mail(
        "Anne <anne@example.net>",
        &reply_to,
        &format!("Re: {}", c.parsed().subject().unwrap()),
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n",
        &format!("Yes please=21\r\n\r\n{quoted}"),
    );
    smtplib(port, "anne@example.net", &[&reply_to], &reply).unwrap();
    s.process().await;
    let members = s.cli(&["members", "ls", LIST, "--json"]).json();
    assert_eq!(members[0]["address"], "anne@example.net");
    let shown = s
        .cli(&["members", "show", LIST, "anne@example.net", "--json"])
        .json();
    assert_eq!(shown["consent"]["request_source"], "mail");
    assert_eq!(shown["consent"]["confirm_method"], "mail");
    assert!(
        shown["consent"]["request_message_id"]
            .as_str()
            .unwrap()
            .contains("@example.net")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_joins_and_an_unknown_recipient_is_refused_with_550() {
    let s = server().await;
    let port = s.smtp_port().to_string();
    let swaks = |args: &[&str]| {
        let out = Command::new("swaks")
            .args([
                "--server",
                &format!("127.0.0.1:{port}"),
                "--hide-all",
                "--timeout",
                "20",
            ])
            .args(args)
            .output();
        match out {
            Ok(o) => Some(o),
            Err(_) => {
                assert!(std::env::var_os("CI").is_none(), "CI must install swaks");
                None
            }
        }
    };
    let Some(out) = swaks(&[
        "--to",
        "dev+subscribe@lists.example.org",
        "--from",
        "anne@example.net",
    ]) else {
        eprintln!("note: swaks is not installed; skipping");
        return;
    };
    assert!(out.status.success(), "{out:?}");
    s.process().await;
    let c = s.sink.to("anne@example.net").pop().expect("a confirmation");
    let token = find_link(&c.body_text(), &s.url("/confirm/"))
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let out = swaks(&[
        "--to",
        &format!("dev+confirm+{token}@lists.example.org"),
        "--from",
        "anne@example.net",
        "--header",
        "Subject: Re: confirm",
    ])
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    s.process().await;
    assert_eq!(
        s.cli(&["members", "ls", LIST, "--json"]).json()[0]["address"],
        "anne@example.net"
    );

    let refused = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{port}"),
            "--to",
            "someone@elsewhere.example",
            "--from",
            "anne@example.net",
            "--timeout",
            "20",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let transcript = String::from_utf8_lossy(&refused.stdout);
    assert!(transcript.contains("550 5.1.1"), "{transcript}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_mail_never_gets_an_answer() {
    let s = server().await;
    let port = s.smtp_port();
    let to = "dev+subscribe@lists.example.org";
    for (from, headers) in [
        ("anne@example.net", "Auto-Submitted: auto-replied\r\n"),
        ("anne@example.net", "Precedence: bulk\r\n"),
        ("anne@example.net", "List-Id: <other.example.net>\r\n"),
        ("MAILER-DAEMON@example.net", ""),
        ("dev-request@example.net", ""),
        ("owner-dev@example.net", ""),
    ] {
        smtplib(
            port,
            "anne@example.net",
            &[to],
            &mail(from, to, "join", headers, ""),
        )
        .unwrap();
    }
    smtplib(
        port,
        "",
        &[to],
        &mail("anne@example.net", to, "join", "", ""),
    )
    .unwrap(); // MAIL FROM:<>
    s.process().await;
    assert!(
        s.sink.received().is_empty(),
        "{:?}",
        s.sink.received().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_to_request_and_help_are_answered_at_most_ten_times_a_day() {
    let s = server().await;
    let port = s.smtp_port();
    smtplib(
        port,
        "bob@example.net",
        &["dev-request@lists.example.org"],
        &mail(
            "bob@example.net",
            "dev-request@lists.example.org",
            "hello",
            "",
            "subscribe\r\n",
        ),
    )
    .unwrap();
    s.process().await;
    let c = s.sink.to("bob@example.net").pop().expect("a confirmation");
    let token = find_link(&c.body_text(), &s.url("/confirm/"))
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    smtplib(
        port,
        "bob@example.net",
        &["dev-request@lists.example.org"],
        &mail(
            "bob@example.net",
            "dev-request@lists.example.org",
            &format!("confirm {token}"),
            "",
            "",
        ),
    )
    .unwrap();
    s.process().await;
    assert_eq!(
        s.cli(&["members", "ls", LIST, "--json"]).json()[0]["address"],
        "bob@example.net"
    );

    for _ in 0..12 {
        smtplib(
            port,
            "carol@example.net",
            &["dev+help@lists.example.org"],
            &mail(
                "carol@example.net",
                "dev+help@lists.example.org",
                "help",
                "",
                "",
            ),
        )
        .unwrap();
    }
    s.process().await;
    let replies = s.sink.to("carol@example.net");
    assert_eq!(
        replies.len(),
        10,
        "at most 10 automatic replies a day (D-27)"
    );
    assert!(
        replies[0]
            .body_text()
            .contains("dev+subscribe@lists.example.org")
    );
    assert_eq!(
        replies[0].header("Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_by_mail_needs_a_confirmation_and_strangers_get_the_same() {
    let s = server().await;
    let port = s.smtp_port();
    s.cli(&["members", "add", LIST, "--quiet", "anne@example.net"]);
    for who in ["anne@example.net", "stranger@example.net"] {
        smtplib(
            port,
            who,
            &["dev-leave@lists.example.org"],
            &mail(who, "dev-leave@lists.example.org", "leave", "", ""),
        )
        .unwrap();
    }
    s.process().await;
    assert_eq!(s.sink.to("anne@example.net").len(), 1);
    assert_eq!(
        s.sink.to("stranger@example.net").len(),
        1,
        "docs/standards.md#18: the same behaviour"
    );
    let shown = s
        .cli(&["members", "show", LIST, "anne@example.net", "--json"])
        .json();
    assert_eq!(shown["status"], "subscribed", "not before she confirms");
    let c = s.sink.to("anne@example.net").pop().unwrap();
    let reply_to = c.reply_to_address();
    smtplib(
        port,
        "anne@example.net",
        &[&reply_to],
        &mail("anne@example.net", &reply_to, "Re: ok", "", ""),
    )
    .unwrap();
    s.process().await;
    let shown = s
        .cli(&["members", "show", LIST, "anne@example.net", "--json"])
        .json();
    assert_eq!(shown["status"], "unsubscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokenized_unsubscribe_address_works_at_once() {
    let s = server().await;
    let port = s.smtp_port();
    // a member who joined on the web gets a welcome with her token
    let r = crate::harness::http()
        .post(s.url("/lists/dev.lists.example.org/subscribe"))
        .form(&[("email", "anne@example.net")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.deliver().await;
    let link = find_link(
        &s.sink.to("anne@example.net")[0].body_text(),
        &s.url("/confirm/"),
    )
    .unwrap();
    crate::harness::http().post(&link).send().await.unwrap();
    s.deliver().await;
    let welcome = s.sink.to("anne@example.net").pop().unwrap();
    let token = find_link(&welcome.body_text(), &s.url("/unsubscribe/"))
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let to = format!("dev+unsubscribe+{token}@lists.example.org");
    smtplib(
        port,
        "anne@example.net",
        &[&to],
        &mail("anne@example.net", &to, "unsubscribe", "", ""),
    )
    .unwrap();
    s.process().await;
    assert_eq!(
        s.cli(&["members", "show", LIST, "anne@example.net", "--json"])
            .json()["status"],
        "unsubscribed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_to_the_owner_address_reaches_the_owners() {
    let s = server().await;
    let port = s.smtp_port();
    smtplib(
        port,
        "anne@example.net",
        &["dev+owner@lists.example.org"],
        &mail(
            "anne@example.net",
            "dev+owner@lists.example.org",
            "A question",
            "",
            "Hello owners",
        ),
    )
    .unwrap();
    s.process().await;
    let got = s.sink.to("owner@example.org");
    assert_eq!(got.len(), 1);
    assert!(
        got[0].text().contains("Hello owners") && got[0].text().contains("Subject: A question")
    );
    // a VERP sender of its own: a bounce names the owner's address
    let sender = &got[0].mail_from;
    assert!(
        sender.starts_with("dev+bounces+o") && sender.ends_with("@lists.example.org"),
        "{sender}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_mail_is_refused_with_451_and_nothing_is_lost() {
    let s = server().await;
    let port = s.smtp_port();
    s.db.pool.close().await;
    let err = smtplib(
        port,
        "anne@example.net",
        &["dev+subscribe@lists.example.org"],
        &mail(
            "anne@example.net",
            "dev+subscribe@lists.example.org",
            "join",
            "",
            "",
        ),
    )
    .unwrap_err();
    assert!(err.starts_with("451"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lmtp_answers_each_recipient_and_stores_the_mail_once() {
    let s = server().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let config = listd::smtp::SmtpConfig::new("listd.test", listd::smtp::Protocol::Lmtp);
    tokio::spawn(listd::smtp::serve(
        listener,
        config,
        listd::smtp::AppBackend::new(s.app.clone()),
        stop_rx,
    ));

    // Python's LMTP client, as Postfix's lmtp transport would talk
    let script = r#"
import smtplib, sys
c = smtplib.LMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
msg = b"From: anne@example.net\r\nTo: dev+subscribe@lists.example.org\r\nSubject: join\r\nMessage-ID: <lmtp1@example.net>\r\n\r\nhi\r\n"
refused = c.sendmail("anne@example.net", ["dev+subscribe@lists.example.org", "dev+help@lists.example.org", "nobody@lists.example.org"], msg)
print(sorted(refused.items()))
c.quit()
"#;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", script, &port.to_string()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        printed.contains("nobody@lists.example.org") && printed.contains("550"),
        "{printed}"
    );
    s.process().await;
    let stored = listd::store::inbound::list_inbound(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "one stored message for both recipients");
    assert_eq!(stored[0].status, "done");
    let got = s.sink.to("anne@example.net");
    assert_eq!(got.len(), 2, "a confirmation and a help reply");
    stop_tx.send(true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_reply_to_a_confirmation_confirms_nothing() {
    let s = server().await;
    let port = s.smtp_port();
    let to = "dev+subscribe@lists.example.org";
    smtplib(
        port,
        "anne@example.net",
        &[to],
        &mail("anne@example.net", to, "join", "", ""),
    )
    .unwrap();
    s.process().await;
    let c = s.sink.to("anne@example.net").pop().unwrap();
    let reply_to = c.reply_to_address();
    for headers in ["Auto-Submitted: auto-replied\r\n", "Precedence: junk\r\n"] {
        smtplib(
            port,
            "anne@example.net",
            &[&reply_to],
            &mail(
                "anne@example.net",
                &reply_to,
                "Out of office",
                headers,
                "away",
            ),
        )
        .unwrap();
    }
    smtplib(
        port,
        "",
        &[&reply_to],
        &mail("anne@example.net", &reply_to, "Undeliverable", "", ""),
    )
    .unwrap();
    s.process().await;
    assert!(
        s.cli(&["members", "ls", LIST, "--json"])
            .json()
            .as_array()
            .unwrap()
            .is_empty(),
        "D-24"
    );
    assert_eq!(
        s.sink.to("anne@example.net").len(),
        1,
        "and nothing answered them"
    );
}
