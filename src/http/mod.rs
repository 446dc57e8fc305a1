//! The HTTP front end: public pages, the subscribe and unsubscribe endpoints, health.
//!
//! Handlers translate a request into one `app` call and its outcome into a page or a
//! JSON body. Pages are server-rendered templates that work without JavaScript.

pub mod api;
mod archive;
mod client;
mod console;
mod me;
pub mod metrics;
mod pages;
pub mod session;
mod subscribe;
mod views;

use crate::app::App;
use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use std::time::Duration;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub app: App,
    pub ip_limiter: std::sync::Arc<client::IpLimiter>,
    pub trusted_proxies: std::sync::Arc<Vec<std::net::IpAddr>>,
}

impl AppState {
    pub fn new(app: App, config: &crate::config::Config) -> Self {
        AppState {
            app,
            ip_limiter: std::sync::Arc::new(client::IpLimiter::new(config.rate_per_ip)),
            trusted_proxies: std::sync::Arc::new(config.trusted_proxies.clone()),
        }
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(pages::router())
        .merge(archive::router())
        .merge(subscribe::router())
        .merge(me::router())
        .merge(console::router())
        .merge(api::router(state.clone()))
        .route("/metrics", axum::routing::get(metrics::metrics))
        .fallback(not_found)
        .route_layer(axum::middleware::from_fn(metrics::count_requests))
        .with_state(state)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(64 * 1024))
        // every request gets an id (or keeps the one a proxy gave it), on every log
        // line of the request and in the response's x-request-id
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<Body>| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        request_id = %id,
                        method = %request.method(),
                        path = %loggable_path(request.uri().path()),
                    )
                })
                // the handler that answers 500 logs the cause (once, rate-limited); a
                // second line per failed response would only repeat it
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The status endpoints alone (`LISTD_STATUS_ADDR`), for a process that runs without
/// the HTTP front end: `/healthz`, `/readyz`, `/metrics`.
pub fn status_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(pages::healthz))
        .route("/readyz", axum::routing::get(pages::readyz))
        .route("/metrics", axum::routing::get(metrics::metrics))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
}

/// Serves [`status_router`] until `shutdown` resolves.
pub async fn serve_status(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, status_router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A path fit for logs: the tokens of confirmation, unsubscribe and resume links are
/// secrets and stay out of them.
fn loggable_path(path: &str) -> String {
    for prefix in ["/confirm/", "/unsubscribe/", "/resume/"] {
        if path.starts_with(prefix) {
            return format!("{prefix}…");
        }
    }
    path.to_string()
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn not_found(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    page(
        &state,
        StatusCode::NOT_FOUND,
        "web/message.html",
        views::Message::not_found(views::Link::new("/", "See all lists")),
    )
}

/// Renders a page; a broken template (an operator's override) is a logged 500.
pub(crate) fn page(
    state: &AppState,
    status: StatusCode,
    name: &str,
    ctx: impl serde::Serialize,
) -> Response {
    match state.app.templates().render(name, ctx) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "cannot render page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page cannot be shown right now.",
            )
                .into_response()
        }
    }
}

/// Runs a use case to its end even if the client goes away. Dropping a request's
/// future in the middle of a transaction would return its connection to the pool still
/// inside the transaction, holding its locks until the connection is next used.
pub(crate) async fn to_completion<T: Send + 'static>(
    use_case: impl std::future::Future<Output = Result<T, crate::app::AppError>> + Send + 'static,
) -> Result<T, crate::app::AppError> {
    tokio::spawn(use_case).await.unwrap_or_else(|e| {
        Err(crate::app::AppError::Unexpected(anyhow::anyhow!(
            "the request's task failed: {e}"
        )))
    })
}

/// `429` with `Retry-After` and a page that says how long to wait and links back.
pub(crate) fn too_many_requests(
    state: &AppState,
    wait: Duration,
    back: &str,
    back_text: &str,
) -> Response {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    let mut r = page(
        state,
        StatusCode::TOO_MANY_REQUESTS,
        "web/message.html",
        views::Message::too_many_requests(minutes, views::Link::new(back, back_text)),
    );
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(wait.as_secs().max(1)),
    );
    r
}

/// A page for an unexpected failure; the cause is logged once, here.
pub(crate) fn unexpected(state: &AppState, e: &crate::app::AppError) -> Response {
    crate::error_limited!("request failed", e);
    page(
        state,
        StatusCode::INTERNAL_SERVER_ERROR,
        "web/message.html",
        views::Message::unexpected(),
    )
}
