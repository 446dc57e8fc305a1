//! The `member` table: one row per (list, role, address), kept after the person
//! leaves so the consent record and the withdrawal survive.

use super::decode;
use crate::domain::{Consent, EmailAddress, Evidence, Member, MemberStatus, Role, Source};
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

struct MemberRow {
    id: Uuid,
    list_id: Uuid,
    address: String,
    name: Option<String>,
    role: String,
    status: String,
    delivery: String,
    mode: String,
    bounce_score: i32,
    own_posts: bool,
    subscribed_at: Option<OffsetDateTime>,
    requested_at: Option<OffsetDateTime>,
    request_source: Option<String>,
    request_ip: Option<String>,
    request_user_agent: Option<String>,
    request_message_id: Option<String>,
    request_form_text: Option<String>,
    confirmed_at: Option<OffsetDateTime>,
    confirm_method: Option<String>,
    confirm_ip: Option<String>,
    confirm_message_id: Option<String>,
    unsubscribed_at: Option<OffsetDateTime>,
    unsubscribe_method: Option<String>,
}

impl TryFrom<MemberRow> for Member {
    type Error = sqlx::Error;
    fn try_from(r: MemberRow) -> Result<Self, Self::Error> {
        Ok(Member {
            id: r.id,
            list_id: r.list_id,
            address: r.address,
            name: r.name,
            role: decode("role", &r.role)?,
            status: decode("status", &r.status)?,
            delivery: decode("delivery", &r.delivery)?,
            mode: decode("mode", &r.mode)?,
            bounce_score: r.bounce_score,
            own_posts: r.own_posts,
            subscribed_at: r.subscribed_at,
            consent: Consent {
                requested_at: r.requested_at,
                request_source: r
                    .request_source
                    .as_deref()
                    .map(|s| decode::<Source>("request_source", s))
                    .transpose()?,
                request_ip: r.request_ip,
                request_user_agent: r.request_user_agent,
                request_message_id: r.request_message_id,
                request_form_text: r.request_form_text,
                confirmed_at: r.confirmed_at,
                confirm_method: r.confirm_method,
                confirm_ip: r.confirm_ip,
                confirm_message_id: r.confirm_message_id,
                unsubscribed_at: r.unsubscribed_at,
                unsubscribe_method: r.unsubscribe_method,
            },
        })
    }
}

/// Finds one role of an address on a list.
pub async fn find_member(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    role: Role,
    address: &EmailAddress,
) -> Result<Option<Member>, sqlx::Error> {
    sqlx::query_as!(
        MemberRow,
        r#"
        select id, list_id, address, name, role, status, delivery, mode, bounce_score, own_posts, subscribed_at, requested_at,
               request_source, request_ip, request_user_agent, request_message_id, request_form_text,
               confirmed_at, confirm_method, confirm_ip, confirm_message_id, unsubscribed_at, unsubscribe_method
        from member where list_id = $1 and role = $2 and address_key = $3
        "#,
        list_id,
        role.as_str(),
        address.key()
    )
    .fetch_optional(db)
    .await?
    .map(Member::try_from)
    .transpose()
}

