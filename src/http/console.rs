//! The console under `/admin` (docs/contract.md#console): the lists a signed-in owner
//! or moderator runs, a list's settings, its held posts, its members and the
//! subscriptions waiting for an owner.
//!
//! Every request is authorized per list by one app question ([`App::authority`]): a
//! list the viewer does not run answers `404`, the same as a list that does not
//! exist. Moderators decide held posts and waiting subscriptions; owners and site
//! admins also change settings and members. Every action is a `POST` with the
//! session's `csrf` field ([`CsrfForm`]), answered `303` to the page it came from; a
//! post someone already decided is `409` with who decided it and when. Every answer
//! carries the private-page headers (no caching, a CSP that allows nothing from
//! elsewhere).
//!
//! [`App::authority`]: crate::app::App::authority

use super::session::{CsrfForm, SignedIn, private_headers};
use super::views::{self, Link, Message};
use super::{AppState, page, to_completion, unexpected};
use crate::app::members::{
    AddHow, AddOutcome, MemberCursor, MemberQuery, RequestDecision, StatusFilter,
};
use crate::app::posts::{Moderation, ModerationOutcome};
use crate::app::sessions::Viewer;
use crate::app::staff::Authority;
use crate::app::{App, AppError};
use crate::domain::list::parse_addresses;
use crate::domain::{
    Archive, Delivery, Dmarc, EmailAddress, Footer, List, ListAddress, ListRef, ListSettings,
    MemberChange, MemberStatus, NonmemberAction, Posting, ReplyTo, Role, SettingError,
    Subscription,
};
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// Members on one page.
const PAGE_SIZE: usize = 50;
/// Members read per query while writing the CSV download.
const CSV_BATCH: usize = 2000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(home))
        .route("/admin/lists", post(create_list))
        .route("/admin/lists/{list}", get(settings).post(save_settings))
        .route("/admin/lists/{list}/held", get(held))
        .route("/admin/lists/{list}/held/{id}", post(decide_held))
        .route(
            "/admin/lists/{list}/members",
            get(members).post(change_members),
        )
        .route("/admin/lists/{list}/members.csv", get(members_csv))
        .route(
            "/admin/lists/{list}/requests",
            get(requests).post(decide_request),
        )
        .route_layer(axum::middleware::from_fn(private_headers))
}

/// A list the viewer runs, and what they may do there.
struct Run {
    list: List,
    authority: Authority,
}

/// The page for a list the viewer does not run: the same as for no list at all.
fn not_found(state: &AppState) -> Response {
    page(
        state,
        StatusCode::NOT_FOUND,
        "web/message.html",
        Message::not_found(Link::new("/admin", "Your lists")),
    )
}

/// Moderators may look, but only owners change settings and members.
fn owners_only(state: &AppState, run: &Run) -> Response {
    page(
        state,
        StatusCode::FORBIDDEN,
        "web/message.html",
        Message::new(
            "Only the list's owners can do this",
            "Moderators decide held posts and waiting subscriptions; the owners manage settings and members.",
            held_posts(&run.list),
        ),
    )
}

/// The way back to a list's held posts.
fn held_posts(list: &List) -> Link {
    Link::new(
        format!("/admin/lists/{}/held", list.address.list_id()),
        "Held posts",
    )
}

/// The list named in the path, if the viewer runs it; else the `404` page.
async fn run_list(state: &AppState, viewer: &Viewer, list: &str) -> Result<Run, Response> {
    let Ok(list_ref) = ListRef::parse(list) else {
        return Err(not_found(state));
    };
    let list = match state.app.get_list(&list_ref).await {
        Ok(l) => l,
        Err(AppError::NoSuchList(_)) => return Err(not_found(state)),
        Err(e) => return Err(unexpected(state, &e)),
    };
    match state.app.authority(&list, &viewer.address).await {
        Ok(Authority::None) => Err(not_found(state)),
        Ok(authority) => Ok(Run { list, authority }),
        Err(e) => Err(unexpected(state, &e)),
    }
}

