//! The `post` table (held and accepted posts, the archive) and the fan-out of an
//! accepted post into one `outbound` row per member.

use super::decode;
use crate::domain::post::PostStatus;
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

/// A post to record.
pub struct NewPost<'a> {
    pub list_id: Uuid,
    pub inbound_id: Option<i64>,
    pub message_id: Option<&'a str>,
    pub mail_from: Option<&'a str>,
    pub author: Option<&'a str>,
    pub subject: &'a str,
    pub raw: &'a [u8],
    pub status: PostStatus,
    pub reason: Option<&'a str>,
    pub automatic: bool,
    /// For a held post: the hash of the token of its `L+moderate+TOKEN@D` address.
    pub moderate_hash: Option<&'a [u8]>,
}

pub async fn insert_post(db: impl PgExecutor<'_>, p: &NewPost<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        insert into post (list_id, inbound_id, message_id, mail_from, author, subject, raw, status,
                          reason, automatic, decided_at, decided_by, moderate_hash)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                case when $8 = 'held' then null else now() end,
                case when $8 = 'held' then null else 'policy' end, $11)
        returning id
        "#,
        p.list_id,
        p.inbound_id,
        p.message_id,
        p.mail_from,
        p.author,
        p.subject,
        p.raw,
        p.status.as_str(),
        p.reason,
        p.automatic,
        p.moderate_hash
    )
    .fetch_one(db)
    .await
}

/// The post a received message already became on a list (processing repeated).
pub async fn find_post_by_inbound(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    inbound_id: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "select id from post where list_id = $1 and inbound_id = $2",
        list_id,
        inbound_id
    )
    .fetch_optional(db)
    .await
}

/// The post of a list whose moderation token has this hash.
pub async fn find_post_id_by_moderate_hash(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    hash: &[u8],
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "select id from post where moderate_hash = $1 and list_id = $2",
        hash,
        list_id
    )
    .fetch_optional(db)
    .await
}

/// Whether a post with this Message-ID reached the list since `since`.
pub async fn find_recent_post(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    message_id: &str,
    since: OffsetDateTime,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "select id from post where list_id = $1 and message_id = $2 and received_at >= $3 limit 1",
        list_id,
        message_id,
        since
    )
    .fetch_optional(db)
    .await
}

/// A post as the moderation commands see it.
#[derive(Debug, Clone)]
pub struct PostRow {
    pub id: i64,
    pub list_id: Uuid,
    pub message_id: Option<String>,
    pub mail_from: Option<String>,
    pub author: Option<String>,
    pub subject: String,
    pub raw: Vec<u8>,
    pub status: PostStatus,
    pub reason: Option<String>,
    pub automatic: bool,
    pub received_at: OffsetDateTime,
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by: Option<String>,
    pub copies: i32,
}

/// A post by id. Inside a transaction the row stays locked until it ends (two
/// moderators acting on one post at once: the second sees the first one's decision).
pub async fn find_post(db: impl PgExecutor<'_>, id: i64) -> Result<Option<PostRow>, sqlx::Error> {
    let Some(r) = sqlx::query!(
        r#"
        select id, list_id, message_id, mail_from, author, subject, raw, status, reason, automatic,
               received_at, decided_at, decided_by, copies
        from post where id = $1 for update
        "#,
        id
    )
    .fetch_optional(db)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(PostRow {
        id: r.id,
        list_id: r.list_id,
        message_id: r.message_id,
        mail_from: r.mail_from,
        author: r.author,
        subject: r.subject,
        raw: r.raw,
        status: decode("post status", &r.status)?,
        reason: r.reason,
        automatic: r.automatic,
        received_at: r.received_at,
        decided_at: r.decided_at,
        decided_by: r.decided_by,
        copies: r.copies,
    }))
}

/// A held post in a listing (without its bytes).
#[derive(Debug, Clone)]
pub struct HeldRow {
    pub id: i64,
    /// The list's posting address, in parts.
    pub local_part: String,
    pub domain: String,
    pub author: Option<String>,
    pub mail_from: Option<String>,
    pub subject: String,
    pub reason: Option<String>,
    pub received_at: OffsetDateTime,
}

/// Held posts, oldest first; of one list, or of every list.
pub async fn list_held(
    db: impl PgExecutor<'_>,
    list_id: Option<Uuid>,
) -> Result<Vec<HeldRow>, sqlx::Error> {
    sqlx::query_as!(
        HeldRow,
        r#"
        select p.id, l.local_part, l.domain, p.author, p.mail_from, p.subject, p.reason, p.received_at
        from post p join list l on l.id = p.list_id
        where p.status = 'held' and ($1::uuid is null or p.list_id = $1)
        order by p.received_at, p.id
        "#,
        list_id
    )
    .fetch_all(db)
    .await
}

