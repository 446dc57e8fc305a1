//! The `outbound` queue: insert in the caller's transaction, claim with a lease,
//! record the outcome.

use super::decode;
use crate::domain::outbound::QueueStats;
use crate::domain::{Delivery, MemberStatus, Purpose};
use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

/// A message to queue.
pub struct NewOutbound<'a> {
    pub list_id: Option<Uuid>,
    pub purpose: Purpose,
    pub envelope_from: &'a str,
    pub recipient: &'a str,
    pub message: &'a [u8],
}

pub async fn insert_outbound(
    db: impl PgExecutor<'_>,
    m: &NewOutbound<'_>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        insert into outbound (list_id, purpose, envelope_from, recipient, recipient_key, message)
        values ($1, $2, $3, $4, lower($4), $5)
        returning id
        "#,
        m.list_id,
        m.purpose.as_str(),
        m.envelope_from,
        m.recipient,
        m.message
    )
    .fetch_one(db)
    .await
}

/// A claimed row of the queue: who it goes to, how often it was tried, and what it
/// holds.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub entry: Entry,
    pub content: Content,
}

/// What every claimed row has, whatever it holds.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: i64,
    pub recipient: String,
    /// Counting this one.
    pub attempts: i32,
    pub created_at: OffsetDateTime,
}

/// What a claimed row holds (the schema's `outbound_content_check`).
#[derive(Debug, Clone)]
pub enum Content {
    /// A complete message and its envelope sender (confirmations, notices, forwards).
    Whole {
        envelope_from: String,
        message: Vec<u8>,
    },
    /// A member's copy of a post or a digest, built when it is sent. `member` is the
    /// member as they are now, `None` when their row no longer exists.
    Copy {
        of: CopyOf,
        member_id: Uuid,
        member: Option<CopyMember>,
    },
    /// A row that cannot be read as either (a bug, or a schema this build does not
    /// know): kept queued as listd's own fault rather than stopping the whole claim.
    Unreadable(String),
}

/// What a member's copy is made from: a post, or one edition of a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyOf {
    Post(i64),
    Digest(i64),
}

/// The member a copy is for, read when the copy is claimed (a member who left or
/// turned delivery off is not sent the copies still queued).
#[derive(Debug, Clone)]
pub struct CopyMember {
    /// When the current membership began (for the unsubscribe token).
    pub since: Option<OffsetDateTime>,
    pub status: MemberStatus,
    pub delivery: Delivery,
    /// For the VERP envelope sender.
    pub short_id: i64,
    /// For the `L+unsubscribe+TOKEN@D` address.
    pub unsubscribe_key: Vec<u8>,
}

/// Leases up to `limit` due messages for `lease_secs` seconds. Rows leased by a live
/// worker are skipped; rows whose lease expired (the worker died) are due again.
///
/// The due rows are chosen once, in a materialized CTE: as a subquery the planner may
/// put them on the inner side of a nested loop and run the locking `LIMIT` again for
/// each outer row, and each run skips the rows the statement already updated and takes
/// the next ones, so one claim leased the whole queue (10,000 digest copies in 15 s).
pub async fn claim_due(
    db: &PgPool,
    limit: i64,
    lease_secs: f64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let rows = sqlx::query_as!(
        ClaimedRow,
        r#"
        with due as materialized (
            select id, member_id from outbound
            where status = 'queued' and next_attempt_at <= now()
              and (locked_until is null or locked_until < now())
            order by next_attempt_at, id
            limit $1
            for update skip locked
        )
        update outbound o set locked_until = now() + make_interval(secs => $2), attempts = o.attempts + 1
        from due
        left join member m on m.id = due.member_id
        where o.id = due.id
        returning o.id, o.recipient, o.attempts, o.created_at, o.envelope_from, o.message,
                  o.post_id, o.digest_id, o.member_id, m.subscribed_at as "member_since?",
                  m.status as "member_status?", m.delivery as "member_delivery?",
                  m.short_id as "member_short_id?", m.unsubscribe_key as "member_unsubscribe_key?"
        "#,
        limit,
        lease_secs
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Claimed::from).collect())
}