/// For a page of a list's console: the signed-in viewer (else to /signin) and the list
/// of the path's `{list}` that they run (else 404).
struct RunningList {
    viewer: Viewer,
    run: Run,
}

impl FromRequestParts<AppState> for RunningList {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let SignedIn(viewer) = SignedIn::from_request_parts(parts, state).await?;
        let Path(list) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found(state))?;
        let run = run_list(state, &viewer, &list).await?;
        Ok(RunningList { viewer, run })
    }
}

/// What every console page of a list shows: its name, address, the viewer's rights
/// and the counts in the navigation.
async fn list_context(state: &AppState, viewer: &Viewer, run: &Run, tab: &str) -> Value {
    let counts = state
        .app
        .lists_run_by(&viewer.address)
        .await
        .ok()
        .and_then(|all| {
            all.into_iter()
                .find(|l| l.list_id == run.list.address.list_id())
        });
    json!({
        "csrf": viewer.csrf,
        "viewer": viewer.address.to_string(),
        "tab": tab,
        "owner": run.authority.may_administer(),
        "list": {
            "name": run.list.settings.name,
            "address": run.list.address.to_string(),
            "list_id": run.list.address.list_id(),
            "held": counts.as_ref().map(|c| c.held).unwrap_or(0),
            "waiting": counts.as_ref().map(|c| c.waiting).unwrap_or(0),
        },
    })
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        b.extend(e);
    }
    base
}

fn see_other(path: String) -> Response {
    Redirect::to(&path).into_response()
}

// ---- /admin ----

#[derive(serde::Deserialize)]
struct HomeQuery {
    created: Option<String>,
}

async fn home(
    State(state): State<AppState>,
    SignedIn(viewer): SignedIn,
    Query(q): Query<HomeQuery>,
) -> Response {
    home_with(
        &state,
        &viewer,
        StatusCode::OK,
        q.created.as_deref(),
        None,
        ("", ""),
    )
    .await
}

async fn home_with(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    created: Option<&str>,
    error: Option<(&str, &str)>,
    typed: (&str, &str),
) -> Response {
    let lists = match state.app.lists_run_by(&viewer.address).await {
        Ok(l) => l,
        Err(e) => return unexpected(state, &e),
    };
    page(
        state,
        status,
        "web/admin.html",
        json!({
            "csrf": viewer.csrf,
            "viewer": viewer.address.to_string(),
            "lists": lists,
            "site_admin": viewer.is_site_admin,
            "created": created,
            "error": error.map(|(field, message)| json!({"field": field, "message": message})),
            "address": typed.0,
            "name": typed.1,
        }),
    )
}

/// `POST /admin/lists`: a site admin creates a list (fields `address` and `name`) and
/// becomes its first owner.
async fn create_list(State(state): State<AppState>, form: CsrfForm) -> Response {
    let CsrfForm { viewer, fields } = form;
    if !viewer.is_site_admin {
        return not_found(&state);
    }
    let typed_address = fields.get("address").unwrap_or("").trim().to_string();
    let typed_name = fields.get("name").unwrap_or("").trim().to_string();
    let bad = |field: &'static str, message: String| {
        let (state, viewer) = (state.clone(), viewer.clone());
        let (a, n) = (typed_address.clone(), typed_name.clone());
        async move {
            let message = super::subscribe::sentence(&message);
            home_with(
                &state,
                &viewer,
                StatusCode::BAD_REQUEST,
                None,
                Some((field, &message)),
                (&a, &n),
            )
            .await
        }
    };
    let address = match ListAddress::parse(&typed_address) {
        Ok(a) => a,
        Err(e) => return bad("address", e.to_string()).await,
    };
    let mut settings = ListSettings::defaults_for(&address);
    if !typed_name.is_empty()
        && let Err(e) = settings.apply("name", &typed_name)
    {
        return bad("name", e.to_string()).await;
    }
    let app = state.app.clone();
    let owner = viewer.address.clone();
    let a = address.clone();
    match to_completion(async move { app.create_list(&a, &settings, &[owner]).await }).await {
        Ok(info) => see_other(format!("/admin/lists/{}?created=1", info.list_id)),
        Err(AppError::ListExists(_)) => {
            bad("address", format!("a list {address} already exists")).await
        }
        Err(e) => unexpected(&state, &e),
    }
}

