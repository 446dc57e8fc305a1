//! Bounce processing, end to end (docs/standards.md, section F): posts relayed to a
//! sink that refuses some recipients, delivery status reports mailed back over SMTP to
//! the copies' VERP addresses, and the score and time rules driven by a clock the test
//! sets.

use crate::harness::{Captured, TestServer, find_link, http, mail, smtplib};
use time::{Duration, OffsetDateTime};

const LIST: &str = "dev@lists.example.org";
const OWNER: &str = "owner@example.org";

async fn server() -> TestServer {
    let s = TestServer::start().await;
    let out = s.cli(&[
        "lists",
        "create",
        LIST,
        "--name",
        "Dev",
        "--owner",
        OWNER,
        "--posting",
        "open",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.cli(&[
        "members",
        "add",
        LIST,
        "--quiet",
        "anne@example.net",
        "bob@example.com",
        "carol@example.org",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    s
}

/// Posts and delivers; returns the copies by recipient.
async fn post(s: &TestServer, subject: &str) {
    let m = mail("Poster <poster@example.net>", LIST, subject, "", "hello");
    smtplib(s.smtp_port(), "poster@example.net", &[LIST], &m).unwrap();
    s.process().await;
}

fn copies_to(s: &TestServer, rcpt: &str) -> Vec<Captured> {
    s.sink
        .to(rcpt)
        .into_iter()
        .filter(|c| c.mail_from.contains("+bounces+m"))
        .collect()
}

fn notices_to(s: &TestServer, rcpt: &str) -> Vec<Captured> {
    s.sink
        .to(rcpt)
        .into_iter()
        .filter(|c| !c.mail_from.contains("+bounces+m"))
        .collect()
}

/// A delivery status report as an MTA sends it: from MAILER-DAEMON with a null
/// sender, to the VERP address of the copy that failed.
fn dsn(to: &str, final_recipient: &str, status: &str, diagnostic: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n\
To: {to}\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <{id}@mx.example.net>\r\n\
Auto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
\r\n\
--B\r\n\
Content-Type: text/plain\r\n\
\r\n\
Your message could not be delivered.\r\n\
--B\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.net\r\n\
\r\n\
Final-Recipient: rfc822; {final_recipient}\r\n\
Action: failed\r\n\
Status: {status}\r\n\
Diagnostic-Code: smtp; {diagnostic}\r\n\
\r\n\
--B--\r\n",
        id = uuid::Uuid::new_v4().simple()
    )
}

fn send_dsn(s: &TestServer, to: &str, message: &str) {
    smtplib(s.smtp_port(), "", &[to], message).expect("the bounce is accepted (250)");
}

fn show(s: &TestServer, who: &str) -> serde_json::Value {
    let out = s.cli(&["members", "show", LIST, who, "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    out.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_are_attributed_scored_once_a_day_and_disable_at_the_threshold() {
    let s = server().await;
    let t0 = OffsetDateTime::now_utc();
    s.sink.rcpt_replies.lock().unwrap().insert(
        "bob@example.com".into(),
        "550 5.1.1 <bob@example.com>: no such user".into(),
    );
    post(&s, "First").await;
    let carol_verp = copies_to(&s, "carol@example.org")[0].mail_from.clone();
    assert!(carol_verp.starts_with("dev+bounces+"), "{carol_verp}");

    // carol's mail is forwarded; the report names the forwarding address (F-34)
    let report = dsn(
        &carol_verp,
        "carol.forwarded@elsewhere.example",
        "5.1.1",
        "550 5.1.1 user unknown",
    );
    send_dsn(&s, &carol_verp, &report);
    s.app.process_all_inbound().await.unwrap();
    s.app.judge_bounces(t0).await.unwrap();

    for who in ["bob@example.com", "carol@example.org"] {
        let shown = show(&s, who);
        assert_eq!(shown["bounce_score"], 1, "{who}: {shown}");
        let bounces = shown["bounces"].as_array().unwrap();
        assert_eq!(bounces.len(), 1, "{who}");
        assert_eq!(bounces[0]["status"], "5.1.1");
        assert_eq!(bounces[0]["class"], "hard");
    }
    assert_eq!(show(&s, "bob@example.com")["bounces"][0]["source"], "relay");
    assert_eq!(
        show(&s, "carol@example.org")["bounces"][0]["source"],
        "report"
    );
    assert!(
        s.sink.to("MAILER-DAEMON@mx.example.net").is_empty(),
        "a bounce is never answered (F-39)"
    );

    // a second hard bounce the same day does not count (F-37)
    send_dsn(&s, &carol_verp, &report);
    s.app.process_all_inbound().await.unwrap();
    s.app.judge_bounces(t0 + Duration::hours(3)).await.unwrap();
    assert_eq!(show(&s, "carol@example.org")["bounce_score"], 1);

    // one a day until the threshold (5)
    for day in 1..=4 {
        send_dsn(&s, &carol_verp, &report);
        s.app.process_all_inbound().await.unwrap();
        s.app.judge_bounces(t0 + Duration::days(day)).await.unwrap();
    }
    s.deliver().await;
    let shown = show(&s, "carol@example.org");
    assert_eq!(shown["bounce_score"], 5);
    assert_eq!(shown["delivery"], "disabled");
    let told = notices_to(&s, "carol@example.org");
    assert_eq!(told.len(), 1, "one notice");
    assert!(told[0].header("Subject").unwrap().contains("paused"));
    let owners_told = notices_to(&s, OWNER);
    assert_eq!(owners_told.len(), 1, "the owners hear of it too");
    assert!(owners_told[0].body_text().contains("carol@example.org"));
    let disabled = s
        .cli(&["members", "ls", LIST, "--status", "disabled", "--json"])
        .json();
    assert_eq!(disabled[0]["address"], "carol@example.org");

    post(&s, "Second").await;
    assert_eq!(copies_to(&s, "carol@example.org").len(), 1, "skipped");
    assert_eq!(copies_to(&s, "anne@example.net").len(), 2);

    // the notice's link turns delivery back on, after a button press
    let link = find_link(&told[0].body_text(), &s.url("/resume/")).expect("a resume link");
    assert_eq!(http().get(&link).send().await.unwrap().status(), 200);
    assert_eq!(
        show(&s, "carol@example.org")["delivery"],
        "disabled",
        "GET changes nothing"
    );
    assert_eq!(http().post(&link).send().await.unwrap().status(), 200);
    let shown = show(&s, "carol@example.org");
    assert_eq!(shown["delivery"], "enabled");
    assert_eq!(shown["bounce_score"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dmarc_rejection_changes_no_score_and_alerts_the_owners_once_a_day() {
    let s = server().await;
    let t0 = OffsetDateTime::now_utc();
    post(&s, "Hello").await;
    let anne_verp = copies_to(&s, "anne@example.net")[0].mail_from.clone();
    let report = dsn(
        &anne_verp,
        "anne@example.net",
        "5.7.1",
        "550 5.7.1 Unauthenticated email from example.net is not accepted due to domain's DMARC policy",
    );
    for _ in 0..2 {
        send_dsn(&s, &anne_verp, &report);
        s.app.process_all_inbound().await.unwrap();
        s.app.judge_bounces(t0).await.unwrap();
    }
    s.deliver().await;
    let shown = show(&s, "anne@example.net");
    assert_eq!(shown["bounce_score"], 0, "F-38: not the member's problem");
    assert_eq!(shown["delivery"], "enabled");
    assert_eq!(shown["bounces"][0]["class"], "policy");
    let alerts = notices_to(&s, OWNER);
    assert_eq!(alerts.len(), 1, "once a day per receiving domain");
    assert!(alerts[0].body_text().contains("example.net"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complaint_unsubscribes_at_once() {
    let s = server().await;
    post(&s, "Hello").await;
    let bob_verp = copies_to(&s, "bob@example.com")[0].mail_from.clone();
    let arf = format!(
        "From: feedback@isp.example\r\nTo: {bob_verp}\r\nSubject: complaint\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n\
--F\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n\
--F\r\nContent-Type: message/feedback-report\r\n\r\n\
Feedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n\r\n\
--F\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y\r\n\r\nbody\r\n--F--\r\n"
    );
    send_dsn(&s, &bob_verp, &arf);
    s.app.process_all_inbound().await.unwrap();
    s.app
        .judge_bounces(OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(show(&s, "bob@example.com")["status"], "complained");
    s.deliver().await;
    assert!(
        notices_to(&s, "bob@example.com").is_empty(),
        "no mail after a complaint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weekly_warnings_then_removal_and_quiet_days_reset_scores() {
    let s = server().await;
    let t0 = OffsetDateTime::now_utc();
    let out = s.cli(&["lists", "set", LIST, "bounce-score-threshold=2"]);
    assert_eq!(out.code, 0, "{out:?}");
    post(&s, "Hello").await;
    let verp = |who: &str| copies_to(&s, who)[0].mail_from.clone();
    let (bob, carol) = (verp("bob@example.com"), verp("carol@example.org"));
    let hard = |to: &str| dsn(to, "x@elsewhere.example", "5.1.1", "550 5.1.1 unknown");

    // carol: one bounce, then 8 quiet days: the score goes stale (F-37)
    send_dsn(&s, &carol, &hard(&carol));
    s.app.process_all_inbound().await.unwrap();
    s.app.judge_bounces(t0).await.unwrap();
    assert_eq!(show(&s, "carol@example.org")["bounce_score"], 1);
    s.app.maintain(t0 + Duration::days(8)).await.unwrap();
    assert_eq!(show(&s, "carol@example.org")["bounce_score"], 0);

    // bob: two days of bounces, disabled; then three weekly warnings and removal
    for day in 0..2 {
        send_dsn(&s, &bob, &hard(&bob));
        s.app.process_all_inbound().await.unwrap();
        s.app.judge_bounces(t0 + Duration::days(day)).await.unwrap();
    }
    assert_eq!(show(&s, "bob@example.com")["delivery"], "disabled");
    let disabled_at = t0 + Duration::days(1);
    let m = s
        .app
        .maintain(disabled_at + Duration::days(3))
        .await
        .unwrap();
    assert_eq!(m.warnings_sent, 0, "not a week yet");
    for week in 1..=3 {
        let m = s
            .app
            .maintain(disabled_at + Duration::days(7 * week) + Duration::minutes(1))
            .await
            .unwrap();
        assert_eq!(m.warnings_sent, 1, "week {week}");
    }
    assert_eq!(show(&s, "bob@example.com")["status"], "subscribed");
    let m = s
        .app
        .maintain(disabled_at + Duration::days(28) + Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(m.members_removed, 1);
    assert_eq!(show(&s, "bob@example.com")["status"], "bounced");
    s.deliver().await;
    let told = notices_to(&s, "bob@example.com");
    assert_eq!(told.len(), 4, "the notice and three warnings");
    // re-adding someone removed for bounces needs their consent again (docs/contract.md#cli)
    let out = s.cli(&["members", "add", LIST, "--quiet", "bob@example.com"]);
    assert_ne!(out.code, 0, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verp_address_decides_whose_bounce_it_is_and_vouches_for_complaints() {
    let s = server().await;
    let t0 = OffsetDateTime::now_utc();
    post(&s, "Hello").await;
    let carol = copies_to(&s, "carol@example.org")[0].mail_from.clone();
    // a report to carol's VERP address that names anne: carol's copy bounced (F-34)
    send_dsn(
        &s,
        &carol,
        &dsn(&carol, "anne@example.net", "5.1.1", "550 5.1.1 unknown"),
    );
    // an abuse report to the plain bounce address, naming bob: nothing vouches for it
    let plain = "dev+bounces@lists.example.org";
    let arf = format!(
        "From: someone@example.com\r\nTo: {plain}\r\nSubject: report\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n\
--F\r\nContent-Type: message/feedback-report\r\n\r\n\
Feedback-Type: abuse\r\nOriginal-Rcpt-To: <bob@example.com>\r\n\r\n--F--\r\n"
    );
    send_dsn(&s, plain, &arf);
    s.app.process_all_inbound().await.unwrap();
    s.app.judge_bounces(t0).await.unwrap();
    assert_eq!(show(&s, "carol@example.org")["bounce_score"], 1);
    assert_eq!(show(&s, "anne@example.net")["bounce_score"], 0);
    assert_eq!(show(&s, "bob@example.com")["status"], "subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_bounces_can_be_resumed_and_a_new_membership_starts_clean() {
    let s = server().await;
    let t0 = OffsetDateTime::now_utc();
    assert_eq!(
        s.cli(&["lists", "set", LIST, "bounce-score-threshold=1"])
            .code,
        0
    );
    post(&s, "Hello").await;
    let carol = copies_to(&s, "carol@example.org")[0].mail_from.clone();
    let bounce = || dsn(&carol, "x@elsewhere.example", "5.1.1", "550 5.1.1 unknown");
    send_dsn(&s, &carol, &bounce());
    s.app.process_all_inbound().await.unwrap();
    s.app.judge_bounces(t0).await.unwrap();
    assert_eq!(show(&s, "carol@example.org")["delivery"], "disabled");

    // an owner's own decision to stop delivery is not undone by the member's link
    let unsubscribe = copies_to(&s, "anne@example.net")[0]
        .header("List-Unsubscribe")
        .unwrap();
    let anne_token = find_link(&unsubscribe, &s.url("/unsubscribe/"))
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let out = s.cli(&[
        "members",
        "set",
        LIST,
        "anne@example.net",
        "delivery=disabled",
    ]);
    assert_eq!(out.code, 0);
    let resume = s.url(&format!("/resume/{anne_token}"));
    assert_eq!(
        http().get(&resume).send().await.unwrap().status(),
        404,
        "no button to press"
    );
    assert_eq!(http().post(&resume).send().await.unwrap().status(), 404);
    assert_eq!(show(&s, "anne@example.net")["delivery"], "disabled");

    // removed and added again: the old bounces are gone, and new ones count again
    assert_eq!(
        s.cli(&["members", "remove", LIST, "carol@example.org"])
            .code,
        0
    );
    assert_eq!(
        s.cli(&["members", "add", LIST, "--quiet", "carol@example.org"])
            .code,
        0
    );
    let shown = show(&s, "carol@example.org");
    assert_eq!(
        (shown["bounce_score"].clone(), shown["delivery"].clone()),
        (0.into(), "enabled".into())
    );
    post(&s, "Again").await;
    let carol = copies_to(&s, "carol@example.org").pop().unwrap().mail_from;
    send_dsn(
        &s,
        &carol,
        &dsn(&carol, "x@elsewhere.example", "5.1.1", "550 5.1.1 unknown"),
    );
    s.app.process_all_inbound().await.unwrap();
    s.app.judge_bounces(t0 + Duration::days(1)).await.unwrap();
    assert_eq!(show(&s, "carol@example.org")["delivery"], "disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_bounces_never_disable_and_the_list_settings_set_the_pace() {
    let s = server().await;
    let t0 = OffsetDateTime::now_utc();
    let out = s.cli(&[
        "lists",
        "set",
        LIST,
        "bounce-score-threshold=1",
        "bounce-warnings=1",
        "bounce-warning-interval-days=2",
        "bounce-stale-days=3",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    post(&s, "Hello").await;
    let verp = |who: &str| copies_to(&s, who)[0].mail_from.clone();
    let (anne, bob) = (verp("anne@example.net"), verp("bob@example.com"));

    // a week of full mailboxes and delays: recorded, never counted (F-38)
    for day in 0..7 {
        for (status, text) in [
            ("4.2.2", "452 4.2.2 mailbox full"),
            ("5.2.2", "552 5.2.2 over quota"),
        ] {
            send_dsn(&s, &anne, &dsn(&anne, "anne@example.net", status, text));
        }
        s.app.process_all_inbound().await.unwrap();
        s.app.judge_bounces(t0 + Duration::days(day)).await.unwrap();
    }
    let shown = show(&s, "anne@example.net");
    assert_eq!(
        (shown["bounce_score"].clone(), shown["delivery"].clone()),
        (0.into(), "enabled".into())
    );
    assert_eq!(
        shown["bounces"].as_array().unwrap().len(),
        10,
        "the last ten are shown"
    );

    // bob: threshold 1, one warning after 2 days, removal 2 days later
    send_dsn(
        &s,
        &bob,
        &dsn(&bob, "bob@example.com", "5.1.1", "550 5.1.1 unknown"),
    );
    s.app.process_all_inbound().await.unwrap();
    s.app.judge_bounces(t0).await.unwrap();
    assert_eq!(show(&s, "bob@example.com")["delivery"], "disabled");
    let m = s
        .app
        .maintain(t0 + Duration::days(2) + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!((m.warnings_sent, m.members_removed), (1, 0));
    let m = s
        .app
        .maintain(t0 + Duration::days(4) + Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!((m.warnings_sent, m.members_removed), (0, 1));
    assert_eq!(show(&s, "bob@example.com")["status"], "bounced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_runs_in_one_process_at_a_time() {
    let s = server().await;
    // another process is in the middle of it
    let held = listd::store::begin_try_locked(&s.db.pool, "listd maintenance")
        .await
        .unwrap()
        .expect("the lock is free");
    let m = s.app.maintain(OffsetDateTime::now_utc()).await.unwrap();
    assert!(m.skipped);
    held.rollback().await.unwrap();
    let m = s.app.maintain(OffsetDateTime::now_utc()).await.unwrap();
    assert!(!m.skipped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_final_refusal_by_the_relay_counts_and_old_rows_are_cleared() {
    let s = server().await;
    let t0 = OffsetDateTime::now_utc();
    s.sink
        .rcpt_replies
        .lock()
        .unwrap()
        .insert("bob@example.com".into(), "550 unrouteable address".into());
    post(&s, "Hello").await;
    s.app.judge_bounces(t0).await.unwrap();
    let shown = show(&s, "bob@example.com");
    assert_eq!(shown["bounces"][0]["class"], "hard", "{shown}");
    assert_eq!(shown["bounce_score"], 1);

    // rows older than 30 days: sent mail and expired requests go, queued mail stays
    sqlx::query("update outbound set created_at = now() - interval '31 days'")
        .execute(&s.db.pool)
        .await
        .unwrap();
    let queued: i64 = sqlx::query_scalar("select count(*) from outbound where status = 'queued'")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    let m = s.app.maintain(t0).await.unwrap();
    assert!(m.rows_deleted >= 3, "{m:?}");
    let left: i64 = sqlx::query_scalar("select count(*) from outbound")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(left, queued, "only what is still queued is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_notice_names_its_member_and_replies_are_no_bounces() {
    let s = server().await;
    let t0 = OffsetDateTime::now_utc();
    post(&s, "Hello").await;
    let anne = copies_to(&s, "anne@example.net")[0].mail_from.clone();
    // a qmail notice to the plain bounce address, naming a stranger and bob, with
    // the returned copy's From a member (carol) and a generic 5.0.0 code
    let plain = "dev+bounces@lists.example.org";
    let notice = format!(
        "From: MAILER-DAEMON@mx.example.com\r\nTo: {plain}\r\nSubject: failure notice\r\n\r\n\
Hi. This is the qmail-send program at mx.example.com.\r\n\
I'm afraid I wasn't able to deliver your message to the following addresses.\r\n\
This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n\
<stranger@example.com>:\r\n<bob@example.com>:\r\n\
Remote host said: 550 5.0.0 No such user\r\n\r\n\
--- Below this line is a copy of the message.\r\n\r\n\
From: Carol <carol@example.org>\r\nTo: {LIST}\r\nSubject: Hello\r\n\r\nhello\r\n"
    );
    send_dsn(&s, plain, &notice);
    // anne's out-of-office reply, to her VERP address
    let ooo = format!(
        "From: Anne <anne@example.net>\r\nTo: {anne}\r\nSubject: Out of Office: Hello\r\n\
Auto-Submitted: auto-replied\r\n\r\nI am away until Monday.\r\n"
    );
    send_dsn(&s, &anne, &ooo);
    // and anne herself, answering her copy's bounce address about returned mail
    let reply = format!(
        "From: Anne <anne@example.net>\r\nTo: {anne}\r\nSubject: Re: Hello\r\n\r\n\
I got returned mail from bob: undeliverable, 550 5.1.1 user unknown?\r\n"
    );
    smtplib(s.smtp_port(), "anne@example.net", &[&anne], &reply).unwrap();
    s.app.process_all_inbound().await.unwrap();
    s.app.judge_bounces(t0).await.unwrap();
    let bob = show(&s, "bob@example.com");
    assert_eq!(bob["bounce_score"], 1, "{bob}");
    assert_eq!(bob["bounces"][0]["class"], "hard", "{bob}");
    let carol = show(&s, "carol@example.org");
    assert_eq!(
        carol["bounces"].as_array().map(Vec::len),
        Some(0),
        "{carol}"
    );
    let anne = show(&s, "anne@example.net");
    assert_eq!(anne["bounces"].as_array().map(Vec::len), Some(0), "{anne}");
}

/// Asks for a subscription by the web form and returns how many mails the address
/// has received since.
async fn web_request(s: &TestServer, who: &str) -> usize {
    let r = http()
        .post(s.url("/lists/dev.lists.example.org/subscribe"))
        .form(&[("email", who)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.deliver().await;
    s.sink.to(who).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounced_confirmation_names_its_address_and_stops_more_confirmations() {
    let s = server().await;
    let (ghost, control) = ("nobody@example.net", "somebody@example.net");
    assert_eq!(web_request(&s, ghost).await, 1);
    assert_eq!(web_request(&s, control).await, 1);
    let confirmation = s.sink.to(ghost).pop().unwrap();
    // system mail to one person carries a VERP sender of its own
    let verp = confirmation.mail_from.clone();
    assert!(verp.starts_with("dev+bounces+o"), "{verp}");
    assert_ne!(verp, s.sink.to(control).pop().unwrap().mail_from);
    // the report names some other address (a forwarding one): the VERP address decides
    let report = dsn(
        &verp,
        "ghost@forward.example",
        "5.1.1",
        "550 5.1.1 no such user",
    );
    send_dsn(&s, &verp, &report);
    s.app.process_all_inbound().await.unwrap();
    s.app
        .judge_bounces(OffsetDateTime::now_utc())
        .await
        .unwrap();
    let shown = show(&s, ghost);
    assert_eq!(shown["status"], "pending");
    assert_eq!(shown["bounces"][0]["class"], "hard", "{shown}");

    // an hour later (past the per-address spacing), a new request for the address
    // that does not exist gets no confirmation; another address still does
    sqlx::query("update pending_request set requested_at = requested_at - interval '1 hour'")
        .execute(&s.db.pool)
        .await
        .unwrap();
    sqlx::query("update outbound set created_at = created_at - interval '1 hour'")
        .execute(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(web_request(&s, ghost).await, 1, "no second confirmation");
    assert_eq!(web_request(&s, control).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_report_never_names_an_address_waiting_for_its_confirmation() {
    let s = server().await;
    let victim = "victim@example.net";
    // anyone can ask for a confirmation to any address, then forge its "bounce"
    assert_eq!(web_request(&s, victim).await, 1);
    let plain = "dev+bounces@lists.example.org";
    let forged = dsn(plain, victim, "5.1.1", "550 5.1.1 no such user");
    send_dsn(&s, plain, &forged);
    s.app.process_all_inbound().await.unwrap();
    s.app
        .judge_bounces(OffsetDateTime::now_utc())
        .await
        .unwrap();
    let shown = show(&s, victim);
    assert_eq!(
        shown["bounces"].as_array().map(Vec::len),
        Some(0),
        "{shown}"
    );
    sqlx::query("update pending_request set requested_at = requested_at - interval '1 hour'")
        .execute(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(
        web_request(&s, victim).await,
        2,
        "confirmations still go out"
    );
}
