//! Posting to a list, end to end: posts sent with Python's smtplib over real TCP,
//! processed from PostgreSQL, fanned out by the delivery worker to a capturing SMTP
//! sink, and the copies read with a real MIME parser. One test per rule of
//! docs/standards.md sections A, E and H that posting covers, and the moderation commands.

use crate::harness::{Captured, TestServer, find_link, http, mail, smtplib};
use std::collections::HashSet;

const LIST: &str = "dev@lists.example.org";
const OWNER: &str = "owner@example.org";

async fn server(extra: &[&str]) -> TestServer {
    let s = TestServer::start().await;
    let mut args = vec!["lists", "create", LIST, "--name", "Dev", "--owner", OWNER];
    args.extend_from_slice(extra);
    let out = s.cli(&args);
    assert_eq!(out.code, 0, "{out:?}");
    s
}

fn add_members(s: &TestServer, addresses: &[&str]) {
    let mut args = vec!["members", "add", LIST, "--quiet"];
    args.extend_from_slice(addresses);
    let out = s.cli(&args);
    assert_eq!(out.code, 0, "{out:?}");
}

/// A post with a known body, sent over SMTP; returns the raw message.
fn post(s: &TestServer, from: &str, subject: &str, extra_headers: &str) -> String {
    let body = format!("Hello all,\r\n\r\nthis is {subject}.\r\n-- \r\n{from}\r\n");
    let message = mail(from, LIST, subject, extra_headers, &body);
    let envelope = from
        .rsplit_once('<')
        .map_or(from, |(_, a)| a.trim_end_matches('>'));
    smtplib(s.smtp_port(), envelope, &[LIST], &message).expect("the post is accepted (250)");
    message
}

/// Copies of posts (not notices) captured for one address.
fn copies_to(s: &TestServer, rcpt: &str) -> Vec<Captured> {
    s.sink
        .to(rcpt)
        .into_iter()
        .filter(|c| c.mail_from.contains("+bounces+m"))
        .collect()
}

