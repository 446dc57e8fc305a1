//! `listd lists …` and the public pages, through the real binary and real HTTP.

use crate::harness::{TestServer, http};

#[tokio::test]
async fn a_list_is_created_listed_shown_changed_and_deleted() {
    let s = TestServer::start().await;
    let out = s.cli(&[
        "lists",
        "create",
        "dev@lists.example.org",
        "--name",
        "Dev",
        "--owner",
        "Owner@Example.org",
    ]);
    assert_eq!(out.code, 0, "{out:?}");

    let out = s.cli(&["lists", "ls", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lists = out.json();
    assert_eq!(lists[0]["address"], "dev@lists.example.org");
    assert_eq!(lists[0]["list_id"], "dev.lists.example.org");
    assert_eq!(lists[0]["name"], "Dev");
    assert_eq!(lists[0]["posting"], "members");
    assert_eq!(lists[0]["subject_prefix"], "[dev]");
    assert_eq!(lists[0]["owners"][0], "Owner@example.org");

    let table = s.cli(&["lists", "ls"]);
    assert!(
        table.stdout.contains("dev@lists.example.org") && table.stdout.contains("ADDRESS"),
        "{table:?}"
    );

    let out = s.cli(&[
        "lists",
        "set",
        "dev.lists.example.org",
        "posting=announce",
        "reply-to=list",
        "advertised=false",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let shown = s
        .cli(&["lists", "show", "DEV@lists.example.org", "--json"])
        .json();
    assert_eq!(shown["posting"], "announce");
    assert_eq!(shown["reply_to"], "list");
    assert_eq!(shown["advertised"], false);

    let out = s.cli(&["lists", "delete", "dev@lists.example.org"]);
    assert_eq!(out.code, 2, "deleting needs --yes: {out:?}");
    let out = s.cli(&["lists", "delete", "dev@lists.example.org", "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        s.cli(&["lists", "ls", "--json"]).json(),
        serde_json::json!([])
    );
}

#[tokio::test]
async fn bad_input_is_a_usage_error_and_a_duplicate_is_a_failure() {
    let s = TestServer::start().await;
    let bad = s.cli(&["lists", "create", "not-an-address"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert_eq!(bad.stderr.lines().count(), 1, "one sentence: {bad:?}");

    let plus = s.cli(&["lists", "create", "dev+x@lists.example.org"]);
    assert_eq!(plus.code, 2, "{plus:?}");

    let bad_value = s.cli(&[
        "lists",
        "create",
        "dev@lists.example.org",
        "--posting",
        "everyone",
    ]);
    assert_eq!(bad_value.code, 2, "{bad_value:?}");
    assert!(bad_value.stderr.contains("posting"), "{bad_value:?}");

    assert_eq!(s.cli(&["lists", "create", "dev@lists.example.org"]).code, 0);
    let dup = s.cli(&["lists", "create", "Dev@Lists.Example.org"]);
    assert_eq!(dup.code, 1, "{dup:?}");
    assert!(dup.stderr.contains("already exists"), "{dup:?}");
    assert_eq!(dup.stderr.lines().count(), 1);

    let unknown = s.cli(&["lists", "set", "dev@lists.example.org", "colour=red"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.stderr.contains("colour"), "{unknown:?}");

    let missing = s.cli(&["lists", "show", "nope@lists.example.org"]);
    assert_eq!(missing.code, 1, "{missing:?}");

    let usage = s.cli(&["lists", "frobnicate"]);
    assert_eq!(usage.code, 2, "{usage:?}");
}

#[tokio::test]
async fn lists_show_warns_when_a_prefix_meets_dmarc_never() {
    let s = TestServer::start().await;
    assert_eq!(
        s.cli(&[
            "lists",
            "create",
            "dev@lists.example.org",
            "--dmarc",
            "never"
        ])
        .code,
        0
    );
    let shown = s.cli(&["lists", "show", "dev@lists.example.org"]);
    assert!(
        shown.stdout.contains("warning:") && shown.stdout.contains("DKIM"),
        "{shown:?}"
    );
    assert_eq!(
        s.cli(&["lists", "show", "dev@lists.example.org", "--json"])
            .json()["warnings"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.cli(&["lists", "set", "dev@lists.example.org", "subject-prefix="])
            .code,
        0
    );
    let shown = s.cli(&["lists", "show", "dev@lists.example.org"]);
    assert!(!shown.stdout.contains("warning:"), "{shown:?}");
}

#[tokio::test]
async fn the_public_pages_show_advertised_lists_and_404_for_unknown_ones() {
    let s = TestServer::start().await;
    s.cli(&[
        "lists",
        "create",
        "dev@lists.example.org",
        "--name",
        "Dev <Team>",
        "--description",
        "For developers",
    ]);
    s.cli(&[
        "lists",
        "create",
        "hidden@lists.example.org",
        "--set",
        "advertised=false",
    ]);
    let c = http();

    let health = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = c.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let index = c
        .get(s.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        index.contains("Dev &lt;Team&gt;"),
        "names are escaped: {index}"
    );
    assert!(
        !index.contains("hidden@"),
        "unadvertised lists stay off the index"
    );

    for path in [
        "/lists/dev.lists.example.org",
        "/lists/dev@lists.example.org",
    ] {
        let page = c.get(s.url(path)).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let body = page.text().await.unwrap();
        assert!(body.contains("For developers"));
        assert!(
            body.contains("mailto:dev+subscribe@lists.example.org"),
            "how to join by mail"
        );
        assert!(body.contains("name=\"viewport\""), "readable on a phone");
    }
    let missing = c
        .get(s.url("/lists/nope.lists.example.org"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("No such list"));
}

#[tokio::test]
async fn readyz_is_503_when_the_database_is_gone() {
    let s = TestServer::start().await;
    s.db.pool.close().await;
    let ready = http().get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let health = http().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_serve_binary_answers_and_stops_cleanly_on_sigterm() {
    let db = crate::harness::TestDb::new().await;
    let data = tempfile::tempdir().unwrap();
    let (http_port, smtp) = (free_port(), free_port());
    let mut child = std::process::Command::new(crate::harness::listd_bin())
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("LISTD_DATABASE_URL", &db.url)
        .env("LISTD_DATA_DIR", data.path())
        .env("LISTD_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("LISTD_SMTP_ADDR", format!("127.0.0.1:{smtp}"))
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let ready = loop {
        if let Ok(r) = http()
            .get(format!("http://127.0.0.1:{http_port}/readyz"))
            .send()
            .await
        {
            break r.status();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve answers within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(ready, 200);
    let greeting = tokio::net::TcpStream::connect(("127.0.0.1", smtp)).await;
    assert!(greeting.is_ok(), "SMTP listens");
    drop(greeting);
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM: finish and exit 0");
}

#[tokio::test]
async fn the_server_ends_sessions_left_inside_a_transaction() {
    // a caller cancelled mid-transaction must not hold its locks for long
    let db = crate::harness::TestDb::new().await;
    let pool = listd::store::connect(&db.url, 1).await.unwrap();
    let timeout: String = sqlx::query_scalar("show idle_in_transaction_session_timeout")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(timeout, "1min");
}

mod import {
    use crate::harness::TestServer;

    const LIST: &str = "sig@lists.example.org";

    async fn server() -> TestServer {
        let s = TestServer::start().await;
        assert_eq!(s.cli(&["lists", "create", LIST, "--name", "SIG"]).code, 0);
        s
    }

    fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn a_google_groups_export_imports_with_its_bad_lines_reported() {
        let s = server().await;
        let mut text = String::from(
            "Members for group sig@googlegroups.com\nEmail address,Nickname,Group status,Email status,Email preference,Posting permissions,Join year,Join month,Join day,Join hour,Join minute\n",
        );
        let mut bad_lines = Vec::new();
        for i in 0..1000 {
            let line = i + 3;
            if [100, 500, 900].contains(&i) {
                text.push_str(&format!(
                    "not-an-address-{i},Bad,member,,email,allowed,2020,1,1,1,1\n"
                ));
                bad_lines.push(line);
            } else {
                text.push_str(&format!(
                    "member{i}@example.net,Member {i},member,,email,allowed,2020,1,1,1,1\n"
                ));
            }
        }
        let file = write(s.data_dir.path(), "gg.csv", &text);
        let out = s.cli(&[
            "members",
            "import",
            LIST,
            &file,
            "--format",
            "google-groups",
            "--json",
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        let report = out.json();
        assert_eq!(report["added"], 997);
        assert_eq!(report["invalid_lines"], serde_json::json!(bad_lines));
        for line in &bad_lines {
            assert!(
                out.stderr.contains(&format!("line {line}:")),
                "{}",
                out.stderr
            );
        }
        let members = s.cli(&["members", "ls", LIST, "--json"]).json();
        assert_eq!(members.as_array().unwrap().len(), 997);
        let shown = s
            .cli(&["members", "show", LIST, "member1@example.net", "--json"])
            .json();
        assert_eq!(shown["name"], "Member 1");
        assert_eq!(shown["consent"]["request_source"], "import");

        // the same import again changes nothing
        let again = s.cli(&[
            "members",
            "import",
            LIST,
            &file,
            "--format",
            "google-groups",
            "--json",
        ]);
        assert_eq!(again.json()["added"], 0);
        assert_eq!(again.json()["already_members"], 997);
    }

    #[tokio::test]
    async fn a_google_groups_export_keeps_each_members_choices_and_roles() {
        let s = server().await;
        let text = "Members for group sig@googlegroups.com\n\
Email address,Nickname,Group status,Email status,Email preference,Posting permissions,Join year,Join month,Join day,Join hour,Join minute\n\
all@example.net,All,member,,All email,allowed,2020,1,1,1,1\n\
digest@example.net,Digest,member,,Digest,allowed,2020,1,1,1,1\n\
abridged@example.net,Abridged,member,,Abridged,allowed,2020,1,1,1,1\n\
none@example.net,None,member,,No email,allowed,2020,1,1,1,1\n\
owner@example.net,Owner,owner,,All email,allowed,2020,1,1,1,1\n\
manager@example.net,Manager,manager,,Digest,allowed,2020,1,1,1,1\n";
        let file = write(s.data_dir.path(), "gg.csv", text);
        let args = [
            "members",
            "import",
            LIST,
            &file,
            "--format",
            "google-groups",
        ];

        // a dry run says what would happen and changes nothing
        let mut dry = args.to_vec();
        dry.extend(["--dry-run", "--json"]);
        let out = s.cli(&dry);
        assert_eq!(out.code, 0, "{out:?}");
        let report = out.json();
        assert_eq!(report["dry_run"], true);
        assert_eq!(report["added"], 6);
        assert_eq!(report["roles_given"], 2);
        assert_eq!(
            report["choices"],
            serde_json::json!({"each": 3, "digest": 3, "digest_plain": 0, "no_mail": 1, "owners": 1, "moderators": 1})
        );
        assert!(
            s.cli(&["members", "ls", LIST, "--json"])
                .json()
                .as_array()
                .unwrap()
                .is_empty()
        );
        let text_out = s.cli(&[&args[..], &["--dry-run"]].concat());
        assert!(
            text_out.stdout.contains("would be added")
                && text_out.stdout.contains("nothing was changed"),
            "{text_out:?}"
        );

        let out = s.cli(&[&args[..], &["--quiet"]].concat());
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stdout.contains("3 digest") && out.stdout.contains("1 no mail"),
            "{out:?}"
        );
        let show = |who: &str| s.cli(&["members", "show", LIST, who, "--json"]).json();
        let kept = |who: &str| {
            let m = show(who);
            (
                m["delivery"].as_str().unwrap().to_string(),
                m["mode"].as_str().unwrap().to_string(),
            )
        };
        assert_eq!(kept("all@example.net"), ("enabled".into(), "each".into()));
        assert_eq!(
            kept("digest@example.net"),
            ("enabled".into(), "digest".into())
        );
        assert_eq!(
            kept("abridged@example.net"),
            ("enabled".into(), "digest".into())
        );
        assert_eq!(kept("none@example.net"), ("disabled".into(), "each".into()));
        assert_eq!(
            kept("manager@example.net"),
            ("enabled".into(), "digest".into())
        );
        let owners = s
            .cli(&["members", "ls", LIST, "--role", "owner", "--json"])
            .json();
        assert!(
            owners
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["address"] == "owner@example.net")
        );
        let moderators = s
            .cli(&["members", "ls", LIST, "--role", "moderator", "--json"])
            .json();
        assert_eq!(moderators[0]["address"], "manager@example.net");
        assert_eq!(
            show("owner@example.net")["roles"],
            serde_json::json!(["member", "owner"])
        );
    }

    #[tokio::test]
    async fn people_who_left_are_skipped_and_export_reimports() {
        let s = server().await;
        assert_eq!(s.cli(&["members", "add", LIST, "gone@example.net"]).code, 0);
        assert_eq!(
            s.cli(&["members", "remove", LIST, "gone@example.net"]).code,
            0
        );
        let file = write(
            s.data_dir.path(),
            "lines.txt",
            "Anne Example <anne@example.net>\nbob@example.com\ngone@example.net\nnonsense\nanne@example.net\n",
        );
        let out = s.cli(&[
            "members", "import", LIST, &file, "--format", "lines", "--json",
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        let r = out.json();
        assert_eq!(
            (r["added"].clone(), r["left"].clone()),
            (2.into(), 1.into()),
            "{r}"
        );
        assert_eq!(r["invalid_lines"], serde_json::json!([4]));
        let shown = s
            .cli(&["members", "show", LIST, "gone@example.net", "--json"])
            .json();
        assert_ne!(shown["status"], "subscribed", "docs/standards.md#30");

        // export, then import into another list
        let export = s.cli(&["members", "export", LIST]);
        assert_eq!(export.code, 0);
        assert!(export.stdout.starts_with("email,name,"));
        assert!(export.stdout.contains("confirm_method"));
        assert_eq!(
            s.cli(&["lists", "create", "other@lists.example.org"]).code,
            0
        );
        let file = write(s.data_dir.path(), "export.csv", &export.stdout);
        let out = s.cli(&[
            "members",
            "import",
            "other@lists.example.org",
            &file,
            "--json",
        ]);
        assert_eq!(out.json()["added"], 2, "{out:?}");
        let bad = s.cli(&["members", "import", LIST, &file, "--format", "xml"]);
        assert_eq!(bad.code, 2);
        // a file read in the wrong format yields no member: a failure that says why
        let lines = write(
            s.data_dir.path(),
            "plain.txt",
            "anne@example.net\nbob@example.com\n",
        );
        let wrong = s.cli(&["members", "import", LIST, &lines, "--format", "csv"]);
        assert_eq!(wrong.code, 1, "{wrong:?}");
        assert!(
            wrong.stderr.contains("`email`") && wrong.stderr.contains("--format"),
            "{}",
            wrong.stderr
        );
        let missing = s.cli(&["members", "import", LIST, "/nonexistent/file.csv"]);
        assert_eq!(missing.code, 1);
        assert!(missing.stderr.contains("cannot open"), "{}", missing.stderr);
    }
}

#[tokio::test]
async fn metrics_show_the_queue_and_the_requests_by_route() {
    let s = TestServer::start().await;
    assert_eq!(s.cli(&["lists", "create", "m@lists.example.org"]).code, 0);
    let scrape = || async {
        let r = crate::harness::http()
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    scrape().await; // the recorder is installed by the first scrape in this process
    let r = crate::harness::http()
        .post(s.url("/lists/m.lists.example.org/subscribe"))
        .form(&[("email", "metrics@example.net"), ("website", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("x-request-id").is_some(),
        "every response names its request"
    );
    // the form's request is carried out by the workers
    s.app.process_all_inbound().await.unwrap();
    let text = scrape().await;
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert!(
        value("listd_queue_depth") >= 1.0,
        "the confirmation waits in the queue"
    );
    assert!(text.contains("listd_queue_oldest_due_seconds"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("listd_http_requests_total")
                && l.contains("route=\"/lists/{list}/subscribe\"")
                && l.contains("status=\"200\"")),
        "{text}"
    );
    assert!(text.contains("listd_subscription_requests_total"));
    assert!(
        !text.contains("metrics@example.net"),
        "no addresses in metrics"
    );
}
