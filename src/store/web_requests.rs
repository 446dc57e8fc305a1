//! The `web_request` table: form requests stored before they are answered, carried out
//! by the inbound workers.

use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

/// A request as the form received it.
pub struct NewWebRequest<'a> {
    /// None for a sign-in request.
    pub list_id: Option<Uuid>,
    /// `subscribe`, `unsubscribe` or `signin`.
    pub kind: &'a str,
    pub address: &'a str,
    pub name: Option<&'a str>,
    pub evidence: serde_json::Value,
}

pub async fn insert_web_request(
    db: impl PgExecutor<'_>,
    r: &NewWebRequest<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into web_request (list_id, kind, address, name, evidence)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(r.list_id)
    .bind(r.kind)
    .bind(r.address)
    .bind(r.name)
    .bind(&r.evidence)
    .execute(db)
    .await
    .map(|_| ())
}

/// A claimed request.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebRequestRow {
    pub id: i64,
    pub list_id: Option<Uuid>,
    pub kind: String,
    pub address: String,
    pub name: Option<String>,
    pub evidence: serde_json::Value,
    pub attempts: i32,
}

/// Leases up to `limit` due requests, oldest first (the pattern of `claim_inbound`).
pub async fn claim_web_requests(
    db: &PgPool,
    limit: i64,
    lease_secs: f64,
) -> Result<Vec<WebRequestRow>, sqlx::Error> {
    sqlx::query_as(
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
    .await
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