fn held_ls(s: &TestServer) -> serde_json::Value {
    let out = s.cli(&["held", "ls", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    out.json()
}

/// The body of a raw message (after the first blank line).
fn body_of(raw: &[u8]) -> &[u8] {
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header section");
    &raw[at + 4..]
}

/// Checks every item of docs/standards.md section A on one copy; returns its unsubscribe URL.
fn assert_list_headers(s: &TestServer, copy: &Captured, subject: &str) -> String {
    let count = |name: &str| copy.headers(name).len();
    // A-1
    assert_eq!(
        copy.headers("List-Id"),
        [r#""Dev" <dev.lists.example.org>"#]
    );
    // A-2
    for name in [
        "List-Help",
        "List-Subscribe",
        "List-Unsubscribe",
        "List-Post",
        "List-Owner",
        "List-Unsubscribe-Post",
        "Precedence",
    ] {
        assert_eq!(count(name), 1, "exactly one {name}");
    }
    assert_eq!(
        copy.header("List-Help").unwrap(),
        "<mailto:dev+help@lists.example.org>"
    );
    assert_eq!(
        copy.header("List-Owner").unwrap(),
        "<mailto:dev+owner@lists.example.org>"
    );
    // A-3
    assert_eq!(
        copy.header("List-Post").unwrap(),
        "<mailto:dev@lists.example.org>"
    );
    // A-4
    let subscribe = copy.header("List-Subscribe").unwrap();
    assert!(subscribe.contains("<mailto:dev+subscribe@lists.example.org>"));
    assert!(subscribe.contains(&format!("<{}>", s.url("/lists/dev.lists.example.org"))));
    // A-5: one web URI with an opaque token, and the tokenized mailto
    let unsubscribe = copy.header("List-Unsubscribe").unwrap();
    let uris: Vec<&str> = unsubscribe
        .split(", ")
        .map(|u| u.trim_matches(|c| c == '<' || c == '>'))
        .collect();
    assert_eq!(uris.len(), 2, "{unsubscribe}");
    let url = uris[0];
    assert!(url.starts_with(&s.url("/unsubscribe/")), "{url}");
    let token = url.rsplit('/').next().unwrap();
    assert!(token.len() >= 22, "at least 128 bits");
    for rcpt in &copy.rcpt_to {
        assert!(
            !url.contains(rcpt.split('@').next().unwrap()),
            "no address in the token"
        );
    }
    // the mailto's token is the membership's own short one: 19 lower-case letters and
    // digits, so the address fits 64 octets for list names up to 32 octets
    let mailto_token = uris[1]
        .strip_prefix("mailto:dev+unsubscribe+")
        .and_then(|t| t.strip_suffix("@lists.example.org"))
        .unwrap_or_else(|| panic!("{}", uris[1]));
    assert_eq!(mailto_token.len(), 19, "{mailto_token}");
    assert!(
        mailto_token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    assert_ne!(mailto_token, token);
    assert!(
        copy.text()
            .contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"),
        "byte-exact one-click header"
    );
    // A-7
    assert_eq!(copy.header("Precedence").as_deref(), Some("list"));
    assert_eq!(
        count("Auto-Submitted"),
        0,
        "a human post is not auto-submitted"
    );
    // A-8
    for line in copy.data.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "a line over 998 octets");
        assert!(
            line.is_empty()
                || line.ends_with(b"\r")
                || line == copy.data.rsplit(|&b| b == b'\n').next().unwrap()
        );
    }
    assert!(
        !copy.data.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
        "CRLF only"
    );
    for name in ["From", "Date", "Message-ID"] {
        assert_eq!(count(name), 1, "exactly one {name}");
    }
    // A-9
    assert!(
        copy.mail_from.starts_with("dev+bounces+")
            && copy.mail_from.ends_with("@lists.example.org"),
        "{}",
        copy.mail_from
    );
    // A-10 and the parse by a real parser
    assert_eq!(copy.parsed().subject(), Some(subject));
    url.to_string()
}

/// Subscribes an address through the web form and the confirmation link.
async fn join_by_web(s: &TestServer, email: &str) {
    let r = http()
        .post(s.url("/lists/dev.lists.example.org/subscribe"))
        .form(&[("email", email), ("website", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.deliver().await;
    let confirmation = s.sink.to(email).pop().expect("a confirmation");
    let link = find_link(&confirmation.body_text(), &s.url("/confirm/")).expect("a link");
    assert_eq!(http().post(&link).send().await.unwrap().status(), 200);
}

/// Subscribes an address by mail and a reply to the confirmation.
async fn join_by_mail(s: &TestServer, email: &str) {
    let to = "dev+subscribe@lists.example.org";
    smtplib(
        s.smtp_port(),
        email,
        &[to],
        &mail(email, to, "join", "", ""),
    )
    .unwrap();
    s.process().await;
    let confirmation = s.sink.to(email).pop().expect("a confirmation");
    let reply_to = confirmation.reply_to_address();
    let reply = mail(email, &reply_to, "Re: confirm", "", "yes");
    smtplib(s.smtp_port(), email, &[&reply_to], &reply).unwrap();
    s.process().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_reaches_every_member_once_with_the_list_headers_and_one_click_works() {
    let s = server(&[]).await;
    for who in ["anne@example.net", "bob@example.com", "carol@example.org"] {
        join_by_web(&s, who).await;
    }
    join_by_mail(&s, "dave@example.net").await;
    let members = s.cli(&["members", "ls", LIST, "--json"]).json();
    assert_eq!(members.as_array().unwrap().len(), 4, "{members}");

    let sent = post(&s, "Anne <anne@example.net>", "Hello", "");
    s.process().await;
    let everyone = [
        "anne@example.net",
        "bob@example.com",
        "carol@example.org",
        "dave@example.net",
    ];
    let mut urls = HashSet::new();
    let mut senders = HashSet::new();
    for who in everyone {
        let copies = copies_to(&s, who);
        assert_eq!(copies.len(), 1, "{who} gets the post once");
        let copy = &copies[0];
        assert_eq!(copy.rcpt_to, [who], "one member per transaction (H-49)");
        let url = assert_list_headers(&s, copy, "[dev] Hello");
        senders.insert(copy.mail_from.clone());
        // the post's body, then the list's footer with the member's own link
        // (docs/standards.md#8, #19)
        let body = body_of(&copy.data);
        let sent_body = body_of(sent.as_bytes());
        assert_eq!(&body[..sent_body.len()], sent_body, "body bytes kept");
        let footer = String::from_utf8_lossy(&body[sent_body.len()..]);
        assert!(
            footer.starts_with("\r\n-- \r\n")
                && footer.contains(&format!("Leave the list: {url}\r\n")),
            "{footer}"
        );
        urls.insert(url);
        assert_eq!(
            copy.parsed().from().unwrap().first().unwrap().address(),
            Some("anne@example.net"),
            "no DMARC policy published: From unchanged"
        );
    }
    assert_eq!(urls.len(), 4, "an unsubscribe URL per member");
    assert_eq!(senders.len(), 4, "a VERP sender per member");

    // one click from Bob's copy, as a mailbox provider makes it (RFC 8058)
    let bob_url = assert_list_headers(&s, &copies_to(&s, "bob@example.com")[0], "[dev] Hello");
    let r = http()
        .post(&bob_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    post(&s, "Carol <carol@example.org>", "Second", "");
    s.process().await;
    assert_eq!(
        copies_to(&s, "bob@example.com").len(),
        1,
        "Bob left: nothing new"
    );
    for who in ["anne@example.net", "carol@example.org", "dave@example.net"] {
        assert_eq!(copies_to(&s, who).len(), 2, "{who} gets the second post");
    }
    let info = s.cli(&["lists", "show", LIST, "--json"]).json();
    assert_eq!(info["posts"], 2, "both posts archived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_from_a_stranger_is_held_and_approval_releases_it() {
    let s = server(&[]).await;
    add_members(&s, &["anne@example.net", "bob@example.com"]);
    post(&s, "Mallory <mallory@example.com>", "Buy now", "");
    s.process().await;
    assert!(
        copies_to(&s, "anne@example.net").is_empty(),
        "nothing relayed"
    );

    let held = held_ls(&s);
    let held = held.as_array().unwrap();
    assert_eq!(held.len(), 1);
    let item = &held[0];
    assert_eq!(item["list"], LIST);
    assert_eq!(item["from"], "mallory@example.com");
    assert_eq!(item["subject"], "Buy now");
    assert!(item["reason"].as_str().unwrap().contains("not a member"));
    assert!(item["received_at"].as_str().unwrap().contains('T'));
    let id = item["id"].as_i64().unwrap().to_string();

    // one notice to the owner: subject, sender, reason, how to act
    let notices = s.sink.to(OWNER);
    assert_eq!(notices.len(), 1);
    let notice = notices[0].body_text();
    for needle in [
        "Buy now",
        "mallory@example.com",
        "not a member",
        &format!("listd held approve {id}"),
    ] {
        assert!(notice.contains(needle), "{needle} in {notice}");
    }
    assert_eq!(
        notices[0].header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert!(
        copies_to(&s, "mallory@example.com").is_empty(),
        "the stranger is not told"
    );

    let shown = s.cli(&["held", "show", &id]);
    assert_eq!(shown.code, 0, "{shown:?}");
    assert!(shown.stdout.contains("Buy now") && shown.stdout.contains("Hello all"));

    let info = s.cli(&["lists", "show", LIST, "--json"]).json();
    assert_eq!(
        (info["held"].clone(), info["posts"].clone()),
        (1.into(), 0.into())
    );
    let approved = s.cli(&["held", "approve", &id, "--reason", "a friend of the list"]);
    assert_eq!(approved.code, 0, "{approved:?}");
    let shown = s.cli(&["held", "show", &id, "--json"]).json();
    assert_eq!(shown["status"], "accepted");
    assert_eq!(
        shown["reason"], "a friend of the list",
        "the moderator's note is kept"
    );
    assert_eq!(shown["decided_by"], "cli");
    let info = s.cli(&["lists", "show", LIST, "--json"]).json();
    assert_eq!(
        (info["held"].clone(), info["posts"].clone()),
        (0.into(), 1.into())
    );
    s.deliver().await;
    for who in ["anne@example.net", "bob@example.com"] {
        let copies = copies_to(&s, who);
        assert_eq!(copies.len(), 1, "{who} gets the approved post");
        assert_list_headers(&s, &copies[0], "[dev] Buy now");
    }
    assert!(held_ls(&s).as_array().unwrap().is_empty());
    let again = s.cli(&["held", "approve", &id]);
    assert_eq!(again.code, 1, "approving twice fails: {again:?}");
    assert!(
        again.stderr.contains("not held") && again.stderr.contains("accepted by cli at "),
        "who decided, and when: {}",
        again.stderr
    );
    let unknown = s.cli(&["held", "discard", "999999"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("no message 999999"),
        "{}",
        unknown.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejecting_tells_the_poster_why_and_discarding_says_nothing() {
    let s = server(&["--posting", "moderated"]).await;
    add_members(&s, &["anne@example.net", "bob@example.com"]);
    post(&s, "Anne <anne@example.net>", "First", "");
    post(&s, "Anne <anne@example.net>", "Second", "");
    s.process().await;
    let held = held_ls(&s);
    let ids: Vec<String> = held
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_i64().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "a moderated list holds members' posts too");
    assert!(held[0]["reason"].as_str().unwrap().contains("moderated"));
    assert_eq!(s.sink.to(OWNER).len(), 2, "one notice per held post");

    let out = s.cli(&["held", "reject", &ids[0], "--reason", "off topic here"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.cli(&["held", "discard", &ids[1], "--reason", "duplicate"]);
    assert_eq!(out.code, 0, "{out:?}");
    s.deliver().await;
    let told: Vec<Captured> = s
        .sink
        .to("anne@example.net")
        .into_iter()
        .filter(|c| c.body_text().contains("was not sent"))
        .collect();
    assert_eq!(told.len(), 1, "one rejection notice, none for the discard");
    let text = told[0].body_text();
    assert!(
        text.contains("off topic here") && text.contains("First"),
        "{text}"
    );
    assert_eq!(
        told[0].header("Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert!(copies_to(&s, "bob@example.com").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonmember_posts_are_rejected_or_discarded_as_the_list_says() {
    let s = server(&["--nonmember-action", "reject"]).await;
    add_members(&s, &["anne@example.net"]);
    post(&s, "Zed <zed@example.com>", "Hi there", "");
    // an automatic message is never answered (E-32)
    post(
        &s,
        "Robot <robot@example.com>",
        "Out of office",
        "Auto-Submitted: auto-replied\r\n",
    );
    s.process().await;
    assert!(held_ls(&s).as_array().unwrap().is_empty(), "nothing held");
    let told = s.sink.to("zed@example.com");
    assert_eq!(told.len(), 1, "the stranger is told");
    assert!(told[0].body_text().contains("not a member"));
    assert!(
        s.sink.to("robot@example.com").is_empty(),
        "automatic mail is not answered"
    );
    assert!(copies_to(&s, "anne@example.net").is_empty());

    let out = s.cli(&["lists", "set", LIST, "nonmember-action=discard"]);
    assert_eq!(out.code, 0);
    post(&s, "Zed <zed@example.com>", "Again", "");
    s.process().await;
    assert_eq!(
        s.sink.to("zed@example.com").len(),
        1,
        "a discard says nothing"
    );
    assert!(copies_to(&s, "anne@example.net").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_lists_relay_only_owners_and_say_list_post_no() {
    let s = server(&["--posting", "announce"]).await;
    add_members(&s, &["anne@example.net", OWNER]);
    post(&s, "Anne <anne@example.net>", "Me too", "");
    s.process().await;
    assert!(copies_to(&s, OWNER).is_empty(), "a member's post is held");
    assert_eq!(held_ls(&s).as_array().unwrap().len(), 1);
    post(&s, &format!("Owner <{OWNER}>"), "News", "");
    s.process().await;
    let copies = copies_to(&s, "anne@example.net");
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].header("List-Post").as_deref(), Some("NO"), "A-3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_are_held_not_relayed() {
    let s = server(&["--posting", "open"]).await;
    add_members(&s, &["anne@example.net"]);
    // a copy of our own post coming back (E-31)
    post(
        &s,
        "Anne <anne@example.net>",
        "Echo",
        "List-Id: \"Dev\" <dev.lists.example.org>\r\n",
    );
    let hops: String = (0..31)
        .map(|i| format!("Received: from hop{i}.example.net by hop{}.example.net; Mon, 6 Jan 2025 10:00:00 +0000\r\n", i + 1))
        .collect();
    post(&s, "Anne <anne@example.net>", "Round and round", &hops);
    // another list's List-Id is not a loop: umbrella lists relay each other
    post(
        &s,
        "Anne <anne@example.net>",
        "From elsewhere",
        "List-Id: <other.example.com>\r\n",
    );
    s.process().await;
    let held = held_ls(&s);
    let reasons: Vec<&str> = held
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("List-Id"), "{}", reasons[0]);
    assert!(reasons[1].contains("31 Received"), "{}", reasons[1]);
    let copies = copies_to(&s, "anne@example.net");
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].parsed().subject(), Some("[dev] From elsewhere"));
    assert_eq!(
        copies[0].headers("List-Id").len(),
        1,
        "the poster's List-Id is replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_message_id_is_accepted_but_relayed_once() {
    let s = server(&[]).await;
    add_members(&s, &["anne@example.net", "bob@example.com"]);
    let message = mail("Anne <anne@example.net>", LIST, "Once", "", "only once");
    // the sending MTA missed our 250 and tries again (E-33)
    for _ in 0..2 {
        smtplib(s.smtp_port(), "anne@example.net", &[LIST], &message).expect("250 both times");
    }
    s.process().await;
    assert_eq!(copies_to(&s, "bob@example.com").len(), 1);
    let info = s.cli(&["lists", "show", LIST, "--json"]).json();
    assert_eq!(info["posts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_posters_list_headers_never_survive_and_the_prefix_is_added_once() {
    let s = server(&["--set", "reply-to=list"]).await;
    add_members(&s, &["anne@example.net", "bob@example.com"]);
    let forged = "List-Unsubscribe: <https://evil.example.com/u>\r\n\
        List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\
        List-Help: <mailto:evil@example.com>\r\n\
        Archived-At: <https://evil.example.com/a>\r\n\
        Precedence: bulk-ish\r\n";
    post(&s, "Anne <anne@example.net>", "Re: [dev] Hello", forged);
    s.process().await;
    let copies = copies_to(&s, "bob@example.com");
    assert_eq!(copies.len(), 1);
    let copy = &copies[0];
    assert_list_headers(&s, copy, "Re: [dev] Hello");
    assert!(!copy.text().contains("evil.example.com"), "A-6");
    let archived_at = copy.headers("Archived-At");
    assert_eq!(archived_at.len(), 1, "only the list's own Archived-At");
    assert!(
        archived_at[0].starts_with(&format!(
            "<{}/lists/dev.lists.example.org/archive/m/",
            s.base
        )),
        "{archived_at:?}"
    );
    assert_eq!(
        copy.reply_to_address(),
        LIST,
        "reply-to=list sets Reply-To to the list"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_subscribed_members_with_delivery_on_get_copies() {
    let s = server(&[]).await;
    add_members(
        &s,
        &["anne@example.net", "bob@example.com", "carol@example.org"],
    );
    let set = |who: &str, kv: &str| {
        let out = s.cli(&["members", "set", LIST, who, kv]);
        assert_eq!(out.code, 0, "{out:?}");
    };
    set("bob@example.com", "delivery=disabled");
    set("anne@example.net", "own-posts=disabled");
    // a pending subscriber gets nothing
    let r = http()
        .post(s.url("/lists/dev.lists.example.org/subscribe"))
        .form(&[("email", "pat@example.com"), ("website", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    post(&s, "Anne <anne@example.net>", "Quiet", "");
    s.process().await;
    assert!(
        copies_to(&s, "bob@example.com").is_empty(),
        "delivery disabled"
    );
    assert!(
        copies_to(&s, "anne@example.net").is_empty(),
        "own posts turned off"
    );
    assert!(copies_to(&s, "pat@example.com").is_empty(), "unconfirmed");
    assert_eq!(copies_to(&s, "carol@example.org").len(), 1);
    assert_eq!(
        copies_to(&s, OWNER).len(),
        0,
        "owners get posts only as members"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_workers_share_a_fan_out_without_sending_a_copy_twice() {
    let s = server(&["--posting", "open"]).await;
    let members: Vec<String> = (0..120).map(|i| format!("m{i}@example.net")).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    add_members(&s, &refs);
    post(&s, "Anne <anne@example.net>", "Shared", "");
    s.app.process_all_inbound().await.unwrap();
    // three workers of three processes on one database, racing (H-50)
    let workers: Vec<_> = (0..3).map(|_| s.worker.clone()).collect();
    let runs = workers
        .into_iter()
        .map(|w| tokio::spawn(async move { w.dispatch_all_pending().await.unwrap() }));
    let mut total = 0;
    for r in runs {
        total += r.await.unwrap();
    }
    assert_eq!(total, 120, "every copy claimed once");
    let received = s.sink.received();
    let rcpts: HashSet<&String> = received.iter().flat_map(|c| &c.rcpt_to).collect();
    assert_eq!(received.len(), 120, "no copy sent twice");
    assert_eq!(rcpts.len(), 120);
}

/// The From and Reply-To addresses of a copy, and its Cc.
fn addresses(copy: &Captured, header: &str) -> Vec<String> {
    let parsed = copy.parsed();
    let list = match header {
        "From" => parsed.from(),
        "Reply-To" => parsed.reply_to(),
        _ => parsed.cc(),
    };
    list.map(|l| {
        l.iter()
            .filter_map(|a| a.address().map(str::to_string))
            .collect()
    })
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_is_rewritten_only_for_authors_whose_domain_asks_for_it() {
    let s = server(&[]).await;
    add_members(
        &s,
        &[
            "anne@strict.example",
            "bob@sub.relaxed.example",
            "carol@example.org",
        ],
    );
    s.dns.set_txt(
        "_dmarc.strict.example",
        &["v=DMARC1; p=reject; rua=mailto:d@strict.example"],
    );
    // found at the organizational domain, with a subdomain policy (B-11)
    s.dns.set_txt(
        "_dmarc.relaxed.example",
        &["v=DMARC1; p=none; sp=quarantine"],
    );
    s.dns.set_txt("_dmarc.example.org", &["v=DMARC1; p=none"]);

    post(&s, "Anne Author <anne@strict.example>", "Strict", "");
    s.process().await;
    let copy = &copies_to(&s, "carol@example.org")[0];
    assert_eq!(addresses(copy, "From"), [LIST]);
    let from = copy
        .parsed()
        .from()
        .unwrap()
        .first()
        .unwrap()
        .name()
        .unwrap()
        .to_string();
    assert_eq!(from, "Anne Author via Dev");
    assert_eq!(addresses(copy, "Reply-To"), ["anne@strict.example"]);

    post(&s, "Bob <bob@sub.relaxed.example>", "Sub", "");
    s.process().await;
    let copy = &copies_to(&s, "carol@example.org")[1];
    assert_eq!(
        addresses(copy, "From"),
        [LIST],
        "sp=quarantine applies to subdomains"
    );

    post(&s, "Carol <carol@example.org>", "Relaxed", "");
    s.process().await;
    let copy = &copies_to(&s, "anne@strict.example")[2];
    assert_eq!(
        addresses(copy, "From"),
        ["carol@example.org"],
        "p=none: From unchanged"
    );
    assert!(copy.headers("Reply-To").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_that_replies_to_itself_puts_a_rewritten_author_in_cc() {
    let s = server(&[
        "--set",
        "reply-to=list",
        "--dmarc",
        "always",
        "--posting",
        "open",
    ])
    .await;
    add_members(&s, &["bob@example.com"]);
    post(&s, "Anne <anne@example.net>", "Always", "");
    s.process().await;
    let copy = &copies_to(&s, "bob@example.com")[0];
    assert_eq!(
        addresses(copy, "From"),
        [LIST],
        "always: every copy rewritten (B-12)"
    );
    assert_eq!(addresses(copy, "Reply-To"), [LIST]);
    assert_eq!(addresses(copy, "Cc"), ["anne@example.net"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrap_sends_the_original_whole_inside_a_message_from_the_list() {
    let s = server(&["--dmarc", "wrap", "--posting", "open"]).await;
    add_members(&s, &["bob@example.com"]);
    let sent = post(&s, "Anne <anne@strict.example>", "Wrapped", "");
    s.process().await;
    let copy = &copies_to(&s, "bob@example.com")[0];
    assert_eq!(addresses(copy, "From"), [LIST]);
    let parsed = copy.parsed();
    let inner = parsed
        .attachments()
        .find_map(|p| p.message())
        .expect("a message/rfc822 part");
    assert_eq!(inner.subject(), Some("Wrapped"));
    assert!(
        copy.data.windows(sent.len()).any(|w| w == sent.as_bytes()),
        "the original travels byte for byte"
    );
    assert_list_headers(&s, copy, "[dev] Wrapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_keeps_from_and_lists_show_warns_about_the_prefix() {
    let s = server(&["--dmarc", "never"]).await;
    add_members(&s, &["anne@strict.example", "bob@example.com"]);
    s.dns
        .set_txt("_dmarc.strict.example", &["v=DMARC1; p=reject"]);
    post(&s, "Anne <anne@strict.example>", "Never", "");
    s.process().await;
    let copy = &copies_to(&s, "bob@example.com")[0];
    assert_eq!(addresses(copy, "From"), ["anne@strict.example"]);
    let show = s.cli(&["lists", "show", LIST]);
    assert!(
        show.stdout.contains("warning:") && show.stdout.contains("DKIM"),
        "B-13: {}",
        show.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_mid_fan_out_costs_at_most_its_copies_in_flight() {
    let s = server(&["--posting", "open"]).await;
    let members: Vec<String> = (0..40).map(|i| format!("m{i}@example.net")).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    add_members(&s, &refs);
    post(&s, "Anne <anne@example.net>", "Interrupted", "");
    s.app.process_all_inbound().await.unwrap();
    // a worker claims ten copies and dies before sending them (H-50)
    let claimed = listd::store::outbound::claim_due(&s.db.pool, 10, 300.0)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 10);
    s.deliver().await;
    assert_eq!(
        s.sink.received().len(),
        30,
        "the claimed copies wait for their lease"
    );
    // the lease runs out: the copies are due again and go, once
    sqlx::query("update outbound set locked_until = now() - interval '1 second' where locked_until is not null")
        .execute(&s.db.pool)
        .await
        .unwrap();
    s.deliver().await;
    let received = s.sink.received();
    let rcpts: HashSet<&String> = received.iter().flat_map(|c| &c.rcpt_to).collect();
    assert_eq!(received.len(), 40, "no copy sent twice");
    assert_eq!(rcpts.len(), 40, "every member got the post");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_a_post_again_does_not_relay_it_again() {
    let s = server(&["--posting", "open"]).await;
    add_members(&s, &["bob@example.com"]);
    // no Message-ID, so only the record of the received message tells a repeat
    let message = "From: Anne <anne@example.net>\r\nTo: dev@lists.example.org\r\nSubject: Once\r\n\r\nbody\r\n";
    smtplib(s.smtp_port(), "anne@example.net", &[LIST], message).unwrap();
    s.process().await;
    assert_eq!(copies_to(&s, "bob@example.com").len(), 1);
    // a crash after the post was committed but before the message was marked done
    sqlx::query("update inbound set status = 'new'")
        .execute(&s.db.pool)
        .await
        .unwrap();
    s.process().await;
    assert_eq!(copies_to(&s, "bob@example.com").len(), 1, "relayed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_stored_before_an_upgrade_is_processed_after_it() {
    let s = server(&["--posting", "open"]).await;
    add_members(&s, &["bob@example.com"]);
    // a message accepted by an earlier version and not yet processed when it stopped:
    // its recipients as that version wrote them, every action with a token, null when
    // it had none
    let message = "From: Anne <anne@example.net>\r\nTo: dev@lists.example.org\r\nSubject: Kept\r\nMessage-ID: <kept@example.net>\r\n\r\nbody\r\n";
    let recipients = serde_json::json!([
        {"address": LIST, "list_id": "dev.lists.example.org", "action": "post", "token": null},
        {"address": "dev+help@lists.example.org", "list_id": "dev.lists.example.org",
         "action": "help", "token": null},
        {"address": "dev+confirm+nosuchtoken@lists.example.org",
         "list_id": "dev.lists.example.org", "action": "confirm", "token": "nosuchtoken"},
    ]);
    sqlx::query("insert into inbound (mail_from, recipients, raw) values ($1, $2, $3)")
        .bind("anne@example.net")
        .bind(&recipients)
        .bind(message.as_bytes())
        .execute(&s.db.pool)
        .await
        .unwrap();
    s.process().await;
    let (status, outcome): (String, String) = sqlx::query_as("select status, outcome from inbound")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "done", "{outcome}");
    assert!(outcome.contains("post: post"), "{outcome}");
    assert!(outcome.contains("help: help sent"), "{outcome}");
    assert!(outcome.contains("confirm: unknown token"), "{outcome}");
    assert_eq!(
        copies_to(&s, "bob@example.com").len(),
        1,
        "the post is relayed"
    );
    assert_eq!(s.sink.to("anne@example.net").len(), 1, "the help is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_says_354_after_refusing_the_recipient_is_left_not_fed() {
    let s = server(&["--posting", "open"]).await;
    add_members(&s, &["gone@example.net", "bob@example.com"]);
    s.sink
        .rcpt_replies
        .lock()
        .unwrap()
        .insert("gone@example.net".into(), "550 5.1.1 no such user".into());
    s.sink.quirks.lock().unwrap().data_after_refusal = true;
    post(&s, "Anne <anne@example.net>", "Quirky", "");
    s.app.process_all_inbound().await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), s.deliver())
        .await
        .expect("delivery does not wait on a relay expecting data");
    assert_eq!(copies_to(&s, "bob@example.com").len(), 1);
    assert!(
        s.sink.to("gone@example.net").is_empty(),
        "no empty message sent"
    );
    let (status, error): (String, String) = sqlx::query_as(
        "select status, last_error from outbound where recipient = 'gone@example.net'",
    )
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(status, "failed", "the 550 is final");
    assert!(error.contains("no such user"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_after_the_data_is_not_resent_at_once() {
    let s = server(&["--posting", "open"]).await;
    add_members(&s, &["bob@example.com"]);
    s.sink
        .quirks
        .lock()
        .unwrap()
        .hang_up_after_data_for
        .insert("bob@example.com".into());
    post(&s, "Anne <anne@example.net>", "Lost reply", "");
    s.process().await;
    // the relay may have the message: a new connection does not repeat it (RFC 1047),
    // the copy waits for its retry like any 4xx
    assert_eq!(copies_to(&s, "bob@example.com").len(), 1);
    let (status, attempts): (String, i32) =
        sqlx::query_as("select status, attempts from outbound where post_id is not null")
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("queued", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_posts_are_relayed_byte_for_byte() {
    let s = server(&["--posting", "open"]).await;
    let out = s.cli(&["lists", "set", LIST, "footer=off"]);
    assert_eq!(out.code, 0, "{out:?}");
    add_members(&s, &["bob@example.com", "carol@example.org"]);
    // far past the socket's 64 KB hold-back, with lines that need dot-stuffing
    let line: String = ".leading dot and some text to make a long enough line of mail\r\n".into();
    let body = line.repeat(3000);
    let message = mail("Anne <anne@example.net>", LIST, "Large", "", &body);
    smtplib(s.smtp_port(), "anne@example.net", &[LIST], &message).unwrap();
    s.process().await;
    for who in ["bob@example.com", "carol@example.org"] {
        let copies = copies_to(&s, who);
        assert_eq!(copies.len(), 1);
        assert_eq!(body_of(&copies[0].data), body_of(message.as_bytes()));
    }
    assert!(s.sink.connections.load(std::sync::atomic::Ordering::SeqCst) <= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_still_queued_for_members_who_left_or_paused_are_not_sent() {
    let s = server(&["--posting", "open"]).await;
    add_members(
        &s,
        &["anne@example.net", "bob@example.com", "carol@example.org"],
    );
    post(&s, "Anne <anne@example.net>", "Queued", "");
    s.app.process_all_inbound().await.unwrap(); // fanned out, nothing sent yet
    assert_eq!(
        s.cli(&["members", "remove", LIST, "bob@example.com"]).code,
        0
    );
    let out = s.cli(&[
        "members",
        "set",
        LIST,
        "carol@example.org",
        "delivery=disabled",
    ]);
    assert_eq!(out.code, 0);
    s.deliver().await;
    assert_eq!(copies_to(&s, "anne@example.net").len(), 1);
    assert!(
        copies_to(&s, "bob@example.com").is_empty(),
        "left before the copy went"
    );
    assert!(
        copies_to(&s, "carol@example.org").is_empty(),
        "paused before the copy went"
    );
    let cancelled: i64 = sqlx::query_scalar(
        "select count(*) from outbound where post_id is not null and status = 'cancelled'",
    )
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(cancelled, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_on_the_allow_list_post_as_members_do() {
    let s = server(&[]).await;
    add_members(&s, &["anne@example.net"]);
    let out = s.cli(&[
        "lists",
        "set",
        LIST,
        "accept-senders=Zed@Example.com, bot@example.org",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let info = s.cli(&["lists", "show", LIST, "--json"]).json();
    assert_eq!(
        info["accept_senders"],
        serde_json::json!(["Zed@example.com", "bot@example.org"])
    );
    let shown = s.cli(&["lists", "show", LIST]);
    assert!(
        shown.stdout.contains("accept-senders") && shown.stdout.contains("Zed@example.com"),
        "{}",
        shown.stdout
    );
    post(&s, "Zed <zed@example.com>", "From a friend", "");
    post(&s, "Yan <yan@example.com>", "From a stranger", "");
    s.process().await;
    let copies = copies_to(&s, "anne@example.net");
    assert_eq!(copies.len(), 1, "only the accepted sender's post");
    assert!(copies[0].text().contains("From a friend"));
    let held = held_ls(&s);
    assert_eq!(held.as_array().unwrap().len(), 1);
    assert_eq!(held[0]["from"], "yan@example.com");

    let bad = s.cli(&["lists", "set", LIST, "accept-senders=nobody"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("nobody"), "{}", bad.stderr);
    let info = s.cli(&["lists", "show", LIST, "--json"]).json();
    assert_eq!(info["accept_senders"].as_array().unwrap().len(), 2);
}
