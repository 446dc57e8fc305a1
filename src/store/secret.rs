//! The `instance_secret` row: the signing key every process shares.

use sqlx::PgPool;

/// Stores `candidate` (base64) as the instance's key unless one is stored already, and
/// returns the stored one. Processes starting at once all get the same key.
pub async fn insert_secret_if_absent(db: &PgPool, candidate: &str) -> Result<String, sqlx::Error> {
    let stored = sqlx::query_scalar!(
        r#"
        with inserted as (
            insert into instance_secret (id, key) values (1, $1)
            on conflict (id) do nothing
            returning key
        )
        select key as "key!" from inserted
        union all
        select key from instance_secret where id = 1
        limit 1
        "#,
        candidate
    )
    .fetch_optional(db)
    .await?;
    match stored {
        Some(key) => Ok(key),
        // another process inserted its key while this statement ran: its snapshot
        // could not see that row, a new one will
        None => {
            sqlx::query_scalar!("select key from instance_secret where id = 1")
                .fetch_one(db)
                .await
        }
    }
}
