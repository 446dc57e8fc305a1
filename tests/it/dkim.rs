//! DKIM (docs/standards.md#60 to #62): keys made with `listd dkim generate`, and every
//! kind of message listd sends verified by an independent verifier, dkimpy, fed the
//! DNS record `generate` printed. Without python3 and dkimpy these tests say so and
//! pass, except in CI (`CI` set), whose `.ci/run` installs dkimpy.

use crate::harness::{Captured, TestServer, http, smtp_raw, smtplib};
use std::io::Write;
use std::process::{Command, Stdio};

const LIST: &str = "dev@lists.example.org";
const DOMAIN: &str = "lists.example.org";

/// Whether dkimpy can be run; in CI its absence fails the test.
fn dkimpy() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import dkim"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install dkimpy (pip install dkimpy)"
        );
        eprintln!("skipped: python3 with dkimpy is not installed (pip install dkimpy)");
    }
    ok
}

/// What dkimpy says of a message: its exit code and output.
fn verify(records: &[String], message: &[u8]) -> (i32, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/dkim_verify.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(records)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn assert_verifies(records: &[String], copy: &Captured, what: &str) {
    let (code, out) = verify(records, &copy.data);
    assert_eq!(code, 0, "{what}: {out}\n{}", copy.text());
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        records.len(),
        "{what}: one signature per key: {out}"
    );
}

/// Generates a key and returns the record printed.
fn generate(s: &TestServer, args: &[&str]) -> String {
    let mut all = vec!["dkim", "generate"];
    all.extend_from_slice(args);
    let out = s.cli(&all);
    assert_eq!(out.code, 0, "{out:?}");
    let record = out.stdout.trim().to_string();
    assert!(record.contains("._domainkey."), "{record}");
    record
}

async fn server(create: &[&str]) -> TestServer {
    let s = TestServer::start().await;
    let mut args = vec![
        "lists",
        "create",
        LIST,
        "--name",
        "Dev",
        "--posting",
        "open",
    ];
    args.extend_from_slice(create);
    let out = s.cli(&args);
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.cli(&["members", "add", LIST, "--quiet", "bob@example.com"]);
    assert_eq!(out.code, 0, "{out:?}");
    s
}

