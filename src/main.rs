//! The `listd` binary: parse the command line, start tracing, dispatch.

#![forbid(unsafe_code)]

use clap::Parser;
use listd::cli::{Cli, Command};
use listd::config::{Config, LogFormat};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("listd: {e}.");
            return ExitCode::from(1);
        }
    };
    // the server logs what it does; admin commands only what goes wrong
    let default_filter = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter =
        tracing_subscriber::EnvFilter::try_new(config.log.as_deref().unwrap_or(default_filter))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("listd: cannot start the async runtime: {e}.");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(listd::cli::run(cli, config))
}