/// A claimed row as the statement returns it.
struct ClaimedRow {
    id: i64,
    recipient: String,
    attempts: i32,
    created_at: OffsetDateTime,
    envelope_from: Option<String>,
    message: Option<Vec<u8>>,
    post_id: Option<i64>,
    digest_id: Option<i64>,
    member_id: Option<Uuid>,
    member_since: Option<OffsetDateTime>,
    member_status: Option<String>,
    member_delivery: Option<String>,
    member_short_id: Option<i64>,
    member_unsubscribe_key: Option<Vec<u8>>,
}

impl From<ClaimedRow> for Claimed {
    fn from(r: ClaimedRow) -> Claimed {
        let entry = Entry {
            id: r.id,
            recipient: r.recipient,
            attempts: r.attempts,
            created_at: r.created_at,
        };
        let of = match (r.post_id, r.digest_id) {
            (Some(id), _) => Some(CopyOf::Post(id)),
            (None, Some(id)) => Some(CopyOf::Digest(id)),
            (None, None) => None,
        };
        let content = match (r.envelope_from, r.message, of, r.member_id) {
            (Some(envelope_from), Some(message), _, _) => Content::Whole {
                envelope_from,
                message,
            },
            (_, _, Some(of), Some(member_id)) => {
                let member = match r.member_status {
                    // the member's row is gone
                    None => Ok(None),
                    Some(status) => copy_member(
                        r.member_since,
                        &status,
                        r.member_delivery.as_deref(),
                        r.member_short_id,
                        r.member_unsubscribe_key,
                    )
                    .map(Some),
                };
                match member {
                    Ok(member) => Content::Copy {
                        of,
                        member_id,
                        member,
                    },
                    Err(e) => Content::Unreadable(e.to_string()),
                }
            }
            _ => Content::Unreadable("the row holds neither a message nor a member's copy".into()),
        };
        Claimed { entry, content }
    }
}

/// The member columns of a claimed copy, whose member row exists.
fn copy_member(
    since: Option<OffsetDateTime>,
    status: &str,
    delivery: Option<&str>,
    short_id: Option<i64>,
    unsubscribe_key: Option<Vec<u8>>,
) -> Result<CopyMember, sqlx::Error> {
    let missing = |column: &str| sqlx::Error::Decode(format!("no member {column}").into());
    Ok(CopyMember {
        since,
        status: decode("member status", status)?,
        delivery: decode(
            "member delivery",
            delivery.ok_or_else(|| missing("delivery"))?,
        )?,
        short_id: short_id.ok_or_else(|| missing("short id"))?,
        unsubscribe_key: unsubscribe_key.ok_or_else(|| missing("unsubscribe key"))?,
    })
}

/// Refreshes the planner's statistics of the queue (a sample: tens of milliseconds).
pub async fn analyze_queue(db: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("analyze outbound")
        .execute(db)
        .await
        .map(|_| ())
}

