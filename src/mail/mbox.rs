//! mbox files (docs/standards.md#58): reading mboxo and mboxrd, writing mboxrd.
//!
//! An entry starts at a line `From SENDER DATE` at the start of the file or after a
//! blank line. Reading undoes one level of `>From ` quoting (mboxrd; in an mboxo file
//! the quoting of `From ` lines is undone the same way) and drops the blank line that
//! separates entries. Messages come out with CRLF line ends, as they are archived;
//! writing gives LF line ends and quotes every `>*From ` line once more, so a
//! written file reads back byte for byte. The reader works a line at a time: a file
//! of any size is read in the memory of its largest message.

use std::io::{BufRead, Write};
use time::OffsetDateTime;

/// One entry of an mbox file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its place in the file, from 1.
    pub number: usize,
    /// The line of its `From ` line, from 1.
    pub line: usize,
    /// The sender named on the `From ` line, as written there (empty when none).
    pub envelope_from: String,
    /// The date on the `From ` line, when it reads.
    pub received: Option<OffsetDateTime>,
    /// The message, with CRLF line ends.
    pub raw: Vec<u8>,
}

/// Something in the file that is not an entry.
#[derive(Debug, thiserror::Error)]
pub enum MboxError {
    #[error("line {line}: text before the first `From ` line is not a message")]
    NoFromLine { line: usize },
    #[error("reading the file: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the entries of an mbox file.
pub struct Reader<R> {
    input: R,
    line: usize,
    entries: usize,
    /// The `From ` line that starts the next entry, with its line number.
    pending: Option<(Vec<u8>, usize)>,
    started: bool,
    done: bool,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R) -> Self {
        Reader {
            input,
            line: 0,
            entries: 0,
            pending: None,
            started: false,
            done: false,
        }
    }

    fn read_line(&mut self, buf: &mut Vec<u8>) -> std::io::Result<bool> {
        buf.clear();
        let n = self.input.read_until(b'\n', buf)?;
        if n > 0 {
            self.line += 1;
        }
        Ok(n > 0)
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
}

impl<R: BufRead> Reader<R> {
    /// Skips to the first `From ` line and keeps it for the first entry: `Some` when
    /// the file ends or fails first, or has text before that line.
    fn start(&mut self) -> Option<Result<Entry, MboxError>> {
        self.started = true;
        let mut line = Vec::with_capacity(128);
        let mut junk_at = None;
        loop {
            match self.read_line(&mut line) {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return junk_at.map(|line| Err(MboxError::NoFromLine { line }));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            }
            if line.starts_with(b"From ") {
                self.pending = Some((line, self.line));
                return junk_at.map(|line| Err(MboxError::NoFromLine { line }));
            }
            if !is_blank(&line) && junk_at.is_none() {
                junk_at = Some(self.line);
            }
        }
    }

