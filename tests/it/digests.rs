//! Digests end to end: posts sent over SMTP, processed, gathered into digests that the
//! delivery worker sends to a capturing SMTP sink, and the digests read part by part
//! with a real MIME parser (docs/contract.md#digests, docs/standards.md#59 and
//! #digest-exactly-once).

use crate::harness::{Captured, TestServer, http, mail, smtp_raw};
use listd::domain::{EmailAddress, ListRef, MemberChange};
use mail_parser::{MimeHeaders, PartType};
use std::collections::HashMap;
use time::OffsetDateTime;

const LIST: &str = "dev@lists.example.org";
const OWNER: &str = "owner@example.org";
const POSTER: &str = "poster@example.org";
const LINE_70: &str = "----------------------------------------------------------------------";
const LINE_30: &str = "------------------------------";

/// A list open to posts from anyone, with these members in these modes.
async fn server(settings: &[&str], members: &[(&str, &str)]) -> TestServer {
    let s = TestServer::start().await;
    let mut args = vec!["lists", "create", LIST, "--name", "Dev", "--owner", OWNER];
    args.extend(["--set", "posting=open"]);
    for set in settings {
        args.extend(["--set", set]);
    }
    let out = s.cli(&args);
    assert_eq!(out.code, 0, "{out:?}");
    let mut add = vec!["members", "add", LIST, "--quiet"];
    add.extend(members.iter().map(|(a, _)| *a));
    let out = s.cli(&add);
    assert_eq!(out.code, 0, "{out:?}");
    for (address, mode) in members {
        if *mode != "each" {
            set_member(&s, address, &format!("mode={mode}")).await;
        }
    }
    s
}

async fn set_member(s: &TestServer, address: &str, pair: &str) {
    let change = MemberChange::from_pairs(&[pair.to_string()]).unwrap();
    s.app
        .update_member(
            &ListRef::parse(LIST).unwrap(),
            &EmailAddress::parse(address).unwrap(),
            &change,
        )
        .await
        .expect("the member is changed");
}

/// Sends a post over SMTP (not processed yet).
async fn send_post(s: &TestServer, subject: &str, body: &str) {
    let message = mail(POSTER, LIST, subject, "", body);
    let replies = smtp_raw(s.smtp_port(), POSTER, &[LIST], message.as_bytes()).await;
    assert!(
        replies.last().is_some_and(|r| r.starts_with("250")),
        "{replies:?}"
    );
}

/// Sends, processes and delivers a post.
async fn post(s: &TestServer, subject: &str) {
    send_post(s, subject, &format!("This is {subject}.\r\n")).await;
    s.process().await;
}

fn is_digest(c: &Captured) -> bool {
    c.header("Subject")
        .is_some_and(|s| s.contains(" Digest, Vol "))
}

fn digests_to(s: &TestServer, rcpt: &str) -> Vec<Captured> {
    s.sink.to(rcpt).into_iter().filter(is_digest).collect()
}

/// Single copies of posts captured for one address.
fn copies_to(s: &TestServer, rcpt: &str) -> Vec<Captured> {
    s.sink
        .to(rcpt)
        .into_iter()
        .filter(|c| !is_digest(c) && c.mail_from.contains("+bounces+m"))
        .collect()
}

/// The Subjects of the posts a digest holds, MIME or plain (not the plain digest's
/// last message, which holds the footer).
fn subjects_in(digest: &Captured) -> Vec<String> {
    let msg = digest.parsed();
    if msg.content_type().map(|c| c.ctype()) == Some("text") {
        let text = msg.body_text(0).unwrap().replace("\r\n", "\n");
        let (_, messages) = text.split_once(LINE_70).expect("the 70-dash line");
        return messages
            .lines()
            .filter_map(|l| l.strip_prefix("Subject: "))
            .filter(|s| *s != "Digest Footer")
            .map(str::to_string)
            .collect();
    }
    msg.parts
        .iter()
        .filter_map(|p| match &p.body {
            PartType::Message(inner) => Some(inner.subject().unwrap_or_default().to_string()),
            _ => None,
        })
        .collect()
}

