//! The `pending_request` table: requests waiting for the mailbox to confirm.

use super::decode;
use super::outbound::NewOutbound;
use crate::domain::{
    EmailAddress, Evidence, MemberStatus, Purpose, RequestKind, Source, TokenHash,
};
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

/// A pending request as read back for confirmation.
#[derive(Debug, Clone)]
pub struct PendingRequest {
    pub id: Uuid,
    pub list_id: Uuid,
    pub kind: RequestKind,
    pub address: String,
    pub name: Option<String>,
    pub requested_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
    pub source: Source,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub message_id: Option<String>,
    pub form_text: Option<String>,
}

pub struct NewPending<'a> {
    pub list_id: Uuid,
    pub kind: RequestKind,
    pub address: &'a EmailAddress,
    pub name: Option<&'a str>,
    /// The hash of the link's token.
    pub token_hash: &'a TokenHash,
    /// The hash of the reply address's short token.
    pub reply_hash: &'a TokenHash,
    pub expires_at: OffsetDateTime,
    pub source: Source,
    pub evidence: &'a Evidence,
    /// Also record the address as a `pending` member (it has no row yet).
    pub new_member: bool,
}

/// Records a request and queues its confirmation mail, in one statement.
pub async fn insert_pending(
    db: impl PgExecutor<'_>,
    p: &NewPending<'_>,
    mail: &NewOutbound<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        with new_member as (
            insert into member (list_id, address, address_key, name, role, status, requested_at, request_source,
                                request_ip, request_user_agent, request_message_id, request_form_text)
            select $1, $3, $4, $5, 'member', 'pending', now(), $8, $9, $10, $11, $12
            where $13
            on conflict on constraint member_list_address_role_key do nothing
        ),
        mail as (
            insert into outbound (list_id, purpose, envelope_from, recipient, recipient_key, message)
            values ($14, $15, $16, $17, lower($17), $18)
        )
        insert into pending_request (list_id, kind, address, address_key, name, token_hash, reply_hash, expires_at,
                                     source, ip, user_agent, message_id, form_text)
        values ($1, $2, $3, $4, $5, $6, $19, $7, $8, $9, $10, $11, $12)
        "#,
        p.list_id,
        p.kind.as_str(),
        p.address.to_string(),
        p.address.key(),
        p.name,
        &p.token_hash.0[..],
        p.expires_at,
        p.source.as_str(),
        p.evidence.ip,
        p.evidence.user_agent,
        p.evidence.message_id,
        p.evidence.form_text,
        p.new_member,
        mail.list_id,
        mail.purpose.as_str(),
        mail.envelope_from,
        mail.recipient,
        mail.message,
        &p.reply_hash.0[..],
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Finds a request by the hash of either of its tokens (the link's or the reply
/// address's); `for update` so only one confirmation wins.
pub async fn find_pending_for_update(
    db: impl PgExecutor<'_>,
    hash: &TokenHash,
) -> Result<Option<PendingRequest>, sqlx::Error> {
    let Some(r) = sqlx::query!(
        r#"
        select id, list_id, kind, address, name, requested_at, expires_at, used_at, source, ip, user_agent,
               message_id, form_text
        from pending_request where token_hash = $1 or reply_hash = $1
        for update
        "#,
        &hash.0[..]
    )
    .fetch_optional(db)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(PendingRequest {
        id: r.id,
        list_id: r.list_id,
        kind: decode("request kind", &r.kind)?,
        address: r.address,
        name: r.name,
        requested_at: r.requested_at,
        expires_at: r.expires_at,
        used_at: r.used_at,
        source: decode("request source", &r.source)?,
        ip: r.ip,
        user_agent: r.user_agent,
        message_id: r.message_id,
        form_text: r.form_text,
    }))
}

pub async fn update_pending_used(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update pending_request set used_at = now() where id = $1",
        id
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Where an address stands on a list, and its recent activity (for the limits).
#[derive(Debug, Clone)]
pub struct RequestState {
    /// The status of its `member` row, if it has one.
    pub member_status: Option<MemberStatus>,
    pub counts: RecentCounts,
}

/// Recent activity for an address, for the per-address limits.
#[derive(Debug, Clone, Copy)]
pub struct RecentCounts {
    /// Requests of the kind on the list since `recent_since`.
    pub recent: i64,
    /// Requests of the kind on the list since `day_since`.
    pub today: i64,
    /// Messages of the given purposes to the address, any list, since `day_since`.
    pub automatic_today: i64,
}

/// Reads an address's membership status and counts its recent requests and automatic
/// mail, in one round trip.
pub async fn find_request_state(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    kind: RequestKind,
    address: &EmailAddress,
    recent_since: OffsetDateTime,
    day_since: OffsetDateTime,
    automatic_purposes: &[Purpose],
) -> Result<RequestState, sqlx::Error> {
    let purposes = Purpose::texts(automatic_purposes);
    let r = sqlx::query!(
        r#"
        select
            (select status from member
             where list_id = $1 and role = 'member' and address_key = $3) as member_status,
            (select count(*) from pending_request
             where list_id = $1 and kind = $2 and address_key = $3 and requested_at >= $4) as "recent!",
            (select count(*) from pending_request
             where list_id = $1 and kind = $2 and address_key = $3 and requested_at >= $5) as "today!",
            (select count(*) from outbound
             where recipient_key = $3 and purpose = any($6) and created_at >= $5
               and post_id is null and digest_id is null) as "automatic!"
        "#,
        list_id,
        kind.as_str(),
        address.key(),
        recent_since,
        day_since,
        &purposes
    )
    .fetch_one(db)
    .await?;
    Ok(RequestState {
        member_status: r
            .member_status
            .map(|s| decode("member status", &s))
            .transpose()?,
        counts: RecentCounts {
            recent: r.recent,
            today: r.today,
            automatic_today: r.automatic,
        },
    })
}

/// Begins a transaction that holds, until it ends, a lock serialising requests for
/// one address on one list (so two requests at once cannot both pass the limits).
pub async fn begin_for_address(
    db: &sqlx::PgPool,
    list_id: Uuid,
    address: &EmailAddress,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    super::begin_locked(db, &format!("{list_id}/{}", address.key())).await
}

/// Deletes requests that expired before `before`; returns how many.
pub async fn delete_expired_pending(
    db: impl PgExecutor<'_>,
    before: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query!("delete from pending_request where expires_at < $1", before)
            .execute(db)
            .await?
            .rows_affected(),
    )
}
