//! Joining and leaving on the web, end to end: real HTTP, a real PostgreSQL, the
//! delivery worker relaying to a capturing SMTP sink, links followed from the mail.
//! One test per rule of docs/standards.md sections C and D that the web covers.

use crate::harness::{Captured, TestServer, find_link, http};
use std::time::Duration;

const LIST: &str = "dev@lists.example.org";

async fn server_with_list() -> TestServer {
    let s = TestServer::start().await;
    let out = s.cli(&["lists", "create", LIST, "--name", "Dev"]);
    assert_eq!(out.code, 0, "{out:?}");
    s
}

async fn subscribe(s: &TestServer, email: &str) -> reqwest::Response {
    http()
        .post(s.url("/lists/dev.lists.example.org/subscribe"))
        .form(&[("email", email), ("name", "Anne Example"), ("website", "")])
        .send()
        .await
        .unwrap()
}

/// Subscribes, delivers, and returns the confirmation mail.
async fn request_and_get_confirmation(s: &TestServer, email: &str) -> Captured {
    let before = s.sink.to(email).len();
    assert_eq!(subscribe(s, email).await.status(), 200);
    s.deliver().await;
    let mails = s.sink.to(email);
    assert_eq!(mails.len(), before + 1, "one confirmation for {email}");
    mails[before].clone()
}

/// The full web flow: returns the welcome mail.
async fn join(s: &TestServer, email: &str) -> Captured {
    let confirmation = request_and_get_confirmation(s, email).await;
    let link =
        find_link(&confirmation.body_text(), &s.url("/confirm/")).expect("a confirmation link");
    let done = http().post(&link).send().await.unwrap();
    assert_eq!(done.status(), 200);
    s.deliver().await;
    let welcome = s
        .sink
        .to(email)
        .into_iter()
        .rev()
        .find(|m| m.header("Subject").unwrap_or_default().contains("Welcome"));
    welcome.expect("a welcome mail")
}

fn member_status(s: &TestServer, email: &str) -> Option<String> {
    let out = s.cli(&["members", "show", LIST, email, "--json"]);
    (out.code == 0).then(|| out.json()["status"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn subscribing_confirming_from_the_mail_and_listing_the_member() {
    let s = server_with_list().await;
    let confirmation = request_and_get_confirmation(&s, "anne@example.net").await;
    assert_eq!(
        member_status(&s, "anne@example.net").as_deref(),
        Some("pending"),
        "pending until confirmed (D-21)"
    );
    assert!(
        s.cli(&["members", "ls", LIST, "--json"])
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );

    let link = find_link(&confirmation.body_text(), &s.url("/confirm/")).unwrap();
    let page = http().get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<form method=\"post\"") && html.contains("Confirm subscription"),
        "{html}"
    );
    assert_eq!(
        member_status(&s, "anne@example.net").as_deref(),
        Some("pending"),
        "GET changes nothing (D-23)"
    );

    let done = http().post(&link).send().await.unwrap();
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("You are subscribed"));

    let members = s.cli(&["members", "ls", LIST, "--json"]).json();
    assert_eq!(members[0]["address"], "anne@example.net");
    assert_eq!(members[0]["status"], "subscribed");
    assert_eq!(members[0]["delivery"], "enabled");
    assert_eq!(members[0]["role"], "member");
    assert!(members[0]["subscribed_at"].as_str().unwrap().contains('T'));

    s.deliver().await;
    let welcome = s.sink.to("anne@example.net").into_iter().last().unwrap();
    assert!(welcome.header("Subject").unwrap().contains("Welcome"));
    assert!(
        find_link(&welcome.body_text(), &s.url("/unsubscribe/")).is_some(),
        "welcome carries a way out"
    );
}

