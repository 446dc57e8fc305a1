//! Use cases: one function per thing a person or a mail can ask of listd.
//!
//! Front ends (HTTP, SMTP, CLI) parse their input into domain types, call one of these
//! functions, and turn the returned outcome into a page, a reply or an exit code.
//! A use case reads and writes through `store`, in one transaction, and enqueues the
//! mail it causes in that same transaction; it never talks SMTP itself.

pub mod api_tokens;
pub mod archive;
pub mod bounces;
pub mod digests;
pub mod dkim;
pub mod inbound;
pub mod lists;
pub mod members;
pub mod outbox;
pub mod posts;
pub mod roster;
pub mod sessions;
pub mod staff;
pub mod subscriptions;
pub mod web_requests;

use crate::domain::{AddressError, SecretKey, SettingError};
use crate::mail::dmarc::DmarcResolver;
use crate::templates::Templates;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// What the use cases need besides the database.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// Base of links in mail, without a trailing slash.
    pub public_url: String,
    pub secret_key: SecretKey,
    pub confirm_expiry: Duration,
    /// Site admins: told of received mail that cannot be processed, and the readers of
    /// mail to `postmaster@` and `abuse@` at a list domain.
    pub admins: Vec<crate::domain::EmailAddress>,
}

/// The application core shared by every front end.
#[derive(Clone)]
pub struct App {
    db: PgPool,
    /// Wakes the workers after commits that queue work for them.
    wakeups: crate::store::wakeup::Wakeups,
    settings: Arc<AppSettings>,
    templates: Arc<Templates>,
    /// DMARC policy look-ups for From rewriting.
    dmarc: DmarcResolver,
}

impl App {
    pub fn new(
        db: PgPool,
        settings: AppSettings,
        templates: Templates,
        dmarc: DmarcResolver,
    ) -> Self {
        let wakeups = crate::store::wakeup::Wakeups::start(db.clone());
        App {
            db,
            wakeups,
            settings: Arc::new(settings),
            templates: Arc::new(templates),
            dmarc,
        }
    }

    /// The settings the app was built with.
    pub fn settings(&self) -> &AppSettings {
        &self.settings
    }

    /// The page and mail templates.
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// Sends the wake-ups still pending (before a short-lived process exits, so that a
    /// `serve` elsewhere delivers what it queued now).
    pub async fn flush_wakeups(&self) {
        self.wakeups.flush().await;
    }

    /// The queues at a glance (for `/metrics`).
    pub async fn queue_stats(&self) -> Result<crate::domain::outbound::QueueStats, AppError> {
        Ok(crate::store::outbound::find_queue_stats(&self.db).await?)
    }

    /// Whether the database answers.
    pub async fn ready(&self) -> bool {
        crate::store::ping(&self.db).await.is_ok()
    }
}

/// Why a use case did not happen. Front ends map each variant to their own answer
/// (an exit code, an HTTP status); `Unexpected` is the only one that is a fault.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("there is no list {0}")]
    NoSuchList(String),
    #[error("a list {0} already exists")]
    ListExists(String),
    #[error("{address} is not a {role} of {list}")]
    NoSuchMember {
        list: String,
        address: String,
        role: String,
    },
    #[error(transparent)]
    BadAddress(#[from] AddressError),
    #[error(transparent)]
    BadSetting(#[from] SettingError),
    #[error("there is no message {0}")]
    NoSuchPost(i64),
    /// An archived message that is not there (or was taken down).
    #[error("the archive has no message <{0}>")]
    NoSuchMessage(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl AppError {
    /// Whether the caller's input was at fault (a usage error) rather than the state.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, AppError::BadAddress(_) | AppError::BadSetting(_))
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Unexpected(anyhow::Error::new(e).context("talking to the database"))
    }
}
