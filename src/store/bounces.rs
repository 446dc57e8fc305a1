//! The `bounce` table, the bounce state of `member` rows, and the once-a-day record
//! of policy alerts.

use super::decode;
use crate::domain::bounce::{BounceClass, BounceRecord};
use crate::domain::{Delivery, EmailAddress, MemberStatus};
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

/// A bounce to record.
pub struct NewBounce<'a> {
    pub list_id: Uuid,
    pub member_id: Option<Uuid>,
    pub address: Option<&'a str>,
    /// `hard`, `soft`, `policy`, `complaint` or `unknown`.
    pub class: BounceClass,
    pub status: Option<&'a str>,
    pub diagnostic: Option<&'a str>,
    /// `report` or `relay`.
    pub source: &'a str,
    pub inbound_id: Option<i64>,
}

pub async fn insert_bounce(db: impl PgExecutor<'_>, b: &NewBounce<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        insert into bounce (list_id, member_id, address, class, status, diagnostic, source, inbound_id)
        values ($1, $2, $3, $4, $5, $6, $7, $8)
        returning id
        "#,
        b.list_id,
        b.member_id,
        b.address,
        b.class.as_str(),
        b.status,
        b.diagnostic,
        b.source,
        b.inbound_id
    )
    .fetch_one(db)
    .await
}

/// Records a 5xx from the relay for the member a queued copy was for (no-op for
/// rows that are not post copies).
pub async fn insert_relay_bounce(
    db: impl PgExecutor<'_>,
    outbound_id: i64,
    class: &str,
    status: Option<&str>,
    diagnostic: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        insert into bounce (list_id, member_id, address, class, status, diagnostic, source)
        select m.list_id, m.id, o.recipient, $2, $3, $4, 'relay'
        from outbound o join member m on m.id = o.member_id
        where o.id = $1
        "#,
        outbound_id,
        class,
        status,
        diagnostic
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// A bounce waiting for the rules, with its member's state.
#[derive(Debug, Clone)]
pub struct UnjudgedBounce {
    pub id: i64,
    pub list_id: Uuid,
    pub member_id: Option<Uuid>,
    pub class: BounceClass,
    pub address: Option<String>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
}

/// Whether the bounces of a received message were recorded already (its processing
/// is being repeated).
pub async fn find_recorded(db: impl PgExecutor<'_>, inbound_id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select exists (select 1 from bounce where inbound_id = $1) as "found!""#,
        inbound_id
    )
    .fetch_one(db)
    .await
}

/// The oldest bounces not yet judged, locked so two workers do not judge one twice.
pub async fn claim_unjudged(
    db: impl PgExecutor<'_>,
    limit: i64,
) -> Result<Vec<UnjudgedBounce>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"
        select id, list_id, member_id, class, address, status, diagnostic from bounce
        where judged_at is null
        order by id
        limit $1
        for update skip locked
        "#,
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| UnjudgedBounce {
            id: r.id,
            list_id: r.list_id,
            member_id: r.member_id,
            // a class this version does not know is judged as unknown
            class: r.class.parse().unwrap_or(BounceClass::Unknown),
            address: r.address,
            status: r.status,
            diagnostic: r.diagnostic,
        })
        .collect())
}

pub async fn update_bounce_judged(
    db: impl PgExecutor<'_>,
    id: i64,
    at: OffsetDateTime,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update bounce set judged_at = $2, outcome = $3 where id = $1",
        id,
        at,
        outcome
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// A member's bounce state, locked for the rest of the transaction.
#[derive(Debug, Clone)]
pub struct BounceState {
    pub member_id: Uuid,
    pub address: String,
    pub status: MemberStatus,
    pub delivery: Delivery,
    pub score: i32,
    pub scored_at: Option<OffsetDateTime>,
    pub disabled_at: Option<OffsetDateTime>,
    pub warnings_sent: i32,
    pub warned_at: Option<OffsetDateTime>,
}

pub async fn find_bounce_state_for_update(
    db: impl PgExecutor<'_>,
    member_id: Uuid,
) -> Result<Option<BounceState>, sqlx::Error> {
    let Some(r) = sqlx::query!(
        r#"
        select id, address, status, delivery, bounce_score, bounce_scored_at, bounce_disabled_at,
               bounce_warnings_sent, bounce_warned_at
        from member where id = $1
        for update
        "#,
        member_id
    )
    .fetch_optional(db)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(BounceState {
        member_id: r.id,
        address: r.address,
        status: decode("status", &r.status)?,
        delivery: decode("delivery", &r.delivery)?,
        score: r.bounce_score,
        scored_at: r.bounce_scored_at,
        disabled_at: r.bounce_disabled_at,
        warnings_sent: r.bounce_warnings_sent,
        warned_at: r.bounce_warned_at,
    }))
}

