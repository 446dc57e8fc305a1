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
/// before it turns to the trigram index.
const SEARCH_WALK_ROWS: i64 = 20_000;

/// One page of a list's members, in (address key, role) order after `after` (keyset
/// paging: a page costs the same however deep it is, and nothing reads the whole
/// list). A search text matches `search_text` (address and name, lower-case) with
/// `like '%text%'`, in bounded steps, because the planner cannot tell how many members
/// a text matches, nor where they sit in address order:
///
/// 1. the next 20,000 entries of the list's key index (which carries `search_text`,
///    status and delivery) are read in address order and filtered, without reading
///    the table: a text that one member in 400 or more has fills its page here, and so
///    does a rarer one whose matches sit together in address order;
/// 2. otherwise, unless those entries were the rest of the list, the matches are few
///    or sit further on, and the trigram index finds them all, to be sorted (index
///    scans in address order are turned off for this step so that the planner cannot
///    go back to reading the list in order).
///
/// Only the rows of the page are read from the table. Without pg_trgm (a server that
/// refused the extension), step 2 reads the list.
pub async fn search_members(
    db: &sqlx::PgPool,
    list_id: Uuid,
    q: &MemberSearch<'_>,
) -> Result<Vec<Member>, sqlx::Error> {
    let (after_key, after_role) = match q.after {
        Some((k, r)) => (Some(k), Some(r.as_str())),
        None => (None, None),
    };
    let role = q.role.map(Role::as_str);
    let status = q.status.map(MemberStatus::as_str);
    let Some(text) = q.text.filter(|t| !t.is_empty()) else {
        return sqlx::query_as!(
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
            role,
            status,
            q.delivery_disabled_only,
            after_key,
            after_role,
            q.limit
        )
        .fetch_all(db)
        .await?
        .into_iter()
        .map(Member::try_from)
        .collect();
    };
    let pattern = format!("%{}%", like_escape(text));
    let near = sqlx::query!(
        r#"
        select address_key as "address_key!", role as "role!"
        from (
            select address_key, role, search_text
            from member
            where list_id = $1 and ($2::text is null or role = $2)
              and ($3::text is null or status = $3) and (not $4 or delivery = 'disabled')
              and ($5::text is null or (address_key, role) > ($5, $6::text))
            order by address_key, role
            limit $9
        ) m
        where search_text like lower($7)
        order by address_key, role
        limit $8
        "#,
        list_id,
        role,
        status,
        q.delivery_disabled_only,
        after_key,
        after_role,
        pattern,
        q.limit,
        SEARCH_WALK_ROWS
    )
    .fetch_all(db)
    .await?;
    let rest_of_list = near.len() as i64 >= q.limit
        || sqlx::query_scalar!(
            r#"
            select count(*) as "n!" from (
                select 1 from member
                where list_id = $1 and ($2::text is null or role = $2)
                  and ($3::text is null or status = $3) and (not $4 or delivery = 'disabled')
                  and ($5::text is null or (address_key, role) > ($5, $6::text))
                order by address_key, role
                limit $7
            ) m
            "#,
            list_id,
            role,
            status,
            q.delivery_disabled_only,
            after_key,
            after_role,
            SEARCH_WALK_ROWS
        )
        .fetch_one(db)
        .await?
            < SEARCH_WALK_ROWS;
    if rest_of_list {
        let (keys, roles): (Vec<String>, Vec<String>) =
            near.into_iter().map(|r| (r.address_key, r.role)).unzip();
        return sqlx::query_as!(
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
        .collect();
    }
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
        role,
        status,
        q.delivery_disabled_only,
        after_key,
        after_role,
        pattern,
        q.limit
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
