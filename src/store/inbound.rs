//! The `inbound` table: received mail, stored before it is acknowledged.

use crate::domain::route::Action;
use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool};

/// One address a message was accepted for, as stored in `inbound.recipients` (a JSON
/// array of `{"address", "list_id", "action", "token"}`): the list is named by its id
/// (`dev.lists.example.org`) and read again when the message is processed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InboundRecipient {
    /// The RCPT TO address as the client wrote it.
    pub address: String,
    pub list_id: String,
    #[serde(flatten)]
    pub action: Action,
}

/// A message as received.
pub struct NewInbound<'a> {
    pub mail_from: Option<&'a str>,
    pub recipients: &'a [InboundRecipient],
    pub helo: &'a str,
    pub peer: Option<String>,
    pub tls: bool,
    pub protocol: &'a str,
    pub raw: &'a [u8],
}

pub async fn insert_inbound(
    db: impl PgExecutor<'_>,
    m: &NewInbound<'_>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        insert into inbound (mail_from, recipients, helo, peer, tls, protocol, raw)
        values ($1, $2, $3, $4, $5, $6, $7)
        returning id
        "#,
        m.mail_from,
        Json(m.recipients) as _,
        m.helo,
        m.peer,
        m.tls,
        m.protocol,
        m.raw
    )
    .fetch_one(db)
    .await
}

/// A claimed inbound message.
#[derive(Debug, Clone)]
pub struct InboundRow {
    pub id: i64,
    pub mail_from: Option<String>,
    /// Why the stored recipients cannot be read, when they cannot: the message then
    /// fails like any other that cannot be processed, and is kept for the operator.
    pub recipients: Result<Vec<InboundRecipient>, String>,
    pub raw: Vec<u8>,
    pub attempts: i32,
}

/// Leases up to `limit` new messages (see `outbound::claim_due` for the pattern).
pub async fn claim_inbound(
    db: &PgPool,
    limit: i64,
    lease_secs: f64,
) -> Result<Vec<InboundRow>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"
        update inbound i set locked_until = now() + make_interval(secs => $2), attempts = i.attempts + 1
        from (
            select id from inbound
            where status = 'new' and (locked_until is null or locked_until < now())
            order by id
            limit $1
            for update skip locked
        ) due
        where i.id = due.id
        returning i.id, i.mail_from, i.recipients, i.raw, i.attempts
        "#,
        limit,
        lease_secs
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| InboundRow {
            id: r.id,
            mail_from: r.mail_from,
            recipients: serde_json::from_value(r.recipients)
                .map_err(|e| format!("unreadable recipients: {e}")),
            raw: r.raw,
            attempts: r.attempts,
        })
        .collect())
}

pub async fn update_inbound_done(
    db: impl PgExecutor<'_>,
    id: i64,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update inbound set status = 'done', outcome = $2, processed_at = now(), locked_until = null, last_error = null
        where id = $1
        "#,
        id,
        outcome
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Records a processing error; after `max_attempts` the message is marked failed.
pub async fn update_inbound_error(
    db: impl PgExecutor<'_>,
    id: i64,
    error: &str,
    give_up: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update inbound set last_error = $2,
               status = case when $3 then 'failed' else status end,
               locked_until = case when $3 then null else now() + interval '1 minute' end,
               processed_at = case when $3 then now() else processed_at end
        where id = $1
        "#,
        id,
        error,
        give_up
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// An inbound message, for operators and tests.
#[derive(Debug, Clone)]
pub struct InboundSummary {
    pub id: i64,
    pub status: String,
    pub outcome: Option<String>,
    pub last_error: Option<String>,
}

pub async fn list_inbound(db: &PgPool) -> Result<Vec<InboundSummary>, sqlx::Error> {
    sqlx::query_as!(
        InboundSummary,
        "select id, status, outcome, last_error from inbound order by id"
    )
    .fetch_all(db)
    .await
}

/// A received message as the operator's commands show it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InboundRecord {
    pub id: i64,
    pub received_at: time::OffsetDateTime,
    pub mail_from: Option<String>,
    /// The addresses it was accepted for.
    pub recipients: Vec<String>,
    pub peer: Option<String>,
    pub protocol: String,
    pub status: String,
    pub attempts: i32,
    pub outcome: Option<String>,
    pub last_error: Option<String>,
    pub processed_at: Option<time::OffsetDateTime>,
    pub size: i32,
}

const RECORD_COLUMNS: &str = "id, received_at, mail_from, \
     array(select e->>'address' from jsonb_array_elements(case jsonb_typeof(recipients) \
         when 'array' then recipients else '[]' end) e where e->>'address' is not null) as recipients, \
     peer, protocol, status, attempts, outcome, last_error, processed_at, octet_length(raw) as size";

/// The newest received messages, of one status or all, newest first.
pub async fn list_inbound_records(
    db: impl PgExecutor<'_>,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<InboundRecord>, sqlx::Error> {
    let sql = format!(
        "select {RECORD_COLUMNS} from inbound where ($1::text is null or status = $1) \
         order by id desc limit $2"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(status)
        .bind(limit)
        .fetch_all(db)
        .await
}

/// One received message with its bytes.
pub async fn find_inbound_record(
    db: impl PgExecutor<'_>,
    id: i64,
) -> Result<Option<(InboundRecord, Vec<u8>)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct WithRaw {
        #[sqlx(flatten)]
        record: InboundRecord,
        raw: Vec<u8>,
    }
    let sql = format!("select {RECORD_COLUMNS}, raw from inbound where id = $1");
    let row: Option<WithRaw> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| (r.record, r.raw)))
}

/// Makes a failed (or still retrying) message due again with a fresh count of
/// attempts; returns its status before, `None` when there is no such message.
pub async fn update_inbound_retry(
    db: impl PgExecutor<'_>,
    id: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "update inbound i set status = case when i.status = 'done' then i.status else 'new' end,
                attempts = case when i.status = 'done' then i.attempts else 0 end,
                locked_until = case when i.status = 'done' then i.locked_until else null end
         from (select id, status from inbound where id = $1 for update) before
         where i.id = before.id
         returning before.status",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}
