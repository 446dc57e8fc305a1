//! The `web_request` table: form requests stored before they are answered, carried out
//! by the inbound workers.

use super::decode;
use crate::domain::{Evidence, RequestKind};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

/// A request from a web form, as stored and as carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebRequest {
    /// Join or leave a list (`kind` `subscribe` or `unsubscribe`).
    Membership(MembershipRequest),
    /// A sign-in link (`kind` `signin`, no list); `return_path` is the page the person
    /// was going to.
    Signin {
        address: String,
        ip: Option<String>,
        return_path: Option<String>,
    },
}

/// A request to join or leave a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRequest {
    pub list_id: Uuid,
    pub kind: RequestKind,
    pub address: String,
    pub name: Option<String>,
    pub evidence: Evidence,
}

/// The `evidence` column: the form's evidence, or a sign-in's address and return path.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct StoredEvidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    form_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    return_path: Option<String>,
}

/// The `kind` of sign-in requests (membership requests store their `RequestKind`).
const SIGNIN: &str = "signin";

pub async fn insert_web_request(
    db: impl PgExecutor<'_>,
    r: &WebRequest,
) -> Result<(), sqlx::Error> {
    let (list_id, kind, address, name, evidence) = match r {
        WebRequest::Membership(m) => (
            Some(m.list_id),
            m.kind.as_str(),
            &m.address,
            m.name.as_deref(),
            StoredEvidence {
                ip: m.evidence.ip.clone(),
                user_agent: m.evidence.user_agent.clone(),
                form_text: m.evidence.form_text.clone(),
                return_path: None,
            },
        ),
        WebRequest::Signin {
            address,
            ip,
            return_path,
        } => (
            None,
            SIGNIN,
            address,
            None,
            StoredEvidence {
                ip: ip.clone(),
                return_path: return_path.clone(),
                ..StoredEvidence::default()
            },
        ),
    };
    sqlx::query(
        "insert into web_request (list_id, kind, address, name, evidence)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(list_id)
    .bind(kind)
    .bind(address)
    .bind(name)
    .bind(sqlx::types::Json(evidence))
    .execute(db)
    .await
    .map(|_| ())
}

/// A claimed request.
#[derive(Debug, Clone)]
pub struct WebRequestRow {
    pub id: i64,
    pub attempts: i32,
    /// Why the stored request cannot be read, when it cannot: it then fails like any
    /// other request that cannot be carried out, and is kept as failed.
    pub request: Result<WebRequest, String>,
}

/// A claimed request as the statement returns it.
#[derive(sqlx::FromRow)]
struct StoredRow {
    id: i64,
    list_id: Option<Uuid>,
    kind: String,
    address: String,
    name: Option<String>,
    evidence: serde_json::Value,
    attempts: i32,
}

impl From<StoredRow> for WebRequestRow {
    fn from(r: StoredRow) -> WebRequestRow {
        WebRequestRow {
            id: r.id,
            attempts: r.attempts,
            request: r.read(),
        }
    }
}

impl StoredRow {
    fn read(self) -> Result<WebRequest, String> {
        let e: StoredEvidence = serde_json::from_value(self.evidence)
            .map_err(|e| format!("unreadable evidence: {e}"))?;
        if self.kind == SIGNIN {
            return Ok(WebRequest::Signin {
                address: self.address,
                ip: e.ip,
                return_path: e.return_path,
            });
        }
        let kind = decode("web request kind", &self.kind).map_err(|e| e.to_string())?;
        let list_id = self.list_id.ok_or("a membership request without a list")?;
        Ok(WebRequest::Membership(MembershipRequest {
            list_id,
            kind,
            address: self.address,
            name: self.name,
            evidence: Evidence {
                ip: e.ip,
                user_agent: e.user_agent,
                message_id: None,
                form_text: e.form_text,
            },
        }))
    }
}

/// Leases up to `limit` due requests, oldest first (the pattern of `claim_inbound`).
pub async fn claim_web_requests(
    db: &PgPool,
    limit: i64,
    lease_secs: f64,
) -> Result<Vec<WebRequestRow>, sqlx::Error> {
    let rows: Vec<StoredRow> = sqlx::query_as(
        "update web_request w
            set locked_until = now() + make_interval(secs => $2), attempts = w.attempts + 1
         from (
             select id from web_request
             where status = 'new' and (locked_until is null or locked_until < now())
             order by id
             limit $1
             for update skip locked
         ) due
         where w.id = due.id
         returning w.id, w.list_id, w.kind, w.address, w.name, w.evidence, w.attempts",
    )
    .bind(limit)
    .bind(lease_secs)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(WebRequestRow::from).collect())
}

pub async fn delete_web_request(db: impl PgExecutor<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("delete from web_request where id = $1")
        .bind(id)
        .execute(db)
        .await
        .map(|_| ())
}

/// Records a failure; retried a minute later, or kept as `failed` when `give_up`.
pub async fn update_web_request_error(
    db: impl PgExecutor<'_>,
    id: i64,
    error: &str,
    give_up: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update web_request set last_error = $2,
                status = case when $3 then 'failed' else status end,
                locked_until = case when $3 then null else now() + interval '1 minute' end
         where id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(give_up)
    .execute(db)
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(kind: &str, list_id: Option<Uuid>, evidence: serde_json::Value) -> StoredRow {
        StoredRow {
            id: 1,
            list_id,
            kind: kind.into(),
            address: "anne@example.net".into(),
            name: None,
            evidence,
            attempts: 1,
        }
    }

    #[test]
    fn requests_stored_by_earlier_versions_are_read() {
        let list = Uuid::nil();
        let join = stored(
            "subscribe",
            Some(list),
            serde_json::json!({"ip": "192.0.2.1", "user_agent": "UA", "form_text": "web form"}),
        );
        let Ok(WebRequest::Membership(m)) = join.read() else {
            panic!("not a membership request");
        };
        assert_eq!((m.list_id, m.kind), (list, RequestKind::Subscribe));
        assert_eq!(m.evidence.ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(m.evidence.user_agent.as_deref(), Some("UA"));
        assert_eq!(m.evidence.form_text.as_deref(), Some("web form"));
        let signin = stored(
            "signin",
            None,
            serde_json::json!({"ip": null, "return_path": "/me"}),
        );
        assert_eq!(
            signin.read(),
            Ok(WebRequest::Signin {
                address: "anne@example.net".into(),
                ip: None,
                return_path: Some("/me".into()),
            })
        );
    }

    #[test]
    fn an_unknown_kind_is_an_unreadable_request() {
        let odd = stored("wave", Some(Uuid::nil()), serde_json::json!({}));
        assert!(odd.read().is_err());
    }
}