    /// The lines of an entry up to the next `From ` line after a blank one (kept for the
    /// next entry) or the end, unquoted once, with CRLF line ends.
    fn read_entry(&mut self) -> Result<Vec<u8>, MboxError> {
        let mut line = Vec::with_capacity(128);
        let mut raw = Vec::with_capacity(4096);
        let mut previous_blank = false;
        loop {
            let more = self
                .read_line(&mut line)
                .inspect_err(|_| self.done = true)?;
            if !more {
                self.done = true;
                break;
            }
            if previous_blank && line.starts_with(b"From ") {
                self.pending = Some((line, self.line));
                break;
            }
            previous_blank = is_blank(&line);
            let content = line
                .strip_suffix(b"\n")
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .unwrap_or(&line);
            let quoted = content.iter().position(|&b| b != b'>').unwrap_or(0);
            let content = if quoted > 0 && content[quoted..].starts_with(b"From ") {
                &content[1..]
            } else {
                content
            };
            raw.extend_from_slice(content);
            raw.extend_from_slice(b"\r\n");
        }
        // the blank line before the next entry (or at the end) separates; it is not content
        if raw.ends_with(b"\r\n\r\n") {
            raw.truncate(raw.len() - 2);
        } else if raw == b"\r\n" {
            raw.clear();
        }
        Ok(raw)
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Entry, MboxError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if !self.started
            && let Some(first) = self.start()
        {
            return Some(first);
        }
        let (from_line, from_at) = self.pending.take()?;
        let raw = match self.read_entry() {
            Ok(raw) => raw,
            Err(e) => return Some(Err(e)),
        };
        self.entries += 1;
        let (envelope_from, received) = read_from_line(&from_line);
        Some(Ok(Entry {
            number: self.entries,
            line: from_at,
            envelope_from,
            received,
            raw,
        }))
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The sender and date of a `From SENDER Www Mmm dd hh:mm:ss yyyy` line. The sender is
/// everything before the date (pipermail writes `anne at example.net`).
fn read_from_line(line: &[u8]) -> (String, Option<OffsetDateTime>) {
    let text = String::from_utf8_lossy(line);
    let rest = text.trim_end().strip_prefix("From ").unwrap_or("");
    let words: Vec<&str> = rest.split_whitespace().collect();
    for i in 1..words.len() {
        let Some(month) = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(words[i])) else {
            continue;
        };
        if !DAYS.iter().any(|d| d.eq_ignore_ascii_case(words[i - 1])) {
            continue;
        }
        let date = (|| {
            let day: u8 = words.get(i + 1)?.parse().ok()?;
            let mut hms = words.get(i + 2)?.split(':').map(|p| p.parse::<u8>().ok());
            let (h, m) = (hms.next()??, hms.next()??);
            let s = hms.next().flatten().unwrap_or(0);
            // Google Takeout writes a zone before the year: `… 10:00:00 +0000 2020`
            let digits = |w: &&&str| w.len() == 4 && w.bytes().all(|b| b.is_ascii_digit());
            let year: i32 = [i + 3, i + 4]
                .iter()
                .filter_map(|&k| words.get(k))
                .find(digits)?
                .parse()
                .ok()?;
            let month = time::Month::try_from(u8::try_from(month + 1).ok()?).ok()?;
            let date = time::Date::from_calendar_date(year, month, day).ok()?;
            Some(date.with_hms(h, m, s).ok()?.assume_utc())
        })();
        if date.is_some() {
            return (words[..i - 1].join(" "), date);
        }
    }
    (rest.trim().to_string(), None)
}

/// The date of a `From ` line: `Sat Jan  3 01:05:34 1996` (asctime, UTC).
pub fn asctime(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[usize::from(t.weekday().number_days_from_monday())],
        MONTHS[usize::from(u8::from(t.month()) - 1)],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

/// Writes one mboxrd entry: the `From ` line (the envelope sender, `MAILER-DAEMON` for
/// none), the message with LF line ends and `>*From ` lines quoted once more, and the
/// blank line that ends the entry.
pub fn write_entry(
    out: &mut impl Write,
    envelope_from: Option<&str>,
    date: OffsetDateTime,
    raw: &[u8],
) -> std::io::Result<()> {
    let sender = envelope_from
        .map(|s| s.trim())
        .filter(|s| !s.is_empty() && !s.contains(['\r', '\n']))
        .unwrap_or("MAILER-DAEMON");
    let mut buf = Vec::with_capacity(raw.len() + 128);
    buf.extend_from_slice(format!("From {sender} {}\n", asctime(date)).as_bytes());
    let mut rest = raw;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n');
        let (line, next) = match end {
            Some(e) => (&rest[..e], &rest[e + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let quoted = line.iter().position(|&b| b != b'>').unwrap_or(line.len());
        if line[quoted..].starts_with(b"From ") {
            buf.push(b'>');
        }
        buf.extend_from_slice(line);
        buf.push(b'\n');
        rest = next;
    }
    buf.push(b'\n');
    out.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8]) -> Vec<Entry> {
        Reader::new(text).map(|e| e.unwrap()).collect()
    }

    #[test]
    fn reads_mboxo_and_mboxrd_quoting() {
        let file = b"From anne@example.net Sat Jan  3 01:05:34 1996\nSubject: one\n\nbody\n>From here\n>>From there\n\nFrom bob at example.org  Tue Jul 23 19:39:23 2002\nSubject: two\n\ntwo\n";
        let e = read(file);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].envelope_from, "anne@example.net");
        assert_eq!(
            e[0].raw,
            b"Subject: one\r\n\r\nbody\r\nFrom here\r\n>From there\r\n".to_vec()
        );
        assert_eq!(e[0].received.unwrap().unix_timestamp(), 820631134);
        assert_eq!(e[1].envelope_from, "bob at example.org");
        assert_eq!((e[1].number, e[1].line), (2, 8));
        assert_eq!(e[1].raw, b"Subject: two\r\n\r\ntwo\r\n".to_vec());
        let takeout =
            read(b"From 1661234567890123456@xxx Tue Aug 23 10:00:00 +0000 2022\nSubject: x\n\ny\n");
        assert_eq!(takeout[0].envelope_from, "1661234567890123456@xxx");
        assert_eq!(takeout[0].received.unwrap().unix_timestamp(), 1661248800);
    }

    #[test]
    fn a_written_file_reads_back_the_same() {
        let raws: Vec<&[u8]> = vec![
            b"Subject: a\r\n\r\nFrom the start\r\n>From quoted\r\n\r\n",
            b"Subject: b\r\n\r\nno final line end",
            b"Subject: c\r\n\r\n\r\n\r\nblank lines before\r\n\r\n\r\n",
        ];
        let date = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let mut out = Vec::new();
        for (i, raw) in raws.iter().enumerate() {
            let sender = (i != 1).then_some("anne@example.net");
            write_entry(&mut out, sender, date, raw).unwrap();
        }
        let back = read(&out);
        assert_eq!(back.len(), 3);
        assert_eq!(back[0].raw, raws[0]);
        assert_eq!(
            back[1].raw,
            b"Subject: b\r\n\r\nno final line end\r\n".to_vec()
        );
        assert_eq!(back[2].raw, raws[2]);
        assert_eq!(back[1].envelope_from, "MAILER-DAEMON");
        assert_eq!(back[0].received, Some(date));
        let again: Vec<u8> = back.iter().fold(Vec::new(), |mut out, e| {
            write_entry(
                &mut out,
                Some(&e.envelope_from),
                e.received.unwrap(),
                &e.raw,
            )
            .unwrap();
            out
        });
        assert_eq!(read(&again), back);
    }

    #[test]
    fn text_before_the_first_entry_is_reported() {
        let r: Vec<_> = Reader::new(&b"junk\nFrom a Mon Jan  1 00:00:00 2024\n\nx\n"[..]).collect();
        assert!(matches!(r[0], Err(MboxError::NoFromLine { line: 1 })));
        assert!(r[1].is_ok());
        assert!(Reader::new(&b""[..]).next().is_none());
    }

    #[test]
    fn asctime_pads_the_day() {
        let t = OffsetDateTime::from_unix_timestamp(820631134).unwrap();
        assert_eq!(asctime(t), "Wed Jan  3 01:05:34 1996");
    }
}
