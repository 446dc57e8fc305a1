//! The admin command line: parses arguments, calls one use case, prints the outcome.
//!
//! Listing commands print a readable table, or one JSON document with `--json`.
//! Errors are one sentence on stderr; exit codes are 0 (success), 1 (failure) and
//! 2 (usage error: bad arguments, an unknown setting or value).

mod api_tokens;
mod archive;
mod digests;
mod dkim;
mod held;
mod inbound;
mod lists;
mod members;
mod output;
mod serve;

use crate::app::{App, AppError};
use crate::config::Config;
use crate::startup;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "listd",
    version,
    about = "A mailing list manager",
    propagate_version = true
)]
pub struct Cli {
    /// TOML configuration file (also LISTD_CONFIG)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP and SMTP front ends and the delivery workers
    Serve(serve::ServeArgs),
    /// Apply database migrations and exit
    Migrate,
    /// Create, show, change and delete lists
    Lists {
        #[command(subcommand)]
        command: lists::ListsCommand,
    },
    /// Manage the members of a list
    Members {
        #[command(subcommand)]
        command: members::MembersCommand,
    },
    /// Send digests
    Digests {
        #[command(subcommand)]
        command: digests::DigestsCommand,
    },
    /// Moderate held posts
    Held {
        #[command(subcommand)]
        command: held::HeldCommand,
    },
    /// Received mail: what became of it, and a replay of what failed
    Inbound {
        #[command(subcommand)]
        command: inbound::InboundCommand,
    },
    /// Print a one-time sign-in URL for an address (a member, an owner or moderator,
    /// or a site admin)
    SigninLink {
        /// The address to sign in as
        address: String,
    },
    /// A list's archive: import and export mbox files, take a message down
    Archive {
        #[command(subcommand)]
        command: archive::ArchiveCommand,
    },
    /// Bearer tokens for the admin API
    ApiTokens {
        #[command(subcommand)]
        command: api_tokens::ApiTokensCommand,
    },
    /// DKIM keys: every message from a domain with a key is signed
    Dkim {
        #[command(subcommand)]
        command: dkim::DkimCommand,
    },
}

/// A command's failure: the sentence for stderr and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        let code = if e.is_bad_input() { 2 } else { 1 };
        let message = match &e {
            AppError::Unexpected(inner) => format!("{inner:#}"),
            other => other.to_string(),
        };
        Failure { code, message }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::failed(format!("{e:#}"))
    }
}

/// Runs a parsed command line to its exit code.
pub async fn run(cli: Cli, config: Config) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::run(args, config).await,
        Command::Migrate => {
            with_app(&config, |app| async move {
                let _ = app;
                println!("migrations applied");
                Ok(())
            })
            .await
        }
        Command::Lists { command } => with_app(&config, |app| lists::run(app, command)).await,
        Command::Members { command } => with_app(&config, |app| members::run(app, command)).await,
        Command::Held { command } => with_app(&config, |app| held::run(app, command)).await,
        Command::Digests { command } => with_app(&config, |app| digests::run(app, command)).await,
        Command::Inbound { command } => with_app(&config, |app| inbound::run(app, command)).await,
        Command::SigninLink { address } => with_app(&config, |app| signin_link(app, address)).await,
        Command::Archive { command } => with_app(&config, |app| archive::run(app, command)).await,
        Command::ApiTokens { command } => {
            with_app(&config, |app| api_tokens::run(app, command)).await
        }
        Command::Dkim { command } => with_app(&config, |app| dkim::run(app, command)).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("listd: {}", sentence(&f.message));
            ExitCode::from(f.code)
        }
    }
}

async fn signin_link(app: App, address: String) -> Result<(), Failure> {
    let address =
        crate::domain::EmailAddress::parse(&address).map_err(|e| Failure::usage(e.to_string()))?;
    match app.signin_link(&address).await? {
        Some(url) => {
            println!("{url}");
            Ok(())
        }
        None => Err(Failure::failed(format!(
            "{address} may not sign in: it is not a member, owner or moderator of any list, nor a site admin (LISTD_ADMINS)"
        ))),
    }
}

/// Opens the database (applying migrations), runs `f`, and closes it again.
async fn with_app<F, Fut>(config: &Config, f: F) -> Result<(), Failure>
where
    F: FnOnce(App) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let db = startup::open_database(config, 6).await?;
    let result = async {
        let app = startup::build_app(config, &db).await?;
        let done = f(app.clone()).await;
        // a `serve` elsewhere delivers what this command queued: tell it now
        app.flush_wakeups().await;
        done
    }
    .await;
    db.close().await;
    result
}

/// One sentence: first letter as written, a final full stop.
fn sentence(s: &str) -> String {
    let s = s.trim().replace('\n', " ");
    if s.ends_with(['.', '!', '?']) {
        s
    } else {
        format!("{s}.")
    }
}
