//! Reading member lists brought from elsewhere (`members import`, docs/contract.md#cli): a CSV with
//! an `email` (or `address`) column and an optional `name`, Mailman's `addmembers`
//! lines (`Name <addr>` or a bare address), and the members CSV Google Groups
//! exports. Rows are read one at a time (a million-row file never sits in memory);
//! a bad row is reported with its line number and the rest go on.

use super::{Delivery, EmailAddress, Mode, Role};
use std::io::BufRead;

/// The formats `members import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RosterFormat {
    Csv,
    Lines,
    GoogleGroups,
}

impl std::str::FromStr for RosterFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(RosterFormat::Csv),
            "lines" => Ok(RosterFormat::Lines),
            "google-groups" => Ok(RosterFormat::GoogleGroups),
            _ => Err(format!(
                "`{s}` is not an import format; use csv, lines or google-groups"
            )),
        }
    }
}

/// One member read from a roster, with the choices the source kept for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    pub line: u64,
    pub address: EmailAddress,
    pub name: Option<String>,
    pub choices: Choices,
}

/// What a member had chosen (or been made) where they come from. An owner or
/// moderator is also a member, as in Google Groups, where owners receive the group's
/// mail by their own preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choices {
    pub delivery: Delivery,
    pub mode: Mode,
    /// `Owner` or `Moderator` for the list's staff, else `Member`.
    pub role: Role,
}

impl Default for Choices {
    fn default() -> Self {
        Choices {
            delivery: Delivery::Enabled,
            mode: Mode::Each,
            role: Role::Member,
        }
    }
}

impl Choices {
    /// Google Groups' "Email preference": "No email" pauses delivery (the member stays,
    /// as they were), "Digest" and "Abridged" become a MIME digest, "All email" every
    /// message. Mailman 3's delivery modes (`regular`, `mime_digests`,
    /// `plaintext_digests`, `summary_digests`) and listd's own mode names are read too.
    fn apply_preference(&mut self, text: &str) {
        let t = text.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        match t.as_str() {
            "no-email" | "no-mail" | "nomail" | "disabled" | "by-user" | "by-moderator"
            | "by-bounces" => self.delivery = Delivery::Disabled,
            "digest" | "abridged" | "mime-digests" | "summary-digests" | "daily-summary"
            | "daily-digest" => self.mode = Mode::Digest,
            "plaintext-digests" | "digest-plain" | "plain-digest" => self.mode = Mode::DigestPlain,
            _ => {}
        }
    }

    /// Google Groups' "Group status" or role: owner → owner, manager → moderator.
    fn apply_role(&mut self, text: &str) {
        match text.trim().to_ascii_lowercase().as_str() {
            "owner" => self.role = Role::Owner,
            "manager" | "moderator" => self.role = Role::Moderator,
            _ => {}
        }
    }
}

/// A row that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterError {
    pub line: u64,
    pub reason: String,
}

/// A CSV cell that a spreadsheet shows as text: a cell starting with `=`, `+`, `-`,
/// `@`, a tab or a CR would be read as a formula (OWASP "CSV Injection"), so it gets
/// a `'` in front, as does a cell already starting with `'` (so that reading it back
/// with [`from_csv_cell`] gives exactly what was written).
pub fn csv_cell(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r', '\'']) {
        format!("'{text}").into()
    } else {
        text.into()
    }
}

/// The columns of `members export --format csv` (and the console's CSV download):
/// what `import --format csv` reads, then the consent record.
pub const EXPORT_COLUMNS: [&str; 14] = [
    "email",
    "name",
    "status",
    "delivery",
    "subscribed_at",
    "requested_at",
    "request_source",
    "request_ip",
    "request_user_agent",
    "request_message_id",
    "confirmed_at",
    "confirm_method",
    "confirm_ip",
    "confirm_message_id",
];

