//! The `list` table.

use super::decode;
use crate::domain::{List, ListAddress, ListSettings};
use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

struct ListRow {
    id: Uuid,
    local_part: String,
    domain: String,
    name: String,
    description: String,
    subscription: String,
    posting: String,
    nonmember_action: String,
    subject_prefix: String,
    reply_to: String,
    dmarc: String,
    advertised: bool,
    bounce_score_threshold: i32,
    bounce_stale_days: i32,
    bounce_warnings: i32,
    bounce_warning_interval_days: i32,
    accept_senders: Vec<String>,
    archive: String,
    footer: String,
    footer_text: String,
    digest: bool,
    digest_size_kb: i32,
    digest_frequency: String,
    created_at: OffsetDateTime,
}

impl TryFrom<ListRow> for List {
    type Error = sqlx::Error;
    fn try_from(r: ListRow) -> Result<Self, Self::Error> {
        Ok(List {
            id: r.id,
            address: ListAddress::from_parts(&r.local_part, &r.domain),
            settings: ListSettings {
                name: r.name,
                description: r.description,
                subscription: decode("subscription", &r.subscription)?,
                posting: decode("posting", &r.posting)?,
                nonmember_action: decode("nonmember_action", &r.nonmember_action)?,
                subject_prefix: r.subject_prefix,
                reply_to: decode("reply_to", &r.reply_to)?,
                dmarc: decode("dmarc", &r.dmarc)?,
                advertised: r.advertised,
                bounce_score_threshold: r.bounce_score_threshold,
                bounce_stale_days: r.bounce_stale_days,
                bounce_warnings: r.bounce_warnings,
                bounce_warning_interval_days: r.bounce_warning_interval_days,
                accept_senders: r.accept_senders,
                archive: decode("archive", &r.archive)?,
                footer: decode("footer", &r.footer)?,
                footer_text: r.footer_text,
                digest: r.digest,
                digest_size_kb: r.digest_size_kb,
                digest_frequency: decode("digest_frequency", &r.digest_frequency)?,
            },
            created_at: r.created_at,
        })
    }
}

/// Inserts a list; a duplicate address or list-id is a unique violation on
/// `list_address_key` or `list_list_id_key`.
pub async fn insert_list(
    db: impl PgExecutor<'_>,
    address: &ListAddress,
    s: &ListSettings,
) -> Result<List, sqlx::Error> {
    sqlx::query_as!(
        ListRow,
        r#"
        insert into list (local_part, domain, name, description, subscription, posting, nonmember_action,
                          subject_prefix, reply_to, dmarc, advertised, bounce_score_threshold,
                          bounce_stale_days, bounce_warnings, bounce_warning_interval_days,
                          accept_senders, archive, footer, footer_text, digest, digest_size_kb,
                          digest_frequency)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
                $20, $21, $22)
        returning id, local_part, domain, name, description, subscription, posting, nonmember_action,
                  subject_prefix, reply_to, dmarc, advertised, bounce_score_threshold, bounce_stale_days,
                  bounce_warnings, bounce_warning_interval_days, accept_senders, archive, footer, footer_text,
                  digest, digest_size_kb, digest_frequency, created_at
        "#,
        address.local_part(),
        address.domain(),
        s.name,
        s.description,
        s.subscription.as_str(),
        s.posting.as_str(),
        s.nonmember_action.as_str(),
        s.subject_prefix,
        s.reply_to.as_str(),
        s.dmarc.as_str(),
        s.advertised,
        s.bounce_score_threshold,
        s.bounce_stale_days,
        s.bounce_warnings,
        s.bounce_warning_interval_days,
        &s.accept_senders,
        s.archive.as_str(),
        s.footer.as_str(),
        s.footer_text,
        s.digest,
        s.digest_size_kb,
        s.digest_frequency.as_str(),
    )
    .fetch_one(db)
    .await?
    .try_into()
}

