//! The console's use cases and pages: who may do what on which list, held posts
//! decided once with who decided, accept-sender, settings all or nothing, waiting
//! subscriptions, and the member search.

use crate::harness::{TestServer, mail, smtplib};
use listd::app::members::{MemberQuery, RequestDecision};
use listd::app::posts::{Moderation, ModerationOutcome};
use listd::app::staff::Authority;
use listd::domain::{EmailAddress, ListRef};

const LIST: &str = "dev@lists.example.org";
const OTHER: &str = "ops@lists.example.org";
const OWNER: &str = "owner@example.org";
const MODERATOR: &str = "mod@example.net";

fn addr(a: &str) -> EmailAddress {
    EmailAddress::parse(a).unwrap()
}

fn list_ref(l: &str) -> ListRef {
    ListRef::parse(l).unwrap()
}

async fn server_with(adjust: impl FnOnce(&mut listd::config::Config)) -> TestServer {
    let s = TestServer::start_with(adjust).await;
    for (list, owner) in [(LIST, OWNER), (OTHER, "boss@example.org")] {
        let out = s.cli(&["lists", "create", list, "--owner", owner]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let out = s.cli(&["members", "add", LIST, MODERATOR, "--role", "moderator"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.cli(&["members", "add", LIST, "anne@example.net"]);
    assert_eq!(out.code, 0, "{out:?}");
    s
}

async fn held_post(s: &TestServer, from: &str, subject: &str) -> i64 {
    let m = mail(
        from,
        LIST,
        subject,
        "",
        "Hello,\r\n\r\nfirst line\r\n<b>not html</b>\r\n",
    );
    smtplib(s.smtp_port(), from, &[LIST], &m).unwrap();
    s.process().await;
    let held = s.cli(&["held", "ls", LIST, "--json"]).json();
    held.as_array()
        .unwrap()
        .iter()
        .find(|h| h["subject"] == subject)
        .expect("held")["id"]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_is_per_list_and_site_admins_run_every_list() {
    let s = server_with(|c| c.admins = vec![addr("root@example.org")]).await;
    let dev = s.app.get_list(&list_ref(LIST)).await.unwrap();
    let ops = s.app.get_list(&list_ref(OTHER)).await.unwrap();
    let a = |l, who: &'static str| {
        let app = s.app.clone();
        async move { app.authority(l, &addr(who)).await.unwrap() }
    };
    assert_eq!(a(&dev, "OWNER@example.org").await, Authority::Owner);
    assert_eq!(a(&dev, MODERATOR).await, Authority::Moderator);
    assert_eq!(
        a(&ops, MODERATOR).await,
        Authority::None,
        "not on another list"
    );
    assert_eq!(
        a(&dev, "anne@example.net").await,
        Authority::None,
        "members run nothing"
    );
    assert_eq!(a(&ops, "root@example.org").await, Authority::Owner);

    let run = s.app.lists_run_by(&addr(MODERATOR)).await.unwrap();
    assert_eq!(run.len(), 1);
    assert_eq!(
        (run[0].address.as_str(), run[0].authority),
        (LIST, Authority::Moderator)
    );
    let run = s.app.lists_run_by(&addr("root@example.org")).await.unwrap();
    assert_eq!(run.len(), 2, "a site admin sees every list");
    assert!(
        s.app
            .lists_run_by(&addr("anne@example.net"))
            .await
            .unwrap()
            .is_empty()
    );

    // a post of list A cannot be decided through list B
    let id = held_post(&s, "mallory@example.com", "Spam").await;
    let e = s
        .app
        .moderate_on_list(&ops, id, Moderation::Discard, None, "boss@example.org")
        .await
        .unwrap_err();
    assert!(matches!(e, listd::app::AppError::NoSuchPost(_)), "{e:?}");
    let run = s.app.lists_run_by(&addr(OWNER)).await.unwrap();
    assert_eq!(run[0].held, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_sender_approves_and_lets_the_sender_post_from_now_on() {
    let s = server_with(|_| {}).await;
    let dev = s.app.get_list(&list_ref(LIST)).await.unwrap();
    let id = held_post(&s, "Zed <zed@example.com>", "Hello list").await;
    let held = s.app.held_on_list(&dev).await.unwrap();
    assert_eq!(held.len(), 1);
    assert!(
        held[0].preview.starts_with("Hello,\nfirst line"),
        "{:?}",
        held[0].preview
    );
    let done = s
        .app
        .moderate_on_list(&dev, id, Moderation::AcceptSender, None, OWNER)
        .await
        .unwrap();
    assert!(
        matches!(done, ModerationOutcome::Approved { copies: 1 }),
        "{done:?}"
    );
    let again = s
        .app
        .moderate_on_list(&dev, id, Moderation::Discard, None, MODERATOR)
        .await
        .unwrap();
    let ModerationOutcome::AlreadyDecided(d) = again else {
        panic!("{again:?}")
    };
    assert_eq!(
        (d.status.as_str(), d.by.as_deref()),
        ("accepted", Some(OWNER))
    );
    assert!(d.at.is_some());
    let decisions = s.app.recent_decisions(&dev).await.unwrap();
    assert_eq!(decisions[0].decision.by.as_deref(), Some(OWNER));

    let info = s.cli(&["lists", "show", LIST, "--json"]).json();
    assert_eq!(
        info["accept_senders"],
        serde_json::json!(["zed@example.com"])
    );
    let m = mail("Zed <zed@example.com>", LIST, "Again", "", "hi\r\n");
    smtplib(s.smtp_port(), "zed@example.com", &[LIST], &m).unwrap();
    s.process().await;
    let copies: Vec<_> = s
        .sink
        .to("anne@example.net")
        .into_iter()
        .filter(|c| c.mail_from.contains("+bounces+m"))
        .collect();
    assert_eq!(copies.len(), 2, "the approved post and the next one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_staff_change_together_or_not_at_all() {
    let s = server_with(|_| {}).await;
    let l = list_ref(LIST);
    let e = s
        .app
        .update_list_and_staff(
            &l,
            &["posting=moderated".into(), "bounce-stale-days=0".into()],
            Some(&[addr("new-owner@example.org")]),
            None,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("bounce-stale-days"), "{e}");
    let info = s.cli(&["lists", "show", LIST, "--json"]).json();
    assert_eq!(info["posting"], "members", "nothing saved");
    assert_eq!(info["owners"], serde_json::json!([OWNER]));

    let e = s
        .app
        .update_list_and_staff(&l, &[], Some(&[]), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("at least one owner"), "{e}");

    s.app
        .update_list_and_staff(
            &l,
            &["posting=moderated".into()],
            Some(&[addr("new-owner@example.org"), addr(OWNER)]),
            Some(&[]),
        )
        .await
        .unwrap();
    let info = s.cli(&["lists", "show", LIST, "--json"]).json();
    assert_eq!(info["posting"], "moderated");
    assert_eq!(info["owners"].as_array().unwrap().len(), 2);
    let dev = s.app.get_list(&l).await.unwrap();
    assert_eq!(
        s.app.authority(&dev, &addr(MODERATOR)).await.unwrap(),
        Authority::None,
        "the moderator no longer named is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_subscriptions_are_approved_or_refused_and_the_requester_told() {
    let s = server_with(|_| {}).await;
    let out = s.cli(&["lists", "set", LIST, "subscription=confirm-then-moderate"]);
    assert_eq!(out.code, 0);
    let dev = s.app.get_list(&list_ref(LIST)).await.unwrap();
    for who in ["pat@example.net", "quinn@example.net"] {
        let r = crate::harness::http()
            .post(s.url("/lists/dev.lists.example.org/subscribe"))
            .form(&[("email", who)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        s.deliver().await;
        let c = s.sink.to(who).pop().unwrap();
        let link = crate::harness::find_link(&c.body_text(), &s.url("/confirm/")).unwrap();
        let r = crate::harness::http().post(&link).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let waiting = s.app.waiting_requests(&dev).await.unwrap();
    assert_eq!(waiting.len(), 2);
    assert_eq!(
        s.app.lists_run_by(&addr(OWNER)).await.unwrap()[0].waiting,
        2
    );
    assert_eq!(
        s.app
            .decide_request(&dev, &addr("pat@example.net"), true)
            .await
            .unwrap(),
        RequestDecision::Approved
    );
    assert_eq!(
        s.app
            .decide_request(&dev, &addr("quinn@example.net"), false)
            .await
            .unwrap(),
        RequestDecision::Refused
    );
    assert_eq!(
        s.app
            .decide_request(&dev, &addr("quinn@example.net"), true)
            .await
            .unwrap(),
        RequestDecision::NotWaiting
    );
    s.deliver().await;
    assert!(
        s.sink
            .to("pat@example.net")
            .iter()
            .any(|c| c.body_text().contains("/unsubscribe/")),
        "welcomed"
    );
    assert!(
        s.sink
            .to("quinn@example.net")
            .iter()
            .any(|c| c.body_text().contains("decided not to add you")),
        "told"
    );
    let members = s.cli(&["members", "ls", LIST, "--json"]).json();
    let addresses: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["address"].as_str().unwrap())
        .collect();
    assert!(addresses.contains(&"pat@example.net") && !addresses.contains(&"quinn@example.net"));
}

/// Fills the list with 25,000 members m00001@… to m25000@…, as an import writes them
/// (adding them one by one would take minutes); `name` and `status` are SQL of `i`.
async fn fill_list(s: &TestServer, name: &str, status: &str) {
    // (the SQL pieces are the tests' own constants)
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "insert into member (list_id, address, address_key, name, status, subscribed_at)
         select l.id, a, a, {name}, {status}, now()
         from list l, generate_series(1, 25000) as i,
              lateral (select 'm' || lpad(i::text, 5, '0') || '@example.com' as a) x
         where l.local_part = 'dev'"
    )))
    .execute(&s.db.pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_whose_matches_lie_beyond_the_first_20000_members_finds_them_in_order() {
    let s = server_with(|_| {}).await;
    // m24003 unsubscribed, two named Lovelace
    fill_list(
        &s,
        "case when i in (3, 24500) then 'Ada Lovelace' else 'Member ' || i end",
        "case when i = 24003 then 'unsubscribed' else 'subscribed' end",
    )
    .await;
    sqlx::query("analyze member")
        .execute(&s.db.pool)
        .await
        .unwrap();
    let l = list_ref(LIST);
    let q = |text: &str, status| MemberQuery {
        text: Some(text.into()),
        status,
        ..MemberQuery::default()
    };
    let addresses = |found: Vec<listd::domain::Member>| -> Vec<String> {
        found.into_iter().map(|m| m.address).collect()
    };
    let expected: Vec<String> = (24000..24010)
        .map(|i| format!("m{i:05}@example.com"))
        .collect();
    // nothing in the first 20,000: the search skips the blocks m0… and m1…, which
    // lack the trigram "m24", and reads on from m20000
    let (found, next) = s
        .app
        .search_members(&l, &q("m2400", None), None, 50)
        .await
        .unwrap();
    assert_eq!((addresses(found), next), (expected.clone(), None));
    // with a filter, and in pages of 4
    let subscribed = Some(listd::app::members::StatusFilter::Status(
        listd::domain::MemberStatus::Subscribed,
    ));
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let (page, next) = s
            .app
            .search_members(&l, &q("M2400", subscribed), after.as_ref(), 4)
            .await
            .unwrap();
        seen.extend(addresses(page));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut without = expected.clone();
    without.remove(3);
    assert_eq!(seen, without);
    // matches 24,497 members apart, a page of one each: the first comes from the
    // walk, the second from the index
    let (found, next) = s
        .app
        .search_members(&l, &q("lovelace", None), None, 1)
        .await
        .unwrap();
    assert_eq!(addresses(found), ["m00003@example.com"]);
    assert!(next.is_some());
    let (found, next) = s
        .app
        .search_members(&l, &q("lovelace", None), next.as_ref(), 1)
        .await
        .unwrap();
    assert_eq!(
        (addresses(found), next),
        (vec!["m24500@example.com".to_string()], None)
    );
}

/// The addresses of every page of a search, pages of `limit`.
async fn search_all(app: &listd::app::App, l: &ListRef, text: &str, limit: usize) -> Vec<String> {
    let q = MemberQuery {
        text: Some(text.into()),
        ..MemberQuery::default()
    };
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let (page, next) = app
            .search_members(l, &q, after.as_ref(), limit)
            .await
            .unwrap();
        seen.extend(page.into_iter().map(|m| m.address));
        match next {
            Some(n) => after = Some(n),
            None => return seen,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_finds_members_added_renamed_or_moved_after_the_list_was_filled() {
    let s = server_with(|_| {}).await;
    fill_list(&s, "'Member ' || i", "'subscribed'").await;
    let l = list_ref(LIST);
    let search = |text: &'static str, limit| search_all(&s.app, &l, text, limit);
    assert!(search("hopper", 50).await.is_empty());
    // added after the list was filled, far on in address order
    for a in ["zed@example.com", "yara@example.com"] {
        let out = s.cli(&["members", "add", LIST, a]);
        assert_eq!(out.code, 0, "{out:?}");
        let out = s.cli(&["members", "set", LIST, a, "name=Grace Hopper"]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    // renamed
    let out = s.cli(&[
        "members",
        "set",
        LIST,
        "m24800@example.com",
        "name=Grace Hopper",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    // moved to another place in address order, then its name given
    sqlx::query(
        "update member set address = 'w00010@example.com', address_key = 'w00010@example.com'
         where address_key = 'm00010@example.com'",
    )
    .execute(&s.db.pool)
    .await
    .unwrap();
    let out = s.cli(&[
        "members",
        "set",
        LIST,
        "w00010@example.com",
        "name=Rear Admiral Hopper",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let expected = [
        "m24800@example.com",
        "w00010@example.com",
        "yara@example.com",
        "zed@example.com",
    ];
    assert_eq!(search("hopper", 50).await, expected);
    assert_eq!(search("HOPPER", 1).await, expected);
    assert_eq!(search("admiral", 50).await, ["w00010@example.com"]);
    // one match early, the next in a later block: the first walk finds the one, and
    // the search skips the blocks m1… and m2… (no "adm" there) to walk on from w0…
    let out = s.cli(&[
        "members",
        "set",
        LIST,
        "m00030@example.com",
        "name=Admiral Byrd",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let expected = ["m00030@example.com", "w00010@example.com"];
    assert_eq!(search("admiral", 50).await, expected);
    assert_eq!(search("admiral", 1).await, expected);
    // a member who is gone leaves its trigrams behind, and is not found
    sqlx::query("delete from member where address_key = 'yara@example.com'")
        .execute(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(
        search("hopper", 1).await,
        [
            "m24800@example.com",
            "w00010@example.com",
            "zed@example.com"
        ]
    );
    // the address before the move is no longer found
    assert!(search("m00010@", 50).await.is_empty());
    assert_eq!(search("m00011@", 50).await, ["m00011@example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_search_finds_parts_of_addresses_and_names_page_by_page() {
    let s = server_with(|_| {}).await;
    let mut args = vec!["members".to_string(), "add".into(), LIST.into()];
    for i in 0..120 {
        args.push(format!("user{i:03}@example.org"));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(s.cli(&refs).code, 0);
    let out = s.cli(&[
        "members",
        "set",
        LIST,
        "user042@example.org",
        "name=Grace Hopper",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let l = list_ref(LIST);
    let q = |text: &str| MemberQuery {
        text: Some(text.into()),
        ..MemberQuery::default()
    };
    let (found, next) = s
        .app
        .search_members(&l, &q("HOPPER"), None, 50)
        .await
        .unwrap();
    assert_eq!((found.len(), next), (1, None));
    assert_eq!(found[0].address, "user042@example.org");
    let (found, _) = s.app.search_members(&l, &q("r04"), None, 50).await.unwrap();
    assert_eq!(found.len(), 10, "user040 to user049");
    let short = s
        .app
        .search_members(&l, &q("ab"), None, 50)
        .await
        .unwrap_err();
    assert!(short.to_string().contains("at least 3"), "{short}");
    let (found, _) = s
        .app
        .search_members(&l, &q("100%"), None, 50)
        .await
        .unwrap();
    assert!(found.is_empty(), "% is a character, not a wildcard");

    // keyset pages of every role: 120 users, anne, the owner and the moderator
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let (page, next) = s
            .app
            .search_members(&l, &MemberQuery::default(), after.as_ref(), 50)
            .await
            .unwrap();
        assert!(page.len() <= 50);
        seen.extend(page.into_iter().map(|m| (m.address, m.role)));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 123);
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 123, "no row twice");
}

/// A browser's session, made by signing in with a link from `listd signin-link`.
struct Session<'a> {
    s: &'a TestServer,
    cookie: String,
    csrf: String,
}

/// Signs in as `address` as a person does: the link's page, its button, the cookie.
async fn sign_in<'a>(s: &'a TestServer, address: &str) -> Session<'a> {
    let out = s.cli(&["signin-link", address]);
    let link = if out.code == 0 {
        out.stdout.trim().lines().last().unwrap().to_string()
    } else {
        // the CLI's process is not told the test server's site admins
        s.app
            .signin_link(&addr(address))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{address} may sign in: {out:?}"))
    };
    let http = crate::harness::http();
    assert_eq!(http.get(&link).send().await.unwrap().status(), 200);
    let r = http.post(&link).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("listd_session="))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut session = Session {
        s,
        cookie,
        csrf: String::new(),
    };
    let (status, page) = session.get("/me").await;
    assert_eq!(status, 200, "{page}");
    session.csrf = field_value(&page, "csrf").expect("a csrf field (the sign-out form)");
    session
}

/// The value of a hidden input of a page.
fn field_value(page: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &page[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_string())
}

impl Session<'_> {
    async fn get(&self, path: &str) -> (u16, String) {
        let r = crate::harness::http()
            .get(self.s.url(path))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap().replace("&#x2f;", "/"))
    }

    /// Posts a form with the session's csrf field; returns the status, the Location
    /// and the body.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
        let mut form: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        form.extend_from_slice(fields);
        let r = crate::harness::http()
            .post(self.s.url(path))
            .header("cookie", &self.cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (
            status,
            location,
            r.text().await.unwrap().replace("&#x2f;", "/"),
        )
    }
}

fn post_copies(s: &TestServer, rcpt: &str) -> usize {
    s.sink
        .to(rcpt)
        .iter()
        .filter(|c| c.mail_from.contains("+bounces+m"))
        .count()
}

const HELD: &str = "/admin/lists/dev.lists.example.org/held";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_approves_in_the_console_once_and_a_second_decision_says_who_made_the_first() {
    let s = server_with(|_| {}).await;
    let id = held_post(&s, "mallory@example.com", "Approve me")
        .await
        .to_string();
    // the notice's link leads to the console; without a session, to signing in
    let notice = s.sink.to(OWNER).pop().unwrap().body_text();
    let link = crate::harness::find_link(&notice, &s.url("/admin/")).unwrap();
    let r = crate::harness::http().get(&link).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"].to_str().unwrap() == "/signin",
        "{:?}",
        r.headers()
    );

    let owner = sign_in(&s, OWNER).await;
    let (status, home) = owner.get("/admin").await;
    assert_eq!(status, 200);
    assert!(
        home.contains("1 held post") && home.contains("/admin/lists/dev.lists.example.org"),
        "{home}"
    );
    assert!(
        !home.contains("ops@lists.example.org"),
        "only the lists one runs"
    );
    let (status, page) = owner.get(&link.replace(&s.base, "")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Approve me") && page.contains("first line"),
        "{page}"
    );
    assert!(
        page.contains("&lt;b&gt;not html&lt;/b&gt;"),
        "the text is shown as text"
    );
    let r = crate::harness::http()
        .get(s.url(HELD))
        .header("cookie", &owner.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );

    // without the csrf field: 403, nothing changes
    let r = crate::harness::http()
        .post(s.url(&format!("{HELD}/{id}")))
        .header("cookie", &owner.cookie)
        .form(&[("action", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        s.cli(&["held", "show", &id, "--json"]).json()["status"],
        "held"
    );

    let (status, location, _) = owner
        .post(&format!("{HELD}/{id}"), &[("action", "approve")])
        .await;
    assert_eq!(
        (status, location.as_str()),
        (303, &*format!("{HELD}?done=approve&id={id}"))
    );
    let (_, page) = owner.get(&location).await;
    assert!(page.contains("is approved"), "{page}");
    s.deliver().await;
    assert_eq!(post_copies(&s, "anne@example.net"), 1, "relayed");
    let shown = s.cli(&["held", "show", &id, "--json"]).json();
    assert_eq!(shown["decided_by"], OWNER);

    // the moderator, a moment later, sees who decided and cannot decide again
    let moderator = sign_in(&s, MODERATOR).await;
    let (_, page) = moderator.get(HELD).await;
    assert!(
        page.contains("accepted by") && page.contains(OWNER),
        "{page}"
    );
    let (status, _, page) = moderator
        .post(&format!("{HELD}/{id}"), &[("action", "discard")])
        .await;
    assert_eq!(status, 409);
    assert!(
        page.contains("accepted by") && page.contains(OWNER),
        "{page}"
    );
    s.deliver().await;
    assert_eq!(post_copies(&s, "anne@example.net"), 1, "relayed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_tells_the_sender_and_accept_sender_lets_the_next_post_through() {
    let s = server_with(|_| {}).await;
    let moderator = sign_in(&s, MODERATOR).await;
    let id = held_post(&s, "zed@example.com", "First try")
        .await
        .to_string();
    let (status, _, _) = moderator
        .post(
            &format!("{HELD}/{id}"),
            &[
                ("action", "reject"),
                ("reason", "please introduce yourself"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    s.deliver().await;
    assert!(
        s.sink
            .to("zed@example.com")
            .iter()
            .any(|c| c.body_text().contains("please introduce yourself")),
        "the sender gets the reason"
    );
    assert_eq!(post_copies(&s, "anne@example.net"), 0);

    let id = held_post(&s, "zed@example.com", "Second try")
        .await
        .to_string();
    let (status, location, _) = moderator
        .post(&format!("{HELD}/{id}"), &[("action", "accept-sender")])
        .await;
    assert_eq!(
        (status, location.contains("done=accept-sender")),
        (303, true)
    );
    let info = s.cli(&["lists", "show", LIST, "--json"]).json();
    assert_eq!(
        info["accept_senders"],
        serde_json::json!(["zed@example.com"])
    );
    let m = mail("Zed <zed@example.com>", LIST, "Third", "", "hello\r\n");
    smtplib(s.smtp_port(), "zed@example.com", &[LIST], &m).unwrap();
    s.process().await;
    assert_eq!(
        post_copies(&s, "anne@example.net"),
        2,
        "approved, then relayed at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_of_one_list_gets_404_for_another_and_owners_only_pages_are_refused() {
    let s = server_with(|_| {}).await;
    let moderator = sign_in(&s, MODERATOR).await;
    let other_held = held_post_on(&s, OTHER).await;
    for path in [
        "/admin/lists/ops.lists.example.org".to_string(),
        "/admin/lists/ops.lists.example.org/held".into(),
        "/admin/lists/ops.lists.example.org/members".into(),
        "/admin/lists/ops.lists.example.org/members.csv".into(),
        "/admin/lists/ops.lists.example.org/requests".into(),
        "/admin/lists/nosuch.lists.example.org/held".into(),
    ] {
        let (status, page) = moderator.get(&path).await;
        assert_eq!(status, 404, "{path}");
        assert!(!page.contains("ops@"), "nothing of the list shows: {path}");
    }
    let (status, _, _) = moderator
        .post(
            &format!("/admin/lists/ops.lists.example.org/held/{other_held}"),
            &[("action", "approve")],
        )
        .await;
    assert_eq!(status, 404);
    // through the moderator's own list, a post of the other list does not exist either
    let (status, _, _) = moderator
        .post(&format!("{HELD}/{other_held}"), &[("action", "approve")])
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        s.cli(&["held", "show", &other_held.to_string(), "--json"])
            .json()["status"],
        "held"
    );
    // a moderator decides held posts but does not change settings or members
    let (status, _, _) = moderator
        .post("/admin/lists/dev.lists.example.org", &[("posting", "open")])
        .await;
    assert_eq!(status, 403);
    let (status, _) = moderator
        .get("/admin/lists/dev.lists.example.org/members")
        .await;
    assert_eq!(status, 403);
    // a signed-in member runs nothing: an empty console, and 404 for the list
    let anne = sign_in(&s, "anne@example.net").await;
    let (status, page) = anne.get("/admin").await;
    assert_eq!(status, 200);
    assert!(page.contains("You do not run any list"), "{page}");
    assert_eq!(anne.get(HELD).await.0, 404);
    // without a session, every console URL leads to signing in
    let r = crate::harness::http()
        .get(s.url("/admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

async fn held_post_on(s: &TestServer, list: &str) -> i64 {
    let m = mail("mallory@example.com", list, "Elsewhere", "", "x\r\n");
    smtplib(s.smtp_port(), "mallory@example.com", &[list], &m).unwrap();
    s.process().await;
    s.cli(&["held", "ls", list, "--json"]).json()[0]["id"]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settings_form_saves_every_setting_or_answers_400_and_saves_nothing() {
    let s = server_with(|_| {}).await;
    let owner = sign_in(&s, OWNER).await;
    let path = "/admin/lists/dev.lists.example.org";
    let (status, page) = owner.get(path).await;
    assert_eq!(status, 200);
    for key in listd::domain::ListSettings::KEYS
        .iter()
        .chain(&["owners", "moderators"])
    {
        assert!(
            page.contains(&format!("name=\"{key}\"")),
            "a field for {key}"
        );
    }
    // yes/no settings read as words, and send the values `lists set` takes
    assert!(
        page.contains(r#"<option value="true" selected>yes</option>"#)
            && page.contains(r#"<option value="false">no</option>"#),
        "{page}"
    );
    let (status, _, page) = owner
        .post(
            path,
            &[
                ("posting", "moderated"),
                ("bounce-stale-days", "zero"),
                ("owners", OWNER),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        page.contains("aria-invalid=\"true\"") && page.contains("bounce-stale-days"),
        "{page}"
    );
    assert!(
        page.contains("value=\"zero\""),
        "what was typed is shown again"
    );
    let info = s.cli(&["lists", "show", LIST, "--json"]).json();
    assert_eq!(info["posting"], "members", "nothing saved");

    let (status, _, page) = owner
        .post(
            path,
            &[("posting", "moderated"), ("owners", "not an address")],
        )
        .await;
    assert_eq!(status, 400, "{page}");

    let (status, location, _) = owner
        .post(
            path,
            &[
                ("posting", "moderated"),
                ("subject-prefix", "[dev list]"),
                ("accept-senders", "friend@example.org"),
                ("owners", &format!("{OWNER}\nsecond@example.org")),
                ("moderators", ""),
            ],
        )
        .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/admin/lists/dev.lists.example.org?saved=1")
    );
    let info = s.cli(&["lists", "show", LIST, "--json"]).json();
    assert_eq!(info["posting"], "moderated");
    assert_eq!(info["subject_prefix"], "[dev list]");
    assert_eq!(
        info["accept_senders"],
        serde_json::json!(["friend@example.org"])
    );
    assert_eq!(info["owners"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_search_add_pause_and_remove_members_and_download_them() {
    let s = server_with(|c| c.admins = vec![addr("root@example.org")]).await;
    let owner = sign_in(&s, OWNER).await;
    let members = "/admin/lists/dev.lists.example.org/members";
    let (status, location, _) = owner
        .post(
            members,
            &[
                ("action", "add"),
                (
                    "address",
                    "bea@example.org, carl@example.org\ndora@example.org",
                ),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert!(location.contains("added=3"), "{location}");
    let (status, page) = owner.get(&format!("{members}?q=ca")).await;
    assert_eq!(status, 400);
    assert!(
        page.contains("at least 3 characters") && page.contains("aria-invalid"),
        "{page}"
    );
    let (_, page) = owner.get(&format!("{members}?q=CARL")).await;
    assert!(
        page.contains("carl@example.org") && !page.contains("bea@example.org"),
        "{page}"
    );
    let (status, _, _) = owner
        .post(
            members,
            &[("action", "pause"), ("address", "carl@example.org")],
        )
        .await;
    assert_eq!(status, 303);
    let shown = s
        .cli(&["members", "show", LIST, "carl@example.org", "--json"])
        .json();
    assert_eq!(shown["delivery"], "disabled");
    let (_, page) = owner.get(&format!("{members}?status=disabled")).await;
    assert!(
        page.contains("carl@example.org") && page.contains("Resume delivery"),
        "{page}"
    );
    let (status, _, _) = owner
        .post(
            members,
            &[("action", "remove"), ("address", "dora@example.org")],
        )
        .await;
    assert_eq!(status, 303);
    let (status, _, _) = owner
        .post(
            members,
            &[("action", "invite"), ("address", "eve@example.org")],
        )
        .await;
    assert_eq!(status, 303);
    s.deliver().await;
    assert_eq!(
        s.sink.to("eve@example.org").len(),
        1,
        "an invitation to confirm"
    );
    let (status, _, page) = owner
        .post(members, &[("action", "add"), ("address", "nope")])
        .await;
    assert_eq!(status, 400, "{page}");

    let r = crate::harness::http()
        .get(s.url("/admin/lists/dev.lists.example.org/members.csv"))
        .header("cookie", &owner.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("email,name,status"), "{csv}");
    assert!(csv.contains("bea@example.org") && csv.contains("anne@example.net"));
    assert!(!csv.contains("dora@example.org"), "only subscribed members");

    // a site admin sees every list and creates one
    let root = sign_in(&s, "root@example.org").await;
    let (_, page) = root.get("/admin").await;
    assert!(
        page.contains("ops@lists.example.org") && page.contains("Create a list"),
        "{page}"
    );
    let (status, _, page) = root
        .post("/admin/lists", &[("address", "not a list"), ("name", "X")])
        .await;
    assert_eq!(status, 400, "{page}");
    let (status, location, _) = root
        .post(
            "/admin/lists",
            &[("address", "new@lists.example.org"), ("name", "New list")],
        )
        .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/admin/lists/new.lists.example.org?created=1")
    );
    let info = s
        .cli(&["lists", "show", "new@lists.example.org", "--json"])
        .json();
    assert_eq!(info["name"], "New list");
    let (status, _, _) = owner
        .post("/admin/lists", &[("address", "x@lists.example.org")])
        .await;
    assert_eq!(status, 404, "only site admins create lists");
}

/// Asks for a sign-in link on the web form (with a `next` field when given), takes it
/// from the mail and presses its button; returns where the answer sends the browser.
async fn sign_in_by_form_to(s: &TestServer, address: &str, next: Option<&str>) -> String {
    let http = crate::harness::http();
    let before = s.sink.to(address).len();
    let mut form = vec![("email", address)];
    form.extend(next.map(|n| ("next", n)));
    let r = http
        .post(s.url("/signin"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.deliver().await;
    let mails = s.sink.to(address);
    assert_eq!(mails.len(), before + 1, "one sign-in mail to {address}");
    let link = crate::harness::find_link(&mails[before].body_text(), &s.url("/signin/"))
        .expect("a sign-in link");
    assert_eq!(http.get(&link).send().await.unwrap().status(), 200);
    let r = http.post(&link).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("listd_session=")),
        "signed in"
    );
    r.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_from_a_notice_link_returns_to_the_held_page_and_never_to_another_site() {
    let s = server_with(|_| {}).await;
    let id = held_post(&s, "mallory@example.com", "Take me back").await;
    let notice = s.sink.to(OWNER).pop().unwrap().body_text();
    let link = crate::harness::find_link(&notice, &s.url("/admin/")).unwrap();
    let path = link.strip_prefix(&s.url("")).unwrap().to_string();
    assert!(path.starts_with(HELD), "{path}");

    // signed out: to /signin, with the page in a cookie only /signin reads; the form
    // carries it in a hidden field
    let http = crate::harness::http();
    let r = http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/signin");
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let encoded = path.replace('/', "%2F");
    assert!(
        set_cookie.starts_with(&format!("listd_next={encoded};"))
            && set_cookie.contains("Path=/signin")
            && set_cookie.contains("HttpOnly"),
        "{set_cookie}"
    );
    let form = http
        .get(s.url("/signin"))
        .header("cookie", format!("listd_next={encoded}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let form = form.text().await.unwrap().replace("&#x2f;", "/");
    let next = field_value(&form, "next").expect("a next field");
    assert_eq!(next, path);
    // asking for the link clears the cookie: the page now travels with the request
    let r = http
        .post(s.url("/signin"))
        .header("cookie", format!("listd_next={encoded}"))
        .form(&[("email", "nobody@example.net"), ("next", next.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cleared = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("listd_next=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    // the mailed link, once pressed, leads to that page, and the session reads it
    let location = sign_in_by_form_to(&s, OWNER, Some(&next)).await;
    assert_eq!(location, path);

    // anything but a local path leads to /me: neither the form nor the link keeps it
    let hostile = [
        ("//evil.example", "anne@example.net"),
        ("https://evil.example", MODERATOR),
        ("/\\evil", "boss@example.org"),
    ];
    for (next, who) in hostile {
        let url = format!("/signin?next={}", url_encode(next));
        let form = http.get(s.url(&url)).send().await.unwrap();
        assert_eq!(form.status(), 200);
        let form = form.text().await.unwrap();
        assert!(field_value(&form, "next").is_none(), "{next}: {form}");
        assert_eq!(
            sign_in_by_form_to(&s, who, Some(next)).await,
            "/me",
            "{next}"
        );
    }
    // a form's POST without a session names no page to return to
    let r = http
        .post(s.url(&format!("{HELD}/{id}")))
        .form(&[("action", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/signin");
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
