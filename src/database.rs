//! Opening the database: the configured server, or the self-managed cluster.

use crate::config::Config;
use crate::domain::SecretKey;
use crate::pg::{Cluster, ClusterOptions};
use anyhow::Context;
use sqlx::PgPool;

/// Name of the database listd uses inside its self-managed cluster.
const SELF_MANAGED_DB: &str = "listd";

/// An open connection pool, and the self-managed cluster behind it, if any.
pub struct Database {
    pub pool: PgPool,
    cluster: Option<Cluster>,
}

impl Database {
    /// Connects to `LISTD_DATABASE_URL`, or starts (or joins) the self-managed cluster.
    pub async fn open(config: &Config, max_connections: u32) -> anyhow::Result<Database> {
        if let Some(url) = &config.database_url {
            let pool = crate::store::connect(url, max_connections).await.context(
                "cannot connect to the database named by LISTD_DATABASE_URL/DATABASE_URL",
            )?;
            return Ok(Database {
                pool,
                cluster: None,
            });
        }
        let pgdata = crate::pg::locate_cluster(&config.data_dir).await?;
        let cluster = Cluster::start_or_attach(&pgdata, ClusterOptions { durable: true }).await?;
        let opened = async {
            cluster.ensure_database(SELF_MANAGED_DB).await?;
            crate::store::connect(&cluster.url(SELF_MANAGED_DB), max_connections)
                .await
                .context("cannot connect to the self-managed PostgreSQL")
        }
        .await;
        match opened {
            Ok(pool) => Ok(Database {
                pool,
                cluster: Some(cluster),
            }),
            Err(e) => {
                if let Err(stop) = cluster.release().await {
                    tracing::warn!(error = %stop, "stopping the self-managed PostgreSQL");
                }
                Err(e)
            }
        }
    }

    /// Applies pending migrations (several processes starting at once are serialised).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        crate::store::migrate(&self.pool)
            .await
            .context("cannot apply migrations")
    }

    /// The signing key, kept in the database so that every process shares it: created
    /// by the first start (from the key an earlier version kept in the data directory,
    /// if there is one, so that links already sent keep working). A configured
    /// `LISTD_SECRET_KEY` must be that key: a process whose key differs refuses to
    /// start, rather than make links the others reject.
    pub async fn secret_key(&self, config: &Config) -> anyhow::Result<SecretKey> {
        let legacy_file = config.data_dir.join("secret_key");
        let legacy =
            match std::fs::read_to_string(&legacy_file) {
                Ok(text) => Some(SecretKey::from_base64(&text).map_err(|p| {
                    anyhow::anyhow!("the secret key in {} {p}", legacy_file.display())
                })?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(e).with_context(|| format!("reading {}", legacy_file.display()));
                }
            };
        let candidate = match (&config.secret_key, &legacy) {
            (Some(k), _) | (None, Some(k)) => k.to_base64(),
            (None, None) => SecretKey::generate_base64(),
        };
        let stored = crate::store::secret::insert_secret_if_absent(&self.pool, &candidate)
            .await
            .context("reading the signing key kept in the database")?;
        let key = SecretKey::from_base64(&stored)
            .map_err(|p| anyhow::anyhow!("the signing key kept in the database {p}"))?;
        if config.secret_key.as_ref().is_some_and(|k| *k != key) {
            anyhow::bail!(
                "LISTD_SECRET_KEY differs from the signing key kept in the database (which every \
                 listd process on it shares): set it to that key on every process, or unset it"
            );
        }
        if legacy.is_some_and(|k| k != key) {
            tracing::warn!(
                file = %legacy_file.display(),
                "this data directory's old secret key is not the one in the database; links made with it no longer work"
            );
        }
        Ok(key)
    }

    /// Closes the pool and gives up this process's use of the self-managed cluster
    /// (stopping it when no other listd process uses it).
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(cluster) = self.cluster
            && let Err(e) = cluster.release().await
        {
            tracing::warn!(error = %e, "stopping the self-managed PostgreSQL");
        }
    }
}
