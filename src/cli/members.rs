//! `listd members …`

use super::lists::parse_ref;
use super::{Failure, output};
use crate::app::App;
use crate::app::members::{AddHow, AddOutcome, StatusFilter};
use crate::app::roster::ImportOptions;
use crate::domain::roster::csv_cell;
use crate::domain::{EmailAddress, Member, Role};
use clap::Subcommand;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Add the members listed in a file (`-` for standard input), as an owner's add
    Import {
        list: String,
        file: String,
        /// csv (a header naming an `email` column, optional `name`) | lines (`Name <addr>`
        /// or an address per line) | google-groups (Google Groups' members export)
        #[arg(long, default_value = "csv")]
        format: String,
        /// Send a confirmation to addresses that left the list, instead of skipping them
        #[arg(long)]
        invite: bool,
        /// Add without sending new members the welcome message
        #[arg(long)]
        quiet: bool,
        /// Read the file and say what the import would do, changing nothing
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write the subscribed members and their consent records as CSV (stdout)
    Export {
        list: String,
        #[arg(long, default_value = "csv")]
        format: String,
    },
    /// List members (by default: subscribed members)
    Ls {
        list: String,
        /// member | owner | moderator
        #[arg(long, default_value = "member")]
        role: String,
        /// subscribed | pending | unsubscribed | removed | bounced | complained | disabled | all
        #[arg(long, default_value = "subscribed")]
        status: String,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
    },
    /// Add addresses at once (an owner's explicit add), or invite them with --invite
    Add {
        list: String,
        #[arg(required = true, value_name = "ADDR")]
        addresses: Vec<String>,
        /// member | owner | moderator
        #[arg(long, default_value = "member")]
        role: String,
        /// Send a confirmation request instead of adding at once
        #[arg(long, conflicts_with = "quiet")]
        invite: bool,
        /// Add without sending the welcome message
        #[arg(long)]
        quiet: bool,
    },
    /// Take addresses off the list
    Remove {
        list: String,
        #[arg(required = true, value_name = "ADDR")]
        addresses: Vec<String>,
    },
    /// Show a member: status, delivery, bounce score, consent record
    Show {
        list: String,
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a member: delivery=enabled|disabled, mode=each|digest|digest-plain, role=…, name=…, own-posts=enabled|disabled
    Set {
        list: String,
        address: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
}

pub async fn run(app: App, command: MembersCommand) -> Result<(), Failure> {
    match command {
        MembersCommand::Ls {
            list,
            role,
            status,
            json,
            csv,
        } => ls(&app, &list, &role, &status, Format { json, csv }).await,
        MembersCommand::Add {
            list,
            addresses,
            role,
            invite,
            quiet,
        } => {
            let how = if invite {
                AddHow::Invite
            } else {
                AddHow::Add { quiet }
            };
            add(&app, &list, &addresses, &role, how).await
        }
        MembersCommand::Remove { list, addresses } => remove(&app, &list, &addresses).await,
        MembersCommand::Show {
            list,
            address,
            json,
        } => show_member(&app, &list, &address, json).await,
        MembersCommand::Import {
            list,
            file,
            format,
            invite,
            quiet,
            dry_run,
            json,
        } => {
            let options = ImportOptions {
                invite,
                quiet,
                dry_run,
            };
            import(&app, &list, &file, &format, options, json).await
        }
        MembersCommand::Export { list, format } => export(&app, &list, &format).await,
        MembersCommand::Set {
            list,
            address,
            settings,
        } => set(&app, &list, &address, &settings).await,
    }
}

/// How `members ls` prints: JSON, CSV, or a table.
#[derive(Debug, Clone, Copy)]
struct Format {
    json: bool,
    csv: bool,
}

async fn ls(
    app: &App,
    list: &str,
    role: &str,
    status: &str,
    Format { json, csv }: Format,
) -> Result<(), Failure> {
    let role: Role = role
        .parse()
        .map_err(|e| Failure::usage(format!("--role: {e}")))?;
    let status: StatusFilter = status
        .parse()
        .map_err(|e| Failure::usage(format!("--status: {e}")))?;
    let members = app.members(&parse_ref(list)?, Some(role), status).await?;
    if json {
        let rows: Vec<_> = members.iter().map(Member::summary).collect();
        return output::json(&rows);
    }
    if csv {
        return write_csv(&members);
    }
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                m.address.clone(),
                m.name.clone().unwrap_or_default(),
                m.role.to_string(),
                m.status.to_string(),
                m.delivery.to_string(),
                m.mode.to_string(),
                m.subscribed_at
                    .and_then(|t| t.format(&Rfc3339).ok())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    output::table(
        &[
            "ADDRESS",
            "NAME",
            "ROLE",
            "STATUS",
            "DELIVERY",
            "MODE",
            "SUBSCRIBED",
        ],
        &rows,
    );
    Ok(())
}

async fn add(
    app: &App,
    list: &str,
    addresses: &[String],
    role: &str,
    how: AddHow,
) -> Result<(), Failure> {
    let role: Role = role
        .parse()
        .map_err(|e| Failure::usage(format!("--role: {e}")))?;
    let list = parse_ref(list)?;
    let addresses = parse_addresses(addresses)?;
    let mut refused = 0;
    for (address, outcome) in app.add_members(&list, &addresses, role, how).await? {
        match outcome {
            AddOutcome::Added => println!("added {address} as {role}"),
            AddOutcome::AlreadyMember => println!("{address} is already a {role}"),
            AddOutcome::Invited => println!("sent {address} a confirmation request"),
            AddOutcome::InviteRateLimited => {
                refused += 1;
                eprintln!("listd: {address} was sent a request recently; try again later.");
            }
            AddOutcome::NeedsInvite(status) => {
                refused += 1;
                eprintln!(
                    "listd: {address} is {status}; only their own confirmation brings them back, so use --invite."
                );
            }
        }
    }
    if refused > 0 {
        Err(Failure::failed(format!("{refused} address(es) not added")))
    } else {
        Ok(())
    }
}

async fn remove(app: &App, list: &str, addresses: &[String]) -> Result<(), Failure> {
    let list = parse_ref(list)?;
    let addresses = parse_addresses(addresses)?;
    let mut missing = 0;
    for (address, removed) in app.remove_members(&list, &addresses).await? {
        if removed {
            println!("removed {address}");
        } else {
            missing += 1;
            eprintln!("listd: {address} is not on {list}.");
        }
    }
    if missing > 0 {
        Err(Failure::failed(format!("{missing} address(es) not found")))
    } else {
        Ok(())
    }
}

async fn show_member(app: &App, list: &str, address: &str, json: bool) -> Result<(), Failure> {
    let address = EmailAddress::parse(address).map_err(|e| Failure::usage(e.to_string()))?;
    let detail = app.member_detail(&parse_ref(list)?, &address).await?;
    if json {
        return output::json(&detail);
    }
    show(&detail.member, &detail.roles);
    if !detail.bounces.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = detail
            .bounces
            .iter()
            .map(|b| {
                vec![
                    output::time(b.received_at),
                    b.class.clone(),
                    b.status.clone().unwrap_or_else(|| "-".into()),
                    b.source.clone(),
                    b.diagnostic
                        .clone()
                        .unwrap_or_default()
                        .chars()
                        .take(80)
                        .collect(),
                ]
            })
            .collect();
        output::table(&["BOUNCED", "CLASS", "STATUS", "FROM", "DIAGNOSTIC"], &rows);
    }
    Ok(())
}

async fn export(app: &App, list: &str, format: &str) -> Result<(), Failure> {
    if format != "csv" {
        return Err(Failure::usage(format!(
            "`{format}` is not an export format; use csv"
        )));
    }
    let members = app.export_members(&parse_ref(list)?).await?;
    write_export(&members)
}

async fn set(app: &App, list: &str, address: &str, settings: &[String]) -> Result<(), Failure> {
    let address = EmailAddress::parse(address).map_err(|e| Failure::usage(e.to_string()))?;
    let change = crate::domain::MemberChange::from_pairs(settings)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let m = app
        .update_member(&parse_ref(list)?, &address, &change)
        .await?;
    println!(
        "updated {} ({}, delivery {}, mode {})",
        m.address, m.role, m.delivery, m.mode
    );
    Ok(())
}

fn parse_addresses(addresses: &[String]) -> Result<Vec<EmailAddress>, Failure> {
    addresses
        .iter()
        .map(|a| EmailAddress::parse(a).map_err(|e| Failure::usage(e.to_string())))
        .collect()
}

fn write_csv(members: &[Member]) -> Result<(), Failure> {
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    let fail = |e: csv::Error| Failure::failed(format!("writing CSV: {e}"));
    w.write_record([
        "email",
        "name",
        "role",
        "status",
        "delivery",
        "subscribed_at",
        "mode",
    ])
    .map_err(fail)?;
    for m in members {
        let row = [
            m.address.as_str(),
            m.name.as_deref().unwrap_or(""),
            m.role.as_str(),
            m.status.as_str(),
            m.delivery.as_str(),
            &m.subscribed_at
                .and_then(|t| t.format(&Rfc3339).ok())
                .unwrap_or_default(),
            m.mode.as_str(),
        ];
        w.write_record(row.map(|cell| csv_cell(cell).into_owned()))
            .map_err(fail)?;
    }
    w.flush()
        .map_err(|e| Failure::failed(format!("writing CSV: {e}")))
}

fn show(m: &Member, roles: &[Role]) {
    let t = |v: Option<time::OffsetDateTime>| {
        v.and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| "-".into())
    };
    let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let c = &m.consent;
    output::fields(&[
        ("address", m.address.clone()),
        ("name", s(&m.name)),
        (
            "roles",
            roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("status", m.status.to_string()),
        ("delivery", m.delivery.to_string()),
        ("mode", m.mode.to_string()),
        ("bounce score", m.bounce_score.to_string()),
        (
            "own posts",
            if m.own_posts { "enabled" } else { "disabled" }.to_string(),
        ),
        ("subscribed", t(m.subscribed_at)),
        ("requested", t(c.requested_at)),
        (
            "request source",
            c.request_source
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
        ),
        ("request IP", s(&c.request_ip)),
        ("request user agent", s(&c.request_user_agent)),
        ("request message-id", s(&c.request_message_id)),
        ("request form", s(&c.request_form_text)),
        ("confirmed", t(c.confirmed_at)),
        ("confirmed by", s(&c.confirm_method)),
        ("confirm IP", s(&c.confirm_ip)),
        ("confirm message-id", s(&c.confirm_message_id)),
        ("left", t(c.unsubscribed_at)),
        ("left by", s(&c.unsubscribe_method)),
    ]);
}

/// `members import`: reads the file row by row, reports bad rows by line number (on
/// stderr) and imports the rest; a progress bar on a terminal.
async fn import(
    app: &App,
    list: &str,
    file: &str,
    format: &str,
    options: ImportOptions,
    json: bool,
) -> Result<(), Failure> {
    use crate::domain::roster::{RosterFormat, read_roster};
    use std::io::IsTerminal;
    let list = parse_ref(list)?;
    let format: RosterFormat = format.parse().map_err(Failure::usage)?;
    let input = open_input(file)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {human_pos} rows read ({per_sec})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let bad = std::cell::RefCell::new(Vec::new());
    let entries = read_roster(format, input).filter_map(|r| match r {
        Ok(e) => Some(e),
        Err(e) => {
            bad.borrow_mut().push(e);
            None
        }
    });
    let report = app
        .import_members(&list, entries, options, |n| {
            if let Some(b) = &bar {
                b.set_position(n);
            }
        })
        .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let bad = bad.into_inner();
    for e in &bad {
        eprintln!("line {}: {}", e.line, e.reason);
    }
    if report.read == 0
        && let Some(first) = bad.first()
    {
        // nothing usable at all (say, the wrong format or no header): a failure, not
        // an import of nobody
        return Err(Failure::failed(format!(
            "no member could be read from {file} (line {}: {}); is --format right?",
            first.line, first.reason
        )));
    }
    if json {
        let mut v = serde_json::to_value(&report).map_err(|e| Failure::failed(e.to_string()))?;
        v["invalid_lines"] = serde_json::json!(bad.iter().map(|e| e.line).collect::<Vec<_>>());
        return output::json(&v);
    }
    print_import(&report, options, bad.len());
    Ok(())
}

/// A file to read, or standard input for `-`.
fn open_input(file: &str) -> Result<Box<dyn std::io::BufRead>, Failure> {
    Ok(if file == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| Failure::failed(format!("cannot open {file}: {e}")))?;
        Box::new(std::io::BufReader::with_capacity(1 << 16, f))
    })
}

