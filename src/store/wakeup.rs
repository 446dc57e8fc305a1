//! Waking workers when rows arrive: `LISTEN` on a channel that an insert trigger
//! notifies, with polling as the fallback when the notification connection is lost.

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio::sync::watch;

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
                tracing::warn!(channel = self.channel, error = %e, "cannot LISTEN; polling instead");
                None
            }
        }
    }
}
