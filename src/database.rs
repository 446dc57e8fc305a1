//! Opening the database: the configured server, or the self-managed cluster.

use crate::config::Config;
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
