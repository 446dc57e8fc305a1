//! `listd archive …`: import and export mbox files, take a message down.

use super::lists::parse_ref;
use super::{Failure, output};
use crate::app::App;
use crate::app::archive::RemoveOutcome;
use crate::domain::archive::Month;
use crate::mail::mbox::Reader;
use clap::Subcommand;
use std::io::{IsTerminal, Write};

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Add the messages of an mbox file (`-` for standard input) to a list's archive:
    /// a Google Takeout of a group, a Mailman 2 or HyperKitty export; nothing is sent
    Import {
        list: String,
        file: String,
        /// mbox (mboxo or mboxrd)
        #[arg(long, default_value = "mbox")]
        format: String,
        #[arg(long)]
        json: bool,
    },
    /// Write a list's archive as an mboxrd file on standard output
    Export {
        list: String,
        /// First month, YYYY-MM
        #[arg(long)]
        from: Option<String>,
        /// Last month, YYYY-MM (included)
        #[arg(long)]
        to: Option<String>,
    },
    /// Take one message down for good (spam, erasure): its page is gone, its thread
    /// keeps a "removed" placeholder, and no import brings it back
    Rm { list: String, message_id: String },
}

pub async fn run(app: App, command: ArchiveCommand) -> Result<(), Failure> {
    match command {
        ArchiveCommand::Import {
            list,
            file,
            format,
            json,
        } => import(&app, &list, &file, &format, json).await,
        ArchiveCommand::Export { list, from, to } => export(&app, &list, from, to).await,
        ArchiveCommand::Rm { list, message_id } => {
            match app.remove_archived(&parse_ref(&list)?, &message_id).await? {
                RemoveOutcome::Removed => println!("removed <{}>", bare(&message_id)),
                RemoveOutcome::AlreadyRemoved => {
                    println!("<{}> was already removed", bare(&message_id))
                }
            }
            Ok(())
        }
    }
}

fn bare(id: &str) -> &str {
    crate::domain::archive::bare_id(id)
}

/// Reads the file entry by entry (reporting unreadable entries by place on stderr)
/// and indexes what it added for search alongside, with a progress bar for each on a
/// terminal.
async fn import(
    app: &App,
    list: &str,
    file: &str,
    format: &str,
    json: bool,
) -> Result<(), Failure> {
    let list = parse_ref(list)?;
    if format != "mbox" {
        return Err(Failure::usage(format!(
            "`{format}` is not an archive format; use mbox"
        )));
    }
    let input: Box<dyn std::io::BufRead + Send> = if file == "-" {
        Box::new(std::io::BufReader::with_capacity(1 << 16, std::io::stdin()))
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| Failure::failed(format!("cannot open {file}: {e}")))?;
        Box::new(std::io::BufReader::with_capacity(1 << 16, f))
    };
    // stored and threaded on one connection (the raw messages on a second), indexed for
    // search on a third at once, with the search vectors made as the messages are read
    let (made, taken) = tokio::sync::mpsc::channel(4);
    let bars = indicatif::MultiProgress::new();
    let [reading, indexing] =
        ["read", "indexed for search"].map(|what| progress_bar(what).map(|b| bars.add(b)));
    let stored = async {
        let report = app
            .import_archive(
                &list,
                Reader::new(input),
                |n| {
                    if let Some(b) = &reading {
                        b.set_position(n);
                    }
                },
                Some(made),
            )
            .await;
        // the messages are in the archive and can be read now; search follows
        if let Ok(r) = &report
            && r.read > 0
            && !json
        {
            match &reading {
                Some(_) => bars.println(stored_line(r)).unwrap_or_default(),
                None => println!("{}", stored_line(r)),
            }
        }
        report
    };
    let indexed = app.index_archive_while(&list, taken, |n| {
        if let Some(b) = &indexing {
            b.set_position(n);
        }
    });
    let (report, indexed) = tokio::join!(stored, indexed);
    let mut report = report?;
    for b in [reading, indexing].into_iter().flatten() {
        b.finish_and_clear();
    }
    for bad in &report.bad {
        if bad.entry == 0 {
            eprintln!("line {}: {}", bad.line, bad.reason);
        } else {
            eprintln!("entry {} (line {}): {}", bad.entry, bad.line, bad.reason);
        }
    }
    if report.read == 0 {
        return Err(Failure::failed(format!(
            "no message could be read from {file}; is it an mbox file?"
        )));
    }
    report.indexed = indexed?;
    if json {
        return output::json(&report);
    }
    println!("{} messages indexed for search", report.indexed);
    Ok(())
}

/// A spinner counting messages on a terminal (none when stderr is not one).
fn progress_bar(what: &str) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{spinner}} {{human_pos}} messages {what} ({{per_sec}})"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    })
}

/// What the storing part of an import did, in a line.
fn stored_line(report: &crate::app::archive::ImportReport) -> String {
    format!(
        "{} messages read, {} added, {} already in the archive{}",
        report.read,
        report.added,
        report.read - report.added,
        if report.bad.is_empty() {
            String::new()
        } else {
            format!(", {} entries unreadable", report.bad.len())
        }
    )
}

async fn export(
    app: &App,
    list: &str,
    from: Option<String>,
    to: Option<String>,
) -> Result<(), Failure> {
    let month = |flag: &str, v: Option<String>| -> Result<Option<Month>, Failure> {
        v.map(|v| {
            Month::parse(&v)
                .ok_or_else(|| Failure::usage(format!("{flag}: `{v}` is not a month (YYYY-MM)")))
        })
        .transpose()
    };
    let (from, to) = (month("--from", from)?, month("--to", to)?);
    let list = app.get_list(&parse_ref(list)?).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut after = None;
    loop {
        let page = app.archive_export_page(&list, from, to, after).await?;
        for m in &page.messages {
            crate::mail::mbox::write_entry(&mut out, m.envelope_from.as_deref(), m.date, &m.raw)
                .map_err(|e| Failure::failed(format!("writing the mbox file: {e}")))?;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    out.flush()
        .map_err(|e| Failure::failed(format!("writing the mbox file: {e}")))
}
