//! `listd dkim …`: DKIM keys (docs/contract.md#dkim). The private key is never shown.

use super::{Failure, output};
use crate::app::App;
use crate::mail::dkim::Algorithm;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Create a key for DOMAIN and print the DNS record to publish
    Generate {
        domain: String,
        /// Default: listdYYYYa, then listdYYYYb…
        #[arg(long)]
        selector: Option<String>,
        /// rsa-sha256 (2048 bits) or ed25519-sha256
        #[arg(long, default_value = "rsa-sha256")]
        algorithm: String,
    },
    /// List keys with their DNS records
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove a key: nothing more is signed with it
    Rm { domain: String, selector: String },
    /// Look the records of DOMAIN's keys up in DNS and say whether they match
    Check {
        domain: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(app: App, command: DkimCommand) -> Result<(), Failure> {
    match command {
        DkimCommand::Generate {
            domain,
            selector,
            algorithm,
        } => {
            let algorithm: Algorithm = algorithm.parse().map_err(Failure::usage)?;
            let key = app
                .generate_dkim_key(&domain, selector.as_deref(), algorithm)
                .await?;
            eprintln!(
                "key {} of {} created ({}); publish this record, then check it with `listd dkim check {}`:",
                key.selector, key.domain, key.algorithm, key.domain
            );
            println!("{}", key.dns_record);
            Ok(())
        }
        DkimCommand::Ls { json } => {
            let keys = app.dkim_keys(None).await?;
            if json {
                return output::json(&keys);
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        k.domain.clone(),
                        k.selector.clone(),
                        k.algorithm.clone(),
                        output::time(k.created_at),
                    ]
                })
                .collect();
            output::table(&["DOMAIN", "SELECTOR", "ALGORITHM", "CREATED"], &rows);
            for k in &keys {
                println!("{}", k.dns_record);
            }
            Ok(())
        }
        DkimCommand::Rm { domain, selector } => {
            app.remove_dkim_key(&domain, &selector).await?;
            println!("removed {selector} of {domain}; mail is no longer signed with it");
            Ok(())
        }
        DkimCommand::Check { domain, json } => {
            let checks = app.check_dkim(&domain).await?;
            if json {
                output::json(&checks)?;
            } else {
                for c in &checks {
                    println!("{}: {} ({})", c.selector, c.status, c.detail);
                }
            }
            if checks.iter().all(|c| c.status == "matches") {
                Ok(())
            } else {
                Err(Failure::failed(
                    "not every key is published as generated".to_string(),
                ))
            }
        }
    }
}
