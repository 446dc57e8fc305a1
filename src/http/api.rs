//! The JSON admin API under `/api/v1` (docs/contract.md#http): the CLI's operations on lists,
//! members and held posts, for `Authorization: Bearer <token>` (tokens from
//! `listd api-tokens create`). Errors are `{"error": {"code": …, "message": …}}`.

use super::AppState;
use crate::app::AppError;
use crate::app::members::{AddHow, StatusFilter};
use crate::app::posts::{Moderation, ModerationOutcome};
use crate::domain::{EmailAddress, ListAddress, ListRef, ListSettings, Member, Role};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// Every route of the API, as the OpenAPI document lists them (a test holds the two
/// together).
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/api/v1/lists", &["get", "post"]),
    ("/api/v1/lists/{list}", &["get", "patch", "delete"]),
    ("/api/v1/lists/{list}/members", &["get", "post"]),
    (
        "/api/v1/lists/{list}/members/{address}",
        &["get", "patch", "delete"],
    ),
    ("/api/v1/held", &["get"]),
    ("/api/v1/held/{id}", &["get"]),
    ("/api/v1/held/{id}/{decision}", &["post"]),
];

pub fn router(state: AppState) -> Router<AppState> {
    let guarded = Router::new()
        .route("/api/v1/lists", get(lists).post(create_list))
        .route(
            "/api/v1/lists/{list}",
            get(show_list).patch(update_list).delete(delete_list),
        )
        .route(
            "/api/v1/lists/{list}/members",
            get(members).post(add_members),
        )
        .route(
            "/api/v1/lists/{list}/members/{address}",
            get(show_member).patch(update_member).delete(remove_member),
        )
        .route("/api/v1/held", get(held))
        .route("/api/v1/held/{id}", get(show_held))
        .route("/api/v1/held/{id}/{decision}", post(moderate))
        .route_layer(axum::middleware::from_fn_with_state(state, authorize));
    Router::new()
        .merge(guarded)
        .route("/api/v1/openapi.json", get(openapi))
}

/// An API error: a status, a stable code and a sentence.
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"error": {"code": self.1, "message": self.2}})),
        )
            .into_response()
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let (status, code) = match &e {
            AppError::NoSuchList(_) | AppError::NoSuchMember { .. } | AppError::NoSuchPost(_) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            AppError::ListExists(_) => (StatusCode::CONFLICT, "exists"),
            AppError::BadAddress(_) | AppError::BadSetting(_) => {
                (StatusCode::BAD_REQUEST, "invalid")
            }
            AppError::Refused(_) => (StatusCode::CONFLICT, "refused"),
            AppError::Unexpected(_) => {
                crate::error_limited!("API request failed", e);
                return ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong; it has been logged".into(),
                );
            }
        };
        ApiError(status, code, e.to_string())
    }
}

fn invalid(field: &str, problem: impl std::fmt::Display) -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        "invalid",
        format!("`{field}`: {problem}"),
    )
}

type ApiResult = Result<Response, ApiError>;

/// A JSON request body; anything that is not (a missing or wrong Content-Type,
/// malformed JSON) gets the API's error body rather than axum's plain text.
struct Body(Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<Value>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(invalid("body", e.body_text())),
        }
    }
}

/// A held post's id from the path.
fn post_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| invalid("id", format!("`{text}` is not a message id")))
}

/// The token of an `Authorization: Bearer <token>` value; the scheme name is
/// case-insensitive (RFC 9110 §11.1), so `bearer` and `BEARER` are as good.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The name of the token a request came with: who the API's decisions are recorded as.
#[derive(Debug, Clone)]
struct TokenName(String);

