//! The SMTP front end's view of the application: RCPT resolution and durable storage.

use super::{Backend, Inbound, Temporary};
use crate::app::App;
use crate::app::inbound::{Arrival, Route};

/// Connects sessions to the use cases of `app::inbound`.
#[derive(Clone)]
pub struct AppBackend {
    app: App,
}

impl AppBackend {
    pub fn new(app: App) -> Self {
        AppBackend { app }
    }
}

impl Backend for AppBackend {
    type Route = Route;

    async fn resolve_recipient(&self, address: &str) -> Result<Option<Route>, Temporary> {
        self.app.resolve_recipient(address).await.map_err(|e| {
            crate::warn_limited!("resolving a recipient failed; answering 451", e);
            Temporary("the list database is unavailable".into())
        })
    }

    async fn accept_message(&self, message: Inbound<Route>) -> Result<(), Temporary> {
        // one entry per recipient address, even when a client repeats a RCPT
        let mut recipients: Vec<(String, Route)> = Vec::with_capacity(message.recipients.len());
        for (address, route) in message.recipients {
            if !recipients
                .iter()
                .any(|(a, _)| a.eq_ignore_ascii_case(&address))
            {
                recipients.push((address, route));
            }
        }
        let arrival = Arrival {
            mail_from: message.mail_from.as_deref(),
            helo: &message.helo,
            peer: message.peer.map(|p| p.ip().to_string()),
            tls: message.tls,
            protocol: message.protocol,
        };
        match self
            .app
            .receive_mail(&arrival, &recipients, &message.data)
            .await
        {
            Ok(id) => {
                tracing::info!(id, from = ?arrival.mail_from, recipients = recipients.len(), "mail received");
                Ok(())
            }
            Err(e) => {
                crate::warn_limited!("storing received mail failed; answering 451", e);
                Err(Temporary("the list database is unavailable".into()))
            }
        }
    }
}
