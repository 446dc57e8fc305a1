//! Signing in with a mailed link and managing one's own memberships, end to end: the
//! sign-in mail captured by the sink and its link followed, the session cookie kept as
//! a browser keeps it, `/me`'s forms posted with their `csrf` field, and the effect
//! checked on the next post and with the CLI (docs/contract.md#signin).

use crate::harness::{TestServer, find_link, http, mail, smtplib};

const LIST: &str = "dev@lists.example.org";
const LIST_ID: &str = "dev.lists.example.org";
const OWNER: &str = "owner@example.org";

async fn server() -> TestServer {
    let s = TestServer::start().await;
    let out = s.cli(&["lists", "create", LIST, "--name", "Dev", "--owner", OWNER]);
    assert_eq!(out.code, 0, "{out:?}");
    s
}

fn add(s: &TestServer, addresses: &[&str]) {
    let mut args = vec!["members", "add", LIST, "--quiet"];
    args.extend_from_slice(addresses);
    let out = s.cli(&args);
    assert_eq!(out.code, 0, "{out:?}");
}

/// A browser's cookie for this site: the session id from `Set-Cookie`.
#[derive(Clone, Debug, PartialEq)]
struct Cookie(String);

impl Cookie {
    fn header(&self) -> String {
        format!("listd_session={}", self.0)
    }
}

fn session_cookie(r: &reqwest::Response) -> Option<(Cookie, String)> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("listd_session="))
        .map(|v| {
            let value = v["listd_session=".len()..]
                .split(';')
                .next()
                .unwrap()
                .to_string();
            (Cookie(value), v.to_string())
        })
}

/// Presses the button of a sign-in link; returns the session cookie.
async fn press(link: &str, previous: Option<&Cookie>) -> Cookie {
    let mut post = http().post(link);
    if let Some(c) = previous {
        post = post.header("Cookie", c.header());
    }
    let r = post.send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/me");
    let (cookie, line) = session_cookie(&r).expect("a session cookie");
    let lower = line.to_ascii_lowercase();
    assert!(
        lower.contains("httponly") && lower.contains("samesite=lax") && !lower.contains("secure"),
        "{line}"
    );
    cookie
}

