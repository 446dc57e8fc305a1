//! Waking workers when rows arrive: `NOTIFY` after a commit that queued work, `LISTEN`
//! in the workers, with polling as the fallback when the notification connection is
//! lost.
//!
//! The notifications are sent by [`Wakeups`], outside the transactions that queue the
//! work, and coalesced: PostgreSQL serialises the commits of transactions that send
//! `NOTIFY` (a global lock held through the commit's WAL flush), so notifying from
//! inside every subscribe transaction would make commits wait on one another.

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The channel the delivery workers listen on.
pub const OUTBOUND: &str = "listd_outbound";
/// The channel the inbound workers listen on.
pub const INBOUND: &str = "listd_inbound";

/// Sends `NOTIFY` on a channel.
pub async fn notify(db: &PgPool, channel: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("select pg_notify($1, '')", channel)
        .execute(db)
        .await
        .map(|_| ())
}

/// One channel's pending wake-up: calls while a notification is being sent collapse
/// into one more notification after it.
#[derive(Debug, Default)]
struct Pending {
    notify: Notify,
    pending: AtomicBool,
}

/// Wakes the workers of every process, after commits that queued work for them.
#[derive(Debug, Clone)]
pub struct Wakeups {
    db: PgPool,
    outbound: Arc<Pending>,
    inbound: Arc<Pending>,
}

impl Wakeups {
    /// Starts the sender tasks (needs a Tokio runtime).
    pub fn start(db: PgPool) -> Wakeups {
        let w = Wakeups {
            db,
            outbound: Arc::default(),
            inbound: Arc::default(),
        };
        for (pending, channel) in [(w.outbound.clone(), OUTBOUND), (w.inbound.clone(), INBOUND)] {
            let db = w.db.clone();
            tokio::spawn(async move {
                loop {
                    pending.notify.notified().await;
                    if pending.pending.swap(false, Ordering::AcqRel)
                        && let Err(e) = notify(&db, channel).await
                    {
                        // the workers poll as well: this only delays delivery
                        tracing::debug!(channel, error = %e, "NOTIFY failed");
                    }
                }
            });
        }
        w
    }

    /// Outgoing mail was committed.
    pub fn outbound(&self) {
        self.outbound.pending.store(true, Ordering::Release);
        self.outbound.notify.notify_one();
    }

    /// Received mail was committed.
    pub fn inbound(&self) {
        self.inbound.pending.store(true, Ordering::Release);
        self.inbound.notify.notify_one();
    }

    /// Sends what is still pending now (a short-lived process calls it before exiting).
    pub async fn flush(&self) {
        for (pending, channel) in [(&self.outbound, OUTBOUND), (&self.inbound, INBOUND)] {
            if pending.pending.swap(false, Ordering::AcqRel) {
                let _ = notify(&self.db, channel).await;
            }
        }
    }
}

/// A subscription to one notification channel.
pub struct Wakeup {
    db: PgPool,
    channel: &'static str,
    listener: Option<PgListener>,
}

impl Wakeup {
    pub async fn new(db: &PgPool, channel: &'static str) -> Wakeup {
        let mut w = Wakeup {
            db: db.clone(),
            channel,
            listener: None,
        };
        w.listener = w.listen().await;
        w
    }

    /// Waits for a notification, `timeout`, or a change of `stop`, whichever is first.
    pub async fn wait(&mut self, timeout: Duration, stop: &mut watch::Receiver<bool>) {
        let got = tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(timeout) => return,
            got = async {
                match self.listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            } => got,
        };
        if got.is_err() {
            // the connection dropped: poll until it can be opened again
            self.listener = self.listen().await;
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let attempt = async {
            let mut l = PgListener::connect_with(&self.db).await?;
            l.listen(self.channel).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match attempt.await {
            Ok(l) => Some(l),
            Err(e) => {
                crate::warn_limited!("cannot LISTEN; polling instead", e, channel = self.channel);
                None
            }
        }
    }
}
