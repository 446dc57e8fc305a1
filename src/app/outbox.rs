//! The one way use cases queue mail: a [`Mail`] rendered from a template into a message
//! from the list, queued in the caller's transaction; the daily limit of automatic mail
//! per address; and notices to the list's staff.
//!
//! The workers in `delivery` send what is queued here; nothing in `app` talks SMTP.

use super::{App, AppError};
use crate::domain::{List, MemberStatus, Purpose, Role};
use crate::mail::{Auto, SystemMail, compose_system_mail, system_envelope_from};
use crate::store;
use crate::store::outbound::NewOutbound;
use sqlx::PgConnection;
use time::{Duration, OffsetDateTime};

/// Per address, all lists: at most this many automatic mails a day (docs/standards.md#27).
const AUTOMATIC_PER_DAY: i64 = 10;

/// A message from the list to one person, rendered from a mail template.
#[derive(Debug, Clone)]
pub(crate) struct Mail<'a> {
    pub purpose: Purpose,
    pub to: &'a str,
    /// The template's name (a list's own copy is preferred, see `Templates::for_list`).
    pub template: &'a str,
    pub ctx: serde_json::Value,
    pub auto: Auto,
    pub reply_to: Option<&'a str>,
    /// The Message-ID answered; `None` for a mail that starts a conversation.
    pub in_reply_to: Option<&'a str>,
    /// A message attached whole (`message/rfc822`).
    pub attachment: Option<&'a [u8]>,
}

impl<'a> Mail<'a> {
    /// An automatic mail (`auto-generated`) with no reply address and nothing attached.
    pub fn new(purpose: Purpose, to: &'a str, template: &'a str, ctx: serde_json::Value) -> Self {
        Mail {
            purpose,
            to,
            template,
            ctx,
            auto: Auto::Generated,
            reply_to: None,
            in_reply_to: None,
            attachment: None,
        }
    }

    /// An answer to a mail (`auto-replied`); `in_reply_to` is the Message-ID answered,
    /// when it had one.
    pub fn replying_to(mut self, in_reply_to: Option<&'a str>) -> Self {
        self.auto = Auto::Replied;
        self.in_reply_to = in_reply_to;
        self
    }

    /// Where replies go instead of the list's bounce address.
    pub fn reply_to(mut self, reply_to: Option<&'a str>) -> Self {
        self.reply_to = reply_to;
        self
    }

    pub fn attach(mut self, message: &'a [u8]) -> Self {
        self.attachment = Some(message);
        self
    }
}

/// A rendered message and its envelope sender.
pub(crate) struct Composed {
    pub envelope_from: String,
    pub message: Vec<u8>,
}

impl Composed {
    /// The queue row for this message.
    pub fn outbound<'a>(&'a self, list: &List, purpose: Purpose, to: &'a str) -> NewOutbound<'a> {
        NewOutbound {
            list_id: Some(list.id),
            purpose,
            envelope_from: &self.envelope_from,
            recipient: to,
            message: &self.message,
        }
    }
}

/// Which of a list's staff a notice goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Staff {
    Owners,
    OwnersAndModerators,
}

impl Staff {
    fn roles(self) -> &'static [Role] {
        match self {
            Staff::Owners => &[Role::Owner],
            Staff::OwnersAndModerators => &[Role::Owner, Role::Moderator],
        }
    }
}

impl App {
    /// Renders `mail` and queues it in the caller's transaction.
    pub(crate) async fn queue(
        &self,
        tx: &mut PgConnection,
        list: &List,
        mail: Mail<'_>,
    ) -> Result<(), AppError> {
        let composed = self.compose(list, &mail)?;
        store::outbound::insert_outbound(&mut *tx, &composed.outbound(list, mail.purpose, mail.to))
            .await?;
        Ok(())
    }

    /// Renders `mail` into a message from the list, without queueing it.
    pub(crate) fn compose(&self, list: &List, mail: &Mail<'_>) -> Result<Composed, AppError> {
        let template = self
            .templates
            .for_list(&list.address.list_id(), mail.template);
        let text = self
            .templates
            .render_mail(&template, mail.ctx.clone())
            .map_err(|e| anyhow::anyhow!("rendering {template}: {e}"))?;
        let message = compose_system_mail(&SystemMail {
            list: &list.address,
            list_name: &list.settings.name,
            to: mail.to,
            subject: &text.subject,
            body: &text.body,
            auto: mail.auto,
            reply_to: mail.reply_to,
            in_reply_to: mail.in_reply_to,
            attachment: mail.attachment,
        });
        Ok(Composed {
            envelope_from: system_envelope_from(&list.address),
            message,
        })
    }

    /// Queues one copy of a finished message for each of `to`, outside any transaction
    /// (forwarding), and wakes the workers.
    pub(crate) async fn queue_copies(
        &self,
        list: &List,
        purpose: Purpose,
        message: &[u8],
        to: &[String],
    ) -> Result<(), AppError> {
        store::outbound::insert_outbound_copies(
            &self.db,
            Some(list.id),
            purpose,
            &system_envelope_from(&list.address),
            to,
            message,
        )
        .await?;
        self.wakeups.outbound();
        Ok(())
    }

    /// Queues one `notice` from `template` to each of the list's `staff`, with the
    /// list's name and address added to `ctx`; returns how many were queued.
    pub(crate) async fn notify_staff(
        &self,
        tx: &mut PgConnection,
        list: &List,
        staff: Staff,
        template: &str,
        mut ctx: serde_json::Value,
        reply_to: Option<&str>,
    ) -> Result<usize, AppError> {
        let to = staff_addresses(&mut *tx, list, staff).await?;
        ctx["list_name"] = serde_json::json!(list.settings.name);
        ctx["list_address"] = serde_json::json!(list.address.to_string());
        for address in &to {
            let mail =
                Mail::new(Purpose::Notice, address, template, ctx.clone()).reply_to(reply_to);
            self.queue(tx, list, mail).await?;
        }
        Ok(to.len())
    }

    /// The public page of a list.
    pub fn list_url(&self, list: &List) -> String {
        format!(
            "{}/lists/{}",
            self.settings.public_url,
            list.address.list_id()
        )
    }
}

/// The subscribed addresses holding the roles of `staff` on a list, each once (the
/// first role's order first).
pub(crate) async fn staff_addresses(
    tx: &mut PgConnection,
    list: &List,
    staff: Staff,
) -> Result<Vec<String>, AppError> {
    let mut addresses: Vec<String> = Vec::new();
    for role in staff.roles() {
        addresses.extend(
            store::members::list_members(
                &mut *tx,
                list.id,
                Some(*role),
                Some(MemberStatus::Subscribed),
            )
            .await?
            .into_iter()
            .map(|m| m.address),
        );
    }
    let mut seen = std::collections::HashSet::new();
    addresses.retain(|a| seen.insert(a.to_ascii_lowercase()));
    Ok(addresses)
}

/// Whether a count of today's automatic mail to one address has reached the daily
/// limit (docs/standards.md#27).
pub(crate) fn over_daily_limit(automatic_today: i64) -> bool {
    automatic_today >= AUTOMATIC_PER_DAY
}

/// Whether `to` has had its day's automatic mail (docs/standards.md#27).
pub(crate) async fn daily_limit_reached(tx: &mut PgConnection, to: &str) -> Result<bool, AppError> {
    let since = OffsetDateTime::now_utc() - Duration::DAY;
    let sent = store::outbound::count_recent_to(&mut *tx, to, Purpose::AUTOMATIC, since).await?;
    Ok(over_daily_limit(sent))
}
