//! `listd digests …`: sending what waits for a list's digest now.

use super::{Failure, output};
use crate::app::App;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DigestsCommand {
    /// Send the posts waiting for a digest now (of one list, or of every list)
    Send {
        list: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(app: App, command: DigestsCommand) -> Result<(), Failure> {
    match command {
        DigestsCommand::Send { list, json } => {
            let list = list.as_deref().map(super::lists::parse_ref).transpose()?;
            let sent = app.send_digests(list.as_ref()).await?;
            if json {
                return output::json(&sent);
            }
            if sent.is_empty() {
                println!("no digest to send: no posts waiting");
            }
            for d in sent {
                println!(
                    "{}: Vol {}, Issue {} queued ({} post(s), {} copies)",
                    d.list, d.volume, d.issue, d.posts, d.copies
                );
            }
            Ok(())
        }
    }
}
