//! `listd api-tokens …`: bearer tokens for the admin API.

use super::{Failure, output};
use crate::app::App;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ApiTokensCommand {
    /// Create a token; it is printed once, alone on the last line
    Create { name: String },
    /// List tokens (names and use, never the tokens)
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token
    Revoke { name: String },
}

pub async fn run(app: App, command: ApiTokensCommand) -> Result<(), Failure> {
    match command {
        ApiTokensCommand::Create { name } => {
            let token = app.create_api_token(&name).await?;
            eprintln!("token {name} created; it is shown only now:");
            println!("{token}");
            Ok(())
        }
        ApiTokensCommand::Ls { json } => {
            let tokens = app.api_tokens().await?;
            if json {
                return output::json(&tokens);
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        output::time(t.created_at),
                        t.last_used_at
                            .map(output::time)
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            output::table(&["NAME", "CREATED", "LAST USED"], &rows);
            Ok(())
        }
        ApiTokensCommand::Revoke { name } => {
            app.revoke_api_token(&name).await?;
            println!("revoked {name}");
            Ok(())
        }
    }
}
