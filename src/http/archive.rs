//! The archive's pages (docs/contract.md#archive): threads, months, a message in its
//! thread, its raw form and attachments, search, the mbox download and the Atom feed.
//! Every page answers `Accept: application/json` with its content as JSON.
//!
//! Who may read is the app's decision ([`crate::app::App::may_read`]); this module
//! only finds out who is asking ([`viewer`]) and answers 404 to anyone who may not,
//! as for a list that does not exist.

use super::{AppState, page, unexpected};
use crate::app::AppError;
use crate::app::archive::{Hit, MessageView, ThreadPage};
use crate::domain::archive::{Month, message_id_path};
use crate::domain::{EmailAddress, List, ListRef};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/lists/{list}/archive", get(threads))
        .route("/lists/{list}/archive/", get(threads))
        .route("/lists/{list}/archive/{year}/{month}", get(month))
        .route("/lists/{list}/archive/m/{message_id}", get(message))
        .route("/lists/{list}/archive/m/{message_id}/raw", get(raw))
        .route(
            "/lists/{list}/archive/m/{message_id}/attachments/{index}",
            get(attachment),
        )
        .route("/lists/{list}/archive/search", get(search))
        .route("/lists/{list}/archive/feed.atom", get(feed))
        .route("/lists/{list}/archive.mbox", get(mbox))
}

/// Who is asking: the address of the session the browser holds, if any.
async fn viewer(state: &AppState, parts: &Parts) -> Option<EmailAddress> {
    let jar = axum_extra::extract::cookie::CookieJar::from_headers(&parts.headers);
    let cookie = jar.get(super::session::COOKIE)?;
    match state.app.session_of(cookie.value()).await {
        Ok(v) => v.map(|v| v.address),
        Err(e) => {
            crate::warn_limited!("reading the session for the archive failed", e);
            None
        }
    }
}

/// The list named in the path, if `parts`' viewer may read its archive.
async fn readable(state: &AppState, parts: &Parts, list: &str) -> Result<List, Response> {
    let viewer = viewer(state, parts).await;
    let found = match ListRef::parse(list) {
        Ok(r) => state.app.readable_archive(&r, viewer.as_ref()).await,
        Err(e) => Err(AppError::BadAddress(e)),
    };
    found.map_err(|e| failure(state, e))
}

