//! `listd serve`: the long-running process.

use super::{Failure, build_app};
use crate::config::Config;
use crate::database::Database;
use crate::http::AppState;
use anyhow::Context;
use tokio::sync::watch;

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
    let db = Database::open(&config, 32).await?;
    let result = serve(&args, &config, &db).await;
    db.close().await;
    tracing::info!("stopped");
    result
}

async fn serve(args: &ServeArgs, config: &Config, db: &Database) -> Result<(), Failure> {
    crate::store::migrate(&db.pool)
        .await
        .map_err(|e| Failure::failed(format!("cannot apply migrations: {e}")))?;
    let app = build_app(config, db.pool.clone())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();

    if !args.no_http {
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen for HTTP on {} (LISTD_HTTP_ADDR)",
                    config.http_addr
                )
            })?;
        tracing::info!(addr = %config.http_addr, public_url = %config.public_url, "HTTP listening");
        let state = AppState::new(app.clone(), config);
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            crate::http::serve(listener, state, stop)
                .await
                .context("HTTP server failed")
        });
    }

    if !args.no_smtp {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(crate::smtp::load_tls(cert, key)?),
            _ => None,
        };
        let listeners = [
            (
                config.smtp_addr,
                crate::smtp::Protocol::Smtp,
                "SMTP",
                "LISTD_SMTP_ADDR",
            ),
            (
                config.lmtp_addr,
                crate::smtp::Protocol::Lmtp,
                "LMTP",
                "LISTD_LMTP_ADDR",
            ),
        ];
        for (addr, protocol, name, key) in listeners {
            let Some(addr) = addr else { continue };
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for {name} on {addr} ({key})"))?;
            tracing::info!(%addr, "{name} listening");
            let mut smtp = crate::smtp::SmtpConfig::new(config.hostname.clone(), protocol);
            smtp.max_message_bytes = config.max_message_bytes as usize;
            smtp.tls = tls.clone();
            let backend = crate::smtp::AppBackend::new(app.clone());
            let stop = stop_rx.clone();
            tasks.spawn(async move {
                crate::smtp::serve(listener, smtp, backend, stop).await;
                Ok(())
            });
        }
    }

    if !args.no_worker {
        let inbound = app.clone();
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            inbound.run_inbound_worker(stop).await;
            Ok(())
        });
        let relay = crate::delivery::Relay::new(
            &config.relay_url,
            config.delivery_concurrency,
            &config.hostname,
        )?;
        tracing::info!(relay = ?config.relay_url, "delivery workers running");
        let worker =
            crate::delivery::Worker::new(db.pool.clone(), relay, config.delivery_concurrency);
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            worker.run(stop).await;
            Ok(())
        });
    }

    let mut outcome = Ok(());
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        Some(done) = tasks.join_next() => {
            // a front end ended on its own: that is a failure
            outcome = match done {
                Ok(Ok(())) => Err(Failure::failed("a front end stopped unexpectedly")),
                Ok(Err(e)) => Err(e.into()),
                Err(e) => Err(Failure::failed(format!("a front end crashed: {e}"))),
            };
        }
    }
    let _ = stop_tx.send(true);
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::error!(error = format!("{e:#}"), "while stopping");
        }
    }
    outcome
}

/// Resolves once `true` is sent on the channel (or its sender is gone).
pub(crate) async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = ctrl_c => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
