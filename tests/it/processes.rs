//! Several `listd` processes are one service: they start together, share the signing
//! key, hand back what they hold when stopped, take over what a crashed one held
//! within about a minute, can be watched without the HTTP front end, and survive their
//! database sessions being cut.

use crate::harness::{SmtpSink, TestDb, TestServer, find_link, http, listd_bin, mail, smtplib};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIST: &str = "dev@lists.example.org";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `listd` with a clean environment: no database URL unless `db_url` is given.
fn listd(data_dir: &std::path::Path, db_url: Option<&str>) -> Command {
    let mut cmd = Command::new(listd_bin());
    cmd.env_remove("DATABASE_URL")
        .env_remove("LISTD_DATABASE_URL")
        .env_remove("LISTD_SECRET_KEY")
        .env("LISTD_DATA_DIR", data_dir)
        .env("LISTD_HOSTNAME", "listd.test")
        .stdin(Stdio::null());
    if let Some(url) = db_url {
        cmd.env("LISTD_DATABASE_URL", url);
    }
    cmd
}

fn reachable_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs three `listd migrate` at the same moment; all must succeed.
fn three_at_once(make: impl Fn() -> Command) {
    let children: Vec<_> = (0..3)
        .map(|_| {
            make()
                .arg("migrate")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a process failed to start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_together_all_start() {
    // on a fresh self-managed data directory (each run initialises a cluster)
    for _ in 0..3 {
        let dir = reachable_dir();
        let data = dir.path().join("listd-data");
        three_at_once(|| listd(&data, None));
    }
    // on a fresh database named by a URL
    let db = TestDb::new().await;
    for i in 0..10 {
        let name = format!("{}_fresh{i}", db.name);
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&db.pool)
            .await
            .unwrap();
        let url = db.url.replace(&db.name, &name);
        let dir = reachable_dir();
        three_at_once(|| listd(dir.path(), Some(&url)));
        let secrets: i64 = sqlx::query_scalar("select count(*) from instance_secret")
            .fetch_one(&listd::store::connect(&url, 1).await.unwrap())
            .await
            .unwrap();
        assert_eq!(secrets, 1, "one shared key");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "drop database {name} with (force)"
        )))
        .execute(&db.pool)
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_key_is_shared_through_the_database() {
    let s = TestServer::start().await;
    queued_fan_out(&s, 2).await;
    // another process, with a data directory of its own, sends the copies...
    let sink = SmtpSink::start().await;
    let mut worker = worker_process(&s, &sink, None);
    wait_until("both copies", Duration::from_secs(60), || {
        copies(&sink).len() == 2
    })
    .await;
    let _ = worker.kill();
    let _ = worker.wait();
    // ... and the one-click link it made works on this one
    let copy = sink.to("m0@example.com").pop().unwrap();
    let header = copy.header("List-Unsubscribe").unwrap();
    let link = header
        .split(['<', '>'])
        .find(|p| p.starts_with("http"))
        .unwrap()
        .to_string();
    let r = http()
        .post(&link)
        .form(&[("List-Unsubscribe", "One-Click")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = s.cli(&["members", "show", LIST, "m0@example.com", "--json"]);
    assert_eq!(out.json()["status"], "unsubscribed");

    // a process configured with another key refuses to start, in one sentence
    let other = reachable_dir();
    let cli = |key: &str| {
        listd(other.path(), Some(&s.db.url))
            .env("LISTD_SECRET_KEY", key)
            .args(["lists", "ls"])
            .output()
            .unwrap()
    };
    let out = cli(&listd::domain::SecretKey::generate_base64());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("LISTD_SECRET_KEY differs"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        cli(&s.secret).status.success(),
        "the database's own key is accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_installs_key_moves_into_the_database() {
    let db = TestDb::new().await;
    let dir = reachable_dir();
    let key = listd::domain::SecretKey::generate_base64();
    std::fs::write(dir.path().join("secret_key"), format!("{key}\n")).unwrap();
    let out = listd(dir.path(), Some(&db.url))
        .args(["lists", "ls"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored: String = sqlx::query_scalar("select key from instance_secret")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, key, "links signed with the old key keep working");
}

/// A list of `n` members with one post queued for all of them (not yet sent).
async fn queued_fan_out(s: &TestServer, n: usize) -> Vec<String> {
    assert_eq!(
        s.cli(&["lists", "create", LIST, "--posting", "open"]).code,
        0
    );
    let members: Vec<String> = (0..n).map(|i| format!("m{i}@example.com")).collect();
    let file = s.data_dir.path().join("members.txt");
    std::fs::write(&file, members.join("\n")).unwrap();
    let out = s.cli(&[
        "members",
        "import",
        LIST,
        file.to_str().unwrap(),
        "--format",
        "lines",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    s.deliver().await; // whatever the import queued
    let post = mail("poster@example.net", LIST, "fan-out", "", "Hello");
    smtplib(s.smtp_port(), "poster@example.net", &[LIST], &post).unwrap();
    s.app.process_all_inbound().await.unwrap();
    members
}

/// `listd serve` with only the delivery workers, relaying to `sink`.
/// A `listd` process that is killed when the test lets go of it, also when the test
/// fails midway (left running, it would hold the test run's output open).
struct Process(Child);

impl std::ops::Deref for Process {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker_process(s: &TestServer, sink: &SmtpSink, status_port: Option<u16>) -> Process {
    let dir = s
        .data_dir
        .path()
        .join(format!("proc-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = listd(&dir, Some(&s.db.url));
    cmd.args(["serve", "--no-http", "--no-smtp"])
        .env("LISTD_RELAY_URL", sink.url())
        .env("LISTD_DELIVERY_CONCURRENCY", "4")
        .env("LISTD_PUBLIC_URL", &s.base)
        .env("LISTD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(port) = status_port {
        cmd.env("LISTD_STATUS_ADDR", format!("127.0.0.1:{port}"));
    }
    Process(cmd.spawn().unwrap())
}

/// Copies of the post received by the sink, per member.
fn copies(sink: &SmtpSink) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for m in sink.received() {
        if m.mail_from.contains("+bounces+m") {
            for r in &m.rcpt_to {
                *out.entry(r.clone()).or_default() += 1;
            }
        }
    }
    out
}

async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_unsent_copies_to_the_other_process() {
    let s = TestServer::start().await;
    let members = queued_fan_out(&s, 600).await;
    let sink = SmtpSink::start().await;
    sink.quirks.lock().unwrap().delay_after_data = Duration::from_millis(20);
    let status_port = free_port();
    let mut a = worker_process(&s, &sink, Some(status_port));
    let mut b = worker_process(&s, &sink, None);

    // the worker-only process can be watched
    let status = format!("http://127.0.0.1:{status_port}");
    wait_until("the status listener", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", status_port)).is_ok()
    })
    .await;
    for (path, code) in [("/healthz", 200), ("/readyz", 200), ("/lists", 404)] {
        let r = http().get(format!("{status}{path}")).send().await.unwrap();
        assert_eq!(r.status(), code, "{path}");
    }

    wait_until("a part of the fan-out", Duration::from_secs(60), || {
        copies(&sink).len() >= 100
    })
    .await;
    let metrics = http()
        .get(format!("{status}/metrics"))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("listd_deliveries_total"), "{metrics}");
    Command::new("kill")
        .args(["-TERM", &a.id().to_string()])
        .status()
        .unwrap();
    let exited = a.wait().unwrap();
    assert!(exited.success(), "{exited}");

    // what A held is handed back, not left to its 60-second lease: B sends it at once
    let took = wait_until("every copy", Duration::from_secs(90), || {
        copies(&sink).len() == members.len()
    })
    .await;
    let _ = b.kill();
    let _ = b.wait();
    let counts = copies(&sink);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    assert!(
        took < Duration::from_secs(30),
        "took {took:?}: the claims were not handed back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_copies_go_out_within_about_a_minute() {
    let s = TestServer::start().await;
    let members = queued_fan_out(&s, 600).await;
    let sink = SmtpSink::start().await;
    sink.quirks.lock().unwrap().delay_after_data = Duration::from_millis(20);
    let mut a = worker_process(&s, &sink, None);
    wait_until("a part of the fan-out", Duration::from_secs(60), || {
        copies(&sink).len() >= 100
    })
    .await;
    a.kill().unwrap(); // SIGKILL: nothing handed back
    a.wait().unwrap();
    let before = sink.received().len();
    let mut b = worker_process(&s, &sink, None);
    let took = wait_until(
        "every copy after the restart",
        Duration::from_secs(120),
        || copies(&sink).len() == members.len(),
    )
    .await;
    let _ = b.kill();
    let _ = b.wait();
    // at most the copies in flight (4 connections) or sent but not yet recorded go
    // out twice
    let total: usize = copies(&sink).values().sum();
    eprintln!(
        "crash: {before} copies before, every member served {:.1} s after the restart, {} twice",
        took.as_secs_f64(),
        total - members.len()
    );
    assert!(took < Duration::from_secs(90), "took {took:?}");
    assert!(
        total - members.len() <= 4 + 32,
        "{} duplicates",
        total - members.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_database_sessions_are_survived() {
    let s = TestServer::start().await;
    assert_eq!(s.cli(&["lists", "create", LIST]).code, 0);
    let cut: i64 = sqlx::query_scalar(
        "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity \
         where datname = current_database() and pid <> pg_backend_pid()) t",
    )
    .fetch_one(&listd::store::connect(&s.db.url, 1).await.unwrap())
    .await
    .unwrap();
    assert!(cut > 0, "listd had sessions to cut");
    assert_eq!(
        http().get(s.url("/readyz")).send().await.unwrap().status(),
        200
    );
    let r = http()
        .post(s.url("/lists/dev.lists.example.org/subscribe"))
        .form(&[("email", "anne@example.net")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.deliver().await;
    let m = s.sink.to("anne@example.net").pop().expect("a confirmation");
    assert!(find_link(&m.body_text(), &s.url("/confirm/")).is_some());
}

/// An archive left unindexed for search (by an upgrade that remade the vectors, or by
/// an import stopped before its indexing ended) is indexed by `serve` when it starts,
/// and the raw messages an import stopped between storing them and storing their
/// messages left behind are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_indexes_the_archives_left_unindexed_when_it_starts() {
    let s = TestServer::start().await;
    let out = s.cli(&["lists", "create", LIST]);
    assert_eq!(out.code, 0, "{out:?}");
    let mbox: String = (0..50)
        .map(|i| {
            format!(
                "From anne@example.org Mon Jan  1 00:00:00 2001\n\
                 From: Anne <anne@example.org>\nMessage-ID: <m{i}@example.net>\n\
                 Date: 1 Feb 2002 10:00:00 +0000\nSubject: Okapi {i}\n\nokapi\n\n"
            )
        })
        .collect();
    let path = s.data_dir.path().join("history.mbox");
    std::fs::write(&path, mbox).unwrap();
    let out = s.cli(&["archive", "import", LIST, path.to_str().unwrap()]);
    assert!(out.stdout.contains("50 added"), "{out:?}");
    // as such an upgrade leaves it
    s.db.drop_search_vectors().await;
    // and as an import stopped midway leaves a batch: raw rows noted as pending, whose
    // messages never came (the note spans stored messages too)
    sqlx::query(
        "with ids as (select nextval('archive_message_id_seq') as id from generate_series(1, 3)),
              raw as (insert into archive_raw (id, raw) select id, 'Subject: x' from ids)
         insert into archive_raw_pending (first_id, last_id)
         select (select min(id) from archive_message), max(id) from ids",
    )
    .execute(&s.db.pool)
    .await
    .unwrap();
    let sink = SmtpSink::start().await;
    let mut server = worker_process(&s, &sink, None);
    let start = Instant::now();
    loop {
        let (indexed, named, raw, pending): (i64, i64, i64, i64) = sqlx::query_as(
            "select (select count(*) from archive_search), (select count(*) from archive_reindex),
                    (select count(*) from archive_raw), (select count(*) from archive_raw_pending)",
        )
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
        if (indexed, named, raw, pending) == (50, 0, 50, 0) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{indexed} indexed, {named} lists named, {raw} raw rows, {pending} noted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
}