fn failure(state: &AppState, e: AppError) -> Response {
    match e {
        AppError::NoSuchList(_) | AppError::BadAddress(_) => super::pages::list_not_found(state),
        AppError::NoSuchMessage(_) => page(
            state,
            StatusCode::NOT_FOUND,
            "web/message.html",
            super::views::Message::no_such_message(),
        ),
        e => unexpected(state, &e),
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Archive pages may show cleaned HTML from mail: nothing may load from elsewhere.
fn archive_page(state: &AppState, name: &str, ctx: serde_json::Value) -> Response {
    let mut response = page(state, StatusCode::OK, name, ctx);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self'; frame-ancestors 'none'"),
    );
    response
}

fn list_json(list: &List) -> serde_json::Value {
    json!({
        "name": list.settings.name,
        "list_id": list.address.list_id(),
        "address": list.address.to_string(),
    })
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    cursor: Option<String>,
}

async fn threads(
    State(state): State<AppState>,
    Path(list): Path<String>,
    Query(q): Query<PageQuery>,
    parts: Parts,
) -> Response {
    let list = match readable(&state, &parts, &list).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let (page_result, months) = tokio::join!(
        state.app.archive_threads(&list, q.cursor.as_deref()),
        state.app.archive_months(&list)
    );
    let (threads, months) = match (page_result, months) {
        (Ok(t), Ok(m)) => (t, m),
        (Err(e), _) | (_, Err(e)) => return failure(&state, e),
    };
    let base = format!("/lists/{}/archive", list.address.list_id());
    if wants_json(&parts.headers) {
        return thread_json(&state, &threads, &base);
    }
    let months: Vec<_> = months
        .iter()
        .map(|m| json!({"label": month_label(*m), "href": format!("{base}/{:04}/{:02}", m.year, m.month)}))
        .collect();
    archive_page(
        &state,
        "web/archive.html",
        json!({
            "title": format!("{} archive", list.settings.name),
            "heading": format!("{} archive", list.settings.name),
            "list": list_json(&list),
            "base": base,
            "threads": threads_ctx(&threads, &base),
            "next": threads.next.as_ref().map(|c| format!("{base}?cursor={c}")),
            "months": months,
            "feed": format!("{base}/feed.atom"),
        }),
    )
}

async fn month(
    State(state): State<AppState>,
    Path((list, year, month)): Path<(String, String, String)>,
    Query(q): Query<PageQuery>,
    parts: Parts,
) -> Response {
    let list = match readable(&state, &parts, &list).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Some(m) = Month::from_parts(&year, &month) else {
        return failure(&state, AppError::NoSuchMessage(format!("{year}/{month}")));
    };
    let threads = match state.app.archive_month(&list, m, q.cursor.as_deref()).await {
        Ok(t) => t,
        Err(e) => return failure(&state, e),
    };
    let base = format!("/lists/{}/archive", list.address.list_id());
    let here = format!("{base}/{:04}/{:02}", m.year, m.month);
    if wants_json(&parts.headers) {
        return thread_json(&state, &threads, &here);
    }
    archive_page(
        &state,
        "web/archive.html",
        json!({
            "title": format!("{} archive, {}", list.settings.name, month_label(m)),
            "heading": format!("{}: threads started in {}", list.settings.name, month_label(m)),
            "list": list_json(&list),
            "base": base,
            "threads": threads_ctx(&threads, &base),
            "next": threads.next.as_ref().map(|c| format!("{here}?cursor={c}")),
            "month": true,
        }),
    )
}

fn month_label(m: Month) -> String {
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    format!("{} {}", NAMES[usize::from(m.month - 1)], m.year)
}

fn thread_json(state: &AppState, page: &ThreadPage, here: &str) -> Response {
    let base = &state.app.settings().public_url;
    Json(json!({
        "threads": page.threads.iter().map(|t| json!({
            "message_id": t.message_id,
            "subject": t.subject,
            "messages": t.messages,
            "last_date": rfc3339(t.last_date),
        })).collect::<Vec<_>>(),
        "next": page.next.as_ref().map(|c| format!("{base}{here}?cursor={c}")),
    }))
    .into_response()
}

use axum::Json;

fn threads_ctx(page: &ThreadPage, base: &str) -> Vec<serde_json::Value> {
    page.threads
        .iter()
        .map(|t| {
            json!({
                "href": format!("{base}/m/{}", message_id_path(&t.message_id)),
                "subject": t.subject,
                "from_name": t.from_name,
                "messages": t.messages,
                "last_date": rfc3339(t.last_date),
                "last_day": day(t.last_date),
            })
        })
        .collect()
}

/// `2024-03-05`, for people.
fn day(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

fn minute(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:{:02} UTC", day(t), t.hour(), t.minute())
}

async fn message(
    State(state): State<AppState>,
    Path((list, message_id)): Path<(String, String)>,
    parts: Parts,
) -> Response {
    let list = match readable(&state, &parts, &list).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let view = match state.app.archived_message(&list, &message_id).await {
        Ok(v) => v,
        Err(e) => return failure(&state, e),
    };
    if wants_json(&parts.headers) {
        return message_json(&view);
    }
    let base = format!("/lists/{}/archive", list.address.list_id());
    let own = format!("{base}/m/{}", message_id_path(&view.message_id));
    let thread: Vec<_> = view
        .thread
        .iter()
        .map(|e| {
            json!({
                "href": format!("{base}/m/{}", message_id_path(&e.message_id)),
                "subject": e.subject,
                "from_name": e.from_name,
                "date": rfc3339(e.date),
                "when": minute(e.date),
                "depth": e.depth.min(12),
                "removed": e.removed,
                "current": e.message_id == view.message_id,
            })
        })
        .collect();
    let attachments: Vec<_> = view
        .attachments
        .iter()
        .map(|a| {
            json!({
                "href": format!("{own}/attachments/{}", a.index),
                "name": a.name,
                "content_type": a.content_type,
                "size": human_size(a.size),
            })
        })
        .collect();
    archive_page(
        &state,
        "web/archive_message.html",
        json!({
            "title": view.subject,
            "list": list_json(&list),
            "base": base,
            "subject": view.subject,
            "from_name": view.from_name,
            "date": rfc3339(view.date),
            "when": minute(view.date),
            "text": view.text,
            "html": view.html,
            "attachments": attachments,
            "raw": format!("{own}/raw"),
            "thread": thread,
            "in_thread": view.thread.len(),
        }),
    )
}

fn message_json(view: &MessageView) -> Response {
    Json(json!({
        "message_id": view.message_id,
        "subject": view.subject,
        "from_name": view.from_name,
        "date": rfc3339(view.date),
        "text": view.text,
        "thread": view.thread.iter().map(|e| json!({
            "message_id": e.message_id,
            "parent": e.parent,
            "subject": e.subject,
            "from_name": e.from_name,
            "date": rfc3339(e.date),
        })).collect::<Vec<_>>(),
    }))
    .into_response()
}

fn human_size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if bytes < 1024 * 1024 {
        format!("{} KB", bytes.div_ceil(1024))
    } else {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    }
}

async fn raw(
    State(state): State<AppState>,
    Path((list, message_id)): Path<(String, String)>,
    parts: Parts,
) -> Response {
    let list = match readable(&state, &parts, &list).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    match state.app.archived_raw(&list, &message_id).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => failure(&state, e),
    }
}