/// What an import did (or would do), for a person.
fn print_import(report: &crate::app::roster::ImportReport, options: ImportOptions, invalid: usize) {
    let c = &report.choices;
    let would = if options.dry_run { "would be " } else { "" };
    println!(
        "{} {would}added, {} already members, {} left before ({}), {} invalid line(s)",
        report.added,
        report.already_members,
        report.left,
        if options.invite && !options.dry_run {
            format!("{} invited", report.invited)
        } else if options.invite {
            "would be invited".to_string()
        } else {
            "skipped; --invite sends them a confirmation".to_string()
        },
        invalid
    );
    println!(
        "choices kept: {} every message, {} digest, {} plain digest, {} no mail (delivery paused); {} owner(s), {} moderator(s) ({} role(s) {would}given)",
        c.each, c.digest, c.digest_plain, c.no_mail, c.owners, c.moderators, report.roles_given
    );
    if options.dry_run {
        println!("dry run: nothing was changed");
    }
}

/// The export: what `import --format csv` reads, plus the consent record.
fn write_export(members: &[Member]) -> Result<(), Failure> {
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    let fail = |e: csv::Error| Failure::failed(format!("writing CSV: {e}"));
    w.write_record(crate::domain::roster::EXPORT_COLUMNS)
        .map_err(fail)?;
    for m in members {
        w.write_record(crate::domain::roster::export_row(m))
            .map_err(fail)?;
    }
    w.flush()
        .map_err(|e| Failure::failed(format!("writing CSV: {e}")))
}
