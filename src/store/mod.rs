//! SQL, and nothing else: rows in, domain types out.
//!
//! Every query lives in this module (checked at compile time against the schema in
//! `migrations/`, cached in `.sqlx/` for offline builds). Business rules live in
//! `app`; the store only reads and writes what it is told.

pub mod api_tokens;
pub mod archive;
pub mod bounces;
pub mod digests;
pub mod dkim;
pub mod inbound;
pub mod lists;
pub mod members;
pub mod outbound;
pub mod pending;
pub mod posts;
pub mod roster;
pub mod secret;
pub mod sessions;
pub mod wakeup;
pub mod web_requests;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Opens a connection pool.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    // a session left inside a transaction (a crashed or cancelled caller) must not hold
    // its locks for long: the server ends it
    let options = PgConnectOptions::from_str(url)?
        .application_name("listd")
        .options([("idle_in_transaction_session_timeout", "60s")]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// Applies pending migrations; safe when several processes start at once (sqlx
/// serialises them with an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// The database's clock at the start of the current transaction (`now()`).
pub async fn now(db: &mut sqlx::PgConnection) -> Result<time::OffsetDateTime, sqlx::Error> {
    sqlx::query_scalar!(r#"select now() as "now!""#)
        .fetch_one(db)
        .await
}

/// Answers whether the database is reachable.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!("select 1 as \"one!\"")
        .fetch_one(pool)
        .await
        .map(|_| ())
}

/// Begins a transaction that holds, until it ends, an advisory lock named by `name`
/// (hashed), taken in the same round trip as `BEGIN`. Two transactions with the same
/// name run one after the other.
pub async fn begin_locked(
    db: &PgPool,
    name: &str,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let key = lock_key(name);
    // `key` is a number formatted here: nothing from the caller reaches the SQL text
    db.begin_with(sqlx::AssertSqlSafe(format!(
        "begin; select pg_advisory_xact_lock({key})"
    )))
    .await
}

/// Begins a transaction holding the advisory lock named by `name`, or returns `None`
/// at once when another transaction holds it.
pub async fn begin_try_locked(
    db: &PgPool,
    name: &str,
) -> Result<Option<sqlx::Transaction<'static, sqlx::Postgres>>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let got: bool = sqlx::query_scalar!(
        r#"select pg_try_advisory_xact_lock($1) as "got!""#,
        lock_key(name)
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(got.then_some(tx))
}

/// The advisory lock number for a name.
pub(crate) fn lock_key(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(key)
}

/// The name of the constraint a statement violated, if it was a unique violation.
pub fn unique_violation(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => db.constraint(),
        _ => None,
    }
}

/// Reads a text column back into a domain enum; the schema's check constraints make a
/// mismatch a bug, reported as a decode error rather than a panic.
pub(crate) fn decode<T: FromStr>(column: &str, value: &str) -> Result<T, sqlx::Error> {
    value.parse().map_err(|_| {
        sqlx::Error::Decode(format!("unexpected {column} `{value}` in the database").into())
    })
}

/// Takes, in the caller's transaction, the advisory lock named by `name` (hashed),
/// held until the transaction ends.
pub async fn lock_in(db: &mut sqlx::PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("select pg_advisory_xact_lock($1)", lock_key(name))
        .execute(db)
        .await
        .map(|_| ())
}
