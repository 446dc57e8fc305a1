//! The `api_token` table: hashed bearer tokens of the admin API.

use crate::domain::token::ApiToken;
use sqlx::PgExecutor;

pub async fn insert_api_token(
    db: impl PgExecutor<'_>,
    name: &str,
    hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into api_token (name, token_hash) values ($1, $2)",
        name,
        hash
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// The name of the token with this hash, noting its use.
pub async fn find_api_token(
    db: impl PgExecutor<'_>,
    hash: &[u8],
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "update api_token set last_used_at = now() where token_hash = $1 returning name",
        hash
    )
    .fetch_optional(db)
    .await
}

pub async fn list_api_tokens(db: impl PgExecutor<'_>) -> Result<Vec<ApiToken>, sqlx::Error> {
    sqlx::query_as!(
        ApiToken,
        "select name, created_at, last_used_at from api_token order by name"
    )
    .fetch_all(db)
    .await
}

pub async fn delete_api_token(db: impl PgExecutor<'_>, name: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!("delete from api_token where name = $1", name)
        .execute(db)
        .await?
        .rows_affected()
        > 0)
}