// ---- settings ----

/// How a setting is edited in the form.
enum Kind {
    Choice(Vec<&'static str>),
    Number,
    Text,
    Long,
}

fn kind_of(key: &str) -> Kind {
    let names = |all: Vec<&'static str>| Kind::Choice(all);
    match key {
        "subscription" => names(Subscription::ALL.iter().map(|v| v.as_str()).collect()),
        "posting" => names(Posting::ALL.iter().map(|v| v.as_str()).collect()),
        "nonmember-action" => names(NonmemberAction::ALL.iter().map(|v| v.as_str()).collect()),
        "reply-to" => names(ReplyTo::ALL.iter().map(|v| v.as_str()).collect()),
        "dmarc" => names(Dmarc::ALL.iter().map(|v| v.as_str()).collect()),
        "archive" => names(Archive::ALL.iter().map(|v| v.as_str()).collect()),
        "footer" => names(Footer::ALL.iter().map(|v| v.as_str()).collect()),
        "advertised" | "digest" => names(vec!["true", "false"]),
        "digest-frequency" => names(
            crate::domain::digest::Frequency::ALL
                .iter()
                .map(|v| v.as_str())
                .collect(),
        ),
        k if k.starts_with("bounce-") || k.ends_with("-kb") => Kind::Number,
        "description" | "accept-senders" => Kind::Long,
        _ => Kind::Text,
    }
}

/// A sentence of help under a field.
fn help_of(key: &str) -> &'static str {
    match key {
        "subscription" => {
            "confirm: the subscriber's mailbox confirms. confirm-then-moderate: then an owner approves."
        }
        "posting" => {
            "open: anyone. members: members post, others as below. moderated: every post is held. announce: owners and moderators only."
        }
        "nonmember-action" => "What happens to a post from someone who is not a member.",
        "subject-prefix" => "Put before every subject, e.g. [dev]; empty for none.",
        "reply-to" => "Where replies go: to the poster, or to the list.",
        "dmarc" => {
            "when-needed rewrites From only for authors whose domain requires it (recommended)."
        }
        "advertised" => "yes: shown on the public index of lists.",
        "archive" => {
            "public: anyone reads the archive. members: members, owners and moderators only. off: no archive pages."
        }
        "footer" => "Each copy ends with a short footer and the member's own unsubscribe link.",
        "footer-text" => "The footer's text; empty for the built-in one.",
        "digest" => {
            "yes: members who chose a digest get digests. no: everyone gets single copies (what waits is sent first)."
        }
        "digest-size-kb" => "A digest goes out as soon as the posts waiting reach this size (KiB).",
        "digest-frequency" => {
            "Posts still waiting go out at 00:00 UTC: every day, on Mondays, or on the 1st."
        }
        "accept-senders" => {
            "Addresses whose posts are accepted as a member's would be, separated by commas or new lines."
        }
        "owners" => {
            "Owners change settings and members. Addresses separated by commas or new lines."
        }
        "moderators" => "Moderators decide held posts and waiting subscriptions.",
        _ => "",
    }
}