/// Finds a list by its list-id (`dev.lists.example.org`).
pub async fn find_list(
    db: impl PgExecutor<'_>,
    list_id: &str,
) -> Result<Option<List>, sqlx::Error> {
    sqlx::query_as!(
        ListRow,
        r#"
        select id, local_part, domain, name, description, subscription, posting, nonmember_action,
               subject_prefix, reply_to, dmarc, advertised, bounce_score_threshold, bounce_stale_days,
               bounce_warnings, bounce_warning_interval_days, accept_senders, archive, footer, footer_text,
               digest, digest_size_kb, digest_frequency, created_at
        from list where list_id = $1
        "#,
        list_id
    )
    .fetch_optional(db)
    .await?
    .map(List::try_from)
    .transpose()
}

/// The list-id of the oldest list at `domain` (of any list, for `None`).
pub async fn find_first_list_id(
    db: impl PgExecutor<'_>,
    domain: Option<&str>,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "select list_id from list where ($1::text is null or domain = $1)
         order by created_at, id limit 1",
    )
    .bind(domain)
    .fetch_optional(db)
    .await
}

/// Finds a list by id, locking its row for the rest of the transaction.
pub async fn find_list_by_id(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<List>, sqlx::Error> {
    sqlx::query_as!(
        ListRow,
        r#"
        select id, local_part, domain, name, description, subscription, posting, nonmember_action,
               subject_prefix, reply_to, dmarc, advertised, bounce_score_threshold, bounce_stale_days,
               bounce_warnings, bounce_warning_interval_days, accept_senders, archive, footer, footer_text,
               digest, digest_size_kb, digest_frequency, created_at
        from list where id = $1
        "#,
        id
    )
    .fetch_optional(db)
    .await?
    .map(List::try_from)
    .transpose()
}

/// A list's head counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Subscribed and pending members (role member).
    pub members: i64,
    pub pending: i64,
    /// Accepted posts (the archive) and posts awaiting moderation.
    pub posts: i64,
    pub held: i64,
}

/// A list with its head counts.
pub struct ListCounts {
    pub list: List,
    pub counts: Counts,
}

/// The head counts of one list.
pub async fn find_counts(db: impl PgExecutor<'_>, list_id: Uuid) -> Result<Counts, sqlx::Error> {
    let r = sqlx::query!(
        r#"
        select
          (select count(*) from member m
           where m.list_id = $1 and m.role = 'member' and m.status = 'subscribed') as "members!",
          (select count(*) from member m
           where m.list_id = $1 and m.role = 'member' and m.status = 'pending') as "pending!",
          (select count(*) from post p where p.list_id = $1 and p.status = 'accepted') as "posts!",
          (select count(*) from post p where p.list_id = $1 and p.status = 'held') as "held!"
        "#,
        list_id
    )
    .fetch_one(db)
    .await?;
    Ok(Counts {
        members: r.members,
        pending: r.pending,
        posts: r.posts,
        held: r.held,
    })
}

/// Every list, by address, with its head counts.
pub async fn all_lists(db: &PgPool, advertised_only: bool) -> Result<Vec<ListCounts>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"
        select l.id, l.local_part, l.domain, l.name, l.description, l.subscription, l.posting,
               l.nonmember_action, l.subject_prefix, l.reply_to, l.dmarc, l.advertised,
               l.bounce_score_threshold, l.bounce_stale_days, l.bounce_warnings,
               l.bounce_warning_interval_days, l.accept_senders, l.archive, l.footer, l.footer_text,
               l.digest, l.digest_size_kb, l.digest_frequency, l.created_at,
               count(m.id) filter (where m.role = 'member' and m.status = 'subscribed') as "members!",
               count(m.id) filter (where m.role = 'member' and m.status = 'pending') as "pending!",
               (select count(*) from post p where p.list_id = l.id and p.status = 'accepted') as "posts!",
               (select count(*) from post p where p.list_id = l.id and p.status = 'held') as "held!"
        from list l left join member m on m.list_id = l.id
        where l.advertised or not $1
        group by l.id
        order by l.domain, l.local_part
        "#,
        advertised_only
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            let list = List::try_from(ListRow {
                id: r.id,
                local_part: r.local_part,
                domain: r.domain,
                name: r.name,
                description: r.description,
                subscription: r.subscription,
                posting: r.posting,
                nonmember_action: r.nonmember_action,
                subject_prefix: r.subject_prefix,
                reply_to: r.reply_to,
                dmarc: r.dmarc,
                advertised: r.advertised,
                bounce_score_threshold: r.bounce_score_threshold,
                bounce_stale_days: r.bounce_stale_days,
                bounce_warnings: r.bounce_warnings,
                bounce_warning_interval_days: r.bounce_warning_interval_days,
                accept_senders: r.accept_senders,
                archive: r.archive,
                footer: r.footer,
                footer_text: r.footer_text,
                digest: r.digest,
                digest_size_kb: r.digest_size_kb,
                digest_frequency: r.digest_frequency,
                created_at: r.created_at,
            })?;
            Ok(ListCounts {
                list,
                counts: Counts {
                    members: r.members,
                    pending: r.pending,
                    posts: r.posts,
                    held: r.held,
                },
            })
        })
        .collect()
}

