//! Signing in and a member's own page (docs/contract.md#signin): `/signin`, the link's
//! page, `/signout`, `/me` with its forms, and the preferences forms of the
//! unsubscribe page.
//!
//! Every answer here carries the private-page headers (no caching, no framing); every
//! POST of a signed-in page passes the CSRF check of [`CsrfForm`].

use super::client::{FormFields, PeerAddr, client_ip};
use super::session::{
    CsrfForm, SignedIn, private_headers, session_cookie, session_removal_cookie, session_set_cookie,
};
use super::views::{Button, CheckInbox, Message};
use super::{AppState, page, to_completion, unexpected};
use crate::app::sessions::{MyChange, MyChangeOutcome, MyList, SignInOutcome, SigninView};
use crate::domain::session::SIGNIN_MINUTES;
use crate::domain::{EmailAddress, ListRef, MemberChange, ReturnPath};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/signin", get(signin_form).post(signin_request))
        .route("/signin/{token}", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/me", get(me))
        .route("/me/lists/{list}", post(change))
        .route("/preferences/{token}", post(preferences))
        .route_layer(axum::middleware::from_fn(private_headers))
}

#[derive(serde::Deserialize)]
struct SigninQuery {
    /// The page to return to once signed in (kept only if it is a local path).
    next: Option<String>,
}

/// `GET /signin`: the form, carrying the page to return to (from `?next=`, or from the
/// cookie a redirect here left) in a hidden field.
async fn signin_form(
    State(state): State<AppState>,
    Query(q): Query<SigninQuery>,
    jar: CookieJar,
) -> Response {
    let next = q
        .next
        .as_deref()
        .and_then(ReturnPath::parse)
        .or_else(|| super::session::next_from_cookie(&jar));
    signin_form_with(&state, StatusCode::OK, None, "", next.as_ref())
}

/// `web/signin.html`: the form, perhaps with an error and what was typed.
#[derive(serde::Serialize)]
struct SigninForm<'a> {
    error: Option<&'a str>,
    email: &'a str,
    expiry_minutes: i64,
    next: Option<&'a str>,
}

fn signin_form_with(
    state: &AppState,
    status: StatusCode,
    error: Option<&str>,
    email: &str,
    next: Option<&ReturnPath>,
) -> Response {
    page(
        state,
        status,
        "web/signin.html",
        SigninForm {
            error,
            email,
            expiry_minutes: SIGNIN_MINUTES,
            next: next.map(ReturnPath::as_str),
        },
    )
}

/// `POST /signin`: the same page for every well-formed address (docs/standards.md#51);
/// the request is stored and carried out by the workers, so its timing tells nothing.
/// A `next` field that is a local path goes with the request: the link leads there.
async fn signin_request(
    State(state): State<AppState>,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<FormFields, super::client::BadForm>,
) -> Response {
    let email = form
        .as_ref()
        .ok()
        .and_then(|f| f.get("email"))
        .unwrap_or("")
        .trim()
        .to_string();
    let next = form
        .as_ref()
        .ok()
        .and_then(|f| f.get("next"))
        .and_then(ReturnPath::parse);
    let address = match EmailAddress::parse(&email) {
        Ok(a) => a,
        Err(e) => {
            let reason = super::subscribe::sentence(&e.to_string());
            return signin_form_with(
                &state,
                StatusCode::BAD_REQUEST,
                Some(&reason),
                &email,
                next.as_ref(),
            );
        }
    };
    // only well-formed requests count against the client's limit
    let ip = client_ip(peer.0, &headers, &state.trusted_proxies);
    if let Err(wait) = state.ip_limiter.allow(ip) {
        return super::too_many_requests(&state, wait, "/signin", "Back to sign in");
    }
    let app = state.app.clone();
    let ip_text = ip.map(|i| i.to_string());
    let a = address.clone();
    if let Err(e) = to_completion(async move {
        app.queue_signin_request(&a, ip_text.as_deref(), next.as_ref())
            .await
    })
    .await
    {
        return unexpected(&state, &e);
    }
    let checked = page(
        &state,
        StatusCode::OK,
        "web/check_inbox.html",
        CheckInbox::signin(&address.to_string(), SIGNIN_MINUTES),
    );
    // the page to return to now travels with the request
    (
        CookieJar::from_headers(&headers).remove(super::session::next_removal_cookie()),
        checked,
    )
        .into_response()
}

/// The link's page: one button (mail scanners open links; GET changes nothing).
async fn signin_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.app.inspect_signin(&token).await {
        Ok(SigninView::Valid { address }) => page(
            &state,
            StatusCode::OK,
            "web/confirm.html",
            Button::sign_in(&address, &token),
        ),
        Ok(view) => spent_link(&state, &view),
        Err(e) => unexpected(&state, &e),
    }
}

async fn signin(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    let previous = session_cookie(&jar);
    let app = state.app.clone();
    let outcome =
        match to_completion(async move { app.sign_in(&token, previous.as_ref()).await }).await {
            Ok(o) => o,
            Err(e) => return unexpected(&state, &e),
        };
    match outcome {
        SignInOutcome::SignedIn {
            session,
            return_path,
            ..
        } => (
            jar.add(session_set_cookie(&state, &session)),
            Redirect::to(return_path.as_ref().map_or("/me", ReturnPath::as_str)),
        )
            .into_response(),
        SignInOutcome::Used => spent_link(&state, &SigninView::Used),
        SignInOutcome::Expired => spent_link(&state, &SigninView::Expired),
        SignInOutcome::Unknown => spent_link(&state, &SigninView::Unknown),
    }
}

