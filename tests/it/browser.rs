//! What a person sees: the subscribe form, the confirmation page and the unsubscribe
//! page driven in headless Chromium through chromedriver (WebDriver), on a 375-px-wide
//! window, with links taken from the captured mail.

use crate::harness::{TestServer, find_link};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None` (with a note)
    /// when they are not installed; in CI (`CI` set) their absence is a failure.
    pub(crate) async fn start() -> Option<Browser> {
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

    pub(crate) async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
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

    pub(crate) async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    pub(crate) async fn find(&self, css: &str) -> String {
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

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            json!({"text": text}),
        )
        .await;
    }

    pub(crate) async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            json!({}),
        )
        .await;
    }

    pub(crate) async fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// The visible text of the page.
    pub(crate) async fn text(&self) -> String {
        self.script("return document.body.innerText")
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Nothing is wider than the window: no sideways scrolling on a phone.
    pub(crate) async fn fits_the_screen(&self) -> bool {
        self.script("return document.documentElement.scrollWidth <= window.innerWidth")
            .await
            == json!(true)
    }

    /// The page as a person on a phone gets it, in light and in dark mode: it fits
    /// the 375-px screen and axe-core finds no critical or serious problem.
    async fn check_page(&self, what: &str) {
        assert!(self.fits_the_screen().await, "{what} fits 375 px");
        for dark in [false, true] {
            if let Some(found) = self.axe_violations(dark).await {
                assert!(found.is_empty(), "{what}: {found:?}");
            }
        }
    }

    /// Runs axe-core in the page (WCAG 2.1 A and AA rules) in the light or the dark
    /// colour scheme; returns its critical and serious violations, one line each.
    /// `None` when axe-core is not installed (in CI its absence is a failure).
    pub(crate) async fn axe_violations(&self, dark: bool) -> Option<Vec<String>> {
        let source = axe_source()?;
        let scheme = if dark { "dark" } else { "light" };
        let url = format!("{}/session/{}/goog/cdp/execute", self.base, self.session);
        let r: Value = self
            .client
            .post(url)
            .json(&json!({"cmd": "Emulation.setEmulatedMedia",
                          "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(r["value"].get("error").is_none(), "{r}");
        let script = format!(
            "{source}\nconst done = arguments[arguments.length - 1];\n\
             axe.run(document, {{runOnly: {{type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}}})\n\
             .then(r => done(r.violations.filter(v => v.impact === 'critical' || v.impact === 'serious')\n\
               .map(v => v.id + ': ' + v.help + ' (' + v.nodes.map(n => n.target.join(' ')).join(', ') + ')')))\n\
             .catch(e => done(['axe failed: ' + e]));"
        );
        let v = self
            .call(
                reqwest::Method::POST,
                "/execute/async",
                json!({"script": script, "args": []}),
            )
            .await;
        Some(
            v.as_array()
                .unwrap_or_else(|| panic!("axe's answer: {v}"))
                .iter()
                .map(|x| format!("{scheme}: {}", x.as_str().unwrap_or_default()))
                .collect(),
        )
    }

    /// Waits until the page's text contains `needle` (page loads follow clicks).
    pub(crate) async fn wait_for_text(&self, needle: &str) -> String {
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

/// axe-core's `axe.min.js`: `LISTD_AXE_JS`, or where `.ci/run` installs it.
fn axe_source() -> Option<String> {
    let candidates = [
        std::env::var("LISTD_AXE_JS").ok(),
        Some(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/.ci/node/node_modules/axe-core/axe.min.js"
            )
            .into(),
        ),
    ];
    let found = candidates
        .into_iter()
        .flatten()
        .find_map(|p| std::fs::read_to_string(p).ok());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install axe-core (npm) into .ci/node"
        );
        eprintln!("note: axe-core is not installed; skipping the accessibility checks");
    }
    found
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
    b.check_page("the list page").await;
    // a mistake is shown at its field, with what was typed kept
    b.type_into("#email", "anne@").await;
    b.click("form[action$='/subscribe'] button").await;
    let page = b.wait_for_text("Error:").await;
    assert!(page.contains("Error:") && !page.contains('`'), "{page}");
    b.check_page("the list page with an error").await;
    b.script("document.querySelector('#email').value = ''")
        .await;
    b.type_into("#email", "anne@example.net").await;
    b.type_into("#name", "Anne").await;
    b.click("form[action$='/subscribe'] button").await;
    let page = b.wait_for_text("Check your inbox").await;
    assert!(
        page.contains("Check your inbox") && page.contains("anne@example.net"),
        "{page}"
    );
    b.check_page("the check-your-inbox page").await;

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
    b.check_page("the unsubscribe page").await;
    b.click("form[action^='/unsubscribe'] button").await;
    let page = b.wait_for_text("You have left the list").await;
    assert!(page.contains("You have left the list"), "{page}");
    let members = s
        .cli(&["members", "ls", "dev@lists.example.org", "--json"])
        .json();
    assert!(members.as_array().unwrap().is_empty());
}

