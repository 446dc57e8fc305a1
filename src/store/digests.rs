//! Digests in the database: what digest members are owed (`digest_owed`, written by
//! the fan-out in `posts`), the posts waiting for a list's next issue, the issues and
//! the bytes their copies share, and the copies themselves in `outbound`.

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

/// Whether the list sends digests, reading its row with a share lock for the rest of
/// the transaction: a fan-out and a change of the `digest` setting then happen one
/// after the other, so no post is owed to a digest the setting just ended.
pub async fn find_digest_on_for_share(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!("select digest from list where id = $1 for share", list_id)
        .fetch_one(db)
        .await
}

/// Records a post as waiting for the list's next issue.
pub async fn insert_digest_post(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    post_id: i64,
    size: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into digest_post (list_id, post_id, size) values ($1, $2, $3) on conflict do nothing",
        list_id,
        post_id,
        size
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// What waits for a list's next issue.
#[derive(Debug, Clone, Copy)]
pub struct Waiting {
    pub bytes: i64,
    pub oldest: Option<OffsetDateTime>,
}

pub async fn find_waiting(db: impl PgExecutor<'_>, list_id: Uuid) -> Result<Waiting, sqlx::Error> {
    let r = sqlx::query!(
        r#"select coalesce(sum(size), 0)::int8 as "bytes!", min(accepted_at) as oldest
           from digest_post where list_id = $1"#,
        list_id
    )
    .fetch_one(db)
    .await?;
    Ok(Waiting {
        bytes: r.bytes,
        oldest: r.oldest,
    })
}

/// Lists with posts waiting, with the oldest one's time.
pub async fn list_waiting_lists(
    db: impl PgExecutor<'_>,
) -> Result<Vec<(Uuid, OffsetDateTime)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select list_id, min(accepted_at) as "oldest!" from digest_post group by list_id"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.list_id, r.oldest)).collect())
}

/// Members owed the same posts, who take the same format.
#[derive(Debug, Clone)]
pub struct OwedGroup {
    pub plain: bool,
    pub post_ids: Vec<i64>,
    pub member_ids: Vec<Uuid>,
}

/// Takes everything the list's digest members are owed: the rows are deleted (the
/// caller queues the issue in the same transaction) and the members still subscribed
/// with delivery enabled are returned, grouped by the posts they are owed and their
/// format (a member now in `each` mode gets the MIME format). What a member who left
/// or turned delivery off was owed is dropped with the rest. The waiting posts taken
/// are no longer waiting. A fan-out not yet committed is not seen: its rows stay for
/// the next issue.
pub async fn take_owed(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
) -> Result<(Vec<i64>, Vec<OwedGroup>), sqlx::Error> {
    let rows = sqlx::query!(
        r#"
        with taken as (
            delete from digest_owed where list_id = $1 returning post_id, member_id
        ),
        cleared as (
            delete from digest_post
            where list_id = $1 and post_id in (select post_id from taken)
            returning post_id
        ),
        per_member as (
            select member_id, array_agg(post_id order by post_id) as posts
            from taken group by member_id
        ),
        groups as (
            select (m.mode = 'digest-plain') as plain, pm.posts,
                   array_agg(m.id order by m.id) as members
            from per_member pm join member m on m.id = pm.member_id
            where m.status = 'subscribed' and m.delivery = 'enabled'
            group by 1, 2
        )
        select null::bool as plain, array(select distinct post_id from taken order by 1) as "posts!",
               null::uuid[] as members
        union all
        select plain, posts, members from groups
        "#,
        list_id
    )
    .fetch_all(db)
    .await?;
    let mut taken = Vec::new();
    let mut groups = Vec::new();
    for r in rows {
        match (r.plain, r.members) {
            (Some(plain), Some(members)) => groups.push(OwedGroup {
                plain,
                post_ids: r.posts,
                member_ids: members,
            }),
            _ => taken = r.posts,
        }
    }
    Ok((taken, groups))
}