async fn attachment(
    State(state): State<AppState>,
    Path((list, message_id, index)): Path<(String, String, String)>,
    parts: Parts,
) -> Response {
    let list = match readable(&state, &parts, &list).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Ok(index) = index.parse::<usize>() else {
        return failure(&state, AppError::NoSuchMessage(message_id));
    };
    match state
        .app
        .archived_attachment(&list, &message_id, index)
        .await
    {
        Ok((name, bytes)) => {
            // always a download, never rendered by the browser (docs/standards.md#57)
            let ascii: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._- ()+,".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let encoded =
                percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC);
            let disposition =
                format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
            let mut response = (
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                bytes,
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Err(e) => failure(&state, e),
    }
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

async fn search(
    State(state): State<AppState>,
    Path(list): Path<String>,
    Query(q): Query<SearchQuery>,
    parts: Parts,
) -> Response {
    let list = match readable(&state, &parts, &list).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let query = q.q.unwrap_or_default();
    let hits = match state.app.search_archive(&list, &query).await {
        Ok(h) => h,
        Err(e) => return failure(&state, e),
    };
    if wants_json(&parts.headers) {
        return Json(json!({
            "results": hits.iter().map(|h| json!({
                "message_id": h.message_id,
                "subject": h.subject,
                "date": rfc3339(h.date),
                "snippet": h.snippet.replace("<<", "").replace(">>", ""),
            })).collect::<Vec<_>>(),
        }))
        .into_response();
    }
    let base = format!("/lists/{}/archive", list.address.list_id());
    archive_page(
        &state,
        "web/archive.html",
        json!({
            "title": format!("Search: {query}"),
            "heading": format!("{} archive", list.settings.name),
            "list": list_json(&list),
            "base": base,
            "query": query,
            "searched": !query.trim().is_empty(),
            "results": hits.iter().map(|h| hit_ctx(h, &base)).collect::<Vec<_>>(),
        }),
    )
}

/// A search result for the page: the snippet in pieces, the matched ones marked.
fn hit_ctx(h: &Hit, base: &str) -> serde_json::Value {
    let mut pieces = Vec::new();
    for (i, part) in h.snippet.split("<<").enumerate() {
        let (hit, rest) = match part.split_once(">>") {
            Some((hit, rest)) if i > 0 => (Some(hit), rest),
            _ => (None, part),
        };
        if let Some(hit) = hit {
            pieces.push(json!({"text": hit, "hit": true}));
        }
        if !rest.is_empty() {
            pieces.push(json!({"text": rest, "hit": false}));
        }
    }
    json!({
        "href": format!("{base}/m/{}", message_id_path(&h.message_id)),
        "subject": h.subject,
        "from_name": h.from_name,
        "date": rfc3339(h.date),
        "day": day(h.date),
        "snippet": pieces,
    })
}

#[derive(Debug, Deserialize)]
struct FeedQuery {
    token: Option<String>,
}

async fn feed(
    State(state): State<AppState>,
    Path(list): Path<String>,
    Query(q): Query<FeedQuery>,
    parts: Parts,
) -> Response {
    // a feed reader cannot sign in: a members-only feed is read with a personal token
    let list = match (&q.token, ListRef::parse(&list)) {
        (Some(token), Ok(r)) => match state.app.archive_by_feed_token(&r, token).await {
            Ok(l) => l,
            Err(e) => return failure(&state, e),
        },
        _ => match readable(&state, &parts, &list).await {
            Ok(l) => l,
            Err(r) => return r,
        },
    };
    let entries = match state.app.archive_feed(&list).await {
        Ok(e) => e,
        Err(e) => return failure(&state, e),
    };
    let archive = state.app.archive_url(&list);
    let to_atom = |t: OffsetDateTime| {
        atom_syndication::FixedDateTime::parse_from_rfc3339(&rfc3339(t)).unwrap_or_default()
    };
    let link = |href: String, rel: &str| {
        let mut l = atom_syndication::Link::default();
        l.set_href(href);
        l.set_rel(rel.to_string());
        l
    };
    let mut atom = atom_syndication::Feed::default();
    atom.set_title(format!("{} archive", list.settings.name));
    atom.set_id(archive.clone());
    atom.set_updated(to_atom(
        entries.first().map(|e| e.date).unwrap_or(list.created_at),
    ));
    atom.set_links(vec![link(archive.clone(), "alternate")]);
    atom.set_entries(
        entries
            .iter()
            .map(|e| {
                let url = state.app.archived_at_url(&list, &e.message_id);
                let mut entry = atom_syndication::Entry::default();
                entry.set_id(url.clone());
                entry.set_title(e.subject.clone());
                entry.set_updated(to_atom(e.date));
                entry.set_published(Some(to_atom(e.date)));
                let mut author = atom_syndication::Person::default();
                author.set_name(if e.from_name.is_empty() {
                    "unknown".to_string()
                } else {
                    e.from_name.clone()
                });
                entry.set_authors(vec![author]);
                entry.set_links(vec![link(url, "alternate")]);
                let mut content = atom_syndication::Content::default();
                content.set_content_type(Some("text".to_string()));
                content.set_value(Some(strip_controls(&e.text)));
                entry.set_content(Some(content));
                entry
            })
            .collect::<Vec<_>>(),
    );
    (
        [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        atom.to_string(),
    )
        .into_response()
}

/// XML 1.0 cannot hold most control characters, escaped or not.
fn strip_controls(text: &str) -> String {
    text.chars()
        .filter(|&c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect()
}

#[derive(Debug, Deserialize)]
struct MboxQuery {
    from: Option<String>,
    to: Option<String>,
}

async fn mbox(
    State(state): State<AppState>,
    Path(list): Path<String>,
    Query(q): Query<MboxQuery>,
    parts: Parts,
) -> Response {
    let list = match readable(&state, &parts, &list).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let month = |v: &Option<String>| match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => Month::parse(text).map(Some).ok_or(()),
    };
    let (Ok(from), Ok(to)) = (month(&q.from), month(&q.to)) else {
        return (
            StatusCode::BAD_REQUEST,
            "from and to are months written YYYY-MM\n",
        )
            .into_response();
    };
    let filename = format!("{}.mbox", list.address.list_id());
    // a page of messages at a time: the download holds no more than one page in memory
    // and no database connection between pages
    let app = state.app.clone();
    let stream = futures_util::stream::unfold(Some(None), move |after| {
        let (app, list) = (app.clone(), list.clone());
        async move {
            let after = after?;
            match app.archive_export_page(&list, from, to, after).await {
                Ok(page) => {
                    let mut buf = Vec::new();
                    for m in &page.messages {
                        let _ = crate::mail::mbox::write_entry(
                            &mut buf,
                            m.envelope_from.as_deref(),
                            m.date,
                            &m.raw,
                        );
                    }
                    let next = page.next.map(Some);
                    Some((Ok::<_, std::io::Error>(buf), next))
                }
                Err(e) => {
                    crate::error_limited!("mbox download failed", e);
                    Some((
                        Err(std::io::Error::other("the archive cannot be read")),
                        None,
                    ))
                }
            }
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/mbox"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}