/// A member as a row of [`EXPORT_COLUMNS`], each cell safe for a spreadsheet.
pub fn export_row(m: &super::Member) -> Vec<String> {
    let t = |v: Option<time::OffsetDateTime>| {
        v.and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
    };
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let c = &m.consent;
    [
        m.address.clone(),
        o(&m.name),
        m.status.to_string(),
        m.delivery.to_string(),
        t(m.subscribed_at),
        t(c.requested_at),
        c.request_source.map(|s| s.to_string()).unwrap_or_default(),
        o(&c.request_ip),
        o(&c.request_user_agent),
        o(&c.request_message_id),
        t(c.confirmed_at),
        o(&c.confirm_method),
        o(&c.confirm_ip),
        o(&c.confirm_message_id),
    ]
    .iter()
    .map(|cell| csv_cell(cell).into_owned())
    .collect()
}

/// Undoes [`csv_cell`]: drops the `'` it added. A `'` followed by anything else is
/// the cell's own text and stays.
pub fn from_csv_cell(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r', '\'']) => rest,
        _ => cell,
    }
}

/// Reads a roster row by row. A file-level problem (no address column) is one error
/// for line 1 and ends the reading.
pub fn read_roster<R: BufRead + 'static>(
    format: RosterFormat,
    input: R,
) -> Box<dyn Iterator<Item = Result<RosterEntry, RosterError>>> {
    match format {
        RosterFormat::Lines => Box::new(read_lines(input)),
        RosterFormat::Csv => read_csv(
            input,
            Columns {
                address: &["email", "address", "email address"],
                name: &["name", "display_name", "display name"],
                role: &["role"],
                preference: &["mode", "delivery_mode", "delivery mode"],
                delivery: &["delivery", "delivery_status", "delivery status"],
            },
        ),
        RosterFormat::GoogleGroups => read_csv(
            input,
            Columns {
                address: &["email address", "email"],
                name: &["nickname", "display name", "name"],
                role: &["group status", "role", "group role"],
                preference: &["email preference", "delivery settings", "subscription"],
                delivery: &[],
            },
        ),
    }
}

fn read_lines<R: BufRead>(input: R) -> impl Iterator<Item = Result<RosterEntry, RosterError>> {
    input.lines().enumerate().filter_map(|(i, line)| {
        let line_no = i as u64 + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                return Some(Err(RosterError {
                    line: line_no,
                    reason: format!("cannot be read: {e}"),
                }));
            }
        };
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            return None;
        }
        let (name, address) = match text.rsplit_once('<') {
            Some((name, rest)) => (
                Some(name.trim().trim_matches('"').trim()),
                rest.trim_end().strip_suffix('>').unwrap_or(rest),
            ),
            None => (None, text),
        };
        Some(entry(line_no, address, name, Choices::default()))
    })
}

/// The header names a CSV format reads, each a list of spellings.
#[derive(Clone, Copy)]
struct Columns {
    address: &'static [&'static str],
    name: &'static [&'static str],
    role: &'static [&'static str],
    preference: &'static [&'static str],
    delivery: &'static [&'static str],
}

/// Where each column is in a header row.
#[derive(Clone, Copy)]
struct At {
    address: usize,
    name: Option<usize>,
    role: Option<usize>,
    preference: Option<usize>,
    delivery: Option<usize>,
}

fn read_csv<R: BufRead + 'static>(
    input: R,
    columns: Columns,
) -> Box<dyn Iterator<Item = Result<RosterEntry, RosterError>>> {
    let reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut records = reader.into_records_with_lines();
    // the header is the first row that names an address column (Google Groups may
    // put a title line above it)
    let mut header = None;
    for next in records.by_ref() {
        match next {
            Ok((_, record)) => {
                let names: Vec<String> = record
                    .iter()
                    .map(|c| c.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
                    .collect();
                let find = |spellings: &[&str]| {
                    spellings
                        .iter()
                        .find_map(|a| names.iter().position(|n| n == a))
                };
                if let Some(address) = find(columns.address) {
                    header = Some(At {
                        address,
                        name: find(columns.name),
                        role: find(columns.role),
                        preference: find(columns.preference),
                        delivery: find(columns.delivery),
                    });
                    break;
                }
            }
            Err(_) => continue,
        }
    }
    let Some(at) = header else {
        return Box::new(std::iter::once(Err(RosterError {
            line: 1,
            reason: format!("no header row naming a column `{}`", columns.address[0]),
        })));
    };
    Box::new(records.filter_map(move |next| match next {
        Ok((line, record)) => {
            if record.iter().all(|c| c.trim().is_empty()) {
                return None;
            }
            let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).map(from_csv_cell);
            let address = cell(Some(at.address)).unwrap_or("");
            let mut choices = Choices::default();
            if let Some(role) = cell(at.role) {
                choices.apply_role(role);
            }
            if let Some(p) = cell(at.preference) {
                choices.apply_preference(p);
            }
            if let Some(d) = cell(at.delivery) {
                choices.apply_preference(d);
            }
            Some(entry(line, address, cell(at.name), choices))
        }
        Err(e) => Some(Err(RosterError {
            line: e.position().map_or(0, |p| p.line()),
            reason: format!("not valid CSV: {e}"),
        })),
    }))
}

