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