/// Writes every setting of a list.
pub async fn update_list_settings(
    db: impl PgExecutor<'_>,
    id: Uuid,
    s: &ListSettings,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update list set name = $2, description = $3, subscription = $4, posting = $5,
               nonmember_action = $6, subject_prefix = $7, reply_to = $8, dmarc = $9, advertised = $10,
               bounce_score_threshold = $11, bounce_stale_days = $12, bounce_warnings = $13,
               bounce_warning_interval_days = $14, accept_senders = $15, archive = $16, footer = $17, footer_text = $18,
               digest = $19, digest_size_kb = $20, digest_frequency = $21, updated_at = now()
        where id = $1
        "#,
        id,
        s.name,
        s.description,
        s.subscription.as_str(),
        s.posting.as_str(),
        s.nonmember_action.as_str(),
        s.subject_prefix,
        s.reply_to.as_str(),
        s.dmarc.as_str(),
        s.advertised,
        s.bounce_score_threshold,
        s.bounce_stale_days,
        s.bounce_warnings,
        s.bounce_warning_interval_days,
        &s.accept_senders,
        s.archive.as_str(),
        s.footer.as_str(),
        s.footer_text,
        s.digest,
        s.digest_size_kb,
        s.digest_frequency.as_str(),
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Deletes a list and, by cascade, everything that belongs to it.
pub async fn delete_list(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!("delete from list where id = $1", id)
        .execute(db)
        .await?
        .rows_affected()
        > 0)
}

/// A list someone runs, with what waits for them there.
#[derive(Debug, Clone)]
pub struct RunListRow {
    pub id: Uuid,
    pub local_part: String,
    pub domain: String,
    pub name: String,
    /// `owner` or `moderator`: the highest role the address holds (none for a site
    /// admin who holds no role there).
    pub role: Option<String>,
    pub held: i64,
    /// Subscriptions confirmed by the mailbox, waiting for an owner.
    pub waiting: i64,
}

/// The lists an address owns or moderates (every list, with `every_list`), by address.
pub async fn list_lists_run_by(
    db: impl PgExecutor<'_>,
    address_key: &str,
    every_list: bool,
) -> Result<Vec<RunListRow>, sqlx::Error> {
    sqlx::query_as!(
        RunListRow,
        r#"
        with staff as (
            select list_id, case when bool_or(role = 'owner') then 'owner' else 'moderator' end as role
            from member
            where address_key = $1 and role <> 'member' and status = 'subscribed'
            group by list_id
        )
        select l.id, l.local_part, l.domain, l.name, s.role as "role?",
               (select count(*) from post p where p.list_id = l.id and p.status = 'held') as "held!",
               (select count(*) from member m
                where m.list_id = l.id and m.role = 'member' and m.status = 'pending'
                  and m.confirmed_at is not null) as "waiting!"
        from list l left join staff s on s.list_id = l.id
        where $2 or s.list_id is not null
        order by l.domain, l.local_part
        "#,
        address_key,
        every_list
    )
    .fetch_all(db)
    .await
}
