//! `listd members …`

use super::Failure;
use crate::app::App;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum MembersCommand {}

pub async fn run(_app: App, command: MembersCommand) -> Result<(), Failure> {
    match command {}
}