/// Writes a member's score after a hard bounce.
pub async fn update_member_score(
    db: impl PgExecutor<'_>,
    member_id: Uuid,
    score: i32,
    scored_at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update member set bounce_score = $2, bounce_scored_at = $3, updated_at = now() where id = $1",
        member_id,
        score,
        scored_at
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Turns delivery off because of bounces; warnings start from here.
pub async fn update_member_bounce_disabled(
    db: impl PgExecutor<'_>,
    member_id: Uuid,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update member set delivery = 'disabled', bounce_disabled_at = $2, bounce_warnings_sent = 0,
                          bounce_warned_at = null, updated_at = now()
        where id = $1
        "#,
        member_id,
        at
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Records a warning sent to a member whose delivery bounces turned off.
pub async fn update_member_warned(
    db: impl PgExecutor<'_>,
    member_id: Uuid,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update member set bounce_warnings_sent = bounce_warnings_sent + 1, bounce_warned_at = $2,
                          updated_at = now()
        where id = $1
        "#,
        member_id,
        at
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Forgets a member's bounces (delivery turned back on, or quiet long enough).
pub async fn update_member_bounces_cleared(
    db: impl PgExecutor<'_>,
    member_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update member set bounce_score = 0, bounce_scored_at = null, bounce_disabled_at = null,
                          bounce_warnings_sent = 0, bounce_warned_at = null, updated_at = now()
        where id = $1
        "#,
        member_id
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Members whose delivery bounces turned off and who are due a warning or removal:
/// the last notice (or the disabling) is at least `interval_days` old.
#[derive(Debug, Clone)]
pub struct DisabledMember {
    pub member_id: Uuid,
    pub list_id: Uuid,
    pub address: String,
    pub warnings_sent: i32,
    /// The list's `bounce-warnings`.
    pub warnings: i32,
}

pub async fn list_due_for_warning(
    db: impl PgExecutor<'_>,
    now: OffsetDateTime,
) -> Result<Vec<DisabledMember>, sqlx::Error> {
    sqlx::query_as!(
        DisabledMember,
        r#"
        select m.id as member_id, m.list_id, m.address, m.bounce_warnings_sent as warnings_sent,
               l.bounce_warnings as warnings
        from member m join list l on l.id = m.list_id
        where m.bounce_disabled_at is not null and m.status = 'subscribed' and m.delivery = 'disabled'
          and coalesce(m.bounce_warned_at, m.bounce_disabled_at)
              <= $1::timestamptz - make_interval(days => l.bounce_warning_interval_days)
        order by m.id
        for update of m skip locked
        "#,
        now
    )
    .fetch_all(db)
    .await
}

/// Scores of members whose last counted bounce is older than their list's
/// `bounce-stale-days` go back to zero (delivery still on: a disabled member's
/// score records why).
pub async fn update_stale_scores(
    db: impl PgExecutor<'_>,
    now: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        r#"
        update member m set bounce_score = 0, bounce_scored_at = null, updated_at = now()
        from list l
        where l.id = m.list_id and m.bounce_score > 0 and m.bounce_disabled_at is null
          and m.bounce_scored_at < $1::timestamptz - make_interval(days => l.bounce_stale_days)
        "#,
        now
    )
    .execute(db)
    .await?
    .rows_affected())
}

/// Whether this is the first policy alert today for the domain (and records it).
pub async fn insert_policy_alert(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    domain: &str,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        r#"
        insert into policy_alert (list_id, domain, day) values ($1, lower($2), (($3::timestamptz) at time zone 'UTC')::date)
        on conflict do nothing
        "#,
        list_id,
        domain,
        now
    )
    .execute(db)
    .await?
    .rows_affected()
        > 0)
}

/// The most recent bounces of a member, newest first.
pub async fn list_member_bounces(
    db: impl PgExecutor<'_>,
    member_id: Uuid,
    limit: i64,
) -> Result<Vec<BounceRecord>, sqlx::Error> {
    sqlx::query_as!(
        BounceRecord,
        r#"
        select class, status, diagnostic, source, received_at from bounce
        where member_id = $1
        order by received_at desc, id desc
        limit $2
        "#,
        member_id,
        limit
    )
    .fetch_all(db)
    .await
}

/// Whether a confirmation to this address bounced hard since `since`: a hard bounce
/// recorded for its membership while it was still waiting for its first confirmation.
pub async fn find_pending_hard_bounce(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    address: &EmailAddress,
    since: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        select exists (
            select 1 from bounce b join member m on m.id = b.member_id
            where m.list_id = $1 and m.role = 'member' and m.address_key = $2
              and m.status = 'pending' and m.confirmed_at is null
              and b.class = 'hard' and b.received_at > $3
        ) as "bounced!"
        "#,
        list_id,
        address.key(),
        since
    )
    .fetch_one(db)
    .await
}
