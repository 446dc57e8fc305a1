//! Reads the bounce corpus (tests/fixtures/bounces/corpus.tsv) and prints how each
//! class was read and the parse time per bounce. Run by `bench/bounces`:
//!
//! ```sh
//! cargo run --release --example bounce_corpus [-- --verbose] [TABLE]
//! ```

use listd::mail::bounce::{Reading, read_bounce};
use std::collections::BTreeMap;
use std::time::Instant;

const CLASSES: &[&str] = &["hard", "soft", "policy", "complaint", "unknown", "none"];
const ROUNDS: u32 = 200;

struct Row {
    file: String,
    class: String,
    recipient: Option<String>,
}

fn main() {
    let verbose = std::env::args().any(|a| a == "--verbose");
    // another table (of another collection) may be named; its files are relative to it
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_else(|| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/bounces/corpus.tsv"
            )
            .into()
        });
    let dir = std::path::Path::new(&path)
        .parent()
        .map(|d| format!("{}/", d.display()))
        .unwrap_or_default();
    let table = std::fs::read_to_string(&path).expect("the corpus table");
    let rows: Vec<Row> = table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Row {
                file: f[0].to_string(),
                class: f[1].to_string(),
                recipient: Some(f[2].to_string()).filter(|r| r != "-"),
            }
        })
        .collect();
    let mails: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| std::fs::read(format!("{dir}{}", r.file)).expect("sample"))
        .collect();
    let mut table: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let (mut named, mut found) = (0, 0);
    for (row, raw) in rows.iter().zip(&mails) {
        let reading = read_bounce(raw);
        let (class, recipients) = match &reading {
            Reading::Bounce(reports) => {
                let hit = reports.iter().find(|r| {
                    row.recipient
                        .as_ref()
                        .is_some_and(|w| r.recipients.iter().any(|a| a.eq_ignore_ascii_case(w)))
                });
                let r = hit.unwrap_or(&reports[0]);
                (r.class.to_string(), r.recipients.clone())
            }
            _ => ("none".to_string(), Vec::new()),
        };
        let hit = row
            .recipient
            .as_ref()
            .is_some_and(|w| recipients.iter().any(|a| a.eq_ignore_ascii_case(w)));
        if row.recipient.is_some() && row.class != "none" {
            named += 1;
            found += usize::from(hit);
        }
        if verbose && (class != row.class || (row.recipient.is_some() && !hit)) {
            println!(
                "{}: expected {} {:?}, read {class} {recipients:?} {reading:?}",
                row.file, row.class, row.recipient
            );
        }
        *table.entry((row.class.as_str(), class)).or_default() += 1;
    }
    println!(
        "expected \\ read  {}",
        CLASSES
            .iter()
            .map(|c| format!("{c:>9}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for want in CLASSES {
        let n: usize = table
            .iter()
            .filter(|((w, _), _)| w == want)
            .map(|(_, n)| n)
            .sum();
        if n == 0 {
            continue;
        }
        let cells: Vec<String> = CLASSES
            .iter()
            .map(|got| format!("{:>9}", table.get(&(*want, got.to_string())).unwrap_or(&0)))
            .collect();
        let right = table.get(&(*want, want.to_string())).unwrap_or(&0);
        println!(
            "{want:>9} ({n:3})  {}   {:.0} % right",
            cells.join(" "),
            *right as f64 * 100.0 / n as f64
        );
    }
    println!("recipients found in the text: {found}/{named}");
    let start = Instant::now();
    for _ in 0..ROUNDS {
        for raw in &mails {
            std::hint::black_box(read_bounce(raw));
        }
    }
    let per = start.elapsed() / (ROUNDS * mails.len() as u32);
    let bytes: usize = mails.iter().map(Vec::len).sum();
    println!(
        "parse time: {:.1} µs per bounce (mean of {} samples, {} KB, {ROUNDS} rounds)",
        per.as_nanos() as f64 / 1000.0,
        mails.len(),
        bytes / 1024
    );
}
