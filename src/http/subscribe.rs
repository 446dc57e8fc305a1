//! Joining and leaving on the web: the form endpoints, the confirmation page and the
//! one-click unsubscribe (RFC 8058).
//!
//! Every answer to a well-formed request is the same neutral page whatever the
//! address's state (docs/standards.md#20); GET never changes anything
//! (docs/standards.md#15, #23).

use super::client::{FormFields, PeerAddr, client_ip, wants_json};
use super::pages::{FormError, list_not_found, list_page_with};
use super::views::{Button, CheckInbox, Message};
use super::{AppState, page, to_completion, unexpected};
use crate::app::AppError;
use crate::app::subscriptions::{
    ConfirmOutcome, ConfirmVia, Request, Standing, TokenView, UnsubscribeOutcome,
};
use crate::domain::{EmailAddress, Evidence, List, ListRef, MemberStatus, RequestKind, Source};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/lists/{list}/subscribe", post(subscribe))
        .route("/lists/{list}/unsubscribe", post(unsubscribe_request))
        .route("/confirm/{token}", get(confirm_page).post(confirm))
        .route(
            "/unsubscribe/{token}",
            get(unsubscribe_page).post(unsubscribe),
        )
        .route("/resume/{token}", get(resume_page).post(resume))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Join,
    Leave,
}

async fn subscribe(
    state: State<AppState>,
    list: Path<String>,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<FormFields, super::client::BadForm>,
) -> Response {
    request(state, list, peer, headers, form, Kind::Join).await
}

async fn unsubscribe_request(
    state: State<AppState>,
    list: Path<String>,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<FormFields, super::client::BadForm>,
) -> Response {
    request(state, list, peer, headers, form, Kind::Leave).await
}

async fn request(
    State(state): State<AppState>,
    Path(list): Path<String>,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<FormFields, super::client::BadForm>,
    kind: Kind,
) -> Response {
    let json = wants_json(&headers);
    let Ok(list_ref) = ListRef::parse(&list) else {
        return not_found(&state, json);
    };
    let form = match form {
        Ok(f) => f,
        Err(e) => {
            let reason = format!("The form could not be read: {}", e.0);
            return bad_input(&state, &list, json, kind, &reason, ("", "")).await;
        }
    };
    let email_text = form.get("email").unwrap_or("").trim().to_string();
    let address = match EmailAddress::parse(&email_text) {
        Ok(a) => a,
        Err(e) => {
            let reason = sentence(&e.to_string());
            let name = form.get("name").unwrap_or("");
            return bad_input(&state, &list, json, kind, &reason, (&email_text, name)).await;
        }
    };
    // only well-formed requests count against the client's limit
    let ip = client_ip(peer.0, &headers, &state.trusted_proxies);
    if let Err(wait) = state.ip_limiter.allow(ip) {
        return too_many(&state, &list, json, wait);
    }
    let list_info = match state.app.get_list(&list_ref).await {
        Ok(l) => l,
        Err(AppError::NoSuchList(_)) => return not_found(&state, json),
        Err(e) => return unexpected(&state, &e),
    };
    // a filled honeypot is a bot: same answer, nothing done (docs/standards.md#28)
    let honeypot = form.get("website").is_some_and(|v| !v.trim().is_empty());
    if !honeypot {
        let req = Request {
            address: address.clone(),
            name: form
                .get("name")
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| n.chars().filter(|c| !c.is_control()).take(200).collect()),
            source: Source::Web,
            evidence: Evidence {
                ip: ip.map(|i| i.to_string()),
                user_agent: headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(|s| s.chars().filter(|c| !c.is_control()).take(500).collect()),
                message_id: None,
                form_text: Some(form_text(&state, &list_info, kind)),
            },
            in_reply_to: None,
        };
        // stored now, carried out by the workers: the answer takes as long for a
        // member as for a stranger (no timing tell)
        let kind = match kind {
            Kind::Join => RequestKind::Subscribe,
            Kind::Leave => RequestKind::Unsubscribe,
        };
        let (app, list) = (state.app.clone(), list_info.clone());
        let done =
            to_completion(async move { app.queue_web_request(&list, kind, &req).await }).await;
        if let Err(e) = done {
            return unexpected(&state, &e);
        }
    }
    if json {
        return with_cors((StatusCode::OK, Json(json!({"status": "pending"}))).into_response());
    }
    check_inbox(&state, &list_info, &address, kind)
}