fn entry(
    line: u64,
    address: &str,
    name: Option<&str>,
    choices: Choices,
) -> Result<RosterEntry, RosterError> {
    let address = EmailAddress::parse(address.trim()).map_err(|e| RosterError {
        line,
        reason: e.to_string(),
    })?;
    let name = name
        .map(|n| {
            n.split(|c: char| c.is_whitespace() || c.is_control())
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|n| !n.is_empty())
        .map(|n| n.chars().take(200).collect());
    Ok(RosterEntry {
        line,
        address,
        name,
        choices,
    })
}

/// The csv crate's records with the line each starts on.
trait WithLines<R> {
    fn into_records_with_lines(self) -> RecordsWithLines<R>;
}

struct RecordsWithLines<R> {
    reader: csv::Reader<R>,
}

impl<R: std::io::Read> WithLines<R> for csv::Reader<R> {
    fn into_records_with_lines(self) -> RecordsWithLines<R> {
        RecordsWithLines { reader: self }
    }
}

impl<R: std::io::Read> Iterator for RecordsWithLines<R> {
    type Item = Result<(u64, csv::StringRecord), csv::Error>;
    fn next(&mut self) -> Option<Self::Item> {
        let mut record = csv::StringRecord::new();
        match self.reader.read_record(&mut record) {
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                Some(Ok((line, record)))
            }
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows read (line, address, name) and the lines refused.
    type Read = (Vec<(u64, String, Option<String>)>, Vec<u64>);

    fn read(format: RosterFormat, text: &'static str) -> Read {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for r in read_roster(format, std::io::Cursor::new(text.as_bytes())) {
            match r {
                Ok(e) => ok.push((e.line, e.address.to_string(), e.name)),
                Err(e) => bad.push(e.line),
            }
        }
        (ok, bad)
    }

    #[test]
    fn csv_with_an_email_column() {
        let (ok, bad) = read(
            RosterFormat::Csv,
            "name,email,other\nAnne,anne@example.net,x\n,not an address,\n\"Bob, Jr\",bob@example.com,\n",
        );
        assert_eq!(
            ok,
            vec![
                (2, "anne@example.net".into(), Some("Anne".into())),
                (4, "bob@example.com".into(), Some("Bob, Jr".into())),
            ]
        );
        assert_eq!(bad, vec![3]);
        let (_, bad) = read(RosterFormat::Csv, "who,what\nx,y\n");
        assert_eq!(bad, vec![1], "no address column");
    }

    #[test]
    fn mailman_lines() {
        let (ok, bad) = read(
            RosterFormat::Lines,
            "# members\nAnne Example <anne@example.net>\nbob@example.com\n\n\"Carol\" <carol@example.org>\nnonsense\n",
        );
        assert_eq!(
            ok,
            vec![
                (2, "anne@example.net".into(), Some("Anne Example".into())),
                (3, "bob@example.com".into(), None),
                (5, "carol@example.org".into(), Some("Carol".into())),
            ]
        );
        assert_eq!(bad, vec![6]);
    }

    #[test]
    fn google_groups_export_with_a_title_line() {
        let (ok, bad) = read(
            RosterFormat::GoogleGroups,
            "Members for group sig@googlegroups.com\n\
Email address,Nickname,Group status,Email status,Email preference,Posting permissions,Join year,Join month,Join day,Join hour,Join minute\n\
anne@example.net,Anne,member,,email,allowed,2020,1,2,3,4\n\
broken@,B,member,,email,allowed,2020,1,2,3,4\n",
        );
        assert_eq!(
            ok,
            vec![(3, "anne@example.net".into(), Some("Anne".into()))]
        );
        assert_eq!(bad, vec![4]);
    }

    #[test]
    fn google_groups_preferences_and_roles_are_kept() {
        let text = "Email address,Nickname,Group status,Email status,Email preference,Posting permissions\n\
a@example.net,A,member,,All email,allowed\n\
b@example.net,B,member,,Digest,allowed\n\
c@example.net,C,member,,Abridged,allowed\n\
d@example.net,D,member,,No email,allowed\n\
e@example.net,E,owner,,All email,allowed\n\
f@example.net,F,manager,,Digest,allowed\n";
        let got: Vec<(String, Choices)> = read_roster(
            RosterFormat::GoogleGroups,
            std::io::Cursor::new(text.as_bytes()),
        )
        .map(|r| r.unwrap())
        .map(|e| (e.address.to_string(), e.choices))
        .collect();
        let c = |delivery, mode, role| Choices {
            delivery,
            mode,
            role,
        };
        use Delivery::*;
        assert_eq!(
            got,
            vec![
                ("a@example.net".into(), c(Enabled, Mode::Each, Role::Member)),
                (
                    "b@example.net".into(),
                    c(Enabled, Mode::Digest, Role::Member)
                ),
                (
                    "c@example.net".into(),
                    c(Enabled, Mode::Digest, Role::Member)
                ),
                (
                    "d@example.net".into(),
                    c(Disabled, Mode::Each, Role::Member)
                ),
                ("e@example.net".into(), c(Enabled, Mode::Each, Role::Owner)),
                (
                    "f@example.net".into(),
                    c(Enabled, Mode::Digest, Role::Moderator)
                ),
            ]
        );
    }

    #[test]
    fn mailman_3_delivery_modes_in_a_csv() {
        let text = "email,display_name,role,delivery_mode,delivery_status\n\
a@example.net,A,member,plaintext_digests,enabled\n\
b@example.net,B,moderator,regular,by_user\n";
        let got: Vec<Choices> =
            read_roster(RosterFormat::Csv, std::io::Cursor::new(text.as_bytes()))
                .map(|r| r.unwrap().choices)
                .collect();
        assert_eq!(got[0].mode, Mode::DigestPlain);
        assert_eq!(
            (got[1].role, got[1].mode, got[1].delivery),
            (Role::Moderator, Mode::Each, Delivery::Disabled)
        );
    }

    #[test]
    fn cells_a_spreadsheet_would_run_are_quoted_and_read_back_exactly() {
        for text in [
            "=1+1", "+1", "-2", "@SUM(A1)", "\t=1+1", "\r=1", "'=1", "'hello",
        ] {
            let cell = csv_cell(text);
            assert!(cell.starts_with('\''), "{text:?} -> {cell:?}");
            assert_eq!(from_csv_cell(&cell), text);
        }
        for text in ["Anne", "anne@example.org", "", "O'Neil"] {
            assert_eq!(csv_cell(text), text);
            assert_eq!(from_csv_cell(text), text);
        }
    }

    #[test]
    fn an_exported_row_with_formulas_imports_as_it_was() {
        let name = format!("{}", csv_cell("=HYPERLINK(\"x\")"));
        let address = csv_cell("-anne@example.org").into_owned();
        let file = format!("email,name\n{address},\"{}\"\n", name.replace('"', "\"\""));
        let rows: Vec<RosterEntry> = read_roster(RosterFormat::Csv, std::io::Cursor::new(file))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows[0].address.to_string(), "-anne@example.org");
        assert_eq!(rows[0].name.as_deref(), Some("=HYPERLINK(\"x\")"));
    }
}
