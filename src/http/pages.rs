//! Public pages: the index of lists, a list's page, health and readiness.

use super::{AppState, page, unexpected};
use crate::app::AppError;
use crate::domain::ListRef;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/lists", get(index))
        .route("/static/listd.css", get(stylesheet))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/lists/{list}", get(list_page))
}

pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    if state.app.ready().await {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
    }
}

/// The one stylesheet (`web/listd.css`, overridable like every template).
async fn stylesheet(State(state): State<AppState>) -> Response {
    match state.app.templates.render("web/listd.css", json!({})) {
        Ok(css) => (
            [
                (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            css,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the stylesheet");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn index(State(state): State<AppState>) -> Response {
    match state.app.lists(true).await {
        Ok(lists) => page(
            &state,
            StatusCode::OK,
            "web/index.html",
            json!({ "lists": lists }),
        ),
        Err(e) => unexpected(&state, &e),
    }
}

async fn list_page(State(state): State<AppState>, Path(list): Path<String>) -> Response {
    list_page_with(&state, &list, StatusCode::OK, None, "").await
}

/// The list page, optionally with a form error (also used by the subscribe handler).
pub(crate) async fn list_page_with(
    state: &AppState,
    list: &str,
    status: StatusCode,
    error: Option<&str>,
    email: &str,
) -> Response {
    let found = match ListRef::parse(list) {
        Ok(r) => state.app.list_info(&r).await,
        Err(e) => Err(AppError::BadAddress(e)),
    };
    match found {
        Ok(info) => {
            let address = crate::domain::ListAddress::parse(&info.address).ok();
            let suffix = |s: &str| {
                address
                    .as_ref()
                    .map(|a| a.with_suffix(s))
                    .unwrap_or_default()
            };
            page(
                state,
                status,
                "web/list.html",
                json!({
                    "title": info.settings.name,
                    "list": info,
                    "error": error,
                    "email": email,
                    "subscribe_address": suffix("subscribe"),
                    "unsubscribe_address": suffix("unsubscribe"),
                }),
            )
        }
        Err(AppError::NoSuchList(_) | AppError::BadAddress(_)) => list_not_found(state),
        Err(e) => unexpected(state, &e),
    }
}

pub(crate) fn list_not_found(state: &AppState) -> Response {
    page(
        state,
        StatusCode::NOT_FOUND,
        "web/message.html",
        json!({"title": "No such list", "message": "There is no mailing list at this address.",
               "link": {"href": "/", "text": "See all lists"}}),
    )
}
