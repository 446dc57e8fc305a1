//! What a person sees: the subscribe form, the confirmation page and the unsubscribe
//! page driven in headless Chromium through chromedriver (WebDriver), on a 375-px-wide
//! window, with links taken from the captured mail; and the archive's pages, checked
//! with axe-core in both colour schemes (docs/standards.md#55).

use crate::harness::{TestServer, find_link};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None` (with a note)
    /// when they are not installed; in CI (`CI` set) their absence is a failure.
    async fn start() -> Option<Browser> {
        let (chromium, driver) = (which("chromium"), which("chromedriver"));
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install chromium and chromium-driver"
            );
            eprintln!("note: chromium or chromedriver is not installed; skipping the browser test");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver answers");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                         "--window-size=375,812", format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let r: Value = client
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a session: {r}"))
            .to_string();
        Some(Browser {
            driver: child,
            base,
            session,
            client,
            _profile: profile,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let r: Value = self
            .client
            .request(method, url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(r["value"].get("error").is_none(), "{path}: {r}");
        r["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("element {css}: {v}"))
            .to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            json!({"text": text}),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            json!({}),
        )
        .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// The visible text of the page.
    async fn text(&self) -> String {
        self.script("return document.body.innerText")
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Runs axe-core on the page in the light and the dark colour scheme; returns the
    /// critical and serious violations (rule, and where), or `None` when axe-core is
    /// not available (`LISTD_AXE_JS` names its `axe.min.js`; in CI it must).
    async fn axe(&self) -> Option<Vec<String>> {
        let path = std::env::var("LISTD_AXE_JS").ok().filter(|p| !p.is_empty());
        let Some(source) = path.and_then(|p| std::fs::read_to_string(p).ok()) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install axe-core and set LISTD_AXE_JS"
            );
            eprintln!("note: LISTD_AXE_JS is not set; skipping the axe-core checks");
            return None;
        };
        let mut found = Vec::new();
        for scheme in ["light", "dark"] {
            self.cdp(
                "Emulation.setEmulatedMedia",
                json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
            )
            .await;
            self.script(&format!("{source}\nreturn true;")).await;
            let script = "const done = arguments[arguments.length - 1];\
                axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})\
                  .then(r => done(r.violations.filter(v => v.impact === 'critical' || v.impact === 'serious')\
                  .map(v => v.id + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', '))))\
                  .catch(e => done(['axe failed: ' + e]));";
            let v = self
                .call(
                    reqwest::Method::POST,
                    "/execute/async",
                    json!({"script": script, "args": []}),
                )
                .await;
            for item in v.as_array().cloned().unwrap_or_default() {
                found.push(format!("{scheme}: {}", item.as_str().unwrap_or("")));
            }
        }
        Some(found)
    }

    /// A Chrome DevTools command, through chromedriver.
    async fn cdp(&self, cmd: &str, params: Value) {
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            json!({"cmd": cmd, "params": params}),
        )
        .await;
    }

    /// Nothing is wider than the window: no sideways scrolling on a phone.
    async fn fits_the_screen(&self) -> bool {
        self.script("return document.documentElement.scrollWidth <= window.innerWidth")
            .await
            == json!(true)
    }

    /// Waits until the page's text contains `needle` (page loads follow clicks).
    async fn wait_for_text(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = self.text().await;
            if t.contains(needle) || Instant::now() > deadline {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // end the session so that chromedriver closes Chromium, then stop chromedriver
        use std::io::{Read, Write};
        let addr = self.base.trim_start_matches("http://").to_string();
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = s.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // and whatever Chromium left behind with this test's profile
        let profile = format!("--user-data-dir={}", self._profile.path().display());
        let _ = Command::new("pkill")
            .args(["-f", "--"])
            .arg(profile)
            .status();
    }
}

fn which(name: &str) -> Option<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!path.is_empty()).then_some(path)
}

#[tokio::test]
async fn a_person_subscribes_confirms_and_leaves_in_a_browser_on_a_phone_sized_screen() {
    let s = TestServer::start().await;
    assert_eq!(
        s.cli(&[
            "lists",
            "create",
            "dev@lists.example.org",
            "--name",
            "Developers",
            "--description",
            "Talk about the code"
        ])
        .code,
        0
    );
    let Some(b) = Browser::start().await else {
        return;
    };

    b.go(&s.url("/lists/dev.lists.example.org")).await;
    let page = b.text().await;
    assert!(
        page.contains("Developers") && page.contains("Talk about the code"),
        "{page}"
    );
    assert!(b.fits_the_screen().await, "the list page fits 375 px");
    b.type_into("#email", "anne@example.net").await;
    b.type_into("#name", "Anne").await;
    b.click("form[action$='/subscribe'] button").await;
    let page = b.wait_for_text("Check your inbox").await;
    assert!(
        page.contains("Check your inbox") && page.contains("anne@example.net"),
        "{page}"
    );
    assert!(b.fits_the_screen().await);

    s.deliver().await;
    let confirmation = s
        .sink
        .to("anne@example.net")
        .pop()
        .expect("a confirmation mail");
    let link = find_link(&confirmation.body_text(), &s.url("/confirm/")).unwrap();
    b.go(&link).await;
    let page = b.text().await;
    assert!(
        page.contains("Press the button to subscribe anne@example.net"),
        "{page}"
    );
    assert!(
        b.fits_the_screen().await,
        "the confirmation page fits 375 px"
    );
    b.click("button").await;
    let page = b.wait_for_text("You are subscribed").await;
    assert!(page.contains("You are subscribed"), "{page}");
    let members = s
        .cli(&["members", "ls", "dev@lists.example.org", "--json"])
        .json();
    assert_eq!(members[0]["address"], "anne@example.net");

    s.deliver().await;
    let welcome = s.sink.to("anne@example.net").pop().unwrap();
    let unsubscribe = find_link(&welcome.body_text(), &s.url("/unsubscribe/")).unwrap();
    b.go(&unsubscribe).await;
    assert!(
        b.text()
            .await
            .contains("Press the button to unsubscribe anne@example.net")
    );
    assert!(
        b.fits_the_screen().await,
        "the unsubscribe page fits 375 px"
    );
    b.click("button").await;
    let page = b.wait_for_text("You have left the list").await;
    assert!(page.contains("You have left the list"), "{page}");
    let members = s
        .cli(&["members", "ls", "dev@lists.example.org", "--json"])
        .json();
    assert!(members.as_array().unwrap().is_empty());
}

#[tokio::test]
async fn the_archive_reads_well_on_a_phone_and_passes_axe() {
    let s = TestServer::start().await;
    assert_eq!(
        s.cli(&[
            "lists",
            "create",
            "dev@lists.example.org",
            "--name",
            "Developers"
        ])
        .code,
        0
    );
    let long = "word ".repeat(40);
    let mbox = format!(
        "From anne@example.net Mon Mar  4 10:00:00 2024\n\
         From: Anne Example <anne@example.net>\nMessage-ID: <root@example.net>\n\
         Subject: Release planning for the next version, with a long subject line\n\
         Date: Mon, 4 Mar 2024 10:00:00 +0000\n\n\
         Shall we plan the release?\nhttps://example.org/a/very/long/link/{}\n\n\
         From bob@example.com Tue Mar  5 10:00:00 2024\n\
         From: Bob <bob@example.com>\nMessage-ID: <reply@example.net>\n\
         In-Reply-To: <root@example.net>\nReferences: <root@example.net>\n\
         Subject: Re: Release planning\nDate: Tue, 5 Mar 2024 10:00:00 +0000\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n\
         --b\nContent-Type: text/plain\n\nYes, release planning: {long}\n\
         --b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=plan.pdf\n\n%PDF-\n--b--\n\n\
         From carol@example.org Wed Mar  6 10:00:00 2024\n\
         From: Carol <carol@example.org>\nMessage-ID: <html@example.net>\n\
         In-Reply-To: <reply@example.net>\nSubject: Re: Release planning\n\
         Date: Wed, 6 Mar 2024 10:00:00 +0000\nContent-Type: text/html\n\n\
         <p>An <b>HTML</b> answer with a <a href=\"https://example.org\">link</a>.</p>\n\n",
        "x".repeat(150)
    );
    let file = s.data_dir.path().join("archive.mbox");
    std::fs::write(&file, mbox).unwrap();
    let out = s.cli(&[
        "archive",
        "import",
        "dev@lists.example.org",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let Some(b) = Browser::start().await else {
        return;
    };
    let base = s.url("/lists/dev.lists.example.org/archive");
    let pages = [
        (base.clone(), "Release planning"),
        (format!("{base}/2024/03"), "Release planning"),
        (format!("{base}/m/reply%40example.net"), "The whole thread"),
        (format!("{base}/m/html%40example.net"), "HTML answer"),
        (format!("{base}/search?q=release+planning"), "Results"),
        (
            format!("{base}/search?q=nothing-matches-this"),
            "Nothing in the archive matches",
        ),
    ];
    for (url, expect) in pages {
        b.go(&url).await;
        let text = b.text().await;
        assert!(text.contains(expect), "{url}: {text}");
        assert!(
            !text.contains("@example.net") || text.contains("@…"),
            "{url}: {text}"
        );
        assert!(b.fits_the_screen().await, "{url} fits 375 px");
        if let Some(violations) = b.axe().await {
            assert!(violations.is_empty(), "{url}: {violations:#?}");
        }
    }
    // the search box is a real form: typing and pressing the button searches
    b.go(&base).await;
    b.type_into("#q", "planning").await;
    b.click("form[role=search] button").await;
    let text = b.wait_for_text("Results").await;
    assert!(text.contains("Release planning"), "{text}");
}