#[tokio::test]
async fn a_confirmation_leaves_without_waiting_for_the_workers_poll() {
    let s = server_with_list().await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(s.worker.clone().run(stop_rx.clone()));
    // the form's request is carried out by the inbound worker
    let inbound = tokio::spawn(s.app.clone().run_inbound_worker(stop_rx));
    s.db.wait_listening(&[
        listd::store::wakeup::OUTBOUND,
        listd::store::wakeup::INBOUND,
    ])
    .await;
    let started = std::time::Instant::now();
    assert_eq!(subscribe(&s, "quick@example.net").await.status(), 200);
    // the workers poll every 5 s when nothing wakes them: arriving well before that
    // shows that the request woke them (a bound with room for a busy machine)
    let got = s.sink.wait_for(1, Duration::from_secs(4)).await;
    assert_eq!(got.len(), 1, "not woken: took {:?}", started.elapsed());
    stop_tx.send(true).unwrap();
    worker.await.unwrap();
    inbound.await.unwrap();
}

#[tokio::test]
async fn the_confirmation_mail_follows_the_rules_for_automatic_mail() {
    let s = server_with_list().await;
    let m = request_and_get_confirmation(&s, "anne@example.net").await;
    // docs/standards.md#25 and docs/contract.md#mail
    assert_eq!(
        m.header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert_eq!(
        m.headers("List-Id"),
        vec!["\"Dev\" <dev.lists.example.org>".to_string()]
    );
    assert!(m.header("List-Unsubscribe-Post").is_none());
    assert!(
        !m.text().contains("Anne Example"),
        "the name field is never echoed"
    );
    let from = m
        .parsed()
        .from()
        .unwrap()
        .first()
        .unwrap()
        .address()
        .unwrap()
        .to_string();
    assert_eq!(from, "dev+owner@lists.example.org");
    // a non-null envelope sender at D, of its own, so a bounce names the address
    assert!(
        m.mail_from.starts_with("dev+bounces+o") && m.mail_from.ends_with("@lists.example.org"),
        "{}",
        m.mail_from
    );
    let token = find_link(&m.body_text(), &s.url("/confirm/"))
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    // the reply address carries a short token of its own (100 bits, lower-case
    // base32), so that it fits 64 octets; the subject carries it too, never the link's
    let reply_to = m.header("Reply-To").unwrap();
    let short = reply_to
        .strip_prefix("<dev+confirm+")
        .and_then(|t| t.strip_suffix("@lists.example.org>"))
        .unwrap_or_else(|| panic!("{reply_to}"));
    assert_eq!(short.len(), 20, "{short}");
    assert!(
        short
            .bytes()
            .all(|b| b"abcdefghijklmnopqrstuvwxyz234567".contains(&b))
    );
    let subject = m.parsed().subject().unwrap().to_string();
    assert!(
        subject.contains(short),
        "the subject carries the reply token"
    );
    assert!(!subject.contains(&token), "but not the link's long token");
    // D-22: ≥ 128 bits, URL-safe
    assert!(
        token.len() >= 22
            && token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
}

#[tokio::test]
async fn tokens_are_stored_hashed_used_once_and_expire() {
    let s = server_with_list().await;
    let m = request_and_get_confirmation(&s, "anne@example.net").await;
    let link = find_link(&m.body_text(), &s.url("/confirm/")).unwrap();
    let token = link.rsplit('/').next().unwrap();
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("select token_hash from pending_request")
        .fetch_all(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(
        !String::from_utf8_lossy(&stored[0]).contains(token),
        "only a hash is kept"
    );

    assert_eq!(http().post(&link).send().await.unwrap().status(), 200);
    let again = http().post(&link).send().await.unwrap();
    assert_eq!(again.status(), 410, "single use");
    // the person the link was for is told the truth, with the way to the list
    let page = again.text().await.unwrap();
    assert!(page.contains("already been used"), "{page}");
    assert!(page.contains("anne@example.net is subscribed"), "{page}");
    assert!(
        page.contains("dev.lists.example.org\">"),
        "a link to the list page: {page}"
    );
    let get = http().get(&link).send().await.unwrap();
    assert_eq!(get.status(), 410);
    assert!(get.text().await.unwrap().contains("is subscribed"));

    // an expired request confirms nothing
    let m = request_and_get_confirmation(&s, "bob@example.net").await;
    let link = find_link(&m.body_text(), &s.url("/confirm/")).unwrap();
    sqlx::query("update pending_request set expires_at = now() - interval '1 minute' where address = 'bob@example.net'")
        .execute(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(http().post(&link).send().await.unwrap().status(), 410);
    assert_eq!(
        member_status(&s, "bob@example.net").as_deref(),
        Some("pending")
    );

    let unknown = http()
        .post(s.url("/confirm/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        http()
            .post(s.url("/confirm/garbage"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn head_and_get_of_a_confirmation_link_change_nothing() {
    let s = server_with_list().await;
    let m = request_and_get_confirmation(&s, "anne@example.net").await;
    let link = find_link(&m.body_text(), &s.url("/confirm/")).unwrap();
    for _ in 0..3 {
        assert_eq!(http().head(&link).send().await.unwrap().status(), 200);
        assert_eq!(http().get(&link).send().await.unwrap().status(), 200);
    }
    assert_eq!(
        member_status(&s, "anne@example.net").as_deref(),
        Some("pending")
    );
}

#[tokio::test]
async fn every_address_gets_the_same_answer() {
    let s = server_with_list().await;
    join(&s, "member@example.net").await;
    subscribe(&s, "pending@example.net").await;
    let left = join(&s, "left@example.net").await;
    let link = find_link(&left.body_text(), &s.url("/unsubscribe/")).unwrap();
    assert_eq!(http().post(&link).send().await.unwrap().status(), 200);

    let mut answers = Vec::new();
    for email in [
        "new@example.net",
        "pending@example.net",
        "member@example.net",
        "left@example.net",
    ] {
        let r = subscribe(&s, email).await;
        let status = r.status();
        let body = r.text().await.unwrap().replace(email, "ADDRESS");
        answers.push((status, body));
    }
    for a in &answers[1..] {
        assert_eq!(a, &answers[0], "D-20: no enumeration");
    }
}

#[tokio::test]
async fn a_filled_honeypot_gets_the_neutral_page_and_nothing_is_sent() {
    let s = server_with_list().await;
    let r = http()
        .post(s.url("/lists/dev.lists.example.org/subscribe"))
        .form(&[
            ("email", "bot@example.net"),
            ("website", "http://spam.example"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Check your inbox"));
    s.deliver().await;
    assert!(s.sink.received().is_empty());
    assert_eq!(member_status(&s, "bot@example.net"), None);
}

#[tokio::test]
async fn requests_for_one_address_are_rate_limited_quietly() {
    let s = server_with_list().await;
    for _ in 0..4 {
        assert_eq!(subscribe(&s, "anne@example.net").await.status(), 200);
    }
    s.deliver().await;
    assert_eq!(
        s.sink.to("anne@example.net").len(),
        1,
        "one confirmation per 10 minutes (D-27)"
    );
}

#[tokio::test]
async fn too_many_posts_from_one_ip_get_429() {
    let s = TestServer::start_with(|c| {
        c.rate_per_ip = Some(listd::config::Rate {
            count: 2,
            per: Duration::from_secs(3600),
        })
    })
    .await;
    s.cli(&["lists", "create", LIST]);
    assert_eq!(subscribe(&s, "a@example.net").await.status(), 200);
    assert_eq!(subscribe(&s, "b@example.net").await.status(), 200);
    let third = subscribe(&s, "c@example.net").await;
    assert_eq!(third.status(), 429);
    let json = http()
        .post(s.url("/lists/dev.lists.example.org/subscribe"))
        .header("Accept", "application/json")
        .form(&[("email", "d@example.net")])
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 429);
    assert!(json.json::<serde_json::Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn an_invalid_address_gets_400_with_the_form_and_the_reason() {
    let s = server_with_list().await;
    let r = subscribe(&s, "not an address").await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("is not an email address") && html.contains("<form"),
        "{html}"
    );
    let json = http()
        .post(s.url("/lists/dev.lists.example.org/subscribe"))
        .header("Accept", "application/json")
        .form(&[("email", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 400);
    assert!(
        json.json::<serde_json::Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    let missing = http()
        .post(s.url("/lists/nope.example.org/subscribe"))
        .form(&[("email", "a@example.net")]);
    assert_eq!(missing.send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn the_form_works_as_a_cross_site_multipart_post_and_answers_json() {
    let s = server_with_list().await;
    let form = reqwest::multipart::Form::new()
        .text("email", "anne@example.net")
        .text("name", "Anne");
    let r = http()
        .post(s.url("/lists/dev@lists.example.org/subscribe"))
        .header("Origin", "https://sig.example.org")
        .header("Referer", "https://sig.example.org/join")
        .header("Accept", "application/json")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status": "pending"})
    );
    s.deliver().await;
    assert_eq!(s.sink.to("anne@example.net").len(), 1);
}

#[tokio::test]
async fn one_click_unsubscribe_works_without_cookies_and_repeats_harmlessly() {
    let s = server_with_list().await;
    let welcome = join(&s, "anne@example.net").await;
    let link = find_link(&welcome.body_text(), &s.url("/unsubscribe/")).unwrap();

    // C-15: GET and HEAD change nothing; GET shows one button posting to the URI
    assert_eq!(http().head(&link).send().await.unwrap().status(), 200);
    let page = http()
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // one button posts to the link itself; the others offer pausing or a digest
    // instead, posting elsewhere (docs/contract.md#signin)
    let token = link.rsplit('/').next().unwrap();
    let page = page.replace("&#x2f;", "/");
    let action = format!("action=\"/unsubscribe/{token}\"");
    assert_eq!(page.matches(action.as_str()).count(), 1, "{page}");
    assert_eq!(page.matches("<button").count(), 3, "{page}");
    assert_eq!(
        page.matches(format!("action=\"/preferences/{token}\"").as_str())
            .count(),
        2,
        "{page}"
    );
    assert_eq!(
        member_status(&s, "anne@example.net").as_deref(),
        Some("subscribed")
    );

    // C-14: RFC 8058 one-click, urlencoded, no cookie, Origin or Referer
    let r = http()
        .post(&link)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert_eq!(
        member_status(&s, "anne@example.net").as_deref(),
        Some("unsubscribed"),
        "before the response"
    );
    let again = http()
        .post(&link)
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200, "repeating is harmless");

    s.deliver().await;
    let goodbye = s.sink.to("anne@example.net").into_iter().last().unwrap();
    assert!(goodbye.header("Subject").unwrap().contains("left"));
}

#[tokio::test]
async fn one_click_accepts_multipart_bodies() {
    let s = server_with_list().await;
    let welcome = join(&s, "anne@example.net").await;
    let link = find_link(&welcome.body_text(), &s.url("/unsubscribe/")).unwrap();
    let form = reqwest::multipart::Form::new().text("List-Unsubscribe", "One-Click");
    assert_eq!(
        http()
            .post(&link)
            .multipart(form)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        member_status(&s, "anne@example.net").as_deref(),
        Some("unsubscribed")
    );
}

#[tokio::test]
async fn a_modified_unsubscribe_token_is_refused_and_changes_nothing() {
    let s = server_with_list().await;
    let welcome = join(&s, "anne@example.net").await;
    let link = find_link(&welcome.body_text(), &s.url("/unsubscribe/")).unwrap();
    let mut forged = link.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for url in [
        forged.as_str(),
        &s.url("/unsubscribe/garbage"),
        &s.url("/unsubscribe/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let r = http()
            .post(url)
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{url}: {}", r.status());
        assert!(
            http()
                .get(url)
                .send()
                .await
                .unwrap()
                .status()
                .is_client_error()
        );
    }
    assert_eq!(
        member_status(&s, "anne@example.net").as_deref(),
        Some("subscribed")
    );
}

#[tokio::test]
async fn the_unsubscribe_token_outlives_confirmation_tokens_but_not_the_membership() {
    let s = server_with_list().await;
    let welcome = join(&s, "anne@example.net").await;
    let old_link = find_link(&welcome.body_text(), &s.url("/unsubscribe/")).unwrap();
    // every confirmation token long expired: the unsubscribe token does not depend on them
    sqlx::query("update pending_request set expires_at = now() - interval '400 days'")
        .execute(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(http().get(&old_link).send().await.unwrap().status(), 200);
    assert_eq!(http().post(&old_link).send().await.unwrap().status(), 200);
    assert_eq!(
        member_status(&s, "anne@example.net").as_deref(),
        Some("unsubscribed")
    );

    // after joining again, the old membership's link does not end the new one
    sqlx::query("delete from pending_request")
        .execute(&s.db.pool)
        .await
        .unwrap();
    sqlx::query("delete from outbound")
        .execute(&s.db.pool)
        .await
        .unwrap();
    let welcome = join(&s, "anne@example.net").await;
    assert!(
        http()
            .post(&old_link)
            .send()
            .await
            .unwrap()
            .status()
            .is_client_error()
    );
    assert_eq!(
        member_status(&s, "anne@example.net").as_deref(),
        Some("subscribed")
    );
    let new_link = find_link(&welcome.body_text(), &s.url("/unsubscribe/")).unwrap();
    assert_ne!(new_link, old_link);
}

#[tokio::test]
async fn leaving_by_the_form_needs_the_mailbox_and_looks_the_same_for_strangers() {
    let s = server_with_list().await;
    join(&s, "anne@example.net").await;
    let before = s.sink.received().len();
    let ask = |email: &'static str| {
        let url = s.url("/lists/dev.lists.example.org/unsubscribe");
        async move {
            http()
                .post(url)
                .form(&[("email", email)])
                .send()
                .await
                .unwrap()
        }
    };
    let member = ask("anne@example.net").await;
    let stranger = ask("stranger@example.net").await;
    assert_eq!(member.status(), 200);
    assert_eq!(stranger.status(), 200);
    assert_eq!(
        member
            .text()
            .await
            .unwrap()
            .replace("anne@example.net", "X"),
        stranger
            .text()
            .await
            .unwrap()
            .replace("stranger@example.net", "X")
    );
    s.deliver().await;
    let sent: Vec<_> = s.sink.received().into_iter().skip(before).collect();
    assert_eq!(sent.len(), 1, "only the member gets a confirmation");
    assert_eq!(
        member_status(&s, "anne@example.net").as_deref(),
        Some("subscribed"),
        "not before confirming"
    );
    let link = find_link(&sent[0].body_text(), &s.url("/confirm/")).unwrap();
    let page = http()
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Confirm unsubscription"));
    assert_eq!(http().post(&link).send().await.unwrap().status(), 200);
    assert_eq!(
        member_status(&s, "anne@example.net").as_deref(),
        Some("unsubscribed")
    );
}

#[tokio::test]
async fn consent_evidence_is_recorded_at_request_confirmation_and_withdrawal() {
    let s = server_with_list().await;
    let r = http()
        .post(s.url("/lists/dev.lists.example.org/subscribe"))
        .header("User-Agent", "TestBrowser/1.0")
        .form(&[("email", "anne@example.net")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.deliver().await;
    let link = find_link(&s.sink.received()[0].body_text(), &s.url("/confirm/")).unwrap();
    http().post(&link).send().await.unwrap();
    let shown = s
        .cli(&["members", "show", LIST, "anne@example.net", "--json"])
        .json();
    let c = &shown["consent"];
    assert_eq!(c["request_source"], "web");
    assert_eq!(c["request_ip"], "127.0.0.1");
    assert_eq!(c["request_user_agent"], "TestBrowser/1.0");
    assert!(
        c["request_form_text"]
            .as_str()
            .unwrap()
            .contains("Subscribe")
    );
    assert!(c["requested_at"].is_string() && c["confirmed_at"].is_string());
    assert_eq!(c["confirm_method"], "web");
    assert_eq!(c["confirm_ip"], "127.0.0.1");
    assert_eq!(shown["bounce_score"], 0);

    let table = s.cli(&["members", "show", LIST, "anne@example.net"]);
    assert!(table.stdout.contains("TestBrowser/1.0"), "{table:?}");

    s.deliver().await;
    let welcome = s.sink.to("anne@example.net").into_iter().last().unwrap();
    let unsub = find_link(&welcome.body_text(), &s.url("/unsubscribe/")).unwrap();
    http()
        .post(&unsub)
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    let shown = s
        .cli(&["members", "show", LIST, "anne@example.net", "--json"])
        .json();
    assert!(shown["consent"]["unsubscribed_at"].is_string());
    assert_eq!(shown["consent"]["unsubscribe_method"], "one-click");
}

#[tokio::test]
async fn admin_add_is_immediate_but_someone_who_left_needs_an_invitation() {
    let s = server_with_list().await;
    let out = s.cli(&[
        "members",
        "add",
        LIST,
        "carol@example.net",
        "Dave@Example.net",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let members = s.cli(&["members", "ls", LIST, "--json"]).json();
    assert_eq!(members.as_array().unwrap().len(), 2);
    let shown = s
        .cli(&["members", "show", LIST, "dave@example.net", "--json"])
        .json();
    assert_eq!(shown["consent"]["request_source"], "admin");
    assert_eq!(shown["consent"]["confirm_method"], "admin");

    // a person who unsubscribed
    let welcome = join(&s, "anne@example.net").await;
    let unsub = find_link(&welcome.body_text(), &s.url("/unsubscribe/")).unwrap();
    http().post(&unsub).send().await.unwrap();
    let refused = s.cli(&["members", "add", LIST, "anne@example.net"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("--invite"), "{refused:?}");
    assert_eq!(
        member_status(&s, "anne@example.net").as_deref(),
        Some("unsubscribed")
    );

    s.deliver().await;
    // a day later (the per-address limit allows one request per 10 minutes)
    sqlx::query("update pending_request set requested_at = requested_at - interval '1 day'")
        .execute(&s.db.pool)
        .await
        .unwrap();
    let before = s.sink.to("anne@example.net").len();
    let invited = s.cli(&["members", "add", LIST, "anne@example.net", "--invite"]);
    assert_eq!(invited.code, 0, "{invited:?}");
    s.deliver().await;
    assert_eq!(
        s.sink.to("anne@example.net").len(),
        before + 1,
        "the invitation is a confirmation"
    );
    assert_eq!(
        member_status(&s, "anne@example.net").as_deref(),
        Some("unsubscribed"),
        "until she confirms"
    );

    // removal by an owner; removed people may be re-added by an owner
    assert_eq!(
        s.cli(&["members", "remove", LIST, "carol@example.net"])
            .code,
        0
    );
    assert_eq!(
        member_status(&s, "carol@example.net").as_deref(),
        Some("removed")
    );
    assert_eq!(
        s.cli(&["members", "remove", LIST, "nobody@example.net"])
            .code,
        1
    );
    assert_eq!(
        s.cli(&["members", "add", LIST, "carol@example.net"]).code,
        0
    );
    assert_eq!(
        member_status(&s, "carol@example.net").as_deref(),
        Some("subscribed")
    );

    let csv = s.cli(&["members", "ls", LIST, "--csv"]);
    assert!(
        csv.stdout
            .starts_with("email,name,role,status,delivery,subscribed_at,mode"),
        "{csv:?}"
    );
    let set = s.cli(&[
        "members",
        "set",
        LIST,
        "carol@example.net",
        "delivery=disabled",
    ]);
    assert_eq!(set.code, 0, "{set:?}");
    let disabled = s
        .cli(&["members", "ls", LIST, "--status", "disabled", "--json"])
        .json();
    assert_eq!(disabled[0]["address"], "carol@example.net");
    assert_eq!(
        s.cli(&["members", "set", LIST, "carol@example.net", "colour=red"])
            .code,
        2
    );
}

#[tokio::test]
async fn a_relay_answering_4xx_is_retried_and_5xx_is_final() {
    relay_answers_4xx_and_5xx(true).await;
}

#[tokio::test]
async fn a_relay_without_pipelining_gets_one_command_at_a_time() {
    relay_answers_4xx_and_5xx(false).await;
}

/// Refusals at RCPT, with the commands pipelined (RFC 2920) or not, as the relay offers.
async fn relay_answers_4xx_and_5xx(pipelining: bool) {
    use std::sync::atomic::Ordering;
    let s = server_with_list().await;
    s.sink.offer_pipelining.store(pipelining, Ordering::SeqCst);
    s.sink
        .rcpt_replies
        .lock()
        .unwrap()
        .insert("later@example.net".into(), "451 4.3.0 try again".into());
    s.sink
        .rcpt_replies
        .lock()
        .unwrap()
        .insert("never@example.net".into(), "550 5.1.1 no such user".into());
    subscribe(&s, "later@example.net").await;
    subscribe(&s, "never@example.net").await;
    s.deliver().await;
    let rows: Vec<(String, String, i32, Option<String>)> = sqlx::query_as(
        "select recipient, status, attempts, last_error from outbound order by recipient",
    )
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(rows[0].0, "later@example.net");
    assert_eq!(rows[0].1, "queued", "4xx is retried later");
    assert!(rows[0].3.as_deref().unwrap().contains("try again"));
    assert_eq!(rows[1].1, "failed", "5xx is final");
    assert!(rows[1].3.as_deref().unwrap().contains("no such user"));

    // once the relay accepts and the retry is due, it goes
    s.sink.rcpt_replies.lock().unwrap().clear();
    sqlx::query("update outbound set next_attempt_at = now() where status = 'queued'")
        .execute(&s.db.pool)
        .await
        .unwrap();
    s.deliver().await;
    assert_eq!(s.sink.to("later@example.net").len(), 1);
    assert!(s.sink.to("never@example.net").is_empty());
    let pipelined = s.sink.pipelined.load(Ordering::SeqCst);
    if pipelining {
        assert!(
            pipelined >= 3,
            "MAIL, RCPT and DATA in one write: {pipelined}"
        );
    } else {
        assert_eq!(pipelined, 0, "no pipelining unless offered");
    }
}

#[tokio::test]
async fn two_workers_never_send_the_same_message_twice() {
    let s = server_with_list().await;
    for i in 0..40 {
        s.cli(&[
            "members",
            "add",
            LIST,
            &format!("m{i}@example.net"),
            "--invite",
        ]);
    }
    let (a, b) = (s.worker.clone(), s.worker.clone());
    let (x, y) = tokio::join!(a.dispatch_all_pending(), b.dispatch_all_pending());
    assert_eq!(x.unwrap() + y.unwrap(), 40);
    let got = s.sink.received();
    assert_eq!(got.len(), 40);
    let mut rcpts: Vec<_> = got.iter().map(|m| m.rcpt_to[0].clone()).collect();
    rcpts.sort();
    rcpts.dedup();
    assert_eq!(rcpts.len(), 40);
}

#[tokio::test]
async fn confirm_then_moderate_waits_for_an_owner_and_keeps_the_mailbox_confirmation() {
    let s = TestServer::start().await;
    assert_eq!(
        s.cli(&[
            "lists",
            "create",
            LIST,
            "--subscription",
            "confirm-then-moderate"
        ])
        .code,
        0
    );
    let m = request_and_get_confirmation(&s, "anne@example.net").await;
    let link = find_link(&m.body_text(), &s.url("/confirm/")).unwrap();
    let page = http().post(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("owners"));
    assert_eq!(
        member_status(&s, "anne@example.net").as_deref(),
        Some("pending")
    );
    let pending = s
        .cli(&["members", "ls", LIST, "--status", "pending", "--json"])
        .json();
    assert_eq!(pending[0]["address"], "anne@example.net");

    assert_eq!(
        s.cli(&["members", "add", LIST, "anne@example.net"]).code,
        0,
        "the owner approves"
    );
    let shown = s
        .cli(&["members", "show", LIST, "anne@example.net", "--json"])
        .json();
    assert_eq!(shown["status"], "subscribed");
    assert_eq!(
        shown["consent"]["request_source"], "web",
        "the request stays on record"
    );
    assert_eq!(
        shown["consent"]["confirm_method"], "web",
        "and so does the mailbox's confirmation"
    );
}

#[tokio::test]
async fn an_unsubscribe_link_opened_after_leaving_says_so_with_a_way_back() {
    let s = server_with_list().await;
    let welcome = join(&s, "anne@example.net").await;
    let link = find_link(&welcome.body_text(), &s.url("/unsubscribe/")).expect("a link");
    let page = http()
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<button"), "a member gets the button: {page}");
    assert_eq!(http().post(&link).send().await.unwrap().status(), 200);
    let after = http().get(&link).send().await.unwrap();
    assert_eq!(after.status(), 200);
    let page = after.text().await.unwrap();
    assert!(page.contains("already left"), "{page}");
    assert!(!page.contains("<button"), "no live button: {page}");
    assert!(
        page.contains("dev.lists.example.org\">"),
        "a link to the list page: {page}"
    );
    let again = http().post(&link).send().await.unwrap();
    assert_eq!(again.status(), 200, "repeating the one-click is 200");
    assert!(again.text().await.unwrap().contains("already left"));
}

#[tokio::test]
async fn people_added_or_imported_by_an_owner_are_welcomed_unless_quiet() {
    let s = server_with_list().await;
    // a list's own welcome, in the template directory
    assert_eq!(s.cli(&["members", "add", LIST, "anne@example.net"]).code, 0);
    assert_eq!(
        s.cli(&["members", "add", LIST, "--quiet", "bob@example.net"])
            .code,
        0
    );
    let file = s.data_dir.path().join("people.txt");
    std::fs::write(&file, "Carol <carol@example.net>\ndave@example.net\n").unwrap();
    let out = s.cli(&[
        "members",
        "import",
        LIST,
        file.to_str().unwrap(),
        "--format",
        "lines",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let quiet = s.data_dir.path().join("quiet.txt");
    std::fs::write(&quiet, "erin@example.net\n").unwrap();
    let out = s.cli(&[
        "members",
        "import",
        LIST,
        quiet.to_str().unwrap(),
        "--format",
        "lines",
        "--quiet",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    s.deliver().await;
    for who in ["anne@example.net", "carol@example.net", "dave@example.net"] {
        let mails = s.sink.to(who);
        assert_eq!(mails.len(), 1, "{who} is welcomed once");
        let body = mails[0].body_text();
        let link = find_link(&body, &s.url("/unsubscribe/")).expect("how to leave");
        // the link in the welcome works
        assert_eq!(http().post(&link).send().await.unwrap().status(), 200);
        assert_eq!(member_status(&s, who).as_deref(), Some("unsubscribed"));
    }
    assert!(s.sink.to("bob@example.net").is_empty());
    assert!(s.sink.to("erin@example.net").is_empty());
}

#[tokio::test]
async fn a_list_can_have_its_own_welcome_text() {
    let templates = tempfile::tempdir().unwrap();
    let dir = templates.path().join("lists/dev.lists.example.org/email");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("welcome.txt"),
        "Subject: Welcome to the Dev circle\n\nRead our charter first.\nLeave: {{ unsubscribe_url }}\n",
    )
    .unwrap();
    let path = templates.path().to_path_buf();
    let s = TestServer::start_with(move |c| c.template_dir = Some(path)).await;
    assert_eq!(s.cli(&["lists", "create", LIST, "--name", "Dev"]).code, 0);
    assert_eq!(
        s.cli(&["lists", "create", "other@lists.example.org"]).code,
        0
    );
    let dev = join(&s, "anne@example.net").await;
    assert_eq!(
        dev.header("Subject").as_deref(),
        Some("Welcome to the Dev circle")
    );
    assert!(dev.body_text().contains("charter"));
    // other lists keep the built-in text
    assert_eq!(
        s.cli(&[
            "members",
            "add",
            "other@lists.example.org",
            "bob@example.net"
        ])
        .code,
        0
    );
    s.deliver().await;
    let other = s.sink.to("bob@example.net");
    assert_eq!(other.len(), 1);
    assert!(!other[0].body_text().contains("charter"));
}
