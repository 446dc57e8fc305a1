//! `listd lists …`

use super::{Failure, output};
use crate::app::App;
use crate::app::lists::ListInfo;
use crate::domain::{EmailAddress, ListAddress, ListRef, ListSettings};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run; boxing buys nothing
pub enum ListsCommand {
    /// Create a list
    Create {
        /// The posting address, e.g. dev@lists.example.org
        address: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// An owner's address (repeatable)
        #[arg(long = "owner", value_name = "ADDR")]
        owners: Vec<String>,
        /// confirm | confirm-then-moderate
        #[arg(long)]
        subscription: Option<String>,
        /// open | members | moderated | announce
        #[arg(long)]
        posting: Option<String>,
        /// hold | reject | discard
        #[arg(long)]
        nonmember_action: Option<String>,
        /// e.g. "[dev]"; empty for none
        #[arg(long)]
        subject_prefix: Option<String>,
        /// poster | list
        #[arg(long)]
        reply_to: Option<String>,
        /// when-needed | always | never | wrap
        #[arg(long)]
        dmarc: Option<String>,
        /// Any other setting as KEY=VALUE (repeatable)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List every list
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show a list's settings
    Show {
        list: String,
        #[arg(long)]
        json: bool,
    },
    /// Change settings: KEY=VALUE...
    Set {
        list: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a list and all its members
    Delete {
        list: String,
        /// Confirm the deletion
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(app: App, command: ListsCommand) -> Result<(), Failure> {
    match command {
        ListsCommand::Create {
            address,
            name,
            description,
            owners,
            subscription,
            posting,
            nonmember_action,
            subject_prefix,
            reply_to,
            dmarc,
            set,
            json,
        } => {
            let named = [
                ("name", name),
                ("description", description),
                ("subscription", subscription),
                ("posting", posting),
                ("nonmember-action", nonmember_action),
                ("subject-prefix", subject_prefix),
                ("reply-to", reply_to),
                ("dmarc", dmarc),
            ];
            create(&app, &address, &named, &set, &owners, json).await
        }
        ListsCommand::Ls { json } => ls(&app, json).await,
        ListsCommand::Show { list, json } => {
            let info = app.list_info(&parse_ref(&list)?).await?;
            if json {
                output::json(&info)
            } else {
                show(&info)
            }
        }
        ListsCommand::Set {
            list,
            settings,
            json,
        } => set(&app, &list, &settings, json).await,
        ListsCommand::Delete { list, yes } => delete(&app, &list, yes).await,
    }
}

/// `lists create`: the settings named by their own options (`named`) first, then the
/// `--set KEY=VALUE` pairs.
async fn create(
    app: &App,
    address: &str,
    named: &[(&str, Option<String>)],
    set: &[String],
    owners: &[String],
    json: bool,
) -> Result<(), Failure> {
    let address = ListAddress::parse(address).map_err(|e| Failure::usage(e.to_string()))?;
    let mut settings = ListSettings::defaults_for(&address);
    for (key, value) in named {
        if let Some(v) = value {
            settings
                .apply(key, v)
                .map_err(|e| Failure::usage(e.to_string()))?;
        }
    }
    for pair in set {
        settings
            .apply_pair(pair)
            .map_err(|e| Failure::usage(e.to_string()))?;
    }
    let owners = owners
        .iter()
        .map(|o| EmailAddress::parse(o).map_err(|e| Failure::usage(format!("--owner: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let info = app.create_list(&address, &settings, &owners).await?;
    if json {
        output::json(&info)
    } else {
        println!("created {} (list-id {})", info.address, info.list_id);
        warn(&info);
        Ok(())
    }
}

async fn ls(app: &App, json: bool) -> Result<(), Failure> {
    let lists = app.lists(false).await?;
    if json {
        return output::json(&lists);
    }
    if lists.is_empty() {
        println!("no lists yet; create one with `listd lists create ADDRESS`");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = lists
        .iter()
        .map(|l| {
            vec![
                l.address.clone(),
                l.settings.name.clone(),
                l.members.to_string(),
                l.pending.to_string(),
                l.settings.posting.to_string(),
            ]
        })
        .collect();
    output::table(&["ADDRESS", "NAME", "MEMBERS", "PENDING", "POSTING"], &rows);
    Ok(())
}

async fn set(app: &App, list: &str, settings: &[String], json: bool) -> Result<(), Failure> {
    let info = app.update_list(&parse_ref(list)?, settings).await?;
    if json {
        output::json(&info)
    } else {
        println!("updated {}", info.address);
        warn(&info);
        Ok(())
    }
}

async fn delete(app: &App, list: &str, yes: bool) -> Result<(), Failure> {
    let list = parse_ref(list)?;
    if !yes {
        return Err(Failure::usage(format!(
            "deleting {list} removes all its members and history; add --yes to confirm"
        )));
    }
    app.delete_list(&list).await?;
    println!("deleted {list}");
    Ok(())
}

pub(super) fn parse_ref(list: &str) -> Result<ListRef, Failure> {
    ListRef::parse(list).map_err(|e| Failure::usage(e.to_string()))
}

fn show(info: &ListInfo) -> Result<(), Failure> {
    let s = &info.settings;
    output::fields(&[
        ("address", info.address.clone()),
        ("list-id", info.list_id.clone()),
        ("name", s.name.clone()),
        ("description", s.description.clone()),
        ("owners", info.owners.join(", ")),
        ("members", info.members.to_string()),
        ("pending", info.pending.to_string()),
        ("posts", info.posts.to_string()),
        ("held", info.held.to_string()),
        ("subscription", s.subscription.to_string()),
        ("posting", s.posting.to_string()),
        ("nonmember-action", s.nonmember_action.to_string()),
        ("subject-prefix", format!("{:?}", s.subject_prefix)),
        ("reply-to", s.reply_to.to_string()),
        ("dmarc", s.dmarc.to_string()),
        ("advertised", s.advertised.to_string()),
        (
            "bounce-score-threshold",
            s.bounce_score_threshold.to_string(),
        ),
        ("bounce-stale-days", s.bounce_stale_days.to_string()),
        ("bounce-warnings", s.bounce_warnings.to_string()),
        (
            "bounce-warning-interval-days",
            s.bounce_warning_interval_days.to_string(),
        ),
        ("accept-senders", s.accept_senders.join(", ")),
        ("archive", s.archive.to_string()),
        ("footer", s.footer.to_string()),
        (
            "footer-text",
            if s.footer_text.is_empty() {
                "(the built-in one)".to_string()
            } else {
                format!("{:?}", s.footer_text)
            },
        ),
        (
            "created",
            info.created_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        ),
    ]);
    warn(info);
    Ok(())
}

fn warn(info: &ListInfo) {
    for w in &info.warnings {
        println!("warning: {w}");
    }
}