/// A setting's current value as the form shows it.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(", "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The settings form's fields: every setting a list has, then owners and moderators.
/// `typed` holds what was submitted (shown again after an error), `error` the field
/// that was wrong and why.
fn settings_fields(
    settings: &ListSettings,
    owners: &str,
    moderators: &str,
    typed: Option<&super::client::FormFields>,
    error: Option<(&str, &str)>,
) -> Vec<Value> {
    let current = serde_json::to_value(settings).unwrap_or(Value::Null);
    let keys = ListSettings::KEYS
        .iter()
        .copied()
        .chain(["owners", "moderators"]);
    keys.map(|key| {
        let stored = match key {
            "owners" => owners.to_string(),
            "moderators" => moderators.to_string(),
            _ => value_text(&current[key.replace('-', "_")]),
        };
        let value = typed
            .and_then(|t| t.get(key))
            .map(str::to_string)
            .unwrap_or(stored);
        let (kind, choices) = match kind_of(key) {
            Kind::Choice(c) => ("choice", c),
            Kind::Number => ("number", vec![]),
            Kind::Long => ("long", vec![]),
            Kind::Text if key == "owners" || key == "moderators" => ("long", vec![]),
            Kind::Text => ("text", vec![]),
        };
        let mut label = key.replace('-', " ");
        label[..1].make_ascii_uppercase();
        if key == "dmarc" {
            label = "DMARC".to_string();
        }
        json!({
            "key": key,
            "label": label,
            "kind": kind,
            "choices": choices,
            "value": value,
            "help": help_of(key),
            "error": error.filter(|(k, _)| *k == key).map(|(_, m)| m),
        })
    })
    .collect()
}

#[derive(serde::Deserialize)]
struct SettingsQuery {
    saved: Option<String>,
    created: Option<String>,
}

async fn settings(
    State(state): State<AppState>,
    RunningList { viewer, run }: RunningList,
    Query(q): Query<SettingsQuery>,
) -> Response {
    let notice = views::settings_notice(q.created.is_some(), q.saved.is_some());
    settings_page(&state, &viewer, &run, StatusCode::OK, notice, None, None).await
}

async fn settings_page(
    state: &AppState,
    viewer: &Viewer,
    run: &Run,
    status: StatusCode,
    notice: Option<&str>,
    typed: Option<&super::client::FormFields>,
    error: Option<(&str, &str)>,
) -> Response {
    let staff = async |role| state.app.staff(&run.list, role).await.map(|a| a.join("\n"));
    let (owners, moderators) = match (staff(Role::Owner).await, staff(Role::Moderator).await) {
        (Ok(o), Ok(m)) => (o, m),
        (Err(e), _) | (_, Err(e)) => return unexpected(state, &e),
    };
    let fields = settings_fields(&run.list.settings, &owners, &moderators, typed, error);
    let ctx = merge(
        list_context(state, viewer, run, "settings").await,
        json!({"fields": fields, "notice": notice,
               "error": error.map(|(k, m)| json!({"field": k, "message": m})),
               "warnings": run.list.settings.warnings()}),
    );
    page(state, status, "web/admin_list.html", ctx)
}

async fn save_settings(
    State(state): State<AppState>,
    Path(list): Path<String>,
    form: CsrfForm,
) -> Response {
    let CsrfForm { viewer, fields } = form;
    let run = match run_list(&state, &viewer, &list).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if !run.authority.may_administer() {
        return owners_only(&state, &run);
    }
    let pairs: Vec<String> = ListSettings::KEYS
        .iter()
        .filter_map(|k| fields.get(k).map(|v| format!("{k}={v}")))
        .collect();
    let staff = |key: &str| -> Result<Option<Vec<EmailAddress>>, (String, String)> {
        fields
            .get(key)
            .map(parse_addresses)
            .transpose()
            .map_err(|e| (key.to_string(), e))
    };
    let fail = async |key: &str, message: &str| {
        let message = super::subscribe::sentence(message);
        settings_page(
            &state,
            &viewer,
            &run,
            StatusCode::BAD_REQUEST,
            None,
            Some(&fields),
            Some((key, &message)),
        )
        .await
    };
    let (owners, moderators) = match (staff("owners"), staff("moderators")) {
        (Ok(o), Ok(m)) => (o, m),
        (Err((k, m)), _) | (_, Err((k, m))) => return fail(&k, &m).await,
    };
    let app = state.app.clone();
    let list_ref = ListRef::Address(run.list.address.clone());
    let outcome = to_completion(async move {
        app.update_list_and_staff(&list_ref, &pairs, owners.as_deref(), moderators.as_deref())
            .await
    })
    .await;
    match outcome {
        Ok(_) => see_other(format!(
            "/admin/lists/{}?saved=1",
            run.list.address.list_id()
        )),
        Err(AppError::BadSetting(e)) => {
            let key = match &e {
                SettingError::BadValue { key, .. } | SettingError::UnknownKey(key) => key.clone(),
                _ => String::new(),
            };
            fail(&key, &e.to_string()).await
        }
        Err(e) => unexpected(&state, &e),
    }
}

