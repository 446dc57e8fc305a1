//! Sign-in links and browser sessions (`signin_token`, `web_session`): only hashes of
//! their secrets are stored.

use crate::domain::{EmailAddress, Purpose, TokenHash};
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

/// A sign-in link's row, as found by its hash.
#[derive(Debug, Clone)]
pub struct SigninToken {
    pub address: String,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
    /// Where to go once signed in (a local path), when the link was asked for on the
    /// way to a page.
    pub return_path: Option<String>,
}

/// Records a sign-in link mailed to `address`.
pub async fn insert_signin_token(
    db: impl PgExecutor<'_>,
    hash: &TokenHash,
    address: &EmailAddress,
    expires_at: OffsetDateTime,
    ip: Option<&str>,
    return_path: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into signin_token (token_hash, address, address_key, expires_at, ip, return_path) values ($1, $2, $3, $4, $5, $6)",
        &hash.0[..],
        address.to_string(),
        address.key(),
        expires_at,
        ip,
        return_path
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Finds a sign-in link by its hash; `for_update` locks it until the transaction ends.
pub async fn find_signin_token(
    db: impl PgExecutor<'_>,
    hash: &TokenHash,
    for_update: bool,
) -> Result<Option<SigninToken>, sqlx::Error> {
    if for_update {
        sqlx::query_as!(
            SigninToken,
            "select address, expires_at, used_at, return_path from signin_token where token_hash = $1 for update",
            &hash.0[..]
        )
        .fetch_optional(db)
        .await
    } else {
        sqlx::query_as!(
            SigninToken,
            "select address, expires_at, used_at, return_path from signin_token where token_hash = $1",
            &hash.0[..]
        )
        .fetch_optional(db)
        .await
    }
}

/// Marks a sign-in link used.
pub async fn update_signin_token_used(
    db: impl PgExecutor<'_>,
    hash: &TokenHash,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update signin_token set used_at = now() where token_hash = $1",
        &hash.0[..]
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Sign-in links mailed to an address since each of two times (for the per-address
/// limits), and the automatic mail of the given purposes it received since the second.
#[derive(Debug, Clone, Copy)]
pub struct SigninCounts {
    pub recent: i64,
    pub today: i64,
    pub automatic_today: i64,
}

pub async fn find_signin_counts(
    db: impl PgExecutor<'_>,
    address: &EmailAddress,
    recent_since: OffsetDateTime,
    day_since: OffsetDateTime,
    automatic_purposes: &[Purpose],
) -> Result<SigninCounts, sqlx::Error> {
    let purposes = Purpose::texts(automatic_purposes);
    let r = sqlx::query!(
        r#"
        select
            (select count(*) from signin_token where address_key = $1 and created_at >= $2) as "recent!",
            (select count(*) from signin_token where address_key = $1 and created_at >= $3) as "today!",
            (select count(*) from outbound
             where recipient_key = $1 and purpose = any($4) and created_at >= $3
               and post_id is null and digest_id is null) as "automatic!"
        "#,
        address.key(),
        recent_since,
        day_since,
        &purposes
    )
    .fetch_one(db)
    .await?;
    Ok(SigninCounts {
        recent: r.recent,
        today: r.today,
        automatic_today: r.automatic,
    })
}

/// The list an address most recently joined or was given a role on (the list whose
/// owner address sends it a sign-in link), if it holds any current membership or role.
pub async fn find_list_of_address(
    db: impl PgExecutor<'_>,
    address: &EmailAddress,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        select list_id from member
        where address_key = $1 and status = 'subscribed'
        order by coalesce(subscribed_at, created_at) desc
        limit 1
        "#,
        address.key()
    )
    .fetch_optional(db)
    .await
}

/// Starts a session for `address`.
pub async fn insert_session(
    db: impl PgExecutor<'_>,
    id_hash: &TokenHash,
    address: &str,
    address_key: &str,
    expires_at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into web_session (id_hash, address, address_key, expires_at) values ($1, $2, $3, $4)",
        &id_hash.0[..],
        address,
        address_key,
        expires_at
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// A live session: its address and whether that address still holds a membership or
/// a role on some list.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub address: String,
    pub has_membership: bool,
}

/// Finds a session that has not expired.
pub async fn find_session(
    db: impl PgExecutor<'_>,
    id_hash: &TokenHash,
) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as!(
        SessionRow,
        r#"
        select s.address,
               -- one step into each list's key index: member has no index on the
               -- address alone, and a large list would be read whole
               exists (select 1 from list l join member m on m.list_id = l.id
                       where m.address_key = s.address_key and m.status = 'subscribed') as "has_membership!"
        from web_session s
        where s.id_hash = $1 and s.expires_at > now()
        "#,
        &id_hash.0[..]
    )
    .fetch_optional(db)
    .await
}

/// Ends a session.
pub async fn delete_session(
    db: impl PgExecutor<'_>,
    id_hash: &TokenHash,
) -> Result<(), sqlx::Error> {
    sqlx::query!("delete from web_session where id_hash = $1", &id_hash.0[..])
        .execute(db)
        .await
        .map(|_| ())
}

/// Deletes expired sessions and sign-in links older than `before`; returns how many.
pub async fn delete_expired_sessions(
    db: impl PgExecutor<'_>,
    before: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query!(
        r#"
        with s as (delete from web_session where expires_at < now() returning 1),
             t as (delete from signin_token where expires_at < $1 returning 1)
        select (select count(*) from s) + (select count(*) from t) as "n!"
        "#,
        before
    )
    .fetch_one(db)
    .await?;
    Ok(r.n as u64)
}
