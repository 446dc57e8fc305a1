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
    let shutdown = shutdown_signal();
    let db = startup::open_database(&config, 32).await?;
    let result = async {
        let app = startup::build_app(&config, &db).await?;
        let parts = Parts {
            http: !args.no_http,
            smtp: !args.no_smtp,
            workers: !args.no_worker,
        };
        crate::server::run(&config, &db.pool, app, parts, shutdown).await?;
        Ok(())
    }
    .await;
    db.close().await;
    tracing::info!("stopped");
    result
}

/// SIGTERM or SIGINT. The handlers are installed here, before anything listens: a
/// signal that comes as soon as the server answers must stop it cleanly, and a handler
/// installed only when the future is first polled (after the front ends start) would
/// leave a moment in which the signal kills the process instead.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async move {
        tokio::select! {
            _ = next_signal(term.as_mut()) => {}
            _ = next_signal(int.as_mut()) => {}
        }
    }
}

async fn next_signal(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