// ---- held posts ----

#[derive(serde::Deserialize)]
struct HeldQuery {
    done: Option<String>,
    id: Option<i64>,
}

async fn held(
    State(state): State<AppState>,
    RunningList { viewer, run }: RunningList,
    Query(q): Query<HeldQuery>,
) -> Response {
    let (posts, decided) = match (
        state.app.held_on_list(&run.list).await,
        state.app.recent_decisions(&run.list).await,
    ) {
        (Ok(p), Ok(d)) => (p, d),
        (Err(e), _) | (_, Err(e)) => return unexpected(&state, &e),
    };
    let notice = views::held_notice(q.done.as_deref(), q.id);
    let ctx = merge(
        list_context(&state, &viewer, &run, "held").await,
        json!({"posts": posts, "decided": decided, "notice": notice}),
    );
    page(&state, StatusCode::OK, "web/admin_held.html", ctx)
}

async fn decide_held(
    State(state): State<AppState>,
    Path((list, id)): Path<(String, String)>,
    form: CsrfForm,
) -> Response {
    let CsrfForm { viewer, fields } = form;
    let run = match run_list(&state, &viewer, &list).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<i64>() else {
        return not_found(&state);
    };
    let action = fields.get("action").unwrap_or("");
    let decision = match action {
        "approve" => Moderation::Approve,
        "reject" => Moderation::Reject,
        "discard" => Moderation::Discard,
        "accept-sender" => Moderation::AcceptSender,
        _ => {
            return page(
                &state,
                StatusCode::BAD_REQUEST,
                "web/message.html",
                Message::new(
                    "Error: unknown action",
                    "Use approve, reject, discard or accept-sender.",
                    held_posts(&run.list),
                ),
            );
        }
    };
    let reason = fields.get("reason").map(str::to_string);
    let app = state.app.clone();
    let by = viewer.address.to_string();
    let list = run.list.clone();
    let outcome = to_completion(async move {
        app.moderate_on_list(&list, id, decision, reason.as_deref(), &by)
            .await
    })
    .await;
    let back = format!("/admin/lists/{}/held", run.list.address.list_id());
    match outcome {
        Ok(ModerationOutcome::AlreadyDecided(d)) => page(
            &state,
            StatusCode::CONFLICT,
            "web/message.html",
            Message::new(
                format!("Message {id} was already decided"),
                format!("Nothing was changed: it was {d}."),
                held_posts(&run.list),
            ),
        ),
        Ok(_) => see_other(format!("{back}?done={action}&id={id}")),
        Err(AppError::NoSuchPost(_)) => not_found(&state),
        Err(AppError::Refused(why)) => page(
            &state,
            StatusCode::CONFLICT,
            "web/message.html",
            Message::new(
                format!("Message {id} cannot be approved"),
                super::subscribe::sentence(&why),
                held_posts(&run.list),
            ),
        ),
        Err(e) => unexpected(&state, &e),
    }
}

// ---- members ----

#[derive(serde::Deserialize, Default)]
struct MembersQuery {
    q: Option<String>,
    status: Option<String>,
    role: Option<String>,
    after: Option<String>,
    added: Option<u32>,
    invited: Option<u32>,
    skipped: Option<u32>,
    done: Option<String>,
}

/// A page cursor in a link: `role:address-key`.
fn cursor_text(c: &MemberCursor) -> String {
    format!("{}:{}", c.1, c.0)
}

