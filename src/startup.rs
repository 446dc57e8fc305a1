//! Start-up, shared by `listd serve` and every other command: opening the database,
//! building the [`App`] from the configuration, and the process's metrics recorder.

use crate::app::{App, AppSettings};
use crate::config::Config;
use crate::database::Database;
use crate::mail::dmarc::DmarcResolver;
use crate::templates::Templates;
use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Opens the database (the configured server or the self-managed cluster) and applies
/// pending migrations; on failure nothing is left running.
pub async fn open_database(config: &Config, max_connections: u32) -> anyhow::Result<Database> {
    let db = Database::open(config, max_connections).await?;
    if let Err(e) = db.migrate().await {
        db.close().await;
        return Err(e);
    }
    Ok(db)
}

/// The application on an open database, with the instance's signing key.
pub async fn build_app(config: &Config, db: &Database) -> anyhow::Result<App> {
    let settings = AppSettings {
        public_url: config.public_url.clone(),
        secret_key: db.secret_key(config).await?,
        confirm_expiry: config.confirm_expiry,
        admins: config.admins.clone(),
    };
    let dmarc = DmarcResolver::new(config.dns_server)
        .context("setting up DNS look-ups (LISTD_DNS_SERVER)")?;
    Ok(App::new(
        db.pool.clone(),
        settings,
        Templates::new(config.template_dir.clone()),
        dmarc,
    ))
}

/// The process's Prometheus recorder, installed on first use: counters recorded
/// anywhere (through the `metrics` facade) are no-ops until then.
pub fn metrics_recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "metrics are not recorded");
                None
            }
        })
        .as_ref()
}