async fn authorize(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    match state.app.check_api_token(token).await {
        Ok(Some(name)) => {
            request.extensions_mut().insert(TokenName(name));
            next.run(request).await
        }
        Ok(None) => {
            let mut r = ApiError(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid `Authorization: Bearer <token>` header is required (listd api-tokens create)"
                    .into(),
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("a header value"),
            );
            r
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn list_ref(list: &str) -> Result<ListRef, ApiError> {
    ListRef::parse(list).map_err(|e| invalid("list", e))
}

fn address(text: &str, field: &str) -> Result<EmailAddress, ApiError> {
    EmailAddress::parse(text).map_err(|e| invalid(field, e))
}

async fn lists(State(state): State<AppState>) -> ApiResult {
    Ok(Json(state.app.lists(false).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewList {
    address: String,
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    owners: Vec<String>,
    /// Other settings, as for `lists set` (`"posting": "open"`).
    #[serde(default)]
    settings: serde_json::Map<String, Value>,
}

async fn create_list(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let new: NewList = serde_json::from_value(body).map_err(|e| invalid("body", e))?;
    let list_address = ListAddress::parse(&new.address).map_err(|e| invalid("address", e))?;
    let mut settings = ListSettings::defaults_for(&list_address);
    let mut pairs = settings_pairs(&new.settings)?;
    if let Some(n) = new.name {
        pairs.push(("name".into(), n));
    }
    if let Some(d) = new.description {
        pairs.push(("description".into(), d));
    }
    for (key, value) in &pairs {
        settings.apply(key, value).map_err(AppError::from)?;
    }
    let owners = new
        .owners
        .iter()
        .map(|o| address(o, "owners"))
        .collect::<Result<Vec<_>, _>>()?;
    let info = state
        .app
        .create_list(&list_address, &settings, &owners)
        .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// `{"posting": "open", "bounce-score-threshold": 3}` as (key, value) pairs.
fn settings_pairs(map: &serde_json::Map<String, Value>) -> Result<Vec<(String, String)>, ApiError> {
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            Value::Number(n) => Ok((k.clone(), n.to_string())),
            Value::Bool(b) => Ok((k.clone(), b.to_string())),
            _ => Err(invalid(k, "must be a string, a number or a boolean")),
        })
        .collect()
}

async fn show_list(State(state): State<AppState>, Path(list): Path<String>) -> ApiResult {
    Ok(Json(state.app.list_info(&list_ref(&list)?).await?).into_response())
}

async fn update_list(
    State(state): State<AppState>,
    Path(list): Path<String>,
    Body(body): Body,
) -> ApiResult {
    let Value::Object(map) = body else {
        return Err(invalid("body", "must be an object of settings"));
    };
    let pairs: Vec<String> = settings_pairs(&map)?
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Ok(Json(state.app.update_list(&list_ref(&list)?, &pairs).await?).into_response())
}

async fn delete_list(State(state): State<AppState>, Path(list): Path<String>) -> ApiResult {
    state.app.delete_list(&list_ref(&list)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberQuery {
    role: Option<String>,
    status: Option<String>,
    /// Part of an address or a name.
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn members(
    State(state): State<AppState>,
    Path(list): Path<String>,
    query: Result<Query<MemberQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| invalid("query", e.body_text()))?;
    let role: Role = q
        .role
        .as_deref()
        .unwrap_or("member")
        .parse()
        .map_err(|e| invalid("role", e))?;
    let status: StatusFilter = q
        .status
        .as_deref()
        .unwrap_or("subscribed")
        .parse()
        .map_err(|e: String| invalid("status", e))?;
    let (page, next) = match q.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => {
            state
                .app
                .members_page(
                    &list_ref(&list)?,
                    role,
                    status,
                    q.cursor.as_deref(),
                    q.limit.unwrap_or(100),
                )
                .await?
        }
        // one role, so the cursor is the address key alone, as without a search
        Some(text) => {
            let query = crate::app::members::MemberQuery {
                text: Some(text.to_string()),
                role: Some(role),
                status: Some(status),
            };
            let after = q.cursor.map(|c| (c, role));
            let (page, next) = state
                .app
                .search_members(
                    &list_ref(&list)?,
                    &query,
                    after.as_ref(),
                    q.limit.unwrap_or(100),
                )
                .await?;
            (page, next.map(|(key, _)| key))
        }
    };
    Ok(Json(json!({
        "members": page.iter().map(Member::summary).collect::<Vec<_>>(),
        "next_cursor": next,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMembers {
    addresses: Vec<String>,
    role: Option<String>,
    #[serde(default)]
    invite: bool,
    /// Add without the welcome message.
    #[serde(default)]
    quiet: bool,
}

async fn add_members(
    State(state): State<AppState>,
    Path(list): Path<String>,
    Body(body): Body,
) -> ApiResult {
    let new: NewMembers = serde_json::from_value(body).map_err(|e| invalid("body", e))?;
    let role: Role = new
        .role
        .as_deref()
        .unwrap_or("member")
        .parse()
        .map_err(|e| invalid("role", e))?;
    let addresses = new
        .addresses
        .iter()
        .map(|a| address(a, "addresses"))
        .collect::<Result<Vec<_>, _>>()?;
    let outcomes = state
        .app
        .add_members(
            &list_ref(&list)?,
            &addresses,
            role,
            if new.invite {
                AddHow::Invite
            } else {
                AddHow::Add { quiet: new.quiet }
            },
        )
        .await?;
    let results: Vec<Value> = outcomes
        .iter()
        .map(|(a, o)| json!({"address": a.to_string(), "outcome": format!("{o:?}")}))
        .collect();
    Ok(Json(json!({ "results": results })).into_response())
}

async fn show_member(
    State(state): State<AppState>,
    Path((list, addr)): Path<(String, String)>,
) -> ApiResult {
    let detail = state
        .app
        .member_detail(&list_ref(&list)?, &address(&addr, "address")?)
        .await?;
    Ok(Json(detail).into_response())
}

/// `{"delivery": …, "mode": …, "own_posts": …, "name": …, "role": …}`, any subset.
async fn update_member(
    State(state): State<AppState>,
    Path((list, addr)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult {
    let Value::Object(map) = body else {
        return Err(invalid("body", "must be an object of member settings"));
    };
    let mut change = crate::domain::MemberChange::default();
    for (key, value) in settings_pairs(&map)? {
        change
            .apply(&key, &value)
            .map_err(|e| invalid(&key, e.to_string()))?;
    }
    let member = state
        .app
        .update_member(&list_ref(&list)?, &address(&addr, "address")?, &change)
        .await?;
    Ok(Json(member.summary()).into_response())
}

async fn remove_member(
    State(state): State<AppState>,
    Path((list, addr)): Path<(String, String)>,
) -> ApiResult {
    let address = address(&addr, "address")?;
    let done = state
        .app
        .remove_members(&list_ref(&list)?, std::slice::from_ref(&address))
        .await?;
    if done.iter().any(|(_, removed)| *removed) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{address} is not a member of {list}"),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeldQuery {
    list: Option<String>,
}

async fn held(
    State(state): State<AppState>,
    query: Result<Query<HeldQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| invalid("query", e.body_text()))?;
    let list = q.list.as_deref().map(list_ref).transpose()?;
    Ok(Json(state.app.held_posts(list.as_ref()).await?).into_response())
}

async fn show_held(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let d = state.app.post_detail(post_id(&id)?).await?;
    let mut v = serde_json::to_value(&d.post).map_err(|e| AppError::Unexpected(e.into()))?;
    v["status"] = json!(d.status);
    v["decided_by"] = json!(d.decided_by);
    v["decided_at"] = json!(d.decided_at.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    }));
    v["copies"] = json!(d.copies);
    v["message"] = json!(String::from_utf8_lossy(&d.raw));
    Ok(Json(v).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Decision {
    reason: Option<String>,
}

async fn moderate(
    State(state): State<AppState>,
    axum::Extension(TokenName(token)): axum::Extension<TokenName>,
    Path((id, decision)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    let id = post_id(&id)?;
    // the body is optional: an empty one is no reason
    let d: Decision = if body.iter().all(u8::is_ascii_whitespace) {
        Decision::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| invalid("body", e))?
    };
    let decision = match decision.as_str() {
        "approve" => Moderation::Approve,
        "reject" => Moderation::Reject,
        "discard" => Moderation::Discard,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("`{other}` is not a decision; use approve, reject or discard"),
            ));
        }
    };
    let outcome = state
        .app
        .moderate(id, decision, d.reason.as_deref(), &token)
        .await?;
    let v = match outcome {
        ModerationOutcome::Approved { copies } => json!({"outcome": "approved", "copies": copies}),
        ModerationOutcome::Rejected => json!({"outcome": "rejected"}),
        ModerationOutcome::Discarded => json!({"outcome": "discarded"}),
        ModerationOutcome::AlreadyDecided(done) => {
            let message = format!("message {id} is not held: it was {done}");
            return Ok((
                StatusCode::CONFLICT,
                Json(json!({"error": {"code": "refused", "message": message,
                                      "status": done.status, "decided_by": done.by,
                                      "decided_at": done.at.and_then(|t| t
                                          .format(&time::format_description::well_known::Rfc3339)
                                          .ok())}})),
            )
                .into_response());
        }
    };
    Ok(Json(v).into_response())
}

/// The request body of an operation, as a JSON schema (the same fields the handlers'
/// `deny_unknown_fields` structs accept).
fn request_schema(path: &str, method: &str) -> Option<Value> {
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let settings = json!({"type": "object", "description": "settings as for `listd lists set` (posting, nonmember-action, subject-prefix, reply-to, dmarc, advertised, bounce-*, accept-senders, name, description)",
                          "additionalProperties": {"type": ["string", "number", "boolean"]}});
    Some(match (path, method) {
        ("/api/v1/lists", "post") => {
            json!({"type": "object", "required": ["address"], "additionalProperties": false,
            "properties": {"address": {"type": "string"}, "name": {"type": "string"},
                           "description": {"type": "string"}, "owners": strings, "settings": settings}})
        }
        ("/api/v1/lists/{list}", "patch") => settings,
        ("/api/v1/lists/{list}/members/{address}", "patch") => {
            json!({"type": "object", "additionalProperties": false,
            "properties": {"delivery": {"enum": ["enabled", "disabled"]},
                           "mode": {"enum": ["each", "digest", "digest-plain"]},
                           "own_posts": {"enum": ["enabled", "disabled"]},
                           "name": {"type": "string"},
                           "role": {"enum": ["member", "owner", "moderator"]}}})
        }
        ("/api/v1/lists/{list}/members", "post") => {
            json!({"type": "object", "required": ["addresses"],
            "additionalProperties": false,
            "properties": {"addresses": strings, "role": {"enum": ["member", "owner", "moderator"]},
                           "invite": {"type": "boolean"}, "quiet": {"type": "boolean"}}})
        }
        ("/api/v1/held/{id}/{decision}", "post") => {
            json!({"type": "object", "additionalProperties": false,
            "properties": {"reason": {"type": "string"}}})
        }
        _ => return None,
    })
}

/// The query parameters of an operation.
fn query_parameters(path: &str, method: &str) -> Vec<Value> {
    let q = |name: &str, description: &str| json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}});
    match (path, method) {
        ("/api/v1/lists/{list}/members", "get") => vec![
            q("role", "member (default), owner or moderator"),
            q(
                "status",
                "subscribed (default), pending, unsubscribed, removed, bounced, complained, disabled or all",
            ),
            q("q", "part of an address or a name (any case)"),
            q("limit", "page size, 1 to 1000 (default 100)"),
            q("cursor", "the next_cursor of the previous page"),
        ],
        ("/api/v1/held", "get") => vec![q("list", "only this list (address or list-id)")],
        _ => Vec::new(),
    }
}

/// The OpenAPI 3.1 document of this API, built from [`ROUTES`]: path parameters from
/// the templates, query parameters and request bodies from the functions above.
async fn openapi() -> Response {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let mut paths = serde_json::Map::new();
    for (path, methods) in ROUTES {
        let path_parameters: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut ops = serde_json::Map::new();
        for m in *methods {
            let mut parameters = path_parameters.clone();
            parameters.extend(query_parameters(path, m));
            let mut op = json!({
                "security": [{"bearer": []}],
                "parameters": parameters,
                "responses": {
                    "200": {"description": "success", "content": {"application/json": {}}},
                    "401": {"description": "no valid token", "content": {"application/json": {"schema": error}}},
                    "4XX": {"description": "refused", "content": {"application/json": {"schema": error}}}
                }
            });
            if let Some(schema) = request_schema(path, m) {
                op["requestBody"] =
                    json!({"required": true, "content": {"application/json": {"schema": schema}}});
            }
            ops.insert(m.to_string(), op);
        }
        paths.insert(path.to_string(), Value::Object(ops));
    }
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "listd admin API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {
                "type": "object",
                "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}}}}
            }}
        }
    }))
    .into_response()
}
