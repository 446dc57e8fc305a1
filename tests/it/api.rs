//! The JSON admin API over real HTTP: tokens from the CLI, every route, error bodies,
//! keyset pagination, and the OpenAPI document against the routes that exist.

use crate::harness::{TestServer, http, mail, smtplib};
use serde_json::{Value, json};

fn token(s: &TestServer, name: &str) -> String {
    let out = s.cli(&["api-tokens", "create", name]);
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.lines().last().unwrap().trim().to_string()
}

async fn call(
    s: &TestServer,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http().request(method.parse().unwrap(), s.url(path));
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_does_what_the_cli_does_for_a_token_holder() {
    let s = TestServer::start().await;
    let t = token(&s, "ops");

    // no token, or a wrong one: 401 with an error body
    for bad in ["", "not-a-token"] {
        let (status, body) = call(&s, bad, "GET", "/api/v1/lists", None).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], "unauthorized");
    }

    let new = json!({"address": "sig@lists.example.org", "name": "SIG", "owners": ["owner@example.org"],
                     "settings": {"posting": "open"}});
    let (status, list) = call(&s, &t, "POST", "/api/v1/lists", Some(new.clone())).await;
    assert_eq!(status, 201, "{list}");
    assert_eq!(list["list_id"], "sig.lists.example.org");
    assert_eq!(list["posting"], "open");
    let (status, body) = call(&s, &t, "POST", "/api/v1/lists", Some(new)).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, "exists".into())
    );
    let (status, body) = call(
        &s,
        &t,
        "POST",
        "/api/v1/lists",
        Some(json!({"address": "no"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`address`"),
        "{body}"
    );
    let (status, body) = call(
        &s,
        &t,
        "POST",
        "/api/v1/lists",
        Some(json!({"adress": "x@y.org"})),
    )
    .await;
    assert_eq!(status, 400, "unknown fields are refused: {body}");

    let (status, list) = call(
        &s,
        &t,
        "PATCH",
        "/api/v1/lists/sig.lists.example.org",
        Some(json!({"subject-prefix": "[sig]", "bounce-score-threshold": 3})),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["bounce_score_threshold"], 3);
    let (status, body) = call(
        &s,
        &t,
        "PATCH",
        "/api/v1/lists/sig.lists.example.org",
        Some(json!({"posting": "sometimes"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, "invalid".into())
    );

    // 250 members, read back page by page
    let rows: String = (0..250).map(|i| format!("m{i:03}@example.net\n")).collect();
    let file = s.data_dir.path().join("m.txt");
    std::fs::write(&file, rows).unwrap();
    let out = s.cli(&[
        "members",
        "import",
        "sig@lists.example.org",
        file.to_str().unwrap(),
        "--format",
        "lines",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/lists/sig@lists.example.org/members?limit=100&cursor={c}"),
            None => "/api/v1/lists/sig@lists.example.org/members?limit=100".to_string(),
        };
        let (status, page) = call(&s, &t, "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for m in page["members"].as_array().unwrap() {
            seen.push(m["address"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 250, "no member twice");

    let (status, body) = call(
        &s,
        &t,
        "POST",
        "/api/v1/lists/sig@lists.example.org/members",
        Some(json!({"addresses": ["new@example.net"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, m) = call(
        &s,
        &t,
        "GET",
        "/api/v1/lists/sig@lists.example.org/members/new@example.net",
        None,
    )
    .await;
    assert_eq!((status, m["status"].clone()), (200, "subscribed".into()));
    assert!(m["bounces"].is_array());
    let (status, _) = call(
        &s,
        &t,
        "DELETE",
        "/api/v1/lists/sig@lists.example.org/members/new@example.net",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = call(
        &s,
        &t,
        "GET",
        "/api/v1/lists/sig@lists.example.org/members/nobody@example.net",
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, "not_found".into())
    );

    // a held post, approved through the API
    assert_eq!(
        s.cli(&["lists", "set", "sig@lists.example.org", "posting=moderated"])
            .code,
        0
    );
    let post = mail(
        "Anne <m001@example.net>",
        "sig@lists.example.org",
        "Held",
        "",
        "hi",
    );
    smtplib(
        s.smtp_port(),
        "m001@example.net",
        &["sig@lists.example.org"],
        &post,
    )
    .unwrap();
    s.process().await;
    let (status, held) = call(
        &s,
        &t,
        "GET",
        "/api/v1/held?list=sig@lists.example.org",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let id = held[0]["id"].as_i64().unwrap();
    let (status, one) = call(&s, &t, "GET", &format!("/api/v1/held/{id}"), None).await;
    assert_eq!((status, one["subject"].clone()), (200, "Held".into()));
    let (status, done) = call(&s, &t, "POST", &format!("/api/v1/held/{id}/approve"), None).await;
    assert_eq!(
        (status, done["outcome"].clone()),
        (200, "approved".into()),
        "{done}"
    );
    assert_eq!(done["copies"], 250);
    let (status, body) = call(&s, &t, "POST", &format!("/api/v1/held/{id}/approve"), None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, "refused".into())
    );
    // the second decision is told who made the first, and when
    assert_eq!(body["error"]["decided_by"], "ops", "{body}");
    assert_eq!(body["error"]["status"], "accepted");
    assert!(body["error"]["decided_at"].as_str().unwrap().contains('T'));
    let (_, one) = call(&s, &t, "GET", &format!("/api/v1/held/{id}"), None).await;
    assert_eq!(
        (one["decided_by"].clone(), one["status"].clone()),
        ("ops".into(), "accepted".into())
    );
    let shown = s.cli(&["held", "show", &id.to_string()]);
    assert!(shown.stdout.contains("ops"), "{}", shown.stdout);

    let (status, _) = call(
        &s,
        &t,
        "DELETE",
        "/api/v1/lists/sig@lists.example.org",
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(s.cli(&["api-tokens", "revoke", "ops"]).code, 0);
    let (status, _) = call(&s, &t, "GET", "/api/v1/lists", None).await;
    assert_eq!(status, 401, "a revoked token no longer works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_names_exactly_the_routes_that_answer() {
    let s = TestServer::start().await;
    let t = token(&s, "docs");
    let (status, doc) = call(&s, "", "GET", "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), listd::http::api::ROUTES.len());
    let listing = &paths["/api/v1/lists/{list}/members"]["get"]["parameters"];
    assert!(
        listing
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "cursor")
    );
    assert!(paths["/api/v1/lists"]["post"]["requestBody"].is_object());
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            // every documented route is routed: unknown ids give the API's own 404
            // (or another API answer), never the site's fallback page or 405
            let concrete = path
                .replace("{list}", "none@lists.example.org")
                .replace("{address}", "a@example.net")
                .replace("{id}", "999999")
                .replace("{decision}", "approve");
            let body = matches!(method.as_str(), "post" | "patch").then(|| json!({}));
            let (status, answer) = call(&s, &t, &method.to_uppercase(), &concrete, body).await;
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                answer.get("error").is_some() || status < 300,
                "{method} {path}: {status} {answer}"
            );
        }
    }
}
