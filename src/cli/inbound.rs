//! `listd inbound …`: received mail as stored, for operators: what became of each
//! message, and a replay of those whose processing failed.

use super::{Failure, output};
use crate::app::App;
use crate::app::inbound::RetryOutcome;
use clap::Subcommand;

/// Message text shown by `inbound show`, at most (`--raw` prints it all).
const SHOWN_BYTES: usize = 64 * 1024;

#[derive(Debug, Subcommand)]
pub enum InboundCommand {
    /// List received messages, newest first
    Ls {
        /// Only messages with this status: new, done or failed
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one received message: its envelope, what became of it, and its text
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
        /// Print the message's bytes exactly as received, and nothing else
        #[arg(long, conflicts_with = "json")]
        raw: bool,
    },
    /// Process messages again (those that failed, once the cause is fixed)
    Retry {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

pub async fn run(app: App, command: InboundCommand) -> Result<(), Failure> {
    match command {
        InboundCommand::Ls { status, json } => {
            let messages = app.inbound_messages(status.as_deref()).await?;
            if json {
                return output::json(&messages);
            }
            let rows: Vec<Vec<String>> = messages
                .iter()
                .map(|m| {
                    vec![
                        m.id.to_string(),
                        output::time(m.received_at),
                        m.status.clone(),
                        m.envelope_from.clone().unwrap_or_else(|| "<>".into()),
                        m.recipients.join(", "),
                        m.error
                            .clone()
                            .filter(|_| m.status != "done")
                            .or_else(|| m.outcome.clone())
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(
                &["ID", "RECEIVED", "STATUS", "ENVELOPE FROM", "TO", "OUTCOME"],
                &rows,
            );
            Ok(())
        }
        InboundCommand::Show { id, json, raw } => show(&app, id, json, raw).await,
        InboundCommand::Retry { ids } => {
            let mut failures = Vec::new();
            for id in ids {
                match app.retry_inbound(id).await {
                    Ok(RetryOutcome::Queued) => println!("message {id} queued for processing"),
                    Ok(RetryOutcome::AlreadyDone) => failures.push(format!(
                        "message {id} was processed already (see `listd inbound show {id}`)"
                    )),
                    Err(e) => failures.push(Failure::from(e).message),
                }
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(Failure::failed(failures.join("; ")))
            }
        }
    }
}

async fn show(app: &App, id: i64, json: bool, raw: bool) -> Result<(), Failure> {
    let (m, bytes) = app.inbound_message(id).await?;
    if raw {
        use std::io::Write;
        let _ = std::io::stdout().lock().write_all(&bytes);
        return Ok(());
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN_BYTES)]).into_owned();
    if json {
        let mut value = serde_json::to_value(&m).map_err(|e| Failure::failed(e.to_string()))?;
        value["message"] = text.into();
        return output::json(&value);
    }
    output::fields(&[
        ("id", m.id.to_string()),
        ("received", output::time(m.received_at)),
        ("status", m.status),
        ("attempts", m.attempts.to_string()),
        (
            "envelope from",
            m.envelope_from.unwrap_or_else(|| "<>".into()),
        ),
        ("to", m.recipients.join(", ")),
        ("from", m.from.unwrap_or_default()),
        ("subject", m.subject),
        ("peer", m.peer.unwrap_or_default()),
        ("protocol", m.protocol),
        ("size", format!("{} bytes", m.size)),
        ("outcome", m.outcome.unwrap_or_default()),
        ("error", m.error.unwrap_or_default()),
    ]);
    println!();
    // the message itself is shown as text, but never drives the terminal
    output::message(&text);
    if bytes.len() > SHOWN_BYTES {
        println!(
            "[… {} more bytes; --raw prints them all]",
            bytes.len() - SHOWN_BYTES
        );
    }
    Ok(())
}
