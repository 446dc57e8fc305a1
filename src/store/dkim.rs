//! The `dkim_key` table: DKIM signing keys. Only [`signing_keys`] reads the private
//! keys, for the delivery workers.

use sqlx::PgExecutor;
use time::OffsetDateTime;

/// Inserts a key; an existing selector of the domain is a unique violation on
/// `dkim_key_domain_selector_key`.
pub async fn insert_dkim_key(
    db: impl PgExecutor<'_>,
    domain: &str,
    selector: &str,
    algorithm: &str,
    private_key: &[u8],
    public_key: &str,
) -> Result<DkimKeyRow, sqlx::Error> {
    sqlx::query_as!(
        DkimKeyRow,
        r#"
        insert into dkim_key (domain, selector, algorithm, private_key, public_key)
        values ($1, $2, $3, $4, $5)
        returning domain, selector, algorithm, public_key, created_at
        "#,
        domain,
        selector,
        algorithm,
        private_key,
        public_key
    )
    .fetch_one(db)
    .await
}

/// A key without its private half.
#[derive(Debug, Clone)]
pub struct DkimKeyRow {
    pub domain: String,
    pub selector: String,
    pub algorithm: String,
    pub public_key: String,
    pub created_at: OffsetDateTime,
}

/// Every key (of one domain, when given), by domain and selector.
pub async fn list_dkim_keys(
    db: impl PgExecutor<'_>,
    domain: Option<&str>,
) -> Result<Vec<DkimKeyRow>, sqlx::Error> {
    sqlx::query_as!(
        DkimKeyRow,
        r#"
        select domain, selector, algorithm, public_key, created_at from dkim_key
        where $1::text is null or domain = $1
        order by domain, selector
        "#,
        domain
    )
    .fetch_all(db)
    .await
}

/// The selectors of a domain that start with `prefix`.
pub async fn find_selectors(
    db: impl PgExecutor<'_>,
    domain: &str,
    prefix: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "select selector from dkim_key where domain = $1 and starts_with(selector, $2)",
        domain,
        prefix
    )
    .fetch_all(db)
    .await
}

pub async fn delete_dkim_key(
    db: impl PgExecutor<'_>,
    domain: &str,
    selector: &str,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "delete from dkim_key where domain = $1 and selector = $2",
        domain,
        selector
    )
    .execute(db)
    .await?
    .rows_affected()
        > 0)
}

/// The ids of the keys there are now: cheap to ask before each batch of mail, to
/// see whether the keys in memory are still the keys.
pub async fn dkim_key_ids(db: impl PgExecutor<'_>) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!("select id from dkim_key order by id")
        .fetch_all(db)
        .await
}

/// A key to sign with.
pub struct SigningKeyRow {
    pub id: i64,
    pub domain: String,
    pub selector: String,
    pub algorithm: String,
    pub private_key: Vec<u8>,
}

pub async fn signing_keys(db: impl PgExecutor<'_>) -> Result<Vec<SigningKeyRow>, sqlx::Error> {
    sqlx::query_as!(
        SigningKeyRow,
        "select id, domain, selector, algorithm, private_key from dkim_key order by id"
    )
    .fetch_all(db)
    .await
}
