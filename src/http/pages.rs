//! Public pages: the index of lists, a list's page, health and readiness.

use super::views::Message;
use super::{AppState, page, unexpected};
use crate::app::AppError;
use crate::app::lists::ListInfo;
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
    match state.app.templates().render("web/listd.css", json!({})) {
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
            Index { lists: &lists },
        ),
        Err(e) => unexpected(&state, &e),
    }
}

async fn list_page(State(state): State<AppState>, Path(list): Path<String>) -> Response {
    list_page_with(&state, &list, StatusCode::OK, None, ("", "")).await
}

/// `web/index.html`.
#[derive(serde::Serialize)]
struct Index<'a> {
    lists: &'a [ListInfo],
}

/// `web/list.html`: a list's page and its two forms, one of them perhaps with an error
/// and what was typed into it.
#[derive(serde::Serialize)]
struct ListPage<'a> {
    title: &'a str,
    list: &'a ListInfo,
    error: Option<&'a str>,
    /// `subscribe` or `unsubscribe`: the form the error belongs to.
    error_form: Option<&'static str>,
    description: serde_json::Value,
    email: &'a str,
    name: &'a str,
    subscribe_address: String,
    unsubscribe_address: String,
}

/// Which form of the list page an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormError {
    Subscribe,
    Unsubscribe,
}

/// The list page, optionally with an error shown at its form, which keeps the address
/// typed (also used by the subscribe handler).
pub(crate) async fn list_page_with(
    state: &AppState,
    list: &str,
    status: StatusCode,
    error: Option<(FormError, &str)>,
    (email, name): (&str, &str),
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
                ListPage {
                    title: &info.settings.name,
                    list: &info,
                    error: error.map(|(_, e)| e),
                    error_form: error.map(|(f, _)| match f {
                        FormError::Subscribe => "subscribe",
                        FormError::Unsubscribe => "unsubscribe",
                    }),
                    description: paragraphs(&info.settings.description),
                    email,
                    name,
                    subscribe_address: suffix("subscribe"),
                    unsubscribe_address: suffix("unsubscribe"),
                },
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
        Message::no_such_list(),
    )
}

/// A list's description as paragraphs (split at blank lines), each a run of text
/// pieces and links (the URLs in it), for the template to print escaped.
fn paragraphs(text: &str) -> serde_json::Value {
    let paras: Vec<serde_json::Value> = text
        .replace("\r\n", "\n")
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| serde_json::Value::Array(linkify(p)))
        .collect();
    serde_json::Value::Array(paras)
}

/// Splits text into `{"text"}` and `{"link"}` pieces at http(s) URLs.
fn linkify(text: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = ["https://", "http://"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        let url_len = rest[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
            .unwrap_or(rest.len() - start);
        let mut url = &rest[start..start + url_len];
        // a full stop or a closing bracket after a URL usually ends the sentence
        url = url.trim_end_matches(['.', ',', ';', ':', ')', '!', '?']);
        if start > 0 {
            out.push(json!({"text": &rest[..start]}));
        }
        out.push(json!({"link": url}));
        rest = &rest[start + url.len()..];
    }
    if !rest.is_empty() {
        out.push(json!({"text": rest}));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_a_description_become_links() {
        let p = linkify("See https://example.org/a?b=1. Or http://x.test");
        assert_eq!(
            p,
            vec![
                json!({"text": "See "}),
                json!({"link": "https://example.org/a?b=1"}),
                json!({"text": ". Or "}),
                json!({"link": "http://x.test"}),
            ]
        );
        assert_eq!(linkify("no links"), vec![json!({"text": "no links"})]);
    }

    #[test]
    fn a_description_splits_into_paragraphs_at_blank_lines() {
        let v = paragraphs("One\nstill one\r\n\r\nTwo\n\n\n");
        assert_eq!(v.as_array().unwrap().len(), 2);
    }
}
