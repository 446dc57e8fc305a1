//! The composition root of `listd serve`: starts the chosen front ends (HTTP,
//! SMTP, LMTP) and workers (inbound processing, delivery) around one `App`, and stops
//! them together: on shutdown they stop accepting and finish what is in flight.

use crate::app::App;
use crate::config::Config;
use crate::http::AppState;
use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::watch;

/// How often `serve` runs the maintenance (bounce warnings and removals, old rows).
const MAINTENANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Which parts this process runs (`serve --no-http`, `--no-smtp`, `--no-worker`).
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    pub http: bool,
    pub smtp: bool,
    pub workers: bool,
}

/// The tasks of the running parts; each ends with an error only when its part failed.
type Tasks = tokio::task::JoinSet<anyhow::Result<()>>;

/// Runs until `shutdown` resolves (or a part fails), then stops everything.
pub async fn run(
    config: &Config,
    db: &PgPool,
    app: App,
    parts: Parts,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Tasks::new();
    if parts.http {
        start_http(&mut tasks, config, &app, &stop_rx).await?;
    }
    if let Some(addr) = config.status_addr {
        start_status(&mut tasks, addr, config, &app, &stop_rx).await?;
    }
    if parts.smtp {
        start_smtp(&mut tasks, config, &app, &stop_rx).await?;
    }
    // counters are recorded from the start, whichever parts run here
    let _ = crate::startup::metrics_recorder();
    if parts.workers {
        start_workers(&mut tasks, config, db, &app, &stop_rx)?;
    }

    let mut outcome = Ok(());
    tokio::select! {
        _ = shutdown => tracing::info!("shutting down"),
        Some(done) = tasks.join_next() => {
            // a front end ended on its own: that is a failure
            outcome = match done {
                Ok(Ok(())) => Err(anyhow::anyhow!("a front end stopped unexpectedly")),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::anyhow!("a front end crashed: {e}")),
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

async fn start_http(
    tasks: &mut Tasks,
    config: &Config,
    app: &App,
    stop_rx: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
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
    Ok(())
}

async fn start_status(
    tasks: &mut Tasks,
    addr: std::net::SocketAddr,
    config: &Config,
    app: &App,
    stop_rx: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (LISTD_STATUS_ADDR)"))?;
    tracing::info!(%addr, "status endpoints listening");
    let state = AppState::new(app.clone(), config);
    let stop = stopped(stop_rx.clone());
    tasks.spawn(async move {
        crate::http::serve_status(listener, state, stop)
            .await
            .context("status listener failed")
    });
    Ok(())
}

/// The SMTP and LMTP listeners that are configured.
async fn start_smtp(
    tasks: &mut Tasks,
    config: &Config,
    app: &App,
    stop_rx: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
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
        smtp.max_sessions_per_ip = match protocol {
            crate::smtp::Protocol::Smtp => config.smtp_max_per_ip,
            crate::smtp::Protocol::Lmtp => smtp.max_sessions,
        };
        smtp.tls = tls.clone();
        let backend = crate::smtp::AppBackend::new(app.clone());
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            crate::smtp::serve(listener, smtp, backend, stop).await;
            Ok(())
        });
    }
    Ok(())
}

/// The inbound worker, the maintenance and the delivery workers.
fn start_workers(
    tasks: &mut Tasks,
    config: &Config,
    db: &PgPool,
    app: &App,
    stop_rx: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let inbound = app.clone();
    let stop = stop_rx.clone();
    tasks.spawn(async move {
        inbound.run_inbound_worker(stop).await;
        Ok(())
    });
    // archives an upgrade or a stopped import left to index for search: at start, and
    // again every minute while a list is left; what a stop interrupts goes on at the
    // next start
    let archives = app.clone();
    let stop = stop_rx.clone();
    tasks.spawn(async move {
        let reindex = async {
            loop {
                match archives.reindex_archives().await {
                    Ok(done) => {
                        if done.indexed > 0 {
                            tracing::info!(messages = done.indexed, "archives indexed for search");
                        }
                        if done.left == 0 {
                            return;
                        }
                    }
                    Err(e) => tracing::error!(
                        error = format!("{e:#}"),
                        "indexing the archives for search failed"
                    ),
                }
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            }
        };
        tokio::select! {
            _ = reindex => {}
            _ = stopped(stop.clone()) => {}
        }
        stopped(stop).await;
        Ok(())
    });
    let maintenance = app.clone();
    let stop = stop_rx.clone();
    tasks.spawn(async move {
        maintenance.run_maintenance(MAINTENANCE_EVERY, stop).await;
        Ok(())
    });
    let relay = crate::delivery::Relay::new(
        &config.relay_url,
        config.delivery_concurrency,
        &config.hostname,
    )?;
    tracing::info!(relay = ?config.relay_url, "delivery workers running");
    let copies = crate::delivery::CopySettings {
        secret_key: app.settings().secret_key.clone(),
        public_url: app.settings().public_url.clone(),
    };
    let worker =
        crate::delivery::Worker::new(db.clone(), relay, config.delivery_concurrency, copies);
    let stop = stop_rx.clone();
    tasks.spawn(async move {
        worker.run(stop).await;
        Ok(())
    });
    Ok(())
}

/// Resolves once `true` is sent on the channel (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
