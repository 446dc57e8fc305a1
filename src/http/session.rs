//! Who is signed in, for the pages under `/me` and `/admin`: the session cookie, the
//! CSRF check of every form, and the headers of private pages (docs/standards.md#52, #53).
//!
//! Handlers take [`SignedIn`] (no session: `303` to `/signin`) or [`MaybeSignedIn`];
//! a state-changing handler takes [`CsrfForm`] instead, which also refuses a form
//! without its session's `csrf` field with `403`. So no handler can forget either.

use super::client::{BadForm, FormFields};
use super::views::Message;
use super::{AppState, page, unexpected};
use crate::app::sessions::Viewer;
use crate::domain::{ReturnPath, SessionId};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

/// The name of the session cookie.
pub const COOKIE: &str = "listd_session";

/// A signed-in person; without a live session the request is answered `303 /signin`
/// (exactly: the contract names that place), with a short-lived cookie naming the page
/// asked for (a `GET` of a page other than `/me`), so that the sign-in form, and then
/// the link, lead back to it.
pub struct SignedIn(pub Viewer);

/// A signed-in person, or nobody.
pub struct MaybeSignedIn(pub Option<Viewer>);

/// The session id the browser sent, if it has the right shape (for sign-in, which
/// ends the session it replaces).
pub fn session_cookie(jar: &CookieJar) -> Option<SessionId> {
    jar.get(COOKIE).and_then(|c| SessionId::parse(c.value()))
}

/// The cookie that carries a new session: `HttpOnly`, `SameSite=Lax`, `Secure` when
/// the public URL is https, for 30 days.
pub fn session_set_cookie(state: &AppState, session: &SessionId) -> Cookie<'static> {
    Cookie::build((COOKIE, session.as_str().to_string()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.app.settings().public_url.starts_with("https://"))
        .max_age(time::Duration::days(crate::domain::session::SESSION_DAYS))
        .build()
}

/// The cookie that tells the browser to forget the session.
pub fn session_removal_cookie() -> Cookie<'static> {
    Cookie::build((COOKIE, "")).path("/").build()
}

async fn viewer_of(parts: &mut Parts, state: &AppState) -> Result<Option<Viewer>, Response> {
    let jar = CookieJar::from_headers(&parts.headers);
    let Some(cookie) = jar.get(COOKIE) else {
        return Ok(None);
    };
    state
        .app
        .session_of(cookie.value())
        .await
        .map_err(|e| unexpected(state, &e))
}

impl FromRequestParts<AppState> for MaybeSignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        Ok(MaybeSignedIn(viewer_of(parts, state).await?))
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match viewer_of(parts, state).await? {
            Some(v) => Ok(SignedIn(v)),
            None => Err(to_signin(state, parts)),
        }
    }
}

/// The name of the cookie that carries the page to return to after signing in.
pub const NEXT_COOKIE: &str = "listd_next";

/// `303 /signin`, and for a `GET` of a page (not a form's `POST`, whose URL is no page
/// to return to, nor `/me`, where signing in leads anyway) the page in a cookie that
/// only `/signin` reads, for an hour.
fn to_signin(state: &AppState, parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| *p != "/me" && matches!(parts.method, Method::GET | Method::HEAD))
        .and_then(ReturnPath::parse);
    let redirect = Redirect::to("/signin");
    let Some(next) = next else {
        return redirect.into_response();
    };
    // (the jar percent-encodes it: a path may hold `;`, `,` or `"`)
    let cookie = Cookie::build((NEXT_COOKIE, next.as_str().to_string()))
        .path("/signin")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.app.settings().public_url.starts_with("https://"))
        .max_age(time::Duration::hours(1))
        .build();
    (CookieJar::new().add(cookie), redirect).into_response()
}

/// The page to return to that a redirect to `/signin` left in its cookie, if any.
pub fn next_from_cookie(jar: &CookieJar) -> Option<ReturnPath> {
    jar.get(NEXT_COOKIE)
        .and_then(|c| ReturnPath::parse(c.value()))
}

/// Tells the browser to forget the page to return to (its sign-in request is made).
pub fn next_removal_cookie() -> Cookie<'static> {
    Cookie::build((NEXT_COOKIE, "")).path("/signin").build()
}

/// The fields of a form posted by a signed-in person, whose `csrf` field matched
/// their session.
pub struct CsrfForm {
    pub viewer: Viewer,
    pub fields: FormFields,
}

impl FromRequest<AppState> for CsrfForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let SignedIn(viewer) = SignedIn::from_request_parts(&mut parts, state).await?;
        let fields = FormFields::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|BadForm(e)| {
                page(
                    state,
                    StatusCode::BAD_REQUEST,
                    "web/message.html",
                    Message::form_unreadable(e),
                )
            })?;
        let submitted = fields.get("csrf").unwrap_or("");
        if !state.app.csrf_ok(&viewer, submitted) {
            return Err(page(
                state,
                StatusCode::FORBIDDEN,
                "web/message.html",
                Message::form_expired(),
            ));
        }
        Ok(CsrfForm { viewer, fields })
    }
}

/// Headers of every page that shows a signed-in person's data: no caching anywhere,
/// no framing, and nothing loaded from elsewhere.
pub async fn private_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}
