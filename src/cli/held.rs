//! `listd held …`: the moderation queue.

use super::{Failure, output};
use crate::app::App;
use crate::app::posts::{Moderation, ModerationOutcome};
use clap::Subcommand;

/// Body text shown by `held show`, at most.
const SHOWN_BYTES: usize = 64 * 1024;

#[derive(Debug, Subcommand)]
pub enum HeldCommand {
    /// List held messages, oldest first (of one list, or of all)
    Ls {
        list: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one message: why it was held, and the message itself
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Relay held messages to the members
    Approve {
        #[arg(required = true)]
        ids: Vec<i64>,
        /// A note kept with the message
        #[arg(long)]
        reason: Option<String>,
    },
    /// Refuse held messages; the sender is told, with the reason
    Reject {
        #[arg(required = true)]
        ids: Vec<i64>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Drop held messages without telling the sender
    Discard {
        #[arg(required = true)]
        ids: Vec<i64>,
        /// A note kept with the message
        #[arg(long)]
        reason: Option<String>,
    },
}

pub async fn run(app: App, command: HeldCommand) -> Result<(), Failure> {
    match command {
        HeldCommand::Ls { list, json } => ls(&app, list.as_deref(), json).await,
        HeldCommand::Show { id, json } => show(&app, id, json).await,
        HeldCommand::Approve { ids, reason } => {
            moderate(&app, ids, Moderation::Approve, reason).await
        }
        HeldCommand::Reject { ids, reason } => {
            moderate(&app, ids, Moderation::Reject, reason).await
        }
        HeldCommand::Discard { ids, reason } => {
            moderate(&app, ids, Moderation::Discard, reason).await
        }
    }
}

async fn ls(app: &App, list: Option<&str>, json: bool) -> Result<(), Failure> {
    let list = list.map(super::lists::parse_ref).transpose()?;
    let held = app.held_posts(list.as_ref()).await?;
    if json {
        return output::json(&held);
    }
    let rows: Vec<Vec<String>> = held
        .iter()
        .map(|h| {
            vec![
                h.id.to_string(),
                h.list.clone(),
                h.from.clone(),
                h.subject.clone(),
                h.reason.clone(),
                output::time(h.received_at),
            ]
        })
        .collect();
    output::table(
        &["ID", "LIST", "FROM", "SUBJECT", "REASON", "RECEIVED"],
        &rows,
    );
    Ok(())
}

async fn show(app: &App, id: i64, json: bool) -> Result<(), Failure> {
    let d = app.post_detail(id).await?;
    let message = String::from_utf8_lossy(&d.raw[..d.raw.len().min(SHOWN_BYTES)]);
    if json {
        return output::json(&serde_json::json!({
            "id": d.post.id,
            "list": d.post.list,
            "from": d.post.from,
            "subject": d.post.subject,
            "reason": d.post.reason,
            "received_at": output::time(d.post.received_at),
            "status": d.status,
            "envelope_from": d.mail_from,
            "decided_by": d.decided_by,
            "decided_at": d.decided_at.map(output::time),
            "copies": d.copies,
            "message": message,
        }));
    }
    output::fields(&[
        ("id", d.post.id.to_string()),
        ("list", d.post.list),
        ("status", d.status.to_string()),
        ("from", d.post.from),
        ("envelope from", d.mail_from.unwrap_or_else(|| "<>".into())),
        ("subject", d.post.subject),
        ("reason", d.post.reason),
        ("received", output::time(d.post.received_at)),
        (
            "decided by",
            d.decided_by.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "decided",
            d.decided_at.map(output::time).unwrap_or_else(|| "-".into()),
        ),
    ]);
    println!();
    // shown as text, but never drives the terminal
    output::message(&message);
    if d.raw.len() > SHOWN_BYTES {
        println!("\n[… {} more bytes]", d.raw.len() - SHOWN_BYTES);
    }
    Ok(())
}

/// Acts on every id; reports each, and fails (exit 1) if any could not be done.
async fn moderate(
    app: &App,
    ids: Vec<i64>,
    decision: Moderation,
    reason: Option<String>,
) -> Result<(), Failure> {
    let mut failures = Vec::new();
    for id in ids {
        match app.moderate(id, decision, reason.as_deref(), "cli").await {
            Ok(ModerationOutcome::Approved { copies }) => {
                println!("message {id} approved: relayed to {copies} member(s)")
            }
            Ok(ModerationOutcome::Rejected) => println!("message {id} rejected"),
            Ok(ModerationOutcome::Discarded) => println!("message {id} discarded"),
            Ok(ModerationOutcome::AlreadyDecided(d)) => {
                failures.push(format!("message {id} is not held: it was {d}"))
            }
            Err(e) => failures.push(Failure::from(e).message),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(failures.join("; ")))
    }
}