fn parse_cursor(text: &str) -> Option<MemberCursor> {
    let (role, key) = text.split_once(':')?;
    Some((key.to_string(), role.parse().ok()?))
}

async fn members(
    State(state): State<AppState>,
    RunningList { viewer, run }: RunningList,
    Query(q): Query<MembersQuery>,
) -> Response {
    if !run.authority.may_administer() {
        return owners_only(&state, &run);
    }
    members_page(&state, &viewer, &run, q, StatusCode::OK, None).await
}

async fn members_page(
    state: &AppState,
    viewer: &Viewer,
    run: &Run,
    q: MembersQuery,
    status: StatusCode,
    error: Option<(&str, &str)>,
) -> Response {
    let text = q.q.clone().unwrap_or_default();
    let query = member_query(&q, &text);
    let after = q.after.as_deref().and_then(parse_cursor);
    let list_ref = ListRef::Address(run.list.address.clone());
    let mut status = status;
    let mut search_error = None;
    let (page_rows, next) = match state
        .app
        .search_members(&list_ref, &query, after.as_ref(), PAGE_SIZE)
        .await
    {
        Ok(p) => p,
        Err(AppError::BadSetting(SettingError::BadValue { problem, .. })) => {
            status = StatusCode::BAD_REQUEST;
            search_error = Some(super::subscribe::sentence(&problem));
            (Vec::new(), None)
        }
        Err(e) => return unexpected(state, &e),
    };
    let status_value = q.status.clone().unwrap_or_else(|| "subscribed".into());
    let role_value = q.role.clone().unwrap_or_default();
    let params = [
        ("q", text.as_str()),
        ("status", &status_value),
        ("role", &role_value),
    ];
    let link = |after: Option<String>| members_link(run, &params, after.as_deref());
    let rows: Vec<Value> = page_rows
        .iter()
        .map(|m| {
            json!({"address": m.address, "name": m.name, "role": m.role, "status": m.status,
                   "delivery": m.delivery})
        })
        .collect();
    let statuses: Vec<&str> = MemberStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .chain(["disabled", "all"])
        .collect();
    let ctx = merge(
        list_context(state, viewer, run, "members").await,
        json!({
            "members": rows,
            "q": text,
            "status": status_value,
            "role": role_value,
            "statuses": statuses,
            "roles": Role::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "next": next.map(|n| link(Some(cursor_text(&n)))),
            "first": after.is_some().then(|| link(None)),
            "notice": members_notice(&q),
            "error": error.map(|(k, m)| json!({"field": k, "message": m})),
            "search_error": search_error,
        }),
    );
    page(state, status, "web/admin_members.html", ctx)
}

/// The search the members page's query asks for: subscribed members unless it names
/// another status.
fn member_query(q: &MembersQuery, text: &str) -> MemberQuery {
    let status_filter = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => StatusFilter::Status(MemberStatus::Subscribed),
        Some(s) => s.parse().unwrap_or(StatusFilter::All),
    };
    let role = q
        .role
        .as_deref()
        .filter(|r| !r.is_empty())
        .and_then(|r| r.parse::<Role>().ok());
    MemberQuery {
        text: Some(text.to_string()),
        role,
        status: Some(status_filter),
    }
}

/// A link to the members page with these (non-empty) parameters, from `after` on.
fn members_link(run: &Run, params: &[(&str, &str)], after: Option<&str>) -> String {
    let qs: Vec<String> = params
        .iter()
        .copied()
        .chain(after.map(|a| ("after", a)))
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    format!(
        "/admin/lists/{}/members?{}",
        run.list.address.list_id(),
        qs.join("&")
    )
}

