//! `listd serve`: the long-running process.

use super::Failure;
use crate::config::Config;
use crate::server::Parts;
use crate::startup;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Do not run the HTTP front end
    #[arg(long)]
    pub no_http: bool,
    /// Do not run the SMTP/LMTP front end
    #[arg(long)]
    pub no_smtp: bool,
    /// Do not run the delivery workers
    #[arg(long)]
    pub no_worker: bool,
}

pub async fn run(args: ServeArgs, config: Config) -> Result<(), Failure> {
    let db = startup::open_database(&config, 32).await?;
    let result = async {
        let app = startup::build_app(&config, &db).await?;
        let parts = Parts {
            http: !args.no_http,
            smtp: !args.no_smtp,
            workers: !args.no_worker,
        };
        crate::server::run(&config, &db.pool, app, parts, shutdown_signal()).await?;
        Ok(())
    }
    .await;
    db.close().await;
    tracing::info!("stopped");
    result
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = ctrl_c => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
