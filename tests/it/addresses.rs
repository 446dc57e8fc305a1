//! Every address listd writes into a header or an envelope works for real list names:
//! it fits RFC 5321's 64-octet local part when the list name has at most 32 octets,
//! and listd's own SMTP front end accepts it back whatever the name's length. Also:
//! mail sent by earlier versions (their token formats) keeps working, and a copy that
//! listd itself cannot hand to the relay is kept and reported, never a bounce.

use crate::harness::{Captured, TestServer, find_link, mail, smtplib};
use base64::Engine;
use hmac::{KeyInit, Mac};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const DOMAIN: &str = "lists.example.org";
const OWNER: &str = "owner@example.org";

/// A list name of exactly `len` octets, shaped like real ones.
fn list_name(len: usize) -> String {
    let words = "financial-services-innersource-working-group-steering-committee-";
    let mut name = words.repeat(2)[..len].to_string();
    if name.ends_with('-') {
        name.pop();
        name.push('x');
    }
    name
}

/// The address in a `mailto:` URI or `<…>` bracket, as found in a header.
fn mailtos(header: &str) -> Vec<String> {
    header
        .split(['<', '>', ','])
        .filter_map(|p| p.trim().strip_prefix("mailto:"))
        .map(str::to_string)
        .collect()
}

/// Every address listd wrote into one captured message: the envelope sender and the
/// addresses in From, Reply-To and the `List-*` fields.
fn written_addresses(m: &Captured) -> Vec<String> {
    let mut out = vec![m.mail_from.clone()];
    for name in ["From", "Reply-To"] {
        if let Some(v) = m.header(name) {
            out.extend(
                v.split(['<', '>'])
                    .filter(|p| p.contains('@'))
                    .map(|p| p.trim().to_string()),
            );
        }
    }
    for name in [
        "List-Help",
        "List-Subscribe",
        "List-Unsubscribe",
        "List-Post",
        "List-Owner",
    ] {
        if let Some(v) = m.header(name) {
            out.extend(mailtos(&v));
        }
    }
    out.retain(|a| a.ends_with(&format!("@{DOMAIN}")));
    out
}

/// Asks listd's SMTP front end to take each address as a recipient (RCPT only).
async fn rcpt_replies(port: u16, addresses: &[String]) -> Vec<(String, String)> {
    let sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, line: &mut String) -> String {
        loop {
            line.clear();
            r.read_line(line).await.unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
    }
    reply(&mut r, &mut line).await;
    w.write_all(b"EHLO test.example\r\n").await.unwrap();
    reply(&mut r, &mut line).await;
    let mut out = Vec::new();
    for a in addresses {
        w.write_all(b"MAIL FROM:<tester@example.net>\r\n")
            .await
            .unwrap();
        reply(&mut r, &mut line).await;
        w.write_all(format!("RCPT TO:<{a}>\r\n").as_bytes())
            .await
            .unwrap();
        out.push((a.clone(), reply(&mut r, &mut line).await));
        w.write_all(b"RSET\r\n").await.unwrap();
        reply(&mut r, &mut line).await;
    }
    let _ = w.write_all(b"QUIT\r\n").await;
    out
}