/// Asks for a sign-in link on the web, takes it from the mail and presses its button.
async fn sign_in(s: &TestServer, address: &str, previous: Option<&Cookie>) -> Cookie {
    let before = s.sink.to(address).len();
    let r = http()
        .post(s.url("/signin"))
        .form(&[("email", address)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.deliver().await;
    let mails = s.sink.to(address);
    assert_eq!(mails.len(), before + 1, "one sign-in mail to {address}");
    let m = &mails[before];
    assert_eq!(
        m.header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    let link = find_link(&m.body_text(), &s.url("/signin/")).expect("a sign-in link");
    // the link's page changes nothing: it shows one button
    let page = http().get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.unwrap().matches("<button").count(), 1);
    press(&link, previous).await
}

async fn me(s: &TestServer, cookie: &Cookie) -> reqwest::Response {
    http()
        .get(s.url("/me"))
        .header("Cookie", cookie.header())
        .send()
        .await
        .unwrap()
}

/// `/me` as HTML, and the csrf value of its forms.
async fn me_page(s: &TestServer, cookie: &Cookie) -> (String, String) {
    let r = me(s, cookie).await;
    assert_eq!(r.status(), 200);
    let html = r
        .text()
        .await
        .unwrap()
        .replace("&#x2f;", "/")
        .replace("<wbr>", "");
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a csrf field")
        .to_string();
    (html, csrf)
}

async fn post_form(
    s: &TestServer,
    path: &str,
    cookie: &Cookie,
    form: &[(&str, &str)],
) -> reqwest::Response {
    http()
        .post(s.url(path))
        .header("Cookie", cookie.header())
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Posts one of `/me`'s forms for the list, with the csrf field of the page.
async fn change_mine(
    s: &TestServer,
    cookie: &Cookie,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let (_, csrf) = me_page(s, cookie).await;
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    post_form(s, &format!("/me/lists/{LIST_ID}"), cookie, &form).await
}

fn member(s: &TestServer, address: &str) -> serde_json::Value {
    let out = s.cli(&["members", "show", LIST, address, "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    out.json()
}

fn post_to_list(s: &TestServer, from: &str, subject: &str) {
    let message = mail(from, LIST, subject, "", "Hello all.\r\n");
    smtplib(s.smtp_port(), from, &[LIST], &message).expect("the post is accepted");
}

/// Copies of a post with this subject captured for one address.
fn copies(s: &TestServer, rcpt: &str, subject: &str) -> usize {
    s.sink
        .to(rcpt)
        .iter()
        .filter(|m| m.header("Subject").unwrap_or_default().contains(subject))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_signs_in_pauses_delivery_and_the_next_post_skips_them() {
    let s = server().await;
    add(&s, &["anne@example.net", "bob@example.net"]);
    let cookie = sign_in(&s, "anne@example.net", None).await;
    let (html, _) = me_page(&s, &cookie).await;
    assert!(
        html.contains("Dev") && html.contains("anne@example.net"),
        "{html}"
    );
    assert!(
        html.contains(&format!("action=\"/me/lists/{LIST_ID}\"")),
        "{html}"
    );

    let r = change_mine(&s, &cookie, &[("delivery", "disabled")]).await;
    assert_eq!(r.status(), 303, "POST-redirect-GET");
    assert!(r.headers()["location"].to_str().unwrap().starts_with("/me"));
    assert_eq!(member(&s, "anne@example.net")["delivery"], "disabled");

    post_to_list(&s, "bob@example.net", "after the pause");
    s.process().await;
    assert_eq!(copies(&s, "bob@example.net", "after the pause"), 1);
    assert_eq!(copies(&s, "anne@example.net", "after the pause"), 0);

    // and back on, with a digest: a digest member gets no single copies
    let r = change_mine(
        &s,
        &cookie,
        &[
            ("delivery", "enabled"),
            ("mode", "digest"),
            ("own_posts", "disabled"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let m = member(&s, "anne@example.net");
    assert_eq!(
        (
            m["delivery"].as_str(),
            m["mode"].as_str(),
            m["own_posts"].as_bool()
        ),
        (Some("enabled"), Some("digest"), Some(false))
    );
    let (html, _) = me_page(&s, &cookie).await;
    assert!(html.contains("value=\"digest\" checked"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_form_answers_the_same_for_everyone_and_mails_only_those_who_may_sign_in() {
    let s = server().await;
    add(&s, &["anne@example.net"]);
    let mut answers = Vec::new();
    for address in ["anne@example.net", "stranger@example.net", OWNER] {
        let r = http()
            .post(s.url("/signin"))
            .form(&[("email", address)])
            .send()
            .await
            .unwrap();
        let status = r.status();
        answers.push((status, r.text().await.unwrap().replace(address, "ADDRESS")));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
    assert_eq!(answers[0].0, 200);
    assert!(answers[0].1.contains("spam"), "the page says where to look");
    s.deliver().await;
    assert_eq!(s.sink.to("anne@example.net").len(), 1);
    assert_eq!(s.sink.to(OWNER).len(), 1, "owners sign in too");
    assert!(s.sink.to("stranger@example.net").is_empty());

    // per address: one link per 10 minutes
    for _ in 0..3 {
        http()
            .post(s.url("/signin"))
            .form(&[("email", "anne@example.net")])
            .send()
            .await
            .unwrap();
    }
    s.deliver().await;
    assert_eq!(s.sink.to("anne@example.net").len(), 1);

    // a bad address: 400 with the form, the reason and the text kept
    let r = http()
        .post(s.url("/signin"))
        .form(&[("email", "not-an-address")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<title>Error:") && html.contains("aria-invalid=\"true\""),
        "{html}"
    );
    assert!(
        html.contains("value=\"not-an-address\"") && !html.contains('`'),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_link_works_once_and_an_unknown_one_is_404() {
    let s = server().await;
    add(&s, &["anne@example.net"]);
    let out = s.cli(&["signin-link", "anne@example.net"]);
    assert_eq!(out.code, 0, "{out:?}");
    let link = out.stdout.trim().to_string();
    assert!(link.starts_with(&s.url("/signin/")), "{link}");
    assert_eq!(http().post(&link).send().await.unwrap().status(), 303);
    assert_eq!(http().post(&link).send().await.unwrap().status(), 410);
    let page = http().get(&link).send().await.unwrap();
    assert_eq!(page.status(), 410);
    assert!(
        page.text()
            .await
            .unwrap()
            .replace("&#x2f;", "/")
            .contains("href=\"/signin\"")
    );
    let unknown = s.url("/signin/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(http().get(&unknown).send().await.unwrap().status(), 404);
    assert_eq!(http().post(&unknown).send().await.unwrap().status(), 404);

    let stranger = s.cli(&["signin-link", "stranger@example.net"]);
    assert_eq!(stranger.code, 1, "{stranger:?}");
    assert!(stranger.stdout.is_empty() && stranger.stderr.contains("may not sign in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_its_sessions_csrf_is_refused_and_changes_nothing() {
    let s = server().await;
    add(&s, &["anne@example.net", "bob@example.net"]);
    let anne = sign_in(&s, "anne@example.net", None).await;
    let bob = sign_in(&s, "bob@example.net", None).await;
    let (_, bobs_csrf) = me_page(&s, &bob).await;
    let path = format!("/me/lists/{LIST_ID}");
    for form in [
        vec![("delivery", "disabled")],
        vec![("csrf", "forged"), ("delivery", "disabled")],
        vec![("csrf", bobs_csrf.as_str()), ("delivery", "disabled")],
    ] {
        let r = post_form(&s, &path, &anne, &form).await;
        assert_eq!(r.status(), 403);
    }
    assert_eq!(member(&s, "anne@example.net")["delivery"], "enabled");
    // sign-out needs it too
    assert_eq!(post_form(&s, "/signout", &anne, &[]).await.status(), 403);
    assert_eq!(me(&s, &anne).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_replaces_the_session_and_signing_out_ends_it_on_the_server() {
    let s = server().await;
    add(&s, &["anne@example.net"]);
    let first = sign_in(&s, "anne@example.net", None).await;
    // a second link (the web form sends one per 10 minutes; the CLI makes one)
    let link = s.cli(&["signin-link", "anne@example.net"]).stdout;
    let second = press(link.trim(), Some(&first)).await;
    assert_ne!(first, second, "a new id at sign-in (no fixation)");
    let r = me(&s, &first).await;
    assert_eq!(r.status(), 303, "the replaced session is gone");
    assert_eq!(r.headers()["location"], "/signin");

    let r = me(&s, &second).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));

    let (_, csrf) = me_page(&s, &second).await;
    let r = post_form(&s, "/signout", &second, &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 200);
    // the browser is told to forget it, and a copy of the cookie no longer works
    assert!(session_cookie(&r).is_some_and(|(c, _)| c.0.is_empty()));
    assert_eq!(me(&s, &second).await.status(), 303);
    assert_eq!(http().get(s.url("/me")).send().await.unwrap().status(), 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_from_me_ends_the_membership_and_then_the_session() {
    let s = server().await;
    add(&s, &["anne@example.net"]);
    let cookie = sign_in(&s, "anne@example.net", None).await;
    let r = change_mine(&s, &cookie, &[("action", "leave")]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(member(&s, "anne@example.net")["status"], "unsubscribed");
    s.deliver().await;
    assert!(
        s.sink
            .to("anne@example.net")
            .iter()
            .any(|m| m.body_text().contains("no longer"))
            || s.sink.to("anne@example.net").len() >= 2,
        "a goodbye"
    );
    // no membership or role left: the session ends
    assert_eq!(me(&s, &cookie).await.status(), 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unsubscribe_link_also_pauses_or_switches_to_a_digest() {
    let s = server().await;
    add(&s, &["anne@example.net", "bob@example.net"]);
    post_to_list(&s, "bob@example.net", "first");
    s.process().await;
    let copy = s
        .sink
        .to("anne@example.net")
        .into_iter()
        .find(|m| m.header("Subject").unwrap_or_default().contains("first"))
        .expect("a copy");
    let header = copy.header("List-Unsubscribe").unwrap();
    let link = find_link(&header, &s.url("/unsubscribe/")).unwrap();
    let token = link.rsplit('/').next().unwrap();
    let page = http()
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.replace("&#x2f;", "/")
            .contains(&format!("/preferences/{token}"))
    );

    let prefs = s.url(&format!("/preferences/{token}"));
    let r = http()
        .post(&prefs)
        .form(&[("delivery", "disabled")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(member(&s, "anne@example.net")["delivery"], "disabled");
    let r = http()
        .post(&prefs)
        .form(&[("mode", "digest")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = member(&s, "anne@example.net");
    assert_eq!(
        (m["mode"].as_str(), m["status"].as_str()),
        (Some("digest"), Some("subscribed"))
    );
    // a bad value or a bad token changes nothing
    let r = http()
        .post(&prefs)
        .form(&[("mode", "weekly")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let bad = s.url("/preferences/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let r = http()
        .post(&bad)
        .form(&[("delivery", "enabled")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    assert_eq!(member(&s, "anne@example.net")["delivery"], "disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_is_set_by_the_cli_and_the_api_and_shown_everywhere() {
    let s = server().await;
    add(&s, &["anne@example.net", "bob@example.net"]);
    let out = s.cli(&[
        "members",
        "set",
        LIST,
        "anne@example.net",
        "mode=digest-plain",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.cli(&["members", "set", LIST, "anne@example.net", "mode=weekly"]);
    assert_eq!(out.code, 2, "{out:?}");
    let ls = s.cli(&["members", "ls", LIST, "--json"]).json();
    let anne = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["address"] == "anne@example.net")
        .unwrap();
    assert_eq!(anne["mode"], "digest-plain");
    assert_eq!(member(&s, "bob@example.net")["mode"], "each");

    let token = s
        .cli(&["api-tokens", "create", "t"])
        .stdout
        .lines()
        .last()
        .unwrap()
        .to_string();
    let r = http()
        .patch(s.url(&format!("/api/v1/lists/{LIST_ID}/members/bob@example.net")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"mode": "digest", "delivery": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (body["mode"].as_str(), body["delivery"].as_str()),
        (Some("digest"), Some("disabled"))
    );
    let r = http()
        .patch(s.url(&format!("/api/v1/lists/{LIST_ID}/members/bob@example.net")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"mode": "sometimes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // members in a digest mode get no single copies
    s.cli(&[
        "members",
        "set",
        LIST,
        "bob@example.net",
        "delivery=enabled",
    ]);
    post_to_list(&s, OWNER, "digest time");
    s.process().await;
    assert_eq!(copies(&s, "anne@example.net", "digest time"), 0);
    assert_eq!(copies(&s, "bob@example.net", "digest time"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_only_archive_opens_to_a_signed_in_member_and_their_feed_url() {
    let s = server().await;
    add(&s, &["anne@example.net"]);
    let out = s.cli(&["lists", "set", LIST, "archive=members"]);
    assert_eq!(out.code, 0, "{out:?}");
    post_to_list(&s, "anne@example.net", "kept for members");
    s.process().await;
    let archive = s.url(&format!("/lists/{LIST_ID}/archive"));
    assert_eq!(http().get(&archive).send().await.unwrap().status(), 404);

    let cookie = sign_in(&s, "anne@example.net", None).await;
    let r = http()
        .get(&archive)
        .header("Cookie", cookie.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("kept for members"));

    // /me names the archive and the member's own feed, which works without a cookie
    let (html, _) = me_page(&s, &cookie).await;
    let feed = html
        .split("href=\"")
        .filter_map(|h| h.split('"').next())
        .find(|h| h.contains("feed.atom"))
        .expect("a feed link on /me")
        .replace("&amp;", "&");
    let feed = if feed.starts_with("http") {
        feed
    } else {
        s.url(&feed)
    };
    let r = http().get(&feed).send().await.unwrap();
    assert_eq!(r.status(), 200, "{feed}");
    assert!(r.text().await.unwrap().contains("kept for members"));

    // once the membership ends, so do the archive and the feed for that person
    let r = change_mine(&s, &cookie, &[("action", "leave")]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(http().get(&feed).send().await.unwrap().status(), 404);
}