/// A post as a digest carries it.
#[derive(Debug, Clone)]
pub struct DigestPost {
    pub id: i64,
    pub subject: String,
    pub author: Option<String>,
    pub relayed: Vec<u8>,
}

/// The posts of an issue, in the order they were accepted.
pub async fn list_digest_posts(
    db: impl PgExecutor<'_>,
    ids: &[i64],
) -> Result<Vec<DigestPost>, sqlx::Error> {
    sqlx::query_as!(
        DigestPost,
        r#"
        select id, subject, author, relayed as "relayed!"
        from post where id = any($1) and relayed is not null
        order by decided_at, id
        "#,
        ids
    )
    .fetch_all(db)
    .await
}

/// Numbers a new issue of the list in `volume` (the caller holds the list's digest
/// lock); returns its id and number.
pub async fn insert_digest_issue(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    volume: i32,
    posts: i32,
) -> Result<(i64, i32), sqlx::Error> {
    let r = sqlx::query!(
        r#"
        insert into digest_issue (list_id, volume, number, posts)
        select $1, $2, coalesce(max(number), 0) + 1, $3
        from digest_issue where list_id = $1 and volume = $2
        returning id, number
        "#,
        list_id,
        volume,
        posts
    )
    .fetch_one(db)
    .await?;
    Ok((r.id, r.number))
}

/// Keeps the bytes one edition's copies share, and their layout with the list's
/// footer when it has one; returns its id.
pub async fn insert_digest_edition(
    db: impl PgExecutor<'_>,
    issue_id: i64,
    list_id: Uuid,
    plain: bool,
    post_ids: &[i64],
    message: &[u8],
    copy_layout: Option<&[u8]>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        insert into digest_edition (issue_id, list_id, plain, post_ids, message, copy_layout)
        values ($1, $2, $3, $4, $5, $6) returning id
        "#,
        issue_id,
        list_id,
        plain,
        post_ids,
        message,
        copy_layout
    )
    .fetch_one(db)
    .await
}

/// Queues one copy of an edition per member, in one statement.
pub async fn insert_digest_copies(
    db: impl PgExecutor<'_>,
    edition_id: i64,
    member_ids: &[Uuid],
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        r#"
        insert into outbound (purpose, recipient, recipient_key, digest_id, member_id)
        select 'digest', m.address, m.address_key, $1, m.id
        from member m where m.id = any($2)
        "#,
        edition_id,
        member_ids
    )
    .execute(db)
    .await?
    .rows_affected())
}

/// What every copy of an edition shares, for the delivery workers.
#[derive(Debug, Clone)]
pub struct SharedEdition {
    pub local_part: String,
    pub domain: String,
    pub message: Vec<u8>,
    pub copy_layout: Option<Vec<u8>>,
}

pub async fn find_digest_edition(
    db: impl PgExecutor<'_>,
    id: i64,
) -> Result<Option<SharedEdition>, sqlx::Error> {
    sqlx::query_as!(
        SharedEdition,
        r#"
        select l.local_part, l.domain, e.message, e.copy_layout
        from digest_edition e join list l on l.id = e.list_id
        where e.id = $1
        "#,
        id
    )
    .fetch_optional(db)
    .await
}

/// Deletes what is owed on lists that no longer exist, and editions made before
/// `before` whose copies are all done; returns how many rows went.
pub async fn delete_old_digest_rows(
    db: &mut sqlx::PgConnection,
    before: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    let orphans = sqlx::query!(
        "delete from digest_owed d where not exists (select 1 from list l where l.id = d.list_id)"
    )
    .execute(&mut *db)
    .await?
    .rows_affected();
    let editions = sqlx::query!(
        r#"
        delete from digest_edition e
        where e.created_at < $1
          and not exists (select 1 from outbound o where o.digest_id = e.id and o.status = 'queued')
        "#,
        before
    )
    .execute(&mut *db)
    .await?
    .rows_affected();
    Ok(orphans + editions)
}
