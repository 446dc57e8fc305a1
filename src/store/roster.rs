//! Bulk import of members: a temporary staging table filled with `COPY`, then one
//! set-based insert. The staging table lives only in the importing transaction, so
//! these queries are checked when they run, not at compile time.

use crate::domain::roster::RosterEntry;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

pub async fn create_staging(db: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "create temporary table import_staging \
         (line bigint not null, address text not null, address_key text not null, name text, \
          role text not null, delivery text not null, mode text not null) \
         on commit drop",
    )
    .execute(&mut *db)
    .await
    .map(|_| ())
}

/// Streams rows into the staging table; returns how many went in.
pub async fn copy_into_staging(
    db: &mut PgConnection,
    rows: &[RosterEntry],
) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut text = String::with_capacity(rows.len() * 64);
    for r in rows {
        text.push_str(&r.line.to_string());
        text.push('\t');
        push_copy_field(&mut text, Some(&r.address.to_string()));
        text.push('\t');
        push_copy_field(&mut text, Some(&r.address.key()));
        text.push('\t');
        push_copy_field(&mut text, r.name.as_deref());
        text.push('\t');
        text.push_str(r.choices.role.as_str());
        text.push('\t');
        text.push_str(r.choices.delivery.as_str());
        text.push('\t');
        text.push_str(r.choices.mode.as_str());
        text.push('\n');
    }
    let mut copy = db
        .copy_in_raw(
            "copy import_staging (line, address, address_key, name, role, delivery, mode) from stdin",
        )
        .await?;
    copy.send(text.as_bytes()).await?;
    copy.finish().await
}

/// One field of COPY's text format: `\N` for null, backslash escapes otherwise.
fn push_copy_field(out: &mut String, value: Option<&str>) {
    let Some(value) = value else {
        out.push_str("\\N");
        return;
    };
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// What the set-based insert did.
#[derive(Debug, Clone, Copy, Default)]
pub struct StagedCounts {
    pub added: u64,
    pub already: u64,
    /// Owner and moderator roles given.
    pub staff: u64,
}

/// The ids of the members an import added, in address order.
pub async fn list_staged_added(
    db: &mut PgConnection,
    list_id: Uuid,
    since: time::OffsetDateTime,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        select m.id from import_staging s join member m
          on m.list_id = $1 and m.address_key = s.address_key and m.role = 'member'
        where m.status = 'subscribed' and m.subscribed_at >= $2
        group by m.id, m.address_key order by m.address_key
        "#,
    )
    .bind(list_id)
    .bind(since)
    .fetch_all(&mut *db)
    .await
}

/// Adds every staged address that is new to the list (or only pending there) as a
/// subscribed member, recorded as imported; leaves alone members and people who
/// left. A file that names an address twice adds it once (its first line wins).
pub async fn insert_staged_members(
    db: &mut PgConnection,
    list_id: Uuid,
) -> Result<StagedCounts, sqlx::Error> {
    let row = sqlx::query(
        r#"
        with staged as (
            select distinct on (address_key) address, address_key, name, role, delivery, mode
            from import_staging order by address_key, line
        ),
        staff as (
            -- owners and moderators keep their role (as well as their membership)
            insert into member (list_id, address, address_key, name, role, status, delivery,
                                subscribed_at, requested_at, request_source, confirmed_at, confirm_method)
            select $1, s.address, s.address_key, s.name, s.role, 'subscribed', 'enabled',
                   now(), now(), 'import', now(), 'import'
            from staged s where s.role in ('owner', 'moderator')
            on conflict on constraint member_list_address_role_key do nothing
            returning 1
        ),
        added as (
            insert into member (list_id, address, address_key, name, role, status, delivery, mode,
                                subscribed_at, requested_at, request_source, confirmed_at, confirm_method)
            select $1, s.address, s.address_key, s.name, 'member', 'subscribed', s.delivery, s.mode,
                   now(), now(), 'import', now(), 'import'
            from staged s
            on conflict on constraint member_list_address_role_key do update set
                status = 'subscribed',
                delivery = excluded.delivery,
                mode = excluded.mode,
                name = coalesce(excluded.name, member.name),
                subscribed_at = now(),
                unsubscribe_key = excluded.unsubscribe_key,
                request_source = coalesce(member.request_source, 'import'),
                requested_at = coalesce(member.requested_at, now()),
                confirmed_at = coalesce(member.confirmed_at, now()),
                confirm_method = coalesce(member.confirm_method, 'import'),
                updated_at = now()
            where member.status = 'pending'
            returning 1
        )
        select
            (select count(*) from added) as added,
            (select count(*) from staff) as staff,
            (select count(*) from staged s join member m
               on m.list_id = $1 and m.address_key = s.address_key and m.role = 'member'
             where m.status = 'subscribed') as already
        "#,
    )
    .bind(list_id)
    .fetch_one(&mut *db)
    .await?;
    Ok(StagedCounts {
        added: row.try_get::<i64, _>("added")? as u64,
        already: row.try_get::<i64, _>("already")? as u64,
        staff: row.try_get::<i64, _>("staff")? as u64,
    })
}

/// Staged addresses of people who left the list (they need their own confirmation).
pub async fn list_staged_left(
    db: &mut PgConnection,
    list_id: Uuid,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        select distinct m.address from import_staging s join member m
          on m.list_id = $1 and m.address_key = s.address_key and m.role = 'member'
        where m.status in ('unsubscribed', 'removed', 'bounced', 'complained')
        order by m.address
        "#,
    )
    .bind(list_id)
    .fetch_all(&mut *db)
    .await
}
