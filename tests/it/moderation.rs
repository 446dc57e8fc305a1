//! Moderation by reply, end to end: a held post's notice carries
//! `Reply-To: L+moderate+TOKEN@D`; replies are sent over real SMTP, processed from
//! PostgreSQL, and what they did is read with the CLI and the capture sink.

use crate::harness::{Captured, TestServer, smtplib};

const LIST: &str = "dev@lists.example.org";
const OWNER: &str = "owner@example.org";
const MODERATOR: &str = "Mod@Example.net";

async fn server() -> TestServer {
    let s = TestServer::start().await;
    let out = s.cli(&["lists", "create", LIST, "--name", "Dev", "--owner", OWNER]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.cli(&["members", "add", LIST, MODERATOR, "--role", "moderator"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.cli(&["members", "add", LIST, "anne@example.net"]);
    assert_eq!(out.code, 0, "{out:?}");
    s
}

fn send(s: &TestServer, from: &str, to: &str, subject: &str, extra: &str, body: &str) {
    let message = crate::harness::mail(from, to, subject, extra, body);
    smtplib(s.smtp_port(), from, &[to], &message).expect("accepted (250)");
}

/// Posts as a stranger; returns the post's id and the notice the moderator got.
async fn held_post(s: &TestServer, subject: &str) -> (String, Captured) {
    send(s, "mallory@example.com", LIST, subject, "", "Buy now!\r\n");
    s.process().await;
    let held = s.cli(&["held", "ls", "--json"]).json();
    let id = held
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["subject"] == subject)
        .expect("the post is held")["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let notice = s
        .sink
        .to("mod@example.net")
        .into_iter()
        .find(|c| {
            c.header("Subject")
                .is_some_and(|h| h.contains(&format!("message {id}")))
        })
        .expect("the moderator is told");
    (id, notice)
}

fn copies_to(s: &TestServer, rcpt: &str) -> Vec<Captured> {
    s.sink
        .to(rcpt)
        .into_iter()
        .filter(|c| c.mail_from.contains("+bounces+m"))
        .collect()
}

fn held_show(s: &TestServer, id: &str) -> serde_json::Value {
    s.cli(&["held", "show", id, "--json"]).json()
}

/// A reply as a mail client writes it: the answer on top, the notice quoted below.
fn reply_body(first_lines: &str, notice: &Captured) -> String {
    let quoted: String = notice
        .body_text()
        .lines()
        .map(|l| format!("> {l}\r\n"))
        .collect();
    format!("{first_lines}\r\n\r\nOn Monday the list wrote:\r\n{quoted}")
}

fn last_inbound_outcome(s: &TestServer) -> String {
    let ls = s.cli(&["inbound", "ls", "--json"]).json();
    ls.as_array()
        .unwrap()
        .iter()
        .max_by_key(|m| m["id"].as_i64())
        .unwrap()["outcome"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_approves_by_reply_once_and_strangers_and_robots_change_nothing() {
    let s = server().await;
    let (id, notice) = held_post(&s, "Cheap watches").await;
    let reply_to = notice.reply_to_address();
    let token = reply_to
        .strip_prefix("dev+moderate+")
        .and_then(|t| t.strip_suffix("@lists.example.org"))
        .unwrap_or_else(|| panic!("Reply-To is L+moderate+TOKEN@D: {reply_to}"));
    assert_eq!(token.len(), 20);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    let text = notice.body_text();
    assert!(
        text.contains("approve") && text.contains("reject"),
        "{text}"
    );
    assert!(
        text.contains(&s.url("/admin/lists/dev.lists.example.org/held")),
        "{text}"
    );
    let to_owner = s.sink.to(OWNER);
    assert_eq!(
        to_owner[0].reply_to_address(),
        reply_to,
        "one token per held post, for every moderator"
    );

    // a stranger who learnt the address
    send(
        &s,
        "zed@example.com",
        &reply_to,
        "Re: held",
        "",
        "approve\r\n",
    );
    s.process().await;
    assert!(last_inbound_outcome(&s).contains("not an owner or moderator"));
    // an automatic reply from the moderator's own mailbox
    send(
        &s,
        "mod@example.net",
        &reply_to,
        "Out of office",
        "Auto-Submitted: auto-replied\r\n",
        "approve\r\n",
    );
    s.process().await;
    assert!(last_inbound_outcome(&s).contains("automatic"));
    // a reply whose first unquoted line is not a decision
    send(
        &s,
        "mod@example.net",
        &reply_to,
        "Re: held",
        "",
        &reply_body("Hmm, who is this?", &notice),
    );
    s.process().await;
    assert!(last_inbound_outcome(&s).contains("nothing decided"));
    assert_eq!(held_show(&s, &id)["status"], "held");
    assert!(copies_to(&s, "anne@example.net").is_empty());

    // the moderator approves (address in another case than on the roster)
    send(
        &s,
        "MOD@example.net",
        &reply_to.to_uppercase(),
        "Re: held",
        "",
        &reply_body("Approve", &notice),
    );
    s.process().await;
    let shown = held_show(&s, &id);
    assert_eq!(shown["status"], "accepted");
    assert_eq!(shown["decided_by"], "MOD@example.net");
    assert_eq!(copies_to(&s, "anne@example.net").len(), 1, "relayed");

    // the owner's later "reject" decides nothing: it was decided, and the log says by whom
    send(&s, OWNER, &reply_to, "Re: held", "", "reject spam\r\n");
    s.process().await;
    let outcome = last_inbound_outcome(&s);
    assert!(
        outcome.contains("not decided again") && outcome.contains("accepted by MOD@example.net"),
        "{outcome}"
    );
    assert_eq!(held_show(&s, &id)["decided_by"], "MOD@example.net");
    s.deliver().await;
    assert_eq!(copies_to(&s, "anne@example.net").len(), 1, "relayed once");
    assert!(
        s.sink
            .to("mallory@example.com")
            .iter()
            .all(|c| !c.body_text().contains("spam")),
        "the sender is not told of a decision that was not made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_rejects_by_reply_and_the_sender_gets_the_reason() {
    let s = server().await;
    let (id, notice) = held_post(&s, "Offer").await;
    send(
        &s,
        OWNER,
        &notice.reply_to_address(),
        "Re: held",
        "",
        &reply_body("reject: adverts are not for this list", &notice),
    );
    s.process().await;
    let shown = held_show(&s, &id);
    assert_eq!(
        (shown["status"].clone(), shown["decided_by"].clone()),
        ("rejected".into(), OWNER.into())
    );
    let told = s.sink.to("mallory@example.com");
    assert!(
        told.iter()
            .any(|c| c.body_text().contains("adverts are not for this list")),
        "the sender gets the reason"
    );
    assert!(copies_to(&s, "anne@example.net").is_empty());
}