/// What the last change on the members page did, from the redirect's query.
fn members_notice(q: &MembersQuery) -> Option<String> {
    match (q.added, q.invited, q.skipped, q.done.as_deref()) {
        (Some(a), i, s, _) => Some(format!(
            "{a} added, {} invited{}.",
            i.unwrap_or(0),
            match s.unwrap_or(0) {
                0 => String::new(),
                n => format!(
                    ", {n} not added (already members, or they left: only an invitation brings them back)"
                ),
            }
        )),
        (_, _, _, Some("remove")) => Some("Removed.".to_string()),
        (_, _, _, Some("pause")) => Some("Delivery is paused.".to_string()),
        (_, _, _, Some("resume")) => Some("Delivery is on again.".to_string()),
        (_, _, _, Some("none")) => Some("Nothing to change.".to_string()),
        _ => None,
    }
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn change_members(
    State(state): State<AppState>,
    Path(list): Path<String>,
    form: CsrfForm,
) -> Response {
    let CsrfForm { viewer, fields } = form;
    let run = match run_list(&state, &viewer, &list).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if !run.authority.may_administer() {
        return owners_only(&state, &run);
    }
    let refuse = |field: &'static str, msg: String| {
        let (state, viewer, run) = (&state, &viewer, &run);
        async move {
            let q = MembersQuery::default();
            let error = Some((field, msg.as_str()));
            members_page(state, viewer, run, q, StatusCode::BAD_REQUEST, error).await
        }
    };
    let action = fields.get("action").unwrap_or("").to_string();
    let back = format!("/admin/lists/{}/members", run.list.address.list_id());
    let addresses = match parse_addresses(fields.get("address").unwrap_or("")) {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => return refuse("address", "Error: enter at least one address.".into()).await,
        Err(e) => return refuse("address", super::subscribe::sentence(&e)).await,
    };
    let app = state.app.clone();
    let list_ref = ListRef::Address(run.list.address.clone());
    let outcome =
        to_completion(async move { change_members_by(&app, &list_ref, &action, &addresses).await })
            .await;
    match outcome {
        Ok(query) => see_other(format!("{back}?{query}")),
        Err(AppError::Refused(why)) => refuse("action", super::subscribe::sentence(&why)).await,
        Err(e) => unexpected(&state, &e),
    }
}

