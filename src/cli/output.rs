//! Tables for people, JSON for scripts.

use serde::Serialize;
use std::io::Write;

/// Writes a line to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// A cell or value as it may reach a terminal: control characters (a CR or LF from a
/// member's name, an escape sequence) are shown escaped, never acted on.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| match c {
            '\r' => "\\r".to_string(),
            '\n' => "\\n".to_string(),
            '\t' => "\\t".to_string(),
            c if c.is_control() => format!("\\u{{{:x}}}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// A line of a message shown on a terminal: as [`printable`], but tabs stay tabs.
pub fn printable_line(line: &str) -> String {
    line.split('\t')
        .map(printable)
        .collect::<Vec<_>>()
        .join("\t")
}

/// Prints a message's text: line by line, control characters shown escaped.
pub fn message(text: &str) {
    for line in text.split("\r\n") {
        out(&printable_line(line));
    }
}

/// Prints rows as aligned columns under a header; cells are made printable.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| printable(cell)).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        self::out(out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints `key: value` lines, keys aligned, values made printable.
pub fn fields(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in pairs {
        let v = printable(v);
        out(format!("{:<width$} {v}", format!("{k}:")).trim_end());
    }
}

/// Prints one JSON document.
pub fn json(value: &impl Serialize) -> Result<(), super::Failure> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| super::Failure::failed(e.to_string()))?;
    out(&text);
    Ok(())
}

/// A time as RFC 3339, the form every listing uses.
pub fn time(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(printable("Anne\r\nBcc: x"), "Anne\\r\\nBcc: x");
        assert_eq!(printable("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(printable("Zoë Ünal"), "Zoë Ünal");
    }
}