/// A used or expired link is `410`, an unknown one `404`; both lead back to `/signin`.
fn spent_link(state: &AppState, view: &SigninView) -> Response {
    let status = match view {
        SigninView::Used | SigninView::Expired => StatusCode::GONE,
        _ => StatusCode::NOT_FOUND,
    };
    page(
        state,
        status,
        "web/message.html",
        Message::signin_link_spent(view),
    )
}

async fn signout(State(state): State<AppState>, jar: CookieJar, form: CsrfForm) -> Response {
    if let Err(e) = state.app.sign_out(&form.viewer).await {
        return unexpected(&state, &e);
    }
    (
        jar.remove(session_removal_cookie()),
        page(
            &state,
            StatusCode::OK,
            "web/message.html",
            Message::signed_out(),
        ),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct MeQuery {
    changed: Option<String>,
    left: Option<String>,
}

/// `web/me.html`: the signed-in person's lists and their settings there.
#[derive(serde::Serialize)]
struct MePage<'a> {
    address: String,
    csrf: &'a str,
    lists: &'a [MyList],
    notice: Option<String>,
    is_site_admin: bool,
}

async fn me(
    State(state): State<AppState>,
    SignedIn(viewer): SignedIn,
    Query(q): Query<MeQuery>,
) -> Response {
    let lists = match state.app.my_lists(&viewer).await {
        Ok(l) => l,
        Err(e) => return unexpected(&state, &e),
    };
    let name_of = |id: &str| {
        lists
            .iter()
            .find(|l| l.list_id == id)
            .map(|l| l.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let changed = q.changed.as_deref().map(name_of);
    let notice = super::views::me_notice(changed.as_deref(), q.left.as_deref());
    page(
        &state,
        StatusCode::OK,
        "web/me.html",
        MePage {
            address: viewer.address.to_string(),
            csrf: &viewer.csrf,
            lists: &lists,
            notice,
            is_site_admin: viewer.is_site_admin,
        },
    )
}

/// `POST /me/lists/{list}`: `delivery`, `mode`, `own_posts` (any subset) or
/// `action=leave`; then back to `/me`.
async fn change(
    State(state): State<AppState>,
    Path(list): Path<String>,
    form: CsrfForm,
) -> Response {
    let Ok(list_ref) = ListRef::parse(&list) else {
        return super::pages::list_not_found(&state);
    };
    let change = if form.fields.get("action") == Some("leave") {
        MyChange::Leave
    } else {
        match member_change(&form.fields, &["delivery", "mode", "own_posts"]) {
            Ok(c) => MyChange::Set(c),
            Err(reason) => return bad_change(&state, &reason),
        }
    };
    let (app, viewer) = (state.app.clone(), form.viewer);
    let done =
        to_completion(async move { app.change_my_membership(&viewer, &list_ref, &change).await })
            .await;
    match done {
        Ok(MyChangeOutcome::Changed { list, .. }) => {
            Redirect::to(&format!("/me?changed={}", list.address.list_id())).into_response()
        }
        Ok(MyChangeOutcome::Left { list }) => {
            Redirect::to(&format!("/me?left={}", list.address.list_id())).into_response()
        }
        Ok(MyChangeOutcome::NotAMember) => page(
            &state,
            StatusCode::NOT_FOUND,
            "web/message.html",
            Message::not_a_member(),
        ),
        Err(e) => unexpected(&state, &e),
    }
}

/// The member settings among a form's fields.
fn member_change(fields: &FormFields, keys: &[&str]) -> Result<MemberChange, String> {
    let mut change = MemberChange::default();
    for key in keys {
        if let Some(value) = fields.get(key) {
            change
                .apply(key, value)
                .map_err(|e| super::subscribe::sentence(&e.to_string()))?;
        }
    }
    if change == MemberChange::default() {
        return Err("Choose what to change.".into());
    }
    Ok(change)
}

fn bad_change(state: &AppState, reason: &str) -> Response {
    page(
        state,
        StatusCode::BAD_REQUEST,
        "web/message.html",
        Message::nothing_changed(reason),
    )
}

/// `POST /preferences/{token}`: pause delivery or switch to a digest with the
/// member's unsubscribe token (no session; the token is the authority).
async fn preferences(
    State(state): State<AppState>,
    Path(token): Path<String>,
    form: Result<FormFields, super::client::BadForm>,
) -> Response {
    let fields = form.unwrap_or_default();
    let change = match member_change(&fields, &["delivery", "mode"]) {
        Ok(c) => c,
        Err(reason) => return bad_change(&state, &reason),
    };
    let app = state.app.clone();
    let done =
        to_completion(async move { app.update_preferences_with_token(&token, &change).await })
            .await;
    match done {
        Ok(MyChangeOutcome::Changed { list, member }) => page(
            &state,
            StatusCode::OK,
            "web/message.html",
            Message::preferences_saved(&list, &member),
        ),
        Ok(_) => page(
            &state,
            StatusCode::NOT_FOUND,
            "web/message.html",
            Message::preferences_link_invalid(),
        ),
        Err(e) => unexpected(&state, &e),
    }
}
