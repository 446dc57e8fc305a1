//! The HTTP application in-process: requests go through the whole router with its
//! layers (`tower::ServiceExt::oneshot`), with no socket, no SMTP and no workers. The
//! database is a real one. End-to-end tests over real HTTP live with their areas.

use crate::harness::{TestDb, config, test_app};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use listd::app::App;
use listd::http::{AppState, router};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The router on a test database, and the app behind it.
struct Routed {
    router: axum::Router,
    app: App,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

impl Routed {
    async fn new() -> Routed {
        let db = TestDb::new().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(&db, "smtp://127.0.0.1:1", dir.path());
        config.public_url = "http://lists.test".into();
        let (app, _) = test_app(&db, &config).await;
        let router = router(AppState::new(app.clone(), &config));
        Routed {
            router,
            app,
            _db: db,
            _dir: dir,
        }
    }

    /// Sends one request; returns its status, headers and body text.
    async fn send(&self, request: Request<Body>) -> (StatusCode, header::HeaderMap, String) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(&self, path: &str) -> (StatusCode, header::HeaderMap, String) {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// An API call with a bearer token (none when empty); the body parsed as JSON.
    async fn api(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if !token.is_empty() {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(b) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let (status, _, text) = self.send(request).await;
        (
            status.as_u16(),
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

#[tokio::test]
async fn health_and_unknown_paths_pass_through_the_layers() {
    let r = Routed::new().await;
    let (status, headers, _) = r.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    assert!(headers.contains_key("x-request-id"), "{headers:?}");
    let (status, _, _) = r.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);

    let (status, headers, body) = r.get("/no/such/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{headers:?}"
    );
    assert!(!body.is_empty());
}

#[tokio::test]
async fn the_api_refuses_without_a_token_and_creates_a_list_with_one() {
    let r = Routed::new().await;
    for bad in ["", "not-a-token"] {
        let (status, body) = r.api(bad, "GET", "/api/v1/lists", None).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }

    let token = r.app.create_api_token("ops").await.unwrap();
    let new = json!({"address": "sig@lists.example.org", "name": "SIG",
                     "owners": ["owner@example.org"], "settings": {"posting": "open"}});
    let (status, list) = r
        .api(&token, "POST", "/api/v1/lists", Some(new.clone()))
        .await;
    assert_eq!(status, 201, "{list}");
    assert_eq!(list["list_id"], "sig.lists.example.org");
    let (status, body) = r.api(&token, "POST", "/api/v1/lists", Some(new)).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, "exists".into())
    );
    let (status, body) = r.api(&token, "GET", "/api/v1/lists", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("sig.lists.example.org"), "{body}");
}

#[tokio::test]
async fn list_pages_show_an_existing_list_and_404_for_others() {
    let r = Routed::new().await;
    let token = r.app.create_api_token("ops").await.unwrap();
    let new = json!({"address": "dev@lists.example.org", "name": "Developers",
                     "owners": ["owner@example.org"]});
    let (status, body) = r.api(&token, "POST", "/api/v1/lists", Some(new)).await;
    assert_eq!(status, 201, "{body}");

    let (status, headers, page) = r.get("/lists/dev.lists.example.org").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.contains("Developers"), "{page}");
    assert!(page.contains("<form"), "the page offers its forms: {page}");

    let (status, _, _) = r.get("/lists/nope.lists.example.org").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = r.get("/lists").await;
    assert_eq!(status, StatusCode::OK);
}