/// The console on a phone: an owner signs in from the link, approves one held post
/// and accepts the sender of another, then searches the members; every page fits 375
/// px, and axe-core finds nothing critical or serious in light or dark colours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_moderates_and_searches_members_on_a_phone_sized_screen() {
    let s = TestServer::start().await;
    let list = "dev@lists.example.org";
    assert_eq!(
        s.cli(&[
            "lists",
            "create",
            list,
            "--name",
            "Developers",
            "--owner",
            "owner@example.org"
        ])
        .code,
        0
    );
    let mut add = vec!["members", "add", list, "anne@example.net"];
    let many: Vec<String> = (0..60)
        .map(|i| format!("person{i:02}@example.com"))
        .collect();
    add.extend(many.iter().map(String::as_str));
    assert_eq!(s.cli(&add).code, 0);
    for (from, subject) in [
        ("mallory@example.com", "First"),
        ("zed@example.com", "Second"),
    ] {
        let m = crate::harness::mail(
            from,
            list,
            subject,
            "",
            "A long first line of text that a phone must wrap rather than scroll sideways to read.\r\n",
        );
        crate::harness::smtplib(s.smtp_port(), from, &[list], &m).unwrap();
    }
    s.process().await;
    let Some(b) = Browser::start().await else {
        return;
    };
    let mut problems = Vec::new();
    let mut check = async |b: &Browser, what: &str| {
        assert!(b.fits_the_screen().await, "{what} fits 375 px");
        for dark in [false, true] {
            if let Some(v) = b.axe_violations(dark).await {
                problems.extend(v.into_iter().map(|v| format!("{what}: {v}")));
            }
        }
    };

    let link = s
        .cli(&["signin-link", "owner@example.org"])
        .stdout
        .trim()
        .to_string();
    b.go(&link).await;
    b.click("form button").await;
    b.wait_for_text("Signed in as").await;
    b.go(&s.url("/admin")).await;
    let page = b.wait_for_text("Your lists").await;
    assert!(page.contains("2 held posts"), "{page}");
    check(&b, "/admin").await;
    b.go(&s.url("/admin/lists/dev.lists.example.org/held"))
        .await;
    let page = b.wait_for_text("Held posts of Developers").await;
    assert!(page.contains("First") && page.contains("Second"), "{page}");
    check(&b, "held posts").await;
    b.click("form[action$='/held/1'] button").await;
    let page = b.wait_for_text("is approved").await;
    assert!(page.contains("is approved"), "{page}");
    b.click("form[action$='/held/2'] input[value='accept-sender'] ~ button")
        .await;
    let page = b.wait_for_text("accepted from now on").await;
    assert!(page.contains("accepted by owner@example.org"), "{page}");
    check(&b, "held posts, decided").await;

    b.go(&s.url("/admin/lists/dev.lists.example.org/members"))
        .await;
    b.wait_for_text("Members of Developers").await;
    assert!(
        b.text().await.contains("Next page"),
        "60 members: a second page"
    );
    check(&b, "members").await;
    b.type_into("#q", "person4").await;
    b.click("form[role=search] button").await;
    let page = b.wait_for_text("person49@example.com").await;
    assert!(
        page.contains("person40@example.com") && !page.contains("person39"),
        "{page}"
    );
    check(&b, "member search").await;
    b.go(&s.url("/admin/lists/dev.lists.example.org")).await;
    b.wait_for_text("Settings of Developers").await;
    check(&b, "settings").await;

    assert!(problems.is_empty(), "axe-core: {problems:#?}");
    let held = s.cli(&["held", "ls", "--json"]).json();
    assert!(held.as_array().unwrap().is_empty());
    let info = s.cli(&["lists", "show", list, "--json"]).json();
    assert_eq!(info["accept_senders"], json!(["zed@example.com"]));
}

#[tokio::test]
async fn a_member_signs_in_and_pauses_delivery_in_a_browser_on_a_phone_sized_screen() {
    let s = TestServer::start().await;
    let list = "dev@lists.example.org";
    assert_eq!(
        s.cli(&["lists", "create", list, "--name", "Developers"])
            .code,
        0
    );
    assert_eq!(
        s.cli(&[
            "members",
            "add",
            list,
            "anne.long.address.for.a.phone@example.net"
        ])
        .code,
        0
    );
    let Some(b) = Browser::start().await else {
        return;
    };
    let anne = "anne.long.address.for.a.phone@example.net";

    b.go(&s.url("/signin")).await;
    b.check_page("the sign-in page").await;
    b.type_into("#email", anne).await;
    b.click("form[action='/signin'] button").await;
    b.wait_for_text("Check your inbox").await;
    b.check_page("the sign-in check-your-inbox page").await;

    s.deliver().await;
    let mails = s.sink.to(anne);
    let welcome = mails
        .iter()
        .find(|m| m.header("Subject").unwrap_or_default().contains("Welcome"))
        .expect("the welcome of an owner's add");
    let signin = mails
        .iter()
        .find(|m| m.body_text().contains("/signin/"))
        .expect("a sign-in mail");
    let link = find_link(&signin.body_text(), &s.url("/signin/")).unwrap();
    b.go(&link).await;
    b.check_page("the sign-in link's page").await;
    b.click("button").await;
    let page = b.wait_for_text("Signed in as").await;
    assert!(page.contains("Developers") && page.contains(anne), "{page}");
    b.check_page("/me").await;

    b.click("input[name='delivery'][value='disabled']").await;
    b.click("form[action$='/me/lists/dev.lists.example.org'] button")
        .await;
    let page = b.wait_for_text("are saved").await;
    assert!(page.contains("are saved"), "{page}");
    let m = s.cli(&["members", "show", list, anne, "--json"]).json();
    assert_eq!(m["delivery"], "disabled");

    // the unsubscribe link of the welcome offers a digest instead
    let unsubscribe = find_link(&welcome.body_text(), &s.url("/unsubscribe/")).unwrap();
    b.go(&unsubscribe).await;
    b.check_page("the unsubscribe page with its choices").await;
    b.click("form[aria-label='Switch to a digest'] button")
        .await;
    let page = b.wait_for_text("saved").await;
    assert!(page.contains("digests"), "{page}");
    b.check_page("the preferences page").await;
    let m = s.cli(&["members", "show", list, anne, "--json"]).json();
    assert_eq!(
        (m["mode"].as_str(), m["status"].as_str()),
        (Some("digest"), Some("subscribed"))
    );
}