/// The answer to a client over its limit: `429` with `Retry-After`.
fn too_many(state: &AppState, list: &str, json: bool, wait: std::time::Duration) -> Response {
    if json {
        let msg = "Too many requests from your network. Please try again later.";
        let mut r =
            with_cors((StatusCode::TOO_MANY_REQUESTS, Json(json!({"error": msg}))).into_response());
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return r;
    }
    super::too_many_requests(state, wait, &format!("/lists/{list}"), "Back to the list")
}

/// The neutral page every well-formed request gets (docs/standards.md#20).
fn check_inbox(state: &AppState, list_info: &List, address: &EmailAddress, kind: Kind) -> Response {
    let hours = state.app.settings().confirm_expiry.as_secs().div_ceil(3600);
    page(
        state,
        StatusCode::OK,
        "web/check_inbox.html",
        CheckInbox::membership(list_info, &address.to_string(), kind == Kind::Join, hours),
    )
}

/// What the person saw when they asked, kept as consent evidence (docs/standards.md#29).
fn form_text(state: &AppState, list: &List, kind: Kind) -> String {
    let action = match kind {
        Kind::Join => "Subscribe",
        Kind::Leave => "Send me an unsubscribe link",
    };
    format!(
        "web form at {}/lists/{}: \"{action}\" for the list {} <{}>; confirmed by a link mailed to the address",
        state.app.settings().public_url,
        list.address.list_id(),
        list.settings.name,
        list.address
    )
}

async fn bad_input(
    state: &AppState,
    list: &str,
    json: bool,
    kind: Kind,
    reason: &str,
    typed: (&str, &str),
) -> Response {
    if json {
        return with_cors(
            (StatusCode::BAD_REQUEST, Json(json!({"error": reason}))).into_response(),
        );
    }
    let form = match kind {
        Kind::Join => FormError::Subscribe,
        Kind::Leave => FormError::Unsubscribe,
    };
    list_page_with(
        state,
        list,
        StatusCode::BAD_REQUEST,
        Some((form, reason)),
        typed,
    )
    .await
}

fn not_found(state: &AppState, json: bool) -> Response {
    if json {
        with_cors(
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "there is no such list"})),
            )
                .into_response(),
        )
    } else {
        list_not_found(state)
    }
}

fn with_cors(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

async fn confirm_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let view = match state.app.inspect_confirmation(&token).await {
        Ok(v) => v,
        Err(e) => return unexpected(&state, &e),
    };
    let action = format!("/confirm/{token}");
    match view {
        TokenView::Subscribe { list, address } => page(
            &state,
            StatusCode::OK,
            "web/confirm.html",
            Button::confirm_join(&list, &address, action),
        ),
        TokenView::Unsubscribe { list, address } => page(
            &state,
            StatusCode::OK,
            "web/confirm.html",
            Button::confirm_leave(&list, &address, action),
        ),
        TokenView::Used {
            list,
            address,
            standing,
        } => used(&state, &list, &address, standing),
        TokenView::Expired { list } => spent(&state, Some(&list)),
        TokenView::Unknown => spent(&state, None),
    }
}

async fn confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
    peer: PeerAddr,
    headers: HeaderMap,
) -> Response {
    let ip = client_ip(peer.0, &headers, &state.trusted_proxies).map(|i| i.to_string());
    let (app, t) = (state.app.clone(), token.clone());
    let outcome =
        match to_completion(async move { app.confirm(&t, ConfirmVia::Web { ip }).await }).await {
            Ok(o) => o,
            Err(e) => return unexpected(&state, &e),
        };
    match outcome {
        ConfirmOutcome::Subscribed { list, address } => {
            done(&state, Message::subscribed(&list, &address))
        }
        ConfirmOutcome::AwaitingApproval { list, address } => {
            done(&state, Message::awaiting_approval(&list, &address))
        }
        ConfirmOutcome::Unsubscribed { list, address } => {
            done(&state, Message::left(&list, &address))
        }
        ConfirmOutcome::Used {
            list,
            address,
            standing,
        } => used(&state, &list, &address, standing),
        ConfirmOutcome::Expired { list } => spent(&state, Some(&list)),
        ConfirmOutcome::Unknown => spent(&state, None),
    }
}