/// Records a moderator's decision to reject or discard.
pub async fn update_post_decided(
    db: impl PgExecutor<'_>,
    id: i64,
    status: PostStatus,
    reason: Option<&str>,
    decided_by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update post set status = $2, reason = coalesce($3, reason), decided_at = now(), decided_by = $4
        where id = $1
        "#,
        id,
        status.as_str(),
        reason,
        decided_by
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Marks a post accepted with the bytes its copies share, and the layout of its
/// copies when they carry the list's footer.
pub async fn update_post_accepted(
    db: impl PgExecutor<'_>,
    id: i64,
    relayed: &[u8],
    copy_layout: Option<&[u8]>,
    copies: i32,
    decided_by: &str,
    note: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update post set status = 'accepted', relayed = $2, copies = $3, decided_at = now(),
                        decided_by = $4, reason = coalesce($5, reason), copy_layout = $6
        where id = $1
        "#,
        id,
        relayed,
        copies,
        decided_by,
        note,
        copy_layout
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// What the fan-out of one post queued and recorded.
#[derive(Debug, Clone, Copy, Default)]
pub struct FanOut {
    /// Single copies queued.
    pub copies: i64,
    /// Digest members now owed the post.
    pub owed: i64,
}

/// The fan-out, in one statement (one snapshot of the members): queues one copy of
/// the post for every subscribed member of the list with delivery enabled who takes
/// single copies (everyone when `digests` is false), and records the post as owed to
/// each of the others (docs/standards.md#digest-exactly-once). The author is left out
/// of the single copies when they turned their own posts off; a digest carries every
/// post. The copies name the post, not the list: a foreign-key check per copy would
/// double the statement's cost.
pub async fn insert_post_copies(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    post_id: i64,
    author_key: Option<&str>,
    digests: bool,
) -> Result<FanOut, sqlx::Error> {
    let r = sqlx::query!(
        r#"
        with m as (
            select m.id, m.address, m.address_key, m.mode, m.own_posts
            from member m
            where m.list_id = $1 and m.role = 'member' and m.status = 'subscribed'
              and m.delivery = 'enabled'
        ),
        copies as (
            insert into outbound (purpose, recipient, recipient_key, post_id, member_id)
            select 'post', m.address, m.address_key, $2, m.id
            from m
            where (m.mode = 'each' or not $4)
              and (m.own_posts or m.address_key is distinct from $3)
            returning 1
        ),
        owed as (
            insert into digest_owed (list_id, post_id, member_id)
            select $1, $2, m.id from m where m.mode <> 'each' and $4
            returning 1
        )
        select (select count(*) from copies) as "copies!", (select count(*) from owed) as "owed!"
        "#,
        list_id,
        post_id,
        author_key,
        digests
    )
    .fetch_one(db)
    .await?;
    Ok(FanOut {
        copies: r.copies,
        owed: r.owed,
    })
}

/// What every copy of an accepted post shares, for the delivery workers.
#[derive(Debug, Clone)]
pub struct RelayedPost {
    pub local_part: String,
    pub domain: String,
    pub relayed: Vec<u8>,
    /// `mail::footer::CopyLayout` in its stored form, when copies carry a footer.
    pub copy_layout: Option<Vec<u8>>,
}

pub async fn find_relayed_post(
    db: impl PgExecutor<'_>,
    post_id: i64,
) -> Result<Option<RelayedPost>, sqlx::Error> {
    sqlx::query_as!(
        RelayedPost,
        r#"
        select l.local_part, l.domain, p.relayed as "relayed!", p.copy_layout
        from post p join list l on l.id = p.list_id
        where p.id = $1 and p.relayed is not null
        "#,
        post_id
    )
    .fetch_optional(db)
    .await
}

/// How many posts a list has archived (accepted).
pub async fn count_archived(db: impl PgExecutor<'_>, list_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select count(*) as "n!" from post where list_id = $1 and status = 'accepted'"#,
        list_id
    )
    .fetch_one(db)
    .await
}

/// A held post for the console: its row and the first 64 KiB of its message (enough
/// for the first lines of its text, without reading a large post whole).
#[derive(Debug, Clone)]
pub struct HeldHead {
    pub id: i64,
    pub author: Option<String>,
    pub mail_from: Option<String>,
    pub subject: String,
    pub reason: Option<String>,
    pub received_at: OffsetDateTime,
    pub head: Vec<u8>,
}

/// A list's held posts, oldest first, at most `limit`.
pub async fn list_held_heads(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    limit: i64,
) -> Result<Vec<HeldHead>, sqlx::Error> {
    sqlx::query_as!(
        HeldHead,
        r#"
        select id, author, mail_from, subject, reason, received_at,
               substring(raw from 1 for 65536) as "head!"
        from post
        where list_id = $1 and status = 'held'
        order by received_at, id
        limit $2
        "#,
        list_id,
        limit
    )
    .fetch_all(db)
    .await
}

/// A post a person decided (not the policy).
#[derive(Debug, Clone)]
pub struct DecidedRow {
    pub id: i64,
    pub author: Option<String>,
    pub mail_from: Option<String>,
    pub subject: String,
    pub status: PostStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
}

/// The posts of a list that people decided lately, newest first.
pub async fn list_recent_decisions(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    limit: i64,
) -> Result<Vec<DecidedRow>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"
        select id, author, mail_from, subject, status, decided_by, decided_at
        from post
        where list_id = $1 and decided_by <> 'policy'
        order by decided_at desc, id desc
        limit $2
        "#,
        list_id,
        limit
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(DecidedRow {
                id: r.id,
                author: r.author,
                mail_from: r.mail_from,
                subject: r.subject,
                status: decode("post status", &r.status)?,
                decided_by: r.decided_by,
                decided_at: r.decided_at,
            })
        })
        .collect()
}

/// Adds an address to a list's `accept-senders`, unless it is there in any case.
pub async fn update_list_accept_sender(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    address: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update list set accept_senders = accept_senders || $2::text, updated_at = now()
        where id = $1 and not exists (select 1 from unnest(accept_senders) a where lower(a) = lower($2))
        "#,
        list_id,
        address
    )
    .execute(db)
    .await
    .map(|_| ())
}