fn one_click_url(copy: &Captured) -> String {
    let value = copy.header("List-Unsubscribe").expect("List-Unsubscribe");
    value
        .split(['<', '>'])
        .find(|p| p.starts_with("http"))
        .expect("an https URI")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mime_and_plain_digests_carry_each_post_once_with_the_list_headers() {
    let year = OffsetDateTime::now_utc().year();
    let s = server(
        &[],
        &[
            ("anne@example.net", "each"),
            ("dora@example.net", "digest"),
            ("pete@example.net", "digest-plain"),
        ],
    )
    .await;
    post(&s, "First").await;
    let html = "<html><body><p>Only <b>HTML</b> here</p></body></html>\r\n";
    let message = mail(
        POSTER,
        LIST,
        "Second",
        "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n",
        html,
    );
    smtp_raw(s.smtp_port(), POSTER, &[LIST], message.as_bytes()).await;
    s.process().await;
    assert_eq!(copies_to(&s, "anne@example.net").len(), 2);
    assert!(
        copies_to(&s, "dora@example.net").is_empty(),
        "no single copies"
    );
    assert!(
        digests_to(&s, "dora@example.net").is_empty(),
        "30 KiB not reached"
    );

    let out = s.cli(&["digests", "send", LIST, "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let sent = out.json();
    assert_eq!(sent[0]["issue"], 1, "{sent}");
    assert_eq!(sent[0]["posts"], 2, "{sent}");
    assert_eq!(sent[0]["copies"], 2, "{sent}");
    s.deliver().await;
    assert!(digests_to(&s, "anne@example.net").is_empty());

    // the MIME digest, part by part
    let dora = digests_to(&s, "dora@example.net");
    assert_eq!(dora.len(), 1);
    let d = &dora[0];
    assert_eq!(d.rcpt_to, ["dora@example.net"]);
    assert!(d.mail_from.starts_with("dev+bounces+m"), "{}", d.mail_from);
    assert!(d.mail_from.ends_with("@lists.example.org"));
    let title = format!("Dev Digest, Vol {year}, Issue 1");
    assert_eq!(d.header("Subject").as_deref(), Some(title.as_str()));
    assert_eq!(
        d.header("From").as_deref(),
        Some("dev+request@lists.example.org")
    );
    assert_eq!(d.header("To").as_deref(), Some(LIST));
    assert_eq!(d.header("Reply-To").as_deref(), Some(LIST));
    assert_eq!(d.reply_to_address(), LIST);
    assert!(d.headers("Auto-Submitted").is_empty());
    assert_eq!(d.headers("List-Id"), [r#""Dev" <dev.lists.example.org>"#]);
    for name in [
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "List-Post",
        "List-Help",
    ] {
        assert_eq!(d.headers(name).len(), 1, "{name}");
    }
    assert!(
        d.text()
            .contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    );
    let msg = d.parsed();
    assert_eq!(
        msg.content_type().map(|c| (c.ctype(), c.subtype())),
        Some(("multipart", Some("mixed")))
    );
    let toc = msg.body_text(0).unwrap();
    assert!(toc.starts_with(&title), "{toc}");
    assert!(toc.contains("1. First (poster@example.org)"), "{toc}");
    assert!(toc.contains("2. Second (poster@example.org)"), "{toc}");
    let digest_part = msg
        .parts
        .iter()
        .find(|p| p.content_type().and_then(|c| c.subtype()) == Some("digest"))
        .expect("a multipart/digest part");
    let PartType::Multipart(children) = &digest_part.body else {
        panic!("multipart/digest holds parts");
    };
    assert_eq!(children.len(), 2);
    let anne = copies_to(&s, "anne@example.net");
    for (child, copy) in children.iter().zip(&anne) {
        let part = &msg.parts[*child as usize];
        assert_eq!(
            part.content_type().map(|c| (c.ctype(), c.subtype())),
            Some(("message", Some("rfc822")))
        );
        let PartType::Message(inner) = &part.body else {
            panic!("message/rfc822")
        };
        // the shared copy as relayed: Anne's copy without her own header lines
        let shared = copy
            .text()
            .split_once("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
            .unwrap()
            .1
            .to_string();
        // Anne's copy also carries her own footer, which the shared copy has not: the
        // header blocks are equal, and her body is the shared body with the footer added
        let inner_text = String::from_utf8_lossy(inner.raw_message()).into_owned();
        let (inner_head, inner_body) = inner_text.split_once("\r\n\r\n").unwrap();
        let (copy_head, copy_body) = shared.split_once("\r\n\r\n").unwrap();
        assert_eq!(inner_head, copy_head);
        let before_footer = inner_body.split("</body>").next().unwrap().trim_end();
        assert!(
            copy_body.starts_with(before_footer),
            "{inner_body}\n---\n{copy_body}"
        );
        assert!(
            !inner_body.contains("/unsubscribe/"),
            "no member's footer in a digest part"
        );
        assert!(!String::from_utf8_lossy(inner.raw_message()).contains("List-Unsubscribe:"));
    }
    assert_eq!(subjects_in(d), ["[dev] First", "[dev] Second"]);

    // the plain digest (RFC 1153)
    let pete = digests_to(&s, "pete@example.net");
    assert_eq!(pete.len(), 1);
    let p = &pete[0];
    assert_eq!(p.header("Subject").as_deref(), Some(title.as_str()));
    let msg = p.parsed();
    assert_eq!(
        msg.content_type().map(|c| (c.ctype(), c.subtype())),
        Some(("text", Some("plain")))
    );
    let text = msg.body_text(0).unwrap().replace("\r\n", "\n");
    let (toc, rest) = text.split_once(&format!("\n{LINE_70}\n")).unwrap();
    assert!(toc.starts_with(&title));
    let messages: Vec<&str> = rest.split(&format!("\n{LINE_30}\n")).collect();
    assert_eq!(
        messages.len(),
        4,
        "two messages, the footer and the trailer: {rest}"
    );
    assert!(messages[0].contains("This is First."));
    assert!(messages[1].contains("Only HTML here"), "{}", messages[1]);
    assert!(!messages[1].contains("<b>"));
    assert!(messages[2].trim().starts_with("Subject: Digest Footer"));
    assert!(messages[3].contains(&format!("End of {title}")));
    assert_ne!(one_click_url(d), one_click_url(p), "a link per member");

    // one click from Dora's digest ends her membership: nothing more reaches her
    let r = http()
        .post(one_click_url(d))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    post(&s, "Third").await;
    let out = s.cli(&["digests", "send"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Issue 2"), "{out:?}");
    s.deliver().await;
    assert_eq!(digests_to(&s, "dora@example.net").len(), 1, "Dora left");
    let pete = digests_to(&s, "pete@example.net");
    assert_eq!(pete.len(), 2);
    assert!(pete[1].header("Subject").unwrap().ends_with("Issue 2"));
    assert_eq!(subjects_in(&pete[1]), ["[dev] Third"]);
    let out = s.cli(&["digests", "send", LIST]);
    assert!(out.stdout.contains("no digest to send"), "{out:?}");
}

/// The top-level parts of a MIME digest: (type/subtype, text when text/plain).
fn top_parts(digest: &Captured) -> Vec<(String, Option<String>)> {
    let msg = digest.parsed();
    let PartType::Multipart(top) = &msg.parts[0].body else {
        panic!("a multipart/mixed digest");
    };
    top.iter()
        .map(|i| {
            let part = &msg.parts[*i as usize];
            let ct = part.content_type().unwrap();
            let kind = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default());
            let text = match &part.body {
                PartType::Text(t) => Some(t.to_string()),
                _ => None,
            };
            (kind, text)
        })
        .collect()
}

/// The messages of a plain digest after its table of contents, split at the 30-dash
/// lines (the last is the trailer).
fn plain_messages(digest: &Captured) -> Vec<String> {
    let msg = digest.parsed();
    assert_eq!(msg.content_type().map(|c| c.ctype()), Some("text"));
    let text = msg.body_text(0).unwrap().replace("\r\n", "\n");
    let (_, rest) = text.split_once(&format!("\n{LINE_70}\n")).unwrap();
    rest.split(&format!("\n{LINE_30}\n"))
        .map(|m| m.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_end_with_the_footer_and_the_members_own_link_unless_footer_is_off() {
    let s = server(
        &[],
        &[
            ("dora@example.net", "digest"),
            ("pete@example.net", "digest-plain"),
        ],
    )
    .await;
    let send = |s: &TestServer| {
        let out = s.cli(&["digests", "send", LIST]);
        assert_eq!(out.code, 0, "{out:?}");
    };

    // issue 1: the built-in footer
    post(&s, "One").await;
    post(&s, "Two").await;
    send(&s);
    s.deliver().await;
    let dora = digests_to(&s, "dora@example.net").remove(0);
    let parts = top_parts(&dora);
    let kinds: Vec<&str> = parts.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["text/plain", "multipart/digest", "text/plain"],
        "contents, the posts, then the footer"
    );
    assert!(parts[0].1.as_deref().unwrap().contains("2. Two"));
    assert_eq!(subjects_in(&dora), ["[dev] One", "[dev] Two"]);
    let footer = parts[2].1.as_deref().unwrap();
    assert!(
        footer.contains("You are subscribed to Dev <dev@lists.example.org>."),
        "{footer}"
    );
    assert!(
        footer.contains(&format!("Leave the list: {}", one_click_url(&dora))),
        "Dora's own link, that of her List-Unsubscribe: {footer}"
    );
    // only the footer carries a member's link: not the posts inside
    let body = dora.text().split_once("\r\n\r\n").unwrap().1.to_string();
    assert_eq!(body.matches("/unsubscribe/").count(), 1, "{body}");

    let pete = digests_to(&s, "pete@example.net").remove(0);
    let messages = plain_messages(&pete);
    assert_eq!(
        messages.len(),
        4,
        "two posts, the footer, the trailer: {messages:#?}"
    );
    assert!(messages[0].contains("This is One."));
    assert!(messages[1].contains("This is Two."));
    let footer = messages[2]
        .strip_prefix("Subject: Digest Footer\n\n")
        .expect("the footer message");
    assert!(
        footer.contains(&format!("Leave the list: {}", one_click_url(&pete))),
        "Pete's own link: {footer}"
    );
    assert_ne!(one_click_url(&pete), one_click_url(&dora));
    let trailer: Vec<&str> = messages[3].lines().collect();
    assert_eq!(trailer.len(), 2, "{trailer:?}");
    assert!(trailer[0].starts_with("End of Dev Digest, Vol "));
    assert!(trailer[1].chars().all(|c| c == '*'), "{trailer:?}");

    // issue 2: a footer of the owner's, not in ASCII (the plain text becomes 8bit)
    let out = s.cli(&[
        "lists",
        "set",
        LIST,
        "footer-text=Grüße von {list_name}. Abmelden: {unsubscribe_url}",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    post(&s, "Three").await;
    send(&s);
    s.deliver().await;
    let dora = digests_to(&s, "dora@example.net").remove(1);
    let parts = top_parts(&dora);
    assert_eq!(parts.len(), 3);
    let footer = parts[2].1.as_deref().unwrap();
    assert!(
        footer.contains(&format!(
            "Grüße von Dev. Abmelden: {}",
            one_click_url(&dora)
        )),
        "{footer}"
    );
    let pete = digests_to(&s, "pete@example.net").remove(1);
    let messages = plain_messages(&pete);
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(
        messages[1].ends_with(&format!(
            "Grüße von Dev. Abmelden: {}",
            one_click_url(&pete)
        )),
        "{}",
        messages[1]
    );
    assert_eq!(subjects_in(&pete), ["[dev] Three"]);

    // issue 3: footer=off leaves both kinds without it
    let out = s.cli(&["lists", "set", LIST, "footer=off"]);
    assert_eq!(out.code, 0, "{out:?}");
    post(&s, "Four").await;
    send(&s);
    s.deliver().await;
    let dora = digests_to(&s, "dora@example.net").remove(2);
    let kinds: Vec<String> = top_parts(&dora).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, ["text/plain", "multipart/digest"]);
    assert_eq!(subjects_in(&dora), ["[dev] Four"]);
    let pete = digests_to(&s, "pete@example.net").remove(2);
    let messages = plain_messages(&pete);
    assert_eq!(messages.len(), 2, "the post and the trailer: {messages:#?}");
    assert!(messages[1].starts_with("End of Dev Digest, Vol "));
    for d in [&dora, &pete] {
        let body = d.text().split_once("\r\n\r\n").unwrap().1.to_string();
        assert!(!body.contains("/unsubscribe/"), "{body}");
        assert!(!body.contains("Digest Footer"), "{body}");
        assert_eq!(d.headers("List-Unsubscribe").len(), 1, "the header stays");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_goes_out_as_soon_as_the_waiting_posts_reach_the_size() {
    let s = server(
        &["digest-size-kb=2"],
        &[("dora@example.net", "digest"), ("anne@example.net", "each")],
    )
    .await;
    let body = "words and more words in a line of text\r\n".repeat(30);
    send_post(&s, "One", &body).await;
    s.process().await;
    assert!(
        digests_to(&s, "dora@example.net").is_empty(),
        "about 1.5 KiB"
    );
    send_post(&s, "Two", &body).await;
    s.process().await;
    let dora = digests_to(&s, "dora@example.net");
    assert_eq!(dora.len(), 1, "2 KiB reached: sent without being asked");
    assert_eq!(subjects_in(&dora[0]), ["[dev] One", "[dev] Two"]);
    send_post(&s, "Three", &body).await;
    send_post(&s, "Four", &body).await;
    s.process().await;
    let dora = digests_to(&s, "dora@example.net");
    assert_eq!(dora.len(), 2);
    assert!(dora[1].header("Subject").unwrap().ends_with(", Issue 2"));
    assert_eq!(subjects_in(&dora[1]), ["[dev] Three", "[dev] Four"]);
    assert_eq!(copies_to(&s, "anne@example.net").len(), 4);
    assert!(digests_to(&s, "anne@example.net").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_sends_what_waits_once_the_period_ends() {
    let s = server(
        &["digest-frequency=weekly"],
        &[("dora@example.net", "digest")],
    )
    .await;
    post(&s, "Monday's news").await;
    let now = OffsetDateTime::now_utc();
    // the clock the maintenance is given: before and after the next Monday
    let days_to_monday = 7 - i64::from(now.weekday().number_days_from_monday());
    let next_monday =
        (now + time::Duration::days(days_to_monday)).replace_time(time::Time::MIDNIGHT);
    let before = next_monday - time::Duration::minutes(1);
    if before > now {
        let m = s.app.maintain(before).await.unwrap();
        assert_eq!(m.digests_sent, 0, "the week has not ended");
        s.deliver().await;
        assert!(digests_to(&s, "dora@example.net").is_empty());
    }
    let m = s.app.maintain(next_monday).await.unwrap();
    assert_eq!(m.digests_sent, 1);
    s.deliver().await;
    let dora = digests_to(&s, "dora@example.net");
    assert_eq!(dora.len(), 1);
    assert_eq!(subjects_in(&dora[0]), ["[dev] Monday's news"]);
    let m = s
        .app
        .maintain(next_monday + time::Duration::days(7))
        .await
        .unwrap();
    assert_eq!(m.digests_sent, 0, "nothing waits");

    // daily: the next midnight (UTC)
    let out = s.cli(&["lists", "set", LIST, "digest-frequency=daily"]);
    assert_eq!(out.code, 0, "{out:?}");
    post(&s, "Later news").await;
    let midnight =
        (OffsetDateTime::now_utc() + time::Duration::days(1)).replace_time(time::Time::MIDNIGHT);
    assert_eq!(s.app.maintain(midnight).await.unwrap().digests_sent, 1);
    s.deliver().await;
    assert_eq!(digests_to(&s, "dora@example.net").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_digests_off_sends_what_waits_then_single_copies() {
    let s = server(
        &[],
        &[
            ("dora@example.net", "digest"),
            ("pete@example.net", "digest-plain"),
            ("paula@example.net", "digest"),
        ],
    )
    .await;
    // Paula pauses: no digest, and nothing owed for that time
    set_member(&s, "paula@example.net", "delivery=disabled").await;
    post(&s, "Before").await;
    let out = s.cli(&["lists", "set", LIST, "digest=off"]);
    assert_eq!(out.code, 0, "{out:?}");
    let show = s.cli(&["lists", "show", LIST, "--json"]).json();
    assert_eq!(show["digest"], false, "{show}");
    s.deliver().await;
    for who in ["dora@example.net", "pete@example.net"] {
        let digests = digests_to(&s, who);
        assert_eq!(digests.len(), 1, "{who}: the last digest");
        assert_eq!(subjects_in(&digests[0]), ["[dev] Before"]);
    }
    post(&s, "After").await;
    for who in ["dora@example.net", "pete@example.net"] {
        let copies = copies_to(&s, who);
        assert_eq!(copies.len(), 1, "{who}: a single copy from then on");
        assert_eq!(copies[0].header("Subject").as_deref(), Some("[dev] After"));
        assert_eq!(digests_to(&s, who).len(), 1);
    }
    set_member(&s, "paula@example.net", "delivery=enabled").await;
    let out = s.cli(&["lists", "set", LIST, "digest=on"]);
    assert_eq!(out.code, 0, "{out:?}");
    post(&s, "Digests again").await;
    s.cli(&["digests", "send", LIST]);
    s.deliver().await;
    let paula = s.sink.to("paula@example.net");
    assert_eq!(
        paula.len(),
        1,
        "Paula gets only what came after she resumed"
    );
    assert_eq!(subjects_in(&paula[0]), ["[dev] Digests again"]);
    assert_eq!(digests_to(&s, "dora@example.net").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_post_reaches_each_member_once_across_mode_switches_under_concurrent_posting() {
    const POSTS: usize = 16;
    let members: Vec<String> = (0..6).map(|i| format!("m{i}@example.net")).collect();
    let modes = ["each", "digest", "digest-plain"];
    let initial: Vec<(&str, &str)> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), modes[i % 3]))
        .collect();
    // a small size, so that the size trigger fires among the posts too
    let s = server(&["digest-size-kb=3"], &initial).await;
    let port = s.smtp_port();
    let posters: Vec<_> = (0..2)
        .map(|t| {
            let app = s.app.clone();
            tokio::spawn(async move {
                for i in (t..POSTS).step_by(2) {
                    let body = format!("Post number {i}.\r\n")
                        + &"some text in a line of its own\r\n".repeat(30);
                    let message = mail(POSTER, LIST, &format!("post {i}"), "", &body);
                    smtp_raw(port, POSTER, &[LIST], message.as_bytes()).await;
                    app.process_all_inbound().await.unwrap();
                }
            })
        })
        .collect();
    let switcher = {
        let (app, members) = (s.app.clone(), members.clone());
        tokio::spawn(async move {
            for k in 0..48 {
                let who = &members[k % members.len()];
                let change =
                    MemberChange::from_pairs(&[format!("mode={}", modes[(k / 2 + k) % 3])])
                        .unwrap();
                app.update_member(
                    &ListRef::parse(LIST).unwrap(),
                    &EmailAddress::parse(who).unwrap(),
                    &change,
                )
                .await
                .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let digester = {
        let app = s.app.clone();
        tokio::spawn(async move {
            for _ in 0..6 {
                app.send_digests(Some(&ListRef::parse(LIST).unwrap()))
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    for p in posters {
        p.await.unwrap();
    }
    switcher.await.unwrap();
    digester.await.unwrap();
    s.app.process_all_inbound().await.unwrap();
    s.app.send_digests(None).await.unwrap();
    s.deliver().await;

    let mut digests = 0;
    for who in &members {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for copy in copies_to(&s, who) {
            *seen.entry(copy.header("Subject").unwrap()).or_default() += 1;
        }
        for digest in digests_to(&s, who) {
            digests += 1;
            for subject in subjects_in(&digest) {
                *seen.entry(subject).or_default() += 1;
            }
        }
        for i in 0..POSTS {
            let subject = format!("[dev] post {i}");
            assert_eq!(
                seen.get(&subject).copied().unwrap_or(0),
                1,
                "{who} gets {subject} exactly once: {seen:?}"
            );
        }
        assert_eq!(seen.len(), POSTS, "{who}: nothing else: {seen:?}");
    }
    assert!(digests > 0, "some posts went in digests");
}