/// Marks messages as delivered (one statement for a whole batch).
pub async fn update_outbound_sent(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update outbound set status = 'sent', sent_at = now(), locked_until = null, last_error = null
        where id = any($1) and status = 'queued'
        "#,
        ids
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Keeps a message queued for another try after `delay_secs`, with its error. `fault`
/// marks an error of listd's own (it could not hand the message to the relay: not
/// the relay's answer, never a bounce), of which the list's owners are told.
pub async fn update_outbound_retry(
    db: impl PgExecutor<'_>,
    id: i64,
    delay_secs: f64,
    error: &str,
    fault: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update outbound set next_attempt_at = now() + make_interval(secs => $2), locked_until = null,
            last_error = $3, fault_at = case when $4 then now() else fault_at end
        where id = $1 and status = 'queued'
        "#,
        id,
        delay_secs,
        error,
        fault
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// The list and recipient of a queued message (a bounce to its VERP address names it).
pub async fn find_outbound_recipient(
    db: impl PgExecutor<'_>,
    id: i64,
) -> Result<Option<(Option<Uuid>, String)>, sqlx::Error> {
    let row = sqlx::query!("select list_id, recipient from outbound where id = $1", id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| (r.list_id, r.recipient)))
}

/// Extends the leases of rows a live worker still holds.
pub async fn update_outbound_leases(
    db: impl PgExecutor<'_>,
    ids: &[i64],
    lease_secs: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update outbound set locked_until = now() + make_interval(secs => $2)
        where id = any($1) and status = 'queued'
        "#,
        ids,
        lease_secs
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Gives back rows claimed but not sent (the process is stopping): due at once for
/// another worker, and the attempt not counted.
pub async fn update_outbound_handed_back(
    db: impl PgExecutor<'_>,
    ids: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update outbound set locked_until = null, attempts = greatest(attempts - 1, 0)
        where id = any($1) and status = 'queued'
        "#,
        ids
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// A list with queued messages that listd could not hand to the relay since `since`,
/// and whose owners have not been told today; the alert is recorded as sent.
pub struct DeliveryFault {
    pub list_id: Uuid,
    pub waiting: i64,
    pub error: String,
}

/// Lists with faults since `since` not yet alerted on `now`'s day (UTC); records the
/// alert for each one returned, so that each list's owners hear once a day.
pub async fn claim_delivery_fault_alerts(
    db: impl PgExecutor<'_>,
    since: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<Vec<DeliveryFault>, sqlx::Error> {
    sqlx::query_as!(
        DeliveryFault,
        r#"
        with faults as (
            -- a post's copies name their list through the post, a digest's through its edition
            select coalesce(o.list_id, p.list_id, e.list_id) as list_id, count(*) as waiting,
                   max(o.last_error) as error
            from outbound o left join post p on p.id = o.post_id
                 left join digest_edition e on e.id = o.digest_id
            where o.fault_at > $1 and o.status = 'queued'
              and coalesce(o.list_id, p.list_id, e.list_id) is not null
            group by 1
        ),
        alerted as (
            insert into delivery_fault_alert (list_id, day)
            select list_id, (($2::timestamptz) at time zone 'UTC')::date from faults
            on conflict do nothing
            returning list_id
        )
        select f.list_id as "list_id!", f.waiting as "waiting!", coalesce(f.error, '') as "error!"
        from faults f join alerted a on a.list_id = f.list_id
        "#,
        since,
        now
    )
    .fetch_all(db)
    .await
}

/// Ends messages that are no longer to be sent, with the reason.
pub async fn update_outbound_cancelled(
    db: impl PgExecutor<'_>,
    ids: &[i64],
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update outbound set status = 'cancelled', locked_until = null, last_error = $2 where id = any($1) and status = 'queued'",
        ids,
        reason
    )
    .execute(db)
    .await
    .map(|_| ())
}

pub async fn update_outbound_failed(
    db: impl PgExecutor<'_>,
    id: i64,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update outbound set status = 'failed', locked_until = null, last_error = $2 where id = $1 and status = 'queued'",
        id,
        error
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Seconds until the next queued message that nobody holds is due (`None` when there
/// is none). Read from the queue's index: the first row in due order that is not
/// leased. Rows held by a live worker are its business; an expired lease is found by
/// the polling that follows.
pub async fn seconds_until_next_due(db: &PgPool) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        select extract(epoch from min(next_attempt_at) - now())::float8
        from outbound
        where status = 'queued' and (locked_until is null or locked_until < now())
        "#
    )
    .fetch_one(db)
    .await
}

/// How many messages of the given purposes went to an address since `since`.
pub async fn count_recent_to(
    db: impl PgExecutor<'_>,
    recipient: &str,
    purposes: &[Purpose],
    since: OffsetDateTime,
) -> Result<i64, sqlx::Error> {
    let purposes = Purpose::texts(purposes);
    sqlx::query_scalar!(
        r#"
        select count(*) as "n!" from outbound
        where recipient_key = lower($1) and purpose = any($2) and created_at >= $3
          and post_id is null and digest_id is null
        "#,
        recipient,
        &purposes,
        since
    )
    .fetch_one(db)
    .await
}

/// Queues one copy of a prebuilt message per recipient (forwarding), in one statement.
pub async fn insert_outbound_copies(
    db: impl PgExecutor<'_>,
    list_id: Option<Uuid>,
    purpose: Purpose,
    envelope_from: &str,
    recipients: &[String],
    message: &[u8],
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        r#"
        insert into outbound (list_id, purpose, envelope_from, recipient, recipient_key, message)
        select $1, $2, $3, r, lower(r), $5 from unnest($4::text[]) as r
        "#,
        list_id,
        purpose.as_str(),
        envelope_from,
        recipients,
        message
    )
    .execute(db)
    .await?
    .rows_affected())
}

pub async fn find_queue_stats(db: &PgPool) -> Result<QueueStats, sqlx::Error> {
    let r = sqlx::query!(
        r#"
        select
          (select count(*) from outbound where status = 'queued') as "queued!",
          (select count(*) from outbound where status = 'queued' and next_attempt_at <= now()) as "due!",
          (select coalesce(extract(epoch from now() - min(next_attempt_at)), 0)::float8
             from outbound where status = 'queued' and next_attempt_at <= now()) as "oldest!",
          (select count(*) from inbound where status = 'new') as "inbound!",
          (select count(*) from post where status = 'held') as "held!"
        "#
    )
    .fetch_one(db)
    .await?;
    Ok(QueueStats {
        queued: r.queued,
        due: r.due,
        oldest_due_seconds: r.oldest,
        inbound_waiting: r.inbound,
        held: r.held,
    })
}

/// Deletes messages that were sent or ended before `before`; returns how many.
pub async fn delete_old_outbound(
    db: impl PgExecutor<'_>,
    before: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "delete from outbound where status <> 'queued' and created_at < $1",
        before
    )
    .execute(db)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ClaimedRow {
        ClaimedRow {
            id: 7,
            recipient: "bob@example.com".into(),
            attempts: 1,
            created_at: OffsetDateTime::UNIX_EPOCH,
            envelope_from: None,
            message: None,
            post_id: None,
            digest_id: None,
            member_id: None,
            member_since: None,
            member_status: None,
            member_delivery: None,
            member_short_id: None,
            member_unsubscribe_key: None,
        }
    }

    fn member_row(of: CopyOf) -> ClaimedRow {
        let (post_id, digest_id) = match of {
            CopyOf::Post(id) => (Some(id), None),
            CopyOf::Digest(id) => (None, Some(id)),
        };
        ClaimedRow {
            post_id,
            digest_id,
            member_id: Some(Uuid::nil()),
            member_since: Some(OffsetDateTime::UNIX_EPOCH),
            member_status: Some("subscribed".into()),
            member_delivery: Some("disabled".into()),
            member_short_id: Some(3),
            member_unsubscribe_key: Some(vec![1, 2]),
            ..row()
        }
    }

    #[test]
    fn a_row_with_its_bytes_is_a_whole_message() {
        let claimed = Claimed::from(ClaimedRow {
            envelope_from: Some("dev+bounces@lists.example.org".into()),
            message: Some(b"bytes".to_vec()),
            ..row()
        });
        assert_eq!(claimed.entry.id, 7);
        assert!(matches!(
            claimed.content,
            Content::Whole { envelope_from, message }
                if envelope_from == "dev+bounces@lists.example.org" && message == b"bytes"
        ));
    }

    #[test]
    fn a_copy_names_its_post_or_digest_and_its_member_as_they_are_now() {
        for of in [CopyOf::Post(11), CopyOf::Digest(12)] {
            let Content::Copy {
                of: read,
                member: Some(member),
                ..
            } = Claimed::from(member_row(of)).content
            else {
                panic!("{of:?}: not a copy with its member");
            };
            assert_eq!(read, of);
            assert_eq!(member.status, MemberStatus::Subscribed);
            assert_eq!(member.delivery, Delivery::Disabled);
            assert_eq!((member.short_id, member.unsubscribe_key), (3, vec![1, 2]));
        }
    }

    #[test]
    fn a_copy_whose_member_row_is_gone_has_no_member() {
        let claimed = Claimed::from(ClaimedRow {
            member_since: None,
            member_status: None,
            member_delivery: None,
            member_short_id: None,
            member_unsubscribe_key: None,
            ..member_row(CopyOf::Post(11))
        });
        assert!(matches!(
            claimed.content,
            Content::Copy { member: None, .. }
        ));
    }

    #[test]
    fn a_row_that_cannot_be_read_is_kept_as_unreadable_not_an_error_of_the_claim() {
        let neither = Claimed::from(row());
        assert!(matches!(neither.content, Content::Unreadable(_)));
        let odd_status = Claimed::from(ClaimedRow {
            member_status: Some("wandering".into()),
            ..member_row(CopyOf::Post(11))
        });
        assert!(
            matches!(odd_status.content, Content::Unreadable(why) if why.contains("wandering"))
        );
    }
}
