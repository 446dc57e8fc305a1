//! Hostile input and faults: what a careful attacker or a broken peer sends, and what
//! listd must still do (nothing accepted is lost; no client shuts out the others;
//! nothing anyone types reaches a spreadsheet formula or a terminal as control).

use crate::harness::{TestServer, find_link, http, read_reply, smtp_raw};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const LIST: &str = "dev@lists.example.org";
const OWNER: &str = "owner@example.org";
const ADMIN: &str = "admin@example.org";

async fn server(extra: &[&str]) -> TestServer {
    let s = TestServer::start_with(|c| {
        c.admins = vec![listd::domain::EmailAddress::parse(ADMIN).unwrap()];
    })
    .await;
    let mut args = vec!["lists", "create", LIST, "--name", "Dev", "--owner", OWNER];
    args.extend_from_slice(extra);
    let out = s.cli(&args);
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.cli(&["members", "add", LIST, "--quiet", "bob@example.com"]);
    assert_eq!(out.code, 0, "{out:?}");
    s
}

fn inbound_ls(s: &TestServer) -> serde_json::Value {
    let out = s.cli(&["inbound", "ls", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    out.json()
}

fn copies_to(s: &TestServer, rcpt: &str) -> Vec<crate::harness::Captured> {
    s.sink
        .to(rcpt)
        .into_iter()
        .filter(|c| c.mail_from.contains("+bounces+m"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_subject_or_message_id_is_relayed_not_lost() {
    let s = server(&["--posting", "open"]).await;
    // and bytes that are not UTF-8 in the From name, the Subject and a field of its own
    let message = b"From: \"An\xffne\" <anne@example.net>\r\nTo: dev@lists.example.org\r\n\
Subject: hello\0world \xc3\x28\r\nMessage-ID: <a\0b@example.net>\r\nX-Junk: \xfe\xff\r\n\
\r\nbody\0here\r\n";
    let replies = smtp_raw(s.smtp_port(), "anne@example.net", &[LIST], message).await;
    assert!(replies.last().unwrap().starts_with("250"), "{replies:?}");
    s.process().await;
    let ls = inbound_ls(&s);
    assert_eq!(ls[0]["status"], "done", "{ls}");
    let copies = copies_to(&s, "bob@example.com");
    assert_eq!(copies.len(), 1, "{ls}");
    assert!(
        copies[0].text().contains("body\0here"),
        "the body travels unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_whose_processing_keeps_failing_is_reported_and_can_be_replayed() {
    let s = server(&["--posting", "open"]).await;
    // a fault in the database: every post is refused until the trigger is gone
    sqlx::raw_sql(
        "create function refuse_post() returns trigger language plpgsql as
           $$ begin raise exception 'disk full (simulated)'; end $$;
         create trigger refuse_post before insert on post
           for each row execute function refuse_post();",
    )
    .execute(&s.db.pool)
    .await
    .unwrap();
    let message = b"From: Anne <anne@example.net>\r\nTo: dev@lists.example.org\r\n\
Subject: Doomed\r\nMessage-ID: <doomed@example.net>\r\n\r\nbody\r\n";
    let replies = smtp_raw(s.smtp_port(), "anne@example.net", &[LIST], message).await;
    assert!(replies.last().unwrap().starts_with("250"), "{replies:?}");
    for _ in 0..5 {
        // each failure waits a minute before the next attempt: let that minute pass
        sqlx::query("update inbound set locked_until = null")
            .execute(&s.db.pool)
            .await
            .unwrap();
        s.process().await;
    }
    let ls = inbound_ls(&s);
    assert_eq!(ls[0]["status"], "failed", "{ls}");
    assert!(
        ls[0]["error"].as_str().unwrap().contains("disk full"),
        "{ls}"
    );
    let id = ls[0]["id"].as_i64().unwrap();
    for told in [OWNER, ADMIN] {
        let notices = s.sink.to(told);
        assert_eq!(notices.len(), 1, "{told} is told once");
        let text = notices[0].text();
        assert!(text.contains("could not be processed"), "{text}");
        assert!(text.contains("Content-Type: message/rfc822"), "{text}");
        assert!(
            text.contains("Subject: Doomed"),
            "the message is attached: {text}"
        );
        assert!(
            text.contains(&format!("listd inbound retry {id}")),
            "{text}"
        );
    }
    assert!(copies_to(&s, "bob@example.com").is_empty());
    let show = s.cli(&["inbound", "show", &id.to_string()]);
    assert_eq!(show.code, 0, "{show:?}");
    assert!(
        show.stdout.contains("Subject: Doomed") && show.stdout.contains("failed"),
        "{show:?}"
    );

    sqlx::raw_sql("drop trigger refuse_post on post")
        .execute(&s.db.pool)
        .await
        .unwrap();
    let retry = s.cli(&["inbound", "retry", &id.to_string()]);
    assert_eq!(retry.code, 0, "{retry:?}");
    s.process().await;
    assert_eq!(
        copies_to(&s, "bob@example.com").len(),
        1,
        "relayed after the replay"
    );
    assert_eq!(inbound_ls(&s)[0]["status"], "done");
    let again = s.cli(&["inbound", "retry", &id.to_string()]);
    assert_eq!(
        again.code, 1,
        "a processed message is not replayed: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_with_a_line_over_998_octets_is_held_with_the_reason() {
    let s = server(&["--posting", "open"]).await;
    let long = "x".repeat(1_000_000);
    let message = format!(
        "From: Anne <anne@example.net>\r\nTo: dev@lists.example.org\r\nSubject: Wide\r\n\r\nshort\r\n{long}\r\n"
    );
    let replies = smtp_raw(
        s.smtp_port(),
        "anne@example.net",
        &[LIST],
        message.as_bytes(),
    )
    .await;
    assert!(replies.last().unwrap().starts_with("250"), "{replies:?}");
    s.process().await;
    assert!(
        copies_to(&s, "bob@example.com").is_empty(),
        "not relayed as it is"
    );
    let held = s.cli(&["held", "ls", "--json"]).json();
    let reason = held[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("line 6 is 1000000 octets") && reason.contains("998"),
        "{reason}"
    );
    let id = held[0]["id"].to_string();
    let approve = s.cli(&["held", "approve", &id]);
    assert_eq!(
        approve.code, 1,
        "approval cannot relay it either: {approve:?}"
    );
    assert_eq!(s.cli(&["held", "reject", &id]).code, 0);
}

/// A second SMTP listener on the test's app, with limits the test sets.
async fn smtp_listener(
    s: &TestServer,
    adjust: impl FnOnce(&mut listd::smtp::SmtpConfig),
) -> (u16, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config = listd::smtp::SmtpConfig::new("listd.test", listd::smtp::Protocol::Smtp);
    adjust(&mut config);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(listd::smtp::serve(
        listener,
        config,
        listd::smtp::AppBackend::new(s.app.clone()),
        stop_rx,
    ));
    (port, stop)
}

/// Connects from `from` (any 127.x.y.z is this machine) and returns the greeting.
async fn connect_from(
    from: [u8; 4],
    port: u16,
) -> (
    BufReader<tokio::net::tcp::OwnedReadHalf>,
    tokio::net::tcp::OwnedWriteHalf,
    String,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind((std::net::Ipv4Addr::from(from), 0).into())
        .unwrap();
    let stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let (r, w) = stream.into_split();
    let mut r = BufReader::new(r);
    let greeting = read_reply(&mut r).await;
    (r, w, greeting)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_session() {
    let s = server(&[]).await;
    let (port, _stop) = smtp_listener(&s, |c| {
        c.max_sessions = 10;
        c.max_sessions_per_ip = 3;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let (r, w, greeting) = connect_from([127, 0, 0, 1], port).await;
        assert!(greeting.starts_with("220"), "{greeting}");
        idle.push((r, w));
    }
    let (_r, _w, refused) = connect_from([127, 0, 0, 1], port).await;
    assert!(refused.starts_with("421 4.7.0"), "{refused}");
    let (mut r, mut w, other) = connect_from([127, 0, 0, 2], port).await;
    assert!(
        other.starts_with("220"),
        "another client still gets in: {other}"
    );
    w.write_all(b"QUIT\r\n").await.unwrap();
    assert!(read_reply(&mut r).await.starts_with("221"));
    // a session that ends gives its place back
    drop(idle.pop());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_r, _w, greeting) = connect_from([127, 0, 0, 1], port).await;
        if greeting.starts_with("220") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the place never came back: {greeting}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `bytes` one at a time, `every` apart, until the server answers or closes;
/// returns the answer ("" when the server closed without one, or never answered).
async fn trickle(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    bytes: &[u8],
    every: Duration,
) -> String {
    let mut line = String::new();
    for &b in bytes {
        if w.write_all(&[b]).await.is_err() {
            break;
        }
        match tokio::time::timeout(every, r.read_line(&mut line)).await {
            Ok(_) => return line.trim_end().to_string(),
            Err(_) => continue,
        }
    }
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_cannot_hold_a_session() {
    let s = server(&[]).await;
    let (port, _stop) = smtp_listener(&s, |c| {
        c.command_timeout = Duration::from_secs(1);
        c.min_data_rate = 100;
    })
    .await;
    // a command line, a byte at a time
    let (mut r, mut w, _) = connect_from([127, 0, 0, 1], port).await;
    let answer = trickle(&mut r, &mut w, &[b'N'; 200], Duration::from_millis(250)).await;
    assert!(answer.starts_with("421 4.4.2"), "{answer:?}");
    // message content, a byte at a time
    let (mut r, mut w, _) = connect_from([127, 0, 0, 1], port).await;
    for command in [
        "EHLO client.test",
        "MAIL FROM:<anne@example.net>",
        &format!("RCPT TO:<{LIST}>"),
        "DATA",
    ] {
        w.write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        let reply = read_reply(&mut r).await;
        assert!(
            reply.starts_with('2') || reply.starts_with("354"),
            "{command}: {reply}"
        );
    }
    let answer = trickle(&mut r, &mut w, &[b'x'; 200], Duration::from_millis(250)).await;
    assert!(answer.starts_with("421 4.4.2"), "{answer:?}");
    assert!(
        inbound_ls(&s).as_array().unwrap().is_empty(),
        "nothing was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_guessing_addresses_is_cut_off() {
    let s = server(&[]).await;
    let (mut r, mut w, _) = connect_from([127, 0, 0, 1], s.smtp_port()).await;
    for command in ["EHLO client.test", "MAIL FROM:<anne@example.net>"] {
        w.write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        assert!(read_reply(&mut r).await.starts_with("250"));
    }
    let mut replies = Vec::new();
    for i in 0..25 {
        if w.write_all(format!("RCPT TO:<guess{i}@lists.example.org>\r\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
        let reply = read_reply(&mut r).await;
        if reply.is_empty() {
            break;
        }
        replies.push(reply);
    }
    assert_eq!(replies.len(), 21, "{replies:?}");
    assert!(
        replies[..20].iter().all(|r| r.starts_with("550 5.1.1")),
        "{replies:?}"
    );
    assert!(replies[20].starts_with("421 4.7.0"), "{replies:?}");
}

/// Joins through the web form with a name and a User-Agent the joiner chose.
async fn join_by_web(s: &TestServer, email: &str, name: &str, user_agent: &str) {
    let r = http()
        .post(s.url("/lists/dev.lists.example.org/subscribe"))
        .header("User-Agent", user_agent)
        .form(&[("email", email), ("name", name), ("website", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.deliver().await;
    let confirmation = s.sink.to(email).pop().expect("a confirmation");
    let link = find_link(&confirmation.body_text(), &s.url("/confirm/")).expect("a link");
    assert_eq!(http().post(&link).send().await.unwrap().status(), 200);
}

/// Every cell of a CSV text, unquoted by a real CSV reader.
fn cells(csv_text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(csv_text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_cells_never_start_a_formula_and_export_imports_as_it_was() {
    let s = server(&[]).await;
    join_by_web(
        &s,
        "eve@example.net",
        "=HYPERLINK(\"http://x\")",
        "@SUM(1+1)",
    )
    .await;
    let out = s.cli(&["members", "set", LIST, "bob@example.com", "name=-2+3"]);
    assert_eq!(out.code, 0, "{out:?}");
    for args in [
        vec!["members", "export", LIST],
        vec!["members", "ls", LIST, "--csv"],
    ] {
        let out = s.cli(&args);
        assert_eq!(out.code, 0, "{out:?}");
        for cell in cells(&out.stdout).iter().flatten() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{args:?}: {cell:?} would run in a spreadsheet"
            );
        }
        assert!(out.stdout.contains("'=HYPERLINK"), "{}", out.stdout);
    }
    let export = s.cli(&["members", "export", LIST]).stdout;
    assert!(
        export.contains("'@SUM(1+1)"),
        "the user agent too: {export}"
    );

    let file = s.data_dir.path().join("export.csv");
    std::fs::write(&file, &export).unwrap();
    let other = "other@lists.example.org";
    assert_eq!(s.cli(&["lists", "create", other]).code, 0);
    let out = s.cli(&["members", "import", other, file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let names: std::collections::HashMap<String, String> = s
        .cli(&["members", "ls", other, "--json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["address"].as_str().unwrap().to_string(),
                m["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(names["eve@example.net"], "=HYPERLINK(\"http://x\")");
    assert_eq!(names["bob@example.com"], "-2+3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_tables_show_control_characters_escaped() {
    let s = server(&[]).await;
    join_by_web(&s, "eve@example.net", "Eve", "curl").await;
    sqlx::query("update member set name = $1 where address = 'eve@example.net'")
        .bind("Eve\r\nbob@example.com  Bob \u{1b}[2J")
        .execute(&s.db.pool)
        .await
        .unwrap();
    let out = s.cli(&["members", "ls", LIST]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        !out.stdout.contains('\r') && !out.stdout.contains('\u{1b}'),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("Eve\\r\\nbob@example.com"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout.lines().count(),
        3,
        "a header and two members: {}",
        out.stdout
    );

    // a held message is shown as text too, escape sequences and all
    let message = b"From: x@example.net\r\nSubject: \x1b]0;owned\x07\r\n\r\n\x1b[2Jbody\r\n";
    let replies = smtp_raw(s.smtp_port(), "x@example.net", &[LIST], message).await;
    assert!(replies.last().unwrap().starts_with("250"), "{replies:?}");
    s.process().await;
    let id = s.cli(&["held", "ls", "--json"]).json()[0]["id"].to_string();
    for args in [
        vec!["held", "ls"],
        vec!["held", "show", &id],
        vec!["inbound", "ls"],
    ] {
        let out = s.cli(&args);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            !out.stdout.contains('\u{1b}') && !out.stdout.contains('\u{7}'),
            "{args:?}: {out:?}"
        );
    }
    let shown = s.cli(&["inbound", "show", "1"]).stdout;
    assert!(shown.contains("\\u{1b}[2Jbody"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_is_not_utf8_is_refused_with_400() {
    let s = server(&[]).await;
    let r = http()
        .post(s.url("/lists/dev.lists.example.org/subscribe"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("email=%ff%fe%40example.net&website=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    s.deliver().await;
    assert!(s.sink.received().is_empty(), "nothing is mailed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let s = server(&[]).await;
    let out = s.cli(&["api-tokens", "create", "ops"]);
    let token = out.stdout.lines().last().unwrap().trim().to_string();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = http()
            .get(s.url("/api/v1/lists"))
            .header("Authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let r = http()
        .get(s.url("/api/v1/lists"))
        .header("Authorization", format!("Basic {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmaster_and_abuse_at_a_list_domain_reach_the_site_admins() {
    let s = server(&[]).await;
    for rcpt in [
        "postmaster@lists.example.org",
        "Abuse@lists.example.org",
        "postmaster",
    ] {
        let message = format!(
            "From: Carl <carl@example.com>\r\nTo: {rcpt}\r\nSubject: For {rcpt}\r\n\r\nhello\r\n"
        );
        let replies = smtp_raw(
            s.smtp_port(),
            "carl@example.com",
            &[rcpt],
            message.as_bytes(),
        )
        .await;
        assert!(
            replies.last().unwrap().starts_with("250"),
            "{rcpt}: {replies:?}"
        );
    }
    let replies = smtp_raw(
        s.smtp_port(),
        "carl@example.com",
        &["postmaster@elsewhere.example"],
        b"x\r\n",
    )
    .await;
    assert!(
        replies[3].starts_with("550 5.1.1"),
        "only list domains: {replies:?}"
    );
    s.process().await;
    let got = s.sink.to(ADMIN);
    assert_eq!(got.len(), 3, "{got:?}");
    for rcpt in [
        "postmaster@lists.example.org",
        "Abuse@lists.example.org",
        "postmaster",
    ] {
        assert!(
            got.iter()
                .any(|m| m.text().contains(&format!("Subject: For {rcpt}\r\n"))),
            "{rcpt}"
        );
    }
    assert!(
        s.sink.to(OWNER).is_empty(),
        "the admins read it, not the list owners"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Cuts (or restores) every connection to one test database, as an outage would.
async fn cut_database(db: &crate::harness::TestDb, cut: bool) {
    let mut admin_url = url::Url::parse(&db.url).unwrap();
    admin_url.set_path("/postgres");
    let admin = sqlx::PgPool::connect(admin_url.as_str()).await.unwrap();
    let q = format!("alter database {} allow_connections = {}", db.name, !cut);
    sqlx::query(sqlx::AssertSqlSafe(q))
        .execute(&admin)
        .await
        .unwrap();
    if cut {
        sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1")
            .bind(&db.name)
            .execute(&admin)
            .await
            .unwrap();
    }
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_logged_in_a_few_lines_not_one_per_failure() {
    let db = crate::harness::TestDb::new().await;
    let data = tempfile::tempdir().unwrap();
    let (http_port, smtp_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{http_port}");
    let out = crate::harness::run_cli(&db.url, data.path(), &base, &[], &["lists", "create", LIST]);
    assert_eq!(out.code, 0, "{out:?}");
    let log = data.path().join("stderr.log");
    let mut child = std::process::Command::new(crate::harness::listd_bin())
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("LISTD_DATABASE_URL", &db.url)
        .env("LISTD_DATA_DIR", data.path())
        .env("LISTD_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("LISTD_SMTP_ADDR", format!("127.0.0.1:{smtp_port}"))
        .env("LISTD_RATE_PER_IP", "0")
        .env("RUST_BACKTRACE", "1")
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http()
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "serve gets ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = std::fs::read_to_string(&log).unwrap().len();

    cut_database(&db, true).await;
    let mut failures = 0;
    for i in 0..40 {
        let r = http()
            .post(format!("{base}/lists/dev.lists.example.org/subscribe"))
            .form(&[
                ("email", format!("p{i}@example.net").as_str()),
                ("website", ""),
            ])
            .send()
            .await
            .unwrap();
        failures += usize::from(r.status().is_server_error());
        let replies = smtp_raw(
            smtp_port,
            "p@example.net",
            &[LIST],
            b"Subject: x\r\n\r\nx\r\n",
        )
        .await;
        failures += usize::from(replies[3].starts_with("451"));
    }
    let during = std::fs::read_to_string(&log).unwrap()[before..].to_string();
    cut_database(&db, false).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;

    assert_eq!(failures, 80, "every request failed: {during}");
    let lines = during.lines().count();
    assert!(
        lines <= 20,
        "{failures} failures wrote {lines} log lines:\n{during}"
    );
    assert!(!during.contains("stack backtrace"), "{during}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forms_answer_before_the_work_that_differs_for_members() {
    let s = server(&[]).await;
    let count = |table: &'static str| {
        let pool = s.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "select count(*) from {table}"
            )))
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let before = (count("outbound").await, count("pending_request").await);
    for (form, email) in [
        ("unsubscribe", "bob@example.com"),
        ("unsubscribe", "stranger@example.net"),
        ("subscribe", "bob@example.com"),
        ("subscribe", "new@example.net"),
    ] {
        let r = http()
            .post(s.url(&format!("/lists/dev.lists.example.org/{form}")))
            .form(&[("email", email), ("website", "")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // the same work was done for each, whatever the address is to the list
        assert_eq!(
            (count("outbound").await, count("pending_request").await),
            before,
            "{form} {email}"
        );
    }
    assert_eq!(count("web_request").await, 4);
    s.deliver().await;
    assert_eq!(
        s.sink.to("bob@example.com").len(),
        1,
        "the member is asked to confirm leaving"
    );
    assert_eq!(
        s.sink.to("new@example.net").len(),
        1,
        "the newcomer is asked to confirm"
    );
    assert!(s.sink.to("stranger@example.net").is_empty());
    assert_eq!(count("web_request").await, 0, "carried out and gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_header_sizes_are_held_or_relayed_never_failed() {
    let s = server(&["--posting", "open"]).await;
    // random, so that PostgreSQL cannot compress it under its index row limit
    let random: String = (0..200)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    let long_id = format!("<{random}@example.net>");
    let folded_subject = vec!["word"; 20_000].join("\r\n ");
    let many_headers = "X-Junk: 1\r\n".repeat(50_000);
    for (name, headers) in [
        (
            "long Message-ID",
            format!("Message-ID: {long_id}\r\nSubject: id\r\n"),
        ),
        (
            "huge folded Subject",
            format!("Subject: {folded_subject}\r\n"),
        ),
        (
            "50,000 header fields",
            format!("Subject: many\r\n{many_headers}"),
        ),
    ] {
        let message = format!(
            "From: Anne <anne@example.net>\r\nTo: dev@lists.example.org\r\n{headers}\r\nbody\r\n"
        );
        let replies = smtp_raw(
            s.smtp_port(),
            "anne@example.net",
            &[LIST],
            message.as_bytes(),
        )
        .await;
        assert!(
            replies.last().unwrap().starts_with("250"),
            "{name}: {replies:?}"
        );
    }
    s.process().await;
    let ls = inbound_ls(&s);
    for m in ls.as_array().unwrap() {
        assert_eq!(m["status"], "done", "{m}");
    }
    let held = s.cli(&["held", "ls", "--json"]).json();
    let relayed = copies_to(&s, "bob@example.com").len();
    assert_eq!(held.as_array().unwrap().len() + relayed, 3, "{held} {ls}");
}

#[test]
fn the_new_settings_are_read_from_the_environment() {
    let env = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let c = listd::config::Config::from_sources(None, &env(&[])).unwrap();
    assert!(c.admins.is_empty());
    assert_eq!(c.smtp_max_per_ip, 20);
    let c = listd::config::Config::from_sources(
        None,
        &env(&[
            ("LISTD_ADMINS", "root@example.org, Ops@Example.ORG"),
            ("LISTD_SMTP_MAX_PER_IP", "5"),
        ]),
    )
    .unwrap();
    let admins: Vec<String> = c.admins.iter().map(|a| a.to_string()).collect();
    assert_eq!(admins, ["root@example.org", "Ops@example.org"]);
    assert_eq!(c.smtp_max_per_ip, 5);
    for (key, value) in [
        ("LISTD_ADMINS", "root@example.org, nobody"),
        ("LISTD_SMTP_MAX_PER_IP", "0"),
    ] {
        let e = listd::config::Config::from_sources(None, &env(&[(key, value)])).unwrap_err();
        assert!(e.to_string().contains(key), "{e}");
    }
}