/// Sends a post and returns Bob's copy of it.
async fn post(s: &TestServer, message: &[u8]) -> Captured {
    let before = s.sink.to("bob@example.com").len();
    let replies = smtp_raw(s.smtp_port(), "anne@example.net", &[LIST], message).await;
    assert!(replies.last().unwrap().starts_with("250"), "{replies:?}");
    s.process().await;
    let copies = s.sink.to("bob@example.com");
    assert_eq!(copies.len(), before + 1, "one new copy");
    copies.last().unwrap().clone()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/posts/{name}.eml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn message(id: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "From: Anne <anne@example.net>\r\nTo: {LIST}\r\nSubject: {id}\r\n\
         Date: Mon, 6 Jan 2025 10:00:00 +0000\r\nMessage-ID: <{id}@example.net>\r\n{extra}\r\n"
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_message_verifies_with_dkimpy() {
    if !dkimpy() {
        return;
    }
    let s = server(&["--dmarc", "never"]).await;
    let mut records = vec![generate(&s, &[DOMAIN])];
    // a second key of the same domain: a second signature on every message
    let ed25519 = Command::new("python3")
        .args(["-c", "import nacl"])
        .status()
        .is_ok_and(|st| st.success());
    if ed25519 {
        records.push(generate(
            &s,
            &[DOMAIN, "--algorithm", "ed25519-sha256", "--selector", "ed"],
        ));
    } else {
        records.push(generate(&s, &[DOMAIN, "--selector", "second"]));
        eprintln!("Ed25519 not verified: PyNaCl is not installed");
    }

    // system mail: a confirmation request
    let r = http()
        .post(s.url("/lists/dev.lists.example.org/subscribe"))
        .form(&[("email", "carol@example.org"), ("website", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.deliver().await;
    let confirmation = s
        .sink
        .to("carol@example.org")
        .pop()
        .expect("a confirmation");
    assert_verifies(&records, &confirmation, "confirmation");

    // posts of every shape, with the footer
    for shape in [
        "plain-ascii-7bit",
        "plain-utf8-qp",
        "plain-base64",
        "mixed-attachment",
        "gmail-alternative",
        "outlook-alternative-related",
        "apple-mail",
        "html-only",
    ] {
        let copy = post(&s, &fixture(shape)).await;
        assert_verifies(&records, &copy, shape);
    }
    // bodies ending in blank lines, 8-bit bodies, folded header fields
    let blank_lines = message("blank", "", b"text\r\n\r\n\r\n\r\n");
    let eight_bit = message(
        "eightbit",
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
        "Grüße aus Köln — ünïcödé\r\n".as_bytes(),
    );
    let folded = message(
        "folded",
        "References: <a@example.net>\r\n\t<b@example.net>\r\n   <c@example.net>\r\nX-Long: one\r\n two\r\n",
        b"body\r\n",
    );
    for (what, m) in [
        ("blank lines", &blank_lines),
        ("8-bit", &eight_bit),
        ("folded", &folded),
    ] {
        let copy = post(&s, m).await;
        assert_verifies(&records, &copy, what);
    }
    // the same without the footer: the body hash of the whole shared body
    assert_eq!(s.cli(&["lists", "set", LIST, "footer=off"]).code, 0);
    let copy = post(&s, &message("nofooter", "", b"text\r\n\r\n")).await;
    assert_verifies(&records, &copy, "no footer");

    // DMARC-rewritten and wrapped posts
    for dmarc in ["always", "wrap"] {
        assert_eq!(
            s.cli(&["lists", "set", LIST, &format!("dmarc={dmarc}"), "footer=on"])
                .code,
            0
        );
        let copy = post(&s, &message(dmarc, "", b"a post\r\n")).await;
        assert_verifies(&records, &copy, dmarc);
    }

    // the one-click fields are signed, and signed once more than present
    let text = copy_header(&s);
    let h = text.split("h=").nth(1).unwrap();
    let h: String = h
        .split(';')
        .next()
        .unwrap()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let names: Vec<&str> = h.split(':').collect();
    for (name, times) in [
        ("from", 2),
        ("subject", 2),
        ("list-unsubscribe", 2),
        ("list-unsubscribe-post", 2),
        ("list-id", 1),
        ("to", 1),
        ("date", 1),
        ("message-id", 1),
    ] {
        assert_eq!(
            names.iter().filter(|n| **n == name).count(),
            times,
            "{name} in {h}"
        );
    }
}

/// The first DKIM-Signature of Bob's last copy, unfolded.
fn copy_header(s: &TestServer) -> String {
    let copy = s.sink.to("bob@example.com").pop().unwrap();
    copy.headers("DKIM-Signature").remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_or_added_list_unsubscribe_fails_verification() {
    if !dkimpy() {
        return;
    }
    let s = server(&["--dmarc", "never"]).await;
    let records = vec![generate(&s, &[DOMAIN])];
    let copy = post(&s, &message("tamper", "", b"hello\r\n")).await;
    assert_verifies(&records, &copy, "as sent");
    let text = copy.text();
    let link = copy.header("List-Unsubscribe").unwrap();
    let token = link
        .split("/unsubscribe/")
        .nth(1)
        .unwrap()
        .split('>')
        .next()
        .unwrap()
        .to_string();
    // someone else's token in the header
    let changed = text.replacen(
        &format!("/unsubscribe/{token}>"),
        "/unsubscribe/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA>",
        1,
    );
    assert_ne!(changed, text);
    let (code, out) = verify(&records, changed.as_bytes());
    assert_eq!(code, 1, "a changed List-Unsubscribe must fail: {out}");
    // a second List-Unsubscribe added on top
    let added = format!("List-Unsubscribe: <https://evil.example/u>\r\n{text}");
    let (code, out) = verify(&records, added.as_bytes());
    assert_eq!(code, 1, "an added List-Unsubscribe must fail: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_of_both_kinds_verify_with_and_without_the_footer() {
    if !dkimpy() {
        return;
    }
    let s = server(&["--dmarc", "never"]).await;
    let records = vec![generate(&s, &[DOMAIN])];
    let out = s.cli(&["members", "add", LIST, "--quiet", "carol@example.com"]);
    assert_eq!(out.code, 0, "{out:?}");
    for (who, mode) in [
        ("bob@example.com", "digest"),
        ("carol@example.com", "digest-plain"),
    ] {
        let out = s.cli(&["members", "set", LIST, who, &format!("mode={mode}")]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let digests = |s: &TestServer, who: &str| {
        s.sink
            .to(who)
            .into_iter()
            .filter(|c| {
                c.header("Subject")
                    .is_some_and(|v| v.contains(" Digest, Vol "))
            })
            .collect::<Vec<_>>()
    };
    for (n, footer) in ["on", "off"].into_iter().enumerate() {
        assert_eq!(
            s.cli(&["lists", "set", LIST, &format!("footer={footer}")])
                .code,
            0
        );
        // an 8-bit post and one whose body ends in blank lines
        let eight_bit = message(
            &format!("eightbit-{footer}"),
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
            "Grüße aus Köln\r\n".as_bytes(),
        );
        let blank_lines = message(&format!("blank-{footer}"), "", b"text\r\n\r\n\r\n");
        for m in [eight_bit, blank_lines] {
            let replies = smtp_raw(s.smtp_port(), "anne@example.net", &[LIST], &m).await;
            assert!(replies.last().unwrap().starts_with("250"), "{replies:?}");
        }
        s.process().await;
        let out = s.cli(&["digests", "send", LIST]);
        assert_eq!(out.code, 0, "{out:?}");
        s.deliver().await;
        for who in ["bob@example.com", "carol@example.com"] {
            let got = digests(&s, who);
            assert_eq!(got.len(), n + 1, "{who}: one digest per issue");
            let digest = &got[n];
            let body = digest.text().split_once("\r\n\r\n").unwrap().1.to_string();
            assert_eq!(
                body.contains("Leave the list:"),
                footer == "on",
                "{who}, footer={footer}: {body}"
            );
            assert_verifies(
                &records,
                digest,
                &format!("{who}'s digest, footer={footer}"),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_key_stops_signing_and_a_domain_without_a_key_is_not_signed() {
    if !dkimpy() {
        return;
    }
    let s = server(&["--dmarc", "never"]).await;
    // another list at a domain without a key
    let other = "news@other.example.com";
    assert_eq!(
        s.cli(&["lists", "create", other, "--posting", "open"]).code,
        0
    );
    assert_eq!(
        s.cli(&["members", "add", other, "--quiet", "bob@example.com"])
            .code,
        0
    );
    let record = generate(&s, &[DOMAIN]);
    let selector = record.split("._domainkey.").next().unwrap().to_string();
    let copy = post(&s, &message("signed", "", b"one\r\n")).await;
    assert_verifies(std::slice::from_ref(&record), &copy, "signed");
    assert_eq!(copy.headers("DKIM-Signature").len(), 1);

    let m = message("other", "", b"two\r\n");
    let m = String::from_utf8(m).unwrap().replace(LIST, other);
    smtplib(s.smtp_port(), "anne@example.net", &[other], &m).unwrap();
    s.process().await;
    let copy = s.sink.to("bob@example.com").pop().unwrap();
    assert_eq!(
        copy.header("List-Id").unwrap(),
        "\"news\" <news.other.example.com>"
    );
    assert!(
        copy.headers("DKIM-Signature").is_empty(),
        "no key, no signature"
    );

    let out = s.cli(&["dkim", "rm", DOMAIN, &selector]);
    assert_eq!(out.code, 0, "{out:?}");
    let copy = post(&s, &message("after-rm", "", b"three\r\n")).await;
    assert!(
        copy.headers("DKIM-Signature").is_empty(),
        "a removed key signs nothing more"
    );
    let (code, out) = verify(&[record], &copy.data);
    assert_eq!(code, 3, "{out}");
}

// several threads: the test's DNS server answers while the CLI runs
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_keys_are_listed_and_checked_but_never_shown() {
    let s = TestServer::start().await;
    let year = time::OffsetDateTime::now_utc().year();
    let first = generate(&s, &["Lists.Example.org"]);
    assert!(
        first.starts_with(&format!(
            "listd{year}a._domainkey.lists.example.org. IN TXT \"v=DKIM1; k=rsa; p="
        )),
        "{first}"
    );
    let second = generate(&s, &[DOMAIN, "--algorithm", "ed25519-sha256"]);
    assert!(
        second.starts_with(&format!("listd{year}b._domainkey.")),
        "{second}"
    );
    assert!(second.contains("k=ed25519"), "{second}");
    // a selector taken is refused
    let again = s.cli(&[
        "dkim",
        "generate",
        DOMAIN,
        "--selector",
        &format!("listd{year}a"),
    ]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("already"), "{again:?}");
    // listed without private keys
    let ls = s.cli(&["dkim", "ls", "--json"]);
    assert_eq!(ls.code, 0);
    let keys = ls.json();
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let mut fields: Vec<&String> = keys[0].as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "algorithm",
            "created_at",
            "dns_record",
            "domain",
            "selector"
        ]
    );
    assert!(!ls.stdout.contains("PRIVATE") && !ls.stdout.contains("private"));
    // the record is split into strings DNS can hold, ready to paste
    for record in [&first, &second] {
        let strings: Vec<&str> = record.split('"').skip(1).step_by(2).collect();
        assert!(strings.iter().all(|s| s.len() <= 255), "{record}");
    }
    // check: nothing published; then the Ed25519 key as generated and another RSA key
    // (the test's DNS server answers over UDP only, so records stay short here)
    let check = s.cli(&["dkim", "check", DOMAIN]);
    assert_eq!(check.code, 1, "{check:?}");
    assert_eq!(check.stdout.matches("missing").count(), 2, "{check:?}");
    let name = |record: &str| record.split(". IN TXT").next().unwrap().to_string();
    let strings: Vec<&str> = second.split('"').skip(1).step_by(2).collect();
    s.dns.set_txt(&name(&second), &strings);
    s.dns.set_txt(&name(&first), &["v=DKIM1; k=rsa; p=AAAA"]);
    let check = s.cli(&["dkim", "check", DOMAIN, "--json"]);
    assert_eq!(check.code, 1, "{check:?}");
    let statuses: Vec<String> = check
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["differs", "matches"], "{check:?}");
    // removed: what is left is published as generated
    let rm = s.cli(&["dkim", "rm", DOMAIN, &format!("listd{year}a")]);
    assert_eq!(rm.code, 0, "{rm:?}");
    assert_eq!(
        s.cli(&["dkim", "ls", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let check = s.cli(&["dkim", "check", DOMAIN]);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(check.stdout.contains("matches"), "{check:?}");
    let rm = s.cli(&["dkim", "rm", DOMAIN, "nope"]);
    assert_eq!(rm.code, 1);
}