/// One page of a list's members of one role, in address-key order, after the key
/// `after` (keyset pagination: every page costs the same, however deep).
pub async fn list_members_page(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    role: Role,
    status: Option<MemberStatus>,
    delivery_disabled_only: bool,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Member>, sqlx::Error> {
    sqlx::query_as!(
        MemberRow,
        r#"
        select id, list_id, address, name, role, status, delivery, mode, bounce_score, own_posts, subscribed_at, requested_at,
               request_source, request_ip, request_user_agent, request_message_id, request_form_text,
               confirmed_at, confirm_method, confirm_ip, confirm_message_id, unsubscribed_at, unsubscribe_method
        from member
        where list_id = $1 and role = $2 and ($3::text is null or status = $3)
          and (not $4 or delivery = 'disabled')
          and ($5::text is null or address_key > $5)
        order by address_key
        limit $6
        "#,
        list_id,
        role.as_str(),
        status.map(MemberStatus::as_str),
        delivery_disabled_only,
        after,
        limit
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(Member::try_from)
    .collect()
}

/// Every role an address holds on a list.
pub async fn find_member_roles(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    address: &EmailAddress,
) -> Result<Vec<Member>, sqlx::Error> {
    sqlx::query_as!(
        MemberRow,
        r#"
        select id, list_id, address, name, role, status, delivery, mode, bounce_score, own_posts, subscribed_at, requested_at,
               request_source, request_ip, request_user_agent, request_message_id, request_form_text,
               confirmed_at, confirm_method, confirm_ip, confirm_message_id, unsubscribed_at, unsubscribe_method
        from member where list_id = $1 and address_key = $2
        order by role
        "#,
        list_id,
        address.key()
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(Member::try_from)
    .collect()
}

/// Every current or waiting role of an address, on every list (for `/me`), oldest
/// list first.
pub async fn find_memberships_of(
    db: impl PgExecutor<'_>,
    address: &EmailAddress,
) -> Result<Vec<Member>, sqlx::Error> {
    sqlx::query_as!(
        MemberRow,
        r#"
        select m.id, m.list_id, m.address, m.name, m.role, m.status, m.delivery, m.mode, m.bounce_score,
               m.own_posts, m.subscribed_at, m.requested_at, m.request_source, m.request_ip,
               m.request_user_agent, m.request_message_id, m.request_form_text, m.confirmed_at,
               m.confirm_method, m.confirm_ip, m.confirm_message_id, m.unsubscribed_at, m.unsubscribe_method
        from member m join list l on l.id = m.list_id
        where m.address_key = $1 and m.status in ('subscribed', 'pending')
        order by l.created_at, l.id, m.role
        "#,
        address.key()
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(Member::try_from)
    .collect()
}

/// Finds a member row by id, locking it for the rest of the transaction.
pub async fn find_member_by_id_for_update(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<Member>, sqlx::Error> {
    sqlx::query_as!(
        MemberRow,
        r#"
        select id, list_id, address, name, role, status, delivery, mode, bounce_score, own_posts, subscribed_at, requested_at,
               request_source, request_ip, request_user_agent, request_message_id, request_form_text,
               confirmed_at, confirm_method, confirm_ip, confirm_message_id, unsubscribed_at, unsubscribe_method
        from member where id = $1
        for update
        "#,
        id
    )
    .fetch_optional(db)
    .await?
    .map(Member::try_from)
    .transpose()
}

/// The id of the member a VERP address names by its short id.
pub async fn find_member_id_by_short_id(
    db: impl PgExecutor<'_>,
    short_id: i64,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!("select id from member where short_id = $1", short_id)
        .fetch_optional(db)
        .await
}

/// The id of the member of a list whose current unsubscribe key this is (the
/// `L+unsubscribe+TOKEN@D` address names it).
pub async fn find_member_id_by_unsubscribe_key(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    key: &[u8],
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "select id from member where unsubscribe_key = $1 and list_id = $2 and role = 'member'",
        key,
        list_id
    )
    .fetch_optional(db)
    .await
}

/// Members of a list, filtered by role and status, by address.
pub async fn list_members(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    role: Option<Role>,
    status: Option<MemberStatus>,
) -> Result<Vec<Member>, sqlx::Error> {
    sqlx::query_as!(
        MemberRow,
        r#"
        select id, list_id, address, name, role, status, delivery, mode, bounce_score, own_posts, subscribed_at, requested_at,
               request_source, request_ip, request_user_agent, request_message_id, request_form_text,
               confirmed_at, confirm_method, confirm_ip, confirm_message_id, unsubscribed_at, unsubscribe_method
        from member
        where list_id = $1 and ($2::text is null or role = $2) and ($3::text is null or status = $3)
        order by address_key, role
        "#,
        list_id,
        role.map(Role::as_str),
        status.map(MemberStatus::as_str)
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(Member::try_from)
    .collect()
}

/// A membership to record as current (subscribed) now.
pub struct NewMembership<'a> {
    pub address: &'a EmailAddress,
    pub name: Option<&'a str>,
    pub role: Role,
    pub request_source: Source,
    pub requested_at: Option<OffsetDateTime>,
    pub request: &'a Evidence,
    /// How the membership was confirmed (web, mail, admin or import).
    pub confirm_method: Source,
    pub confirm: &'a Evidence,
}

/// Records a confirmed membership: inserts the row, or turns an existing row (pending,
/// or a past membership) into a new membership with fresh consent evidence. `status`
/// is `subscribed`, or `pending` when an owner must still approve.
pub async fn upsert_confirmed_member(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    m: &NewMembership<'_>,
    status: MemberStatus,
) -> Result<Member, sqlx::Error> {
    sqlx::query_as!(
        MemberRow,
        r#"
        insert into member (list_id, address, address_key, name, role, status, delivery, subscribed_at,
                            requested_at, request_source, request_ip, request_user_agent, request_message_id,
                            request_form_text, confirmed_at, confirm_method, confirm_ip, confirm_message_id)
        values ($1, $2, $3, $4, $5, $15, 'enabled', case when $15 = 'subscribed' then now() end, coalesce($6, now()), $7, $8, $9, $10, $11,
                now(), $12, $13, $14)
        on conflict on constraint member_list_address_role_key do update set
            address = excluded.address,
            name = coalesce(excluded.name, member.name),
            status = excluded.status,
            delivery = 'enabled',
            subscribed_at = excluded.subscribed_at,
            unsubscribe_key = excluded.unsubscribe_key,
            requested_at = excluded.requested_at,
            request_source = excluded.request_source,
            request_ip = excluded.request_ip,
            request_user_agent = excluded.request_user_agent,
            request_message_id = excluded.request_message_id,
            request_form_text = excluded.request_form_text,
            confirmed_at = excluded.confirmed_at,
            confirm_method = excluded.confirm_method,
            confirm_ip = excluded.confirm_ip,
            confirm_message_id = excluded.confirm_message_id,
            unsubscribed_at = null,
            unsubscribe_method = null,
            -- a new membership starts with no bounces
            bounce_score = 0,
            bounce_scored_at = null,
            bounce_disabled_at = null,
            bounce_warnings_sent = 0,
            bounce_warned_at = null,
            updated_at = now()
        returning id, list_id, address, name, role, status, delivery, mode, bounce_score, own_posts, subscribed_at, requested_at,
               request_source, request_ip, request_user_agent, request_message_id, request_form_text,
               confirmed_at, confirm_method, confirm_ip, confirm_message_id, unsubscribed_at, unsubscribe_method
        "#,
        list_id,
        m.address.to_string(),
        m.address.key(),
        m.name,
        m.role.as_str(),
        m.requested_at,
        m.request_source.as_str(),
        m.request.ip,
        m.request.user_agent,
        m.request.message_id,
        m.request.form_text,
        m.confirm_method.as_str(),
        m.confirm.ip,
        m.confirm.message_id,
        status.as_str(),
    )
    .fetch_one(db)
    .await?
    .try_into()
}

/// Ends a membership, recording how. Returns false when the row was not subscribed.
pub async fn update_member_left(
    db: impl PgExecutor<'_>,
    member_id: Uuid,
    status: MemberStatus,
    method: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        r#"
        update member set status = $2, unsubscribed_at = now(), unsubscribe_method = $3, updated_at = now()
        where id = $1 and status in ('subscribed', 'pending')
        "#,
        member_id,
        status.as_str(),
        method
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Changes the role-independent attributes of a member row.
pub async fn update_member_attributes(
    db: impl PgExecutor<'_>,
    member: &Member,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update member set delivery = $2, name = $3, own_posts = $4, mode = $5, updated_at = now() where id = $1",
        member.id,
        member.delivery.as_str(),
        member.name.as_deref(),
        member.own_posts,
        member.mode.as_str()
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Moves a member row to another role (unique per list, role and address).
pub async fn update_member_role(
    db: impl PgExecutor<'_>,
    member_id: Uuid,
    role: Role,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update member set role = $2, updated_at = now() where id = $1",
        member_id,
        role.as_str()
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// An owner approves a membership the mailbox already confirmed (`confirm-then-moderate`).
pub async fn update_member_approved(
    db: impl PgExecutor<'_>,
    member_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update member set status = 'subscribed', subscribed_at = now(), delivery = 'enabled',
            unsubscribe_key = listd_new_unsubscribe_key(), updated_at = now()
        where id = $1 and status = 'pending' and confirmed_at is not null
        "#,
        member_id
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Subscriptions confirmed by the mailbox and waiting for an owner
/// (`confirm-then-moderate`), oldest first, at most `limit`.
pub async fn list_waiting_members(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    limit: i64,
) -> Result<Vec<Member>, sqlx::Error> {
    sqlx::query_as!(
        MemberRow,
        r#"
        select id, list_id, address, name, role, status, delivery, mode, bounce_score, own_posts, subscribed_at, requested_at,
               request_source, request_ip, request_user_agent, request_message_id, request_form_text,
               confirmed_at, confirm_method, confirm_ip, confirm_message_id, unsubscribed_at, unsubscribe_method
        from member
        where list_id = $1 and role = 'member' and status = 'pending' and confirmed_at is not null
        order by confirmed_at, address_key
        limit $2
        "#,
        list_id,
        limit
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(Member::try_from)
    .collect()
}

/// What a page of the member search asks for.
#[derive(Debug, Clone, Default)]
pub struct MemberSearch<'a> {
    /// Part of an address or a name, matched without regard to case.
    pub text: Option<&'a str>,
    pub role: Option<Role>,
    pub status: Option<MemberStatus>,
    /// Subscribed members whose delivery is off.
    pub delivery_disabled_only: bool,
    /// The (address key, role) of the last row of the previous page.
    pub after: Option<(&'a str, Role)>,
    pub limit: i64,
}

/// Rows of the list, in address order, that a search reads in the list's key index
/// at first, and after a skip that passed over the rest of a block.
const SEARCH_WALK_ROWS: i64 = 20_000;
const SEARCH_SECOND_WALK_ROWS: i64 = 5_000;

/// One page of a list's members, in (address key, role) order after `after` (keyset
/// paging: a page costs the same however deep it is, and nothing reads the whole
/// list). A search text matches `search_text` (address and name, lower-case) with
/// `like '%text%'`, in bounded steps, because the planner cannot tell how many members
/// a text matches, nor where they sit in address order:
///
/// 1. a text of three characters or more skips the members of every block (first two
///    characters of the address key) that lacks one of its trigrams, as
///    `member_search_trigram` records them: a search lands on the first member that
///    can match, or learns that none can;
/// 2. from there the next 20,000 entries of the list's key index (which carries
///    `search_text`, status and delivery) are read in address order and filtered,
///    without reading the table: a text that one member in 400 or more has fills its
///    page here, and so does a rarer one whose matches sit together in address order;
/// 3. if that leaves the page short, before the end of the list, and a skip from
///    there passes over the rest of a block, a second walk of 5,000 follows (a text
///    that a few members early in the list have, and many far on);
/// 4. otherwise the matches are few or scattered, and the trigram index (pg_trgm)
///    finds all those after the last entry read, to be sorted (index scans in address order are turned off for
///    this step so that the planner cannot go back to reading the list in order).
///
/// Only the rows of the page are read from the table. Without pg_trgm (a server that
/// refused the extension), step 4 reads the list.
pub async fn search_members(
    db: &sqlx::PgPool,
    list_id: Uuid,
    q: &MemberSearch<'_>,
) -> Result<Vec<Member>, sqlx::Error> {
    let filter = Filter::of(q);
    let after = q.after.map(|(k, r)| (k.to_owned(), r.as_str().to_owned()));
    match q.text.filter(|t| !t.is_empty()) {
        None => list_page(db, list_id, &filter, after, q.limit).await,
        Some(text) => search_text(db, list_id, &filter, after, text, q.limit).await,
    }
}

/// The filters of a page, as the queries take them.
struct Filter {
    role: Option<&'static str>,
    status: Option<&'static str>,
    delivery_disabled_only: bool,
}

impl Filter {
    fn of(q: &MemberSearch<'_>) -> Self {
        Filter {
            role: q.role.map(Role::as_str),
            status: q.status.map(MemberStatus::as_str),
            delivery_disabled_only: q.delivery_disabled_only,
        }
    }
}

/// A position in a list's address order: (address key, role).
type Key = (String, String);

/// A page without a search text: the next members in address order.
async fn list_page(
    db: &sqlx::PgPool,
    list_id: Uuid,
    f: &Filter,
    after: Option<Key>,
    limit: i64,
) -> Result<Vec<Member>, sqlx::Error> {
    let (after_key, after_role) = after.unzip();
    sqlx::query_as!(
        MemberRow,
        r#"
        select id, list_id, address, name, role, status, delivery, mode, bounce_score, own_posts, subscribed_at, requested_at,
           request_source, request_ip, request_user_agent, request_message_id, request_form_text,
           confirmed_at, confirm_method, confirm_ip, confirm_message_id, unsubscribed_at, unsubscribe_method
        from member
        where list_id = $1 and ($2::text is null or role = $2)
          and ($3::text is null or status = $3) and (not $4 or delivery = 'disabled')
          and ($5::text is null or (address_key, role) > ($5, $6::text))
        order by address_key, role
        limit $7
        "#,
        list_id,
        f.role,
        f.status,
        f.delivery_disabled_only,
        after_key,
        after_role,
        limit
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(Member::try_from)
    .collect()
}

/// A page of the members whose search text contains `text` (the steps are described
/// at [`search_members`]).
async fn search_text(
    db: &sqlx::PgPool,
    list_id: Uuid,
    f: &Filter,
    mut after: Option<Key>,
    text: &str,
    limit: i64,
) -> Result<Vec<Member>, sqlx::Error> {
    let pattern = format!("%{}%", like_escape(text));
    // a text shorter than a trigram cannot skip
    let skips = text.chars().count() >= 3;
    if skips {
        match skip_to_candidate(db, list_id, text, after.as_ref()).await? {
            Some(from) => after = Some(from),
            None => return Ok(Vec::new()),
        }
    }
    let mut found: Vec<Key> = Vec::new();
    for walks in 1.. {
        let needed = limit - found.len() as i64;
        let rows = if walks == 1 {
            SEARCH_WALK_ROWS
        } else {
            SEARCH_SECOND_WALK_ROWS
        };
        let at = after.as_ref();
        let walk = walk_in_order(db, list_id, f, at, &pattern, needed, rows).await?;
        found.extend(walk.matches);
        let Some(last) = walk.last.filter(|_| (found.len() as i64) < limit) else {
            return members_by_key(db, list_id, found).await;
        };
        if walks == 2 || !skips {
            after = Some(last);
            break;
        }
        // a second walk only if the skip passes over the rest of the block
        let block = |k: &Key| k.0.chars().take(2).collect::<String>();
        match skip_to_candidate(db, list_id, text, Some(&last)).await? {
            None => return members_by_key(db, list_id, found).await,
            Some(from) if block(&from) != block(&last) => after = Some(from),
            Some(_) => {
                after = Some(last);
                break;
            }
        }
    }
    let needed = limit - found.len() as i64;
    let rest = search_by_trigram_index(db, list_id, f, after, &pattern, needed).await?;
    let mut page = members_by_key(db, list_id, found).await?;
    page.extend(rest);
    Ok(page)
}

/// The position to read on from, after `after`, so that no member skipped can match
/// `text`: just before the first member after `after` in a block that has every
/// trigram of the text. `None`: no member after `after` can match.
async fn skip_to_candidate(
    db: &sqlx::PgPool,
    list_id: Uuid,
    text: &str,
    after: Option<&Key>,
) -> Result<Option<Key>, sqlx::Error> {
    let (after_key, after_role) = after.map_or(("", ""), |(k, r)| (k.as_str(), r.as_str()));
    let first = sqlx::query!(
        r#"
        with t as (
            select distinct substr(lower($2), i, 3) as trigram
            from generate_series(1, length(lower($2)) - 2) as i
        ),
        candidate as (
            select b.block from member_search_trigram b
            where b.list_id = $1 and b.trigram = (select min(trigram) from t)
              and not exists (
                  select 1 from t where not exists (
                      select 1 from member_search_trigram c
                      where c.list_id = $1 and c.trigram = t.trigram and c.block = b.block))
        )
        select m.address_key as "address_key!", m.role as "role!"
        from candidate, lateral (
            select address_key, role from member
            where list_id = $1 and left(address_key, 2) = candidate.block
              and (address_key, role) > ($3, $4)
            order by address_key, role
            limit 1
        ) m
        order by 1, 2
        limit 1
        "#,
        list_id,
        text,
        after_key,
        after_role
    )
    .fetch_optional(db)
    .await?;
    // Read on from just before that member: after `after` itself if the member is the
    // next one with the same address (then nothing lies between them), otherwise
    // after its address key with no role (roles are never empty).
    Ok(first.map(|m| match after {
        Some((k, r)) if *k == m.address_key => (k.clone(), r.clone()),
        _ => (m.address_key, String::new()),
    }))
}

/// What one walk through the key index found.
struct Walk {
    /// The (address key, role) of the matches, in order.
    matches: Vec<Key>,
    /// The last entry read, when the walk read all it may (the list goes on).
    last: Option<Key>,
}

/// Reads up to `rows` entries of the list's key index after `after`, in address order,
/// and keeps the first `needed` that pass the filters and match `pattern`; one query
/// tells both the matches and where the walk stopped.
async fn walk_in_order(
    db: &sqlx::PgPool,
    list_id: Uuid,
    f: &Filter,
    after: Option<&Key>,
    pattern: &str,
    needed: i64,
    walk_rows: i64,
) -> Result<Walk, sqlx::Error> {
    let (after_key, after_role) = after.map(|(k, r)| (k.as_str(), r.as_str())).unzip();
    let found = sqlx::query!(
        r#"
        select address_key as "address_key!", role as "role!", hit as "hit!", n as "n!"
        from (
            select address_key, role, search_text like lower($7) as hit,
                   row_number() over (order by address_key, role) as n
            from (
                select address_key, role, search_text
                from member
                where list_id = $1 and ($2::text is null or role = $2)
                  and ($3::text is null or status = $3) and (not $4 or delivery = 'disabled')
                  and ($5::text is null or (address_key, role) > ($5, $6::text))
                order by address_key, role
                limit $9
            ) m
        ) w
        where hit or n = $9
        order by address_key, role
        limit $8::bigint + 1
        "#,
        list_id,
        f.role,
        f.status,
        f.delivery_disabled_only,
        after_key,
        after_role,
        pattern,
        needed,
        walk_rows
    )
    .fetch_all(db)
    .await?;
    let last = found
        .iter()
        .find(|r| r.n == walk_rows)
        .map(|r| (r.address_key.clone(), r.role.clone()));
    let matches = found
        .into_iter()
        .filter(|r| r.hit)
        .take(needed.max(0) as usize)
        .map(|r| (r.address_key, r.role))
        .collect();
    Ok(Walk { matches, last })
}

/// The members at these positions, in order.
async fn members_by_key(
    db: &sqlx::PgPool,
    list_id: Uuid,
    keys: Vec<Key>,
) -> Result<Vec<Member>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (keys, roles): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
    sqlx::query_as!(
        MemberRow,
        r#"
        select id, list_id, address, name, role, status, delivery, mode, bounce_score, own_posts, subscribed_at, requested_at,
           request_source, request_ip, request_user_agent, request_message_id, request_form_text,
           confirmed_at, confirm_method, confirm_ip, confirm_message_id, unsubscribed_at, unsubscribe_method
        from member
        where list_id = $1 and (address_key, role) in (select * from unnest($2::text[], $3::text[]))
        order by address_key, role
        "#,
        list_id,
        &keys,
        &roles
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(Member::try_from)
    .collect()
}

/// The first `limit` matches after `after`, found by the trigram index and sorted.
async fn search_by_trigram_index(
    db: &sqlx::PgPool,
    list_id: Uuid,
    f: &Filter,
    after: Option<Key>,
    pattern: &str,
    limit: i64,
) -> Result<Vec<Member>, sqlx::Error> {
    let (after_key, after_role) = after.unzip();
    let mut tx = db.begin().await?;
    // planned with this text's values, and never as a walk through the list in order
    sqlx::query!("set local plan_cache_mode = force_custom_plan")
        .execute(&mut *tx)
        .await?;
    sqlx::query!("set local enable_indexscan = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query!("set local enable_indexonlyscan = off")
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query_as!(
        MemberRow,
        r#"
        select id, list_id, address, name, role, status, delivery, mode, bounce_score, own_posts, subscribed_at, requested_at,
               request_source, request_ip, request_user_agent, request_message_id, request_form_text,
               confirmed_at, confirm_method, confirm_ip, confirm_message_id, unsubscribed_at, unsubscribe_method
        from member
        where list_id = $1 and ($2::text is null or role = $2)
          and ($3::text is null or status = $3) and (not $4 or delivery = 'disabled')
          and ($5::text is null or (address_key, role) > ($5, $6::text))
          and search_text like lower($7)
        order by address_key, role
        limit $8
        "#,
        list_id,
        f.role,
        f.status,
        f.delivery_disabled_only,
        after_key,
        after_role,
        pattern,
        limit
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.into_iter().map(Member::try_from).collect()
}

/// A text matched literally by `like`: its wildcards and the escape character escaped.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
