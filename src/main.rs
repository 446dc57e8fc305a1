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
    let mut directives = config.log.as_deref().unwrap_or(default_filter).to_string();
    // PostgreSQL's routine notices ("relation … already exists, skipping" from the
    // migrations of every process after the first) are not news
    if !directives.contains("sqlx") {
        directives.push_str(",sqlx::postgres::notice=warn");
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // colours only for a person at a terminal, never into files and pipes
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