fn member_status(s: &TestServer, list: &str, who: &str) -> serde_json::Value {
    let out = s.cli(&["members", "show", list, who, "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    out.json()
}

/// A delivery status report to a VERP address, naming nobody useful.
fn dsn(to: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.net\r\nTo: {to}\r\nSubject: Undelivered Mail\r\n\
Message-ID: <{}@mx.example.net>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
--B\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n\
--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
Final-Recipient: rfc822; forwarded@elsewhere.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n--B--\r\n",
        uuid::Uuid::new_v4().simple()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_address_listd_writes_fits_and_comes_back_for_list_names_of_any_length() {
    let s = TestServer::start().await;
    for len in [11, 20, 32, 40, 64] {
        let name = list_name(len);
        assert_eq!(name.len(), len);
        let list = format!("{name}@{DOMAIN}");
        let out = s.cli(&["lists", "create", &list, "--name", &name, "--owner", OWNER]);
        assert_eq!(out.code, 0, "{out:?}");
        let anne = format!("anne.{len}@example.net");
        let bob = format!("bob.{len}@example.com");

        // anne joins by mail and confirms with a plain reply to the Reply-To address
        let join = mail(&anne, &format!("{name}+subscribe@{DOMAIN}"), "join", "", "");
        smtplib(
            s.smtp_port(),
            &anne,
            &[&format!("{name}+subscribe@{DOMAIN}")],
            &join,
        )
        .unwrap();
        s.process().await;
        let confirmation = s.sink.to(&anne).pop().expect("a confirmation");
        let reply_to = confirmation.reply_to_address();
        assert!(
            reply_to.starts_with(&format!("{name}+confirm+")),
            "{reply_to}"
        );
        let reply = mail(&anne, &reply_to, "Re: confirm", "", "yes");
        smtplib(s.smtp_port(), &anne, &[&reply_to], &reply).unwrap();
        s.process().await;
        assert_eq!(
            member_status(&s, &list, &anne)["status"],
            "subscribed",
            "{len}"
        );

        // bob is added by the owner; anne posts; both get a copy
        assert_eq!(s.cli(&["members", "add", &list, &bob]).code, 0);
        let post = mail(&anne, &list, &format!("post {len}"), "", "Hello");
        smtplib(s.smtp_port(), &anne, &[&list], &post).unwrap();
        s.process().await;
        let copy_of = |who: &str| {
            s.sink
                .to(who)
                .into_iter()
                .find(|c| {
                    c.header("Subject")
                        .unwrap_or_default()
                        .contains(&format!("post {len}"))
                })
                .unwrap_or_else(|| panic!("{who} got the post ({len})"))
        };
        let (anne_copy, bob_copy) = (copy_of(&anne), copy_of(&bob));

        // every address written into these messages fits, and listd takes it back
        let mut written = Vec::new();
        for m in [&confirmation, &anne_copy, &bob_copy] {
            written.extend(written_addresses(m));
        }
        written.sort();
        written.dedup();
        assert!(
            written.iter().any(|a| a.contains("+bounces+")),
            "{written:?}"
        );
        assert!(
            written.iter().any(|a| a.contains("+unsubscribe+")),
            "{written:?}"
        );
        assert!(
            written.iter().any(|a| a.contains("+confirm+")),
            "{written:?}"
        );
        if len <= 32 {
            for a in &written {
                let local = a.rsplit_once('@').unwrap().0;
                assert!(local.len() <= 64, "{a}: {} octets", local.len());
            }
        }
        for (a, reply) in rcpt_replies(s.smtp_port(), &written).await {
            assert!(reply.starts_with("250"), "RCPT TO:<{a}> got {reply}");
        }

        // a report to bob's VERP address is his, whatever it names
        let verp = bob_copy.mail_from.clone();
        smtplib(s.smtp_port(), "", &[&verp], &dsn(&verp)).unwrap();
        s.app.process_all_inbound().await.unwrap();
        s.app
            .judge_bounces(time::OffsetDateTime::now_utc())
            .await
            .unwrap();
        let shown = member_status(&s, &list, &bob);
        assert_eq!(shown["bounce_score"], 1, "{len}: {shown}");

        // anne leaves by mailing her List-Unsubscribe address
        let unsubscribe = mailtos(&anne_copy.header("List-Unsubscribe").unwrap())
            .pop()
            .unwrap();
        let leave = mail(&anne, &unsubscribe, "leave", "", "");
        smtplib(s.smtp_port(), &anne, &[&unsubscribe], &leave).unwrap();
        s.process().await;
        assert_eq!(
            member_status(&s, &list, &anne)["status"],
            "unsubscribed",
            "{len}"
        );
    }
}

/// `HMAC-SHA256(key, purpose ‖ (len ‖ part)…)`, the signature earlier versions made.
fn old_mac(secret: &str, purpose: &str, parts: &[&[u8]]) -> Vec<u8> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(purpose.as_bytes());
    for p in parts {
        mac.update(&(p.len() as u32).to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn base32(bytes: &[u8]) -> String {
    const A: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let (mut out, mut acc, mut bits) = (String::new(), 0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(A[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(A[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_sent_by_earlier_versions_keeps_working() {
    let s = TestServer::start().await;
    let list = format!("dev@{DOMAIN}");
    assert_eq!(s.cli(&["lists", "create", &list, "--owner", OWNER]).code, 0);
    for who in ["anne@example.net", "bob@example.com"] {
        assert_eq!(s.cli(&["members", "add", &list, who]).code, 0);
    }
    let member = |who: &'static str| {
        let pool = s.db.pool.clone();
        async move {
            let (id, since): (uuid::Uuid, time::OffsetDateTime) = sqlx::query_as(
                "select id, subscribed_at from member where address = $1 and role = 'member'",
            )
            .bind(who)
            .fetch_one(&pool)
            .await
            .unwrap();
            (id, since)
        }
    };

    // an old VERP address: base32(member id ‖ 40-bit MAC)
    let (bob_id, _) = member("bob@example.com").await;
    let tag = old_mac(&s.secret, "verp", &[bob_id.as_bytes()]);
    let verp = format!(
        "dev+bounces+{}@{DOMAIN}",
        base32(&[bob_id.as_bytes(), &tag[..5]].concat())
    );
    smtplib(s.smtp_port(), "", &[&verp], &dsn(&verp)).unwrap();
    s.app.process_all_inbound().await.unwrap();
    s.app
        .judge_bounces(time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        member_status(&s, &list, "bob@example.com")["bounce_score"],
        1
    );

    // an old List-Unsubscribe mailto: the link's base64url token in the address
    let (anne_id, since) = member("anne@example.net").await;
    let micros = (since.unix_timestamp_nanos() / 1000).to_be_bytes();
    let tag = old_mac(&s.secret, "unsubscribe", &[anne_id.as_bytes(), &micros]);
    let old_token = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode([anne_id.as_bytes(), &tag[..16]].concat());
    let address = format!("dev+unsubscribe+{old_token}@{DOMAIN}");
    let leave = mail("anne@example.net", &address, "leave", "", "");
    smtplib(s.smtp_port(), "anne@example.net", &[&address], &leave).unwrap();
    s.process().await;
    assert_eq!(
        member_status(&s, &list, "anne@example.net")["status"],
        "unsubscribed"
    );

    // an old confirmation's Reply-To carried the link's 43-character token
    let carol = "carol@example.org";
    let join = mail(carol, &format!("dev+subscribe@{DOMAIN}"), "join", "", "");
    smtplib(
        s.smtp_port(),
        carol,
        &[&format!("dev+subscribe@{DOMAIN}")],
        &join,
    )
    .unwrap();
    s.process().await;
    let confirmation = s.sink.to(carol).pop().unwrap();
    let link = find_link(&confirmation.body_text(), &s.url("/confirm/")).unwrap();
    let long = link.rsplit('/').next().unwrap();
    assert_eq!(long.len(), 43);
    let old_reply_to = format!("dev+confirm+{long}@{DOMAIN}");
    let reply = mail(carol, &old_reply_to, "Re: confirm", "", "yes");
    smtplib(s.smtp_port(), carol, &[&old_reply_to], &reply).unwrap();
    s.process().await;
    assert_eq!(member_status(&s, &list, carol)["status"], "subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_listd_cannot_hand_over_is_kept_reported_and_never_a_bounce() {
    let s = TestServer::start().await;
    let list = format!("dev@{DOMAIN}");
    assert_eq!(s.cli(&["lists", "create", &list, "--owner", OWNER]).code, 0);
    for who in ["anne@example.net", "bob@example.com"] {
        assert_eq!(s.cli(&["members", "add", &list, who]).code, 0);
    }
    s.deliver().await;
    // an address that got into the database somehow, which no SMTP command can carry
    sqlx::query(
        "update member set address = 'bob smith@example.com' where address = 'bob@example.com'",
    )
    .execute(&s.db.pool)
    .await
    .unwrap();
    let post = mail("anne@example.net", &list, "Hello", "", "Hello");
    smtplib(s.smtp_port(), "anne@example.net", &[&list], &post).unwrap();
    s.process().await;
    assert!(
        s.sink
            .to("anne@example.net")
            .iter()
            .any(|c| c.header("Subject").unwrap_or_default().contains("Hello")),
        "the others get their copies"
    );
    let (status, error, fault): (String, Option<String>, bool) = sqlx::query_as(
        "select status, last_error, fault_at is not null from outbound where recipient = 'bob smith@example.com'",
    )
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(status, "queued", "kept for a later try, not dropped");
    assert!(
        error.unwrap_or_default().contains("listd could not hand"),
        "the error is kept"
    );
    assert!(fault);
    s.app
        .judge_bounces(time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let bounces: i64 = sqlx::query_scalar("select count(*) from bounce")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(bounces, 0, "never a bounce");
    // the owners hear of it, once a day
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(s.app.alert_delivery_faults(now).await.unwrap(), 1);
    assert_eq!(s.app.alert_delivery_faults(now).await.unwrap(), 0);
    s.deliver().await;
    let alert = s
        .sink
        .wait_for(1, Duration::from_secs(10))
        .await
        .into_iter()
        .filter(|m| m.rcpt_to.iter().any(|r| r == OWNER))
        .find(|m| {
            m.header("Subject")
                .unwrap_or_default()
                .contains("cannot deliver")
        });
    let alert = alert.expect("an alert to the owner");
    assert!(
        alert.body_text().contains("bob smith@example.com")
            || alert.body_text().contains("recipient")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_row_that_cannot_be_read_is_kept_as_a_fault_and_the_rest_go_out() {
    let s = TestServer::start().await;
    let list = format!("dev@{DOMAIN}");
    assert_eq!(s.cli(&["lists", "create", &list, "--owner", OWNER]).code, 0);
    // a row that is neither a whole message nor a member's copy (the schema forbids
    // it; one written by a faulty or a later version)
    sqlx::query("alter table outbound drop constraint outbound_content_check")
        .execute(&s.db.pool)
        .await
        .unwrap();
    sqlx::query(
        "insert into outbound (list_id, purpose, recipient, recipient_key)
         select id, 'notice', 'odd@example.net', 'odd@example.net' from list",
    )
    .execute(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(
        s.cli(&["members", "add", &list, "anne@example.net"]).code,
        0
    );
    s.deliver().await;
    assert!(
        !s.sink.to("anne@example.net").is_empty(),
        "the mail queued beside it goes out"
    );
    let (status, error, fault): (String, Option<String>, bool) = sqlx::query_as(
        "select status, last_error, fault_at is not null from outbound where recipient = 'odd@example.net'",
    )
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(status, "queued", "kept for a later try, not dropped");
    assert!(
        error.unwrap_or_default().contains("unreadable queued row"),
        "the reason is kept"
    );
    assert!(
        fault,
        "counted as listd's own fault, which the owners are told of"
    );
}