/// Carries out an action of the members page's form on these addresses; answers the
/// query of the page to return to, which tells what was done.
async fn change_members_by(
    app: &App,
    list_ref: &ListRef,
    action: &str,
    addresses: &[EmailAddress],
) -> Result<String, AppError> {
    match action {
        "add" | "invite" => {
            let how = if action == "invite" {
                AddHow::Invite
            } else {
                AddHow::Add { quiet: false }
            };
            let done = app
                .add_members(list_ref, addresses, Role::Member, how)
                .await?;
            let count = |f: fn(&AddOutcome) -> bool| done.iter().filter(|(_, o)| f(o)).count();
            Ok(format!(
                "added={}&invited={}&skipped={}",
                count(|o| *o == AddOutcome::Added),
                count(|o| *o == AddOutcome::Invited),
                count(|o| !matches!(o, AddOutcome::Added | AddOutcome::Invited)),
            ))
        }
        "remove" => {
            app.remove_members(list_ref, addresses).await?;
            Ok("done=remove".to_string())
        }
        "pause" | "resume" => {
            let change = MemberChange {
                delivery: Some(if action == "pause" {
                    Delivery::Disabled
                } else {
                    Delivery::Enabled
                }),
                ..MemberChange::default()
            };
            let mut changed = false;
            for a in addresses {
                match app.update_member(list_ref, a, &change).await {
                    Ok(_) => changed = true,
                    Err(AppError::NoSuchMember { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(format!("done={}", if changed { action } else { "none" }))
        }
        _ => Err(AppError::Refused(
            "use add, invite, remove, pause or resume".into(),
        )),
    }
}

/// `members.csv`: the subscribed members with their consent record, as `members
/// export` writes them, read and sent a batch at a time (keyset pages), so a list of
/// any size is never held in memory whole.
async fn members_csv(
    State(state): State<AppState>,
    RunningList { run, .. }: RunningList,
) -> Response {
    if !run.authority.may_administer() {
        return owners_only(&state, &run);
    }
    let header = csv_bytes(&[crate::domain::roster::EXPORT_COLUMNS
        .map(str::to_string)
        .to_vec()]);
    let list_ref = ListRef::Address(run.list.address.clone());
    let app = state.app.clone();
    let query = MemberQuery {
        text: None,
        role: Some(Role::Member),
        status: Some(StatusFilter::Status(MemberStatus::Subscribed)),
    };
    // the state: the cursor of the next batch, or None when the last was sent
    let batches =
        futures_util::stream::unfold(Some(None), move |cursor: Option<Option<MemberCursor>>| {
            let (app, list_ref, query) = (app.clone(), list_ref.clone(), query.clone());
            async move {
                let after = cursor?;
                match app
                    .search_members(&list_ref, &query, after.as_ref(), CSV_BATCH)
                    .await
                {
                    Ok((rows, next)) => {
                        let rows: Vec<Vec<String>> =
                            rows.iter().map(crate::domain::roster::export_row).collect();
                        let next_state = next.map(Some);
                        Some((Ok::<_, std::io::Error>(csv_bytes(&rows)), next_state))
                    }
                    Err(e) => {
                        crate::error_limited!("writing a members CSV failed", e);
                        Some((
                            Err(std::io::Error::other("the members could not be read")),
                            None,
                        ))
                    }
                }
            }
        });
    let body = futures_util::stream::once(async move { Ok(header) }).chain(batches);
    let filename = format!("{}-members.csv", run.list.address.list_id());
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

use futures_util::StreamExt;

fn csv_bytes(rows: &[Vec<String>]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        // writing to memory cannot fail
        let _ = w.write_record(r);
    }
    w.into_inner().unwrap_or_default()
}

// ---- waiting subscriptions ----

#[derive(serde::Deserialize)]
struct RequestsQuery {
    done: Option<String>,
}

async fn requests(
    State(state): State<AppState>,
    RunningList { viewer, run }: RunningList,
    Query(q): Query<RequestsQuery>,
) -> Response {
    let waiting = match state.app.waiting_requests(&run.list).await {
        Ok(w) => w,
        Err(e) => return unexpected(&state, &e),
    };
    let notice = views::requests_notice(q.done.as_deref());
    let rows: Vec<Value> = waiting
        .iter()
        .map(|m| {
            json!({"address": m.address, "confirmed_at": m.consent.confirmed_at
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())})
        })
        .collect();
    let ctx = merge(
        list_context(&state, &viewer, &run, "requests").await,
        json!({"requests": rows, "notice": notice,
               "moderated": run.list.settings.subscription == Subscription::ConfirmThenModerate}),
    );
    page(&state, StatusCode::OK, "web/admin_requests.html", ctx)
}

async fn decide_request(
    State(state): State<AppState>,
    Path(list): Path<String>,
    form: CsrfForm,
) -> Response {
    let CsrfForm { viewer, fields } = form;
    let run = match run_list(&state, &viewer, &list).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let back = format!("/admin/lists/{}/requests", run.list.address.list_id());
    let approve = match fields.get("action") {
        Some("approve") => true,
        Some("refuse") => false,
        _ => {
            return page(
                &state,
                StatusCode::BAD_REQUEST,
                "web/message.html",
                Message::new(
                    "Error: unknown action",
                    "Use approve or refuse.",
                    Link::new(back, "Waiting subscriptions"),
                ),
            );
        }
    };
    let Ok(address) = EmailAddress::parse(fields.get("address").unwrap_or("")) else {
        return see_other(format!("{back}?done=none"));
    };
    let app = state.app.clone();
    let list = run.list.clone();
    match to_completion(async move { app.decide_request(&list, &address, approve).await }).await {
        Ok(RequestDecision::Approved) => see_other(format!("{back}?done=approve")),
        Ok(RequestDecision::Refused) => see_other(format!("{back}?done=refuse")),
        Ok(RequestDecision::NotWaiting) => see_other(format!("{back}?done=none")),
        Err(e) => unexpected(&state, &e),
    }
}
