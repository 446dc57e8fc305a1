//! The footer on every copy (docs/standards.md#19, #8): posts shaped as Gmail,
//! Outlook, Apple Mail and other programs write them, sent over SMTP, relayed to the
//! capture sink and read with mail-parser; the link in the footer is followed.

use crate::harness::{Captured, TestServer, http, smtp_raw};
use mail_parser::{MessagePart, MimeHeaders, PartType};

const LIST: &str = "dev@lists.example.org";
const SHAPES: &[&str] = &[
    "plain-ascii-7bit",
    "plain-utf8-qp",
    "plain-base64",
    "mixed-attachment",
    "gmail-alternative",
    "outlook-alternative-related",
    "apple-mail",
    "html-only",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/posts/{name}.eml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn server(settings: &[&str]) -> TestServer {
    let s = TestServer::start().await;
    let out = s.cli(&[
        "lists",
        "create",
        LIST,
        "--name",
        "Dev",
        "--posting",
        "open",
        "--dmarc",
        "never",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    if !settings.is_empty() {
        let mut args = vec!["lists", "set", LIST];
        args.extend_from_slice(settings);
        let out = s.cli(&args);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let out = s.cli(&[
        "members",
        "add",
        LIST,
        "--quiet",
        "bob@example.com",
        "carol@example.org",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    s
}

/// Posts every shape; returns the copies each member got, by shape.
async fn post_every_shape(s: &TestServer, rcpt: &str) -> Vec<(&'static str, Captured)> {
    for shape in SHAPES {
        let replies = smtp_raw(s.smtp_port(), "anne@example.net", &[LIST], &fixture(shape)).await;
        assert!(replies.last().unwrap().starts_with("250"), "{replies:?}");
    }
    s.process().await;
    let copies = s.sink.to(rcpt);
    assert_eq!(copies.len(), SHAPES.len(), "one copy per post");
    SHAPES
        .iter()
        .map(|shape| {
            let id = format!("{}@example.net", shape_id(shape));
            let copy = copies
                .iter()
                .find(|c| c.header("Message-ID").is_some_and(|m| m.contains(&id)))
                .unwrap_or_else(|| panic!("no copy of {shape}"))
                .clone();
            (*shape, copy)
        })
        .collect()
}

/// The Message-ID's local part of each fixture.
fn shape_id(shape: &str) -> &'static str {
    match shape {
        "plain-ascii-7bit" => "plain-ascii",
        "plain-utf8-qp" => "plain-qp",
        "plain-base64" => "plain-b64",
        "mixed-attachment" => "mixed",
        "gmail-alternative" => "gmail",
        "outlook-alternative-related" => "outlook",
        "apple-mail" => "apple",
        _ => "html-only",
    }
}

/// The https link of a copy's List-Unsubscribe.
fn header_link(copy: &Captured) -> String {
    let value = copy.header("List-Unsubscribe").unwrap();
    value
        .split(", ")
        .next()
        .unwrap()
        .trim_matches(['<', '>'])
        .to_string()
}

/// Every leaf part: its type and decoded content.
fn leaves(copy: &Captured) -> Vec<(String, Vec<u8>)> {
    let msg = copy.parsed();
    msg.parts
        .iter()
        .filter_map(|p: &MessagePart<'_>| {
            let ct = p
                .content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
                .unwrap_or_else(|| "text/plain".into())
                .to_ascii_lowercase();
            match &p.body {
                PartType::Text(t) | PartType::Html(t) => Some((ct, t.as_bytes().to_vec())),
                PartType::Binary(b) | PartType::InlineBinary(b) => Some((ct, b.to_vec())),
                _ => None,
            }
        })
        .collect()
}

fn body_of(raw: &[u8]) -> &[u8] {
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    &raw[at + 4..]
}

#[tokio::test]
async fn every_shape_of_post_ends_with_the_members_own_footer() {
    let s = server(&["description=Talk about development"]).await;
    for (shape, copy) in post_every_shape(&s, "bob@example.com").await {
        let link = header_link(&copy);
        assert!(link.starts_with(&s.url("/unsubscribe/")), "{link}");
        let parts = leaves(&copy);
        let original = leaves(&Captured {
            mail_from: String::new(),
            rcpt_to: vec![],
            data: fixture(shape),
        });
        let texts: Vec<String> = parts
            .iter()
            .filter(|(c, _)| c.starts_with("text/"))
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect();
        // the footer, with Bob's own link, ends every text a client may show
        let last_plain = parts.iter().rev().find(|(c, _)| c == "text/plain");
        if let Some((_, text)) = last_plain {
            let text = String::from_utf8_lossy(text);
            assert!(
                text.contains(&format!("Leave the list: {link}")),
                "{shape}: {text}"
            );
            assert!(text.contains(&s.url("/me")), "{shape}");
            assert!(
                text.contains(&s.url("/lists/dev.lists.example.org")),
                "{shape}"
            );
            assert!(text.trim_end().ends_with(&s.url("/me")), "{shape}: {text}");
        }
        if let Some((_, html)) = parts.iter().find(|(c, _)| c == "text/html") {
            let html = String::from_utf8_lossy(html);
            assert!(
                html.contains(&format!("<a href=\"{link}\">{link}</a>")),
                "{shape}: {html}"
            );
        }
        assert!(texts.iter().any(|t| t.contains(&link)), "{shape}");
        // the original parts are still there, their text first
        for (ct, content) in &original {
            let kept = parts.iter().any(|(c, b)| {
                c == ct
                    && if ct.starts_with("text/") {
                        let before_footer = String::from_utf8_lossy(content);
                        let before_footer = before_footer
                            .split("</body>")
                            .next()
                            .unwrap()
                            .trim_end()
                            .to_string();
                        String::from_utf8_lossy(b).starts_with(&before_footer)
                    } else {
                        b == content
                    }
            });
            assert!(kept, "{shape}: its {ct} part changed");
        }
    }
    // each member's copy has their own link, and the footer's link works
    let carol = post_every_shape(&s, "carol@example.org").await;
    let (_, copy) = &carol[0];
    let link = header_link(copy);
    assert!(copy.body_text().contains(&link));
    let page = http().get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let r = http()
        .post(&link)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = s.cli(&["members", "show", LIST, "carol@example.org", "--json"]);
    assert_eq!(out.json()["status"], "unsubscribed", "{out:?}");
}

#[tokio::test]
async fn with_the_footer_off_the_body_is_relayed_byte_for_byte() {
    let s = server(&["footer=off"]).await;
    for (shape, copy) in post_every_shape(&s, "bob@example.com").await {
        assert_eq!(
            body_of(&copy.data),
            body_of(&fixture(shape)),
            "{shape}: the body changed"
        );
    }
}

#[tokio::test]
async fn the_footer_text_is_a_checked_template() {
    let s = server(&[]).await;
    let show = s.cli(&["lists", "show", LIST, "--json"]).json();
    assert_eq!(show["footer"], "on");
    assert_eq!(show["footer_text"], "");
    let bad = s.cli(&["lists", "set", LIST, "footer-text=Bye"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("unsubscribe_url"), "{bad:?}");
    let bad = s.cli(&[
        "lists",
        "set",
        LIST,
        "footer-text={colour} {unsubscribe_url}",
    ]);
    assert!(bad.stderr.contains("{colour}"), "{bad:?}");
    let out = s.cli(&[
        "lists",
        "set",
        LIST,
        "footer-text=Posted to {list_name} ({list_address}).\nLeave: {unsubscribe_url}",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let show = s.cli(&["lists", "show", LIST]);
    assert!(show.stdout.contains("footer"), "{show:?}");
    let replies = smtp_raw(
        s.smtp_port(),
        "anne@example.net",
        &[LIST],
        &fixture("plain-ascii-7bit"),
    )
    .await;
    assert!(replies.last().unwrap().starts_with("250"));
    s.process().await;
    let copy = &s.sink.to("bob@example.com")[0];
    let link = header_link(copy);
    let text = copy.body_text();
    assert!(
        text.contains(&format!(
            "-- \r\nPosted to Dev (dev@lists.example.org).\r\nLeave: {link}"
        )) || text.contains(&format!(
            "-- \nPosted to Dev (dev@lists.example.org).\nLeave: {link}"
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_shows_and_changes_the_footer() {
    let s = server(&[]).await;
    let out = s.cli(&["api-tokens", "create", "ops"]);
    let token = out.stdout.lines().last().unwrap().trim().to_string();
    let url = s.url("/api/v1/lists/dev.lists.example.org");
    let get = http().get(&url).bearer_auth(&token).send().await.unwrap();
    let list: serde_json::Value = get.json().await.unwrap();
    assert_eq!(list["footer"], "on", "{list}");
    let patch = http()
        .patch(&url)
        .bearer_auth(&token)
        .json(&serde_json::json!({"footer": "off", "footer-text": "Bye: {unsubscribe_url}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200);
    let list: serde_json::Value = patch.json().await.unwrap();
    assert_eq!(
        (list["footer"].as_str(), list["footer_text"].as_str()),
        (Some("off"), Some("Bye: {unsubscribe_url}"))
    );
    let bad = http()
        .patch(&url)
        .bearer_auth(&token)
        .json(&serde_json::json!({"footer-text": "no link"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