fn done(state: &AppState, message: Message) -> Response {
    page(state, StatusCode::OK, "web/message.html", message)
}

/// A confirmation link used before, opened again by the person it was mailed to: 410,
/// and the truth about where their address stands, with a way to the list's page.
fn used(state: &AppState, list: &List, address: &str, standing: Standing) -> Response {
    page(
        state,
        StatusCode::GONE,
        "web/message.html",
        Message::confirmation_used(list, address, standing),
    )
}

/// An expired or unknown confirmation link: 410 when we know the list, else 404.
fn spent(state: &AppState, list: Option<&List>) -> Response {
    let status = match list {
        Some(_) => StatusCode::GONE,
        None => StatusCode::NOT_FOUND,
    };
    page(
        state,
        status,
        "web/message.html",
        Message::confirmation_spent(list),
    )
}

async fn unsubscribe_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let (list, address) = match state.app.inspect_unsubscribe_token(&token).await {
        Ok(Some((list, address, status))) if status != MemberStatus::Subscribed => {
            return already_left(&state, &list, &address);
        }
        Ok(Some((list, address, _))) => (list, address),
        Ok(None) => return bad_unsubscribe_token(&state),
        Err(e) => return unexpected(&state, &e),
    };
    page(
        &state,
        StatusCode::OK,
        "web/unsubscribe.html",
        Button::unsubscribe(&list, &address, &token),
    )
}

/// The unsubscribe link of a membership that has ended: it says so, with the way back.
fn already_left(state: &AppState, list: &List, address: &str) -> Response {
    page(
        state,
        StatusCode::OK,
        "web/message.html",
        Message::already_left(list, address),
    )
}

/// The link in the notice sent when bounces turned a member's delivery off: a page
/// with one button (GET changes nothing, as for every link in mail).
async fn resume_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let found = state.app.inspect_resume_token(&token).await;
    button_page(&state, found, "web/resume.html", |list, address| {
        Button::resume(list, address, &token)
    })
}

/// The page of a member's link: one button that posts back to it, as `button` makes
/// it for the list and address the link names.
fn button_page(
    state: &AppState,
    found: Result<Option<(List, String)>, AppError>,
    template: &str,
    button: impl FnOnce(&List, &str) -> Button,
) -> Response {
    match found {
        Ok(Some((list, address))) => page(state, StatusCode::OK, template, button(&list, &address)),
        Ok(None) => bad_unsubscribe_token(state),
        Err(e) => unexpected(state, &e),
    }
}

async fn resume(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let (app, t) = (state.app.clone(), token.clone());
    match to_completion(async move { app.resume_delivery_with_token(&t).await }).await {
        Ok(Some((list, address))) => done(&state, Message::delivery_resumed(&list, &address)),
        Ok(None) => bad_unsubscribe_token(&state),
        Err(e) => unexpected(&state, &e),
    }
}

/// RFC 8058: the body is `List-Unsubscribe=One-Click`, but any POST to a genuine
/// token unsubscribes (the page's button posts the same field).
async fn unsubscribe(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let (app, t) = (state.app.clone(), token.clone());
    match to_completion(async move { app.unsubscribe_with_token(&t, "one-click").await }).await {
        Ok(UnsubscribeOutcome::AlreadyGone { list, address }) => {
            already_left(&state, &list, &address)
        }
        Ok(UnsubscribeOutcome::Unsubscribed { list, address }) => {
            done(&state, Message::left(&list, &address))
        }
        Ok(UnsubscribeOutcome::InvalidToken) => bad_unsubscribe_token(&state),
        Err(e) => unexpected(&state, &e),
    }
}

fn bad_unsubscribe_token(state: &AppState) -> Response {
    page(
        state,
        StatusCode::NOT_FOUND,
        "web/message.html",
        Message::bad_unsubscribe_token(),
    )
}

/// An error as a sentence for a page: the backticks that quote values in the CLI's
/// messages become quotation marks, the first letter is a capital, and it ends with a
/// full stop.
pub(crate) fn sentence(s: &str) -> String {
    let mut quoted = String::with_capacity(s.len() + 4);
    let mut open = false;
    for c in s.chars() {
        if c == '`' {
            quoted.push(if open { '”' } else { '“' });
            open = !open;
        } else {
            quoted.push(c);
        }
    }
    let mut c = quoted.chars();
    let mut out: String = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}
