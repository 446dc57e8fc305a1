//! The words of the archive's search: how a message's text and a search's text are cut
//! into the words PostgreSQL's full-text search stores and matches (a `tsvector` for a
//! message, a `tsquery` for a search). Both are cut here, by the same rules, so a search
//! finds each word as the message has it, whatever PostgreSQL's own parser would make
//! of it (its parser depends on the server's version and locale):
//!
//! - A word is a run of letters and digits; anything else parts words. An address, a
//!   host name, a hyphenated word, a version or a path is the phrase of its words
//!   (`anne@example.org` is `anne` `example` `org`), found as written in a search, and
//!   found inside a longer one (`example.org` in `anne@example.org`).
//! - Text is read in composed form (Unicode NFC): `é` written as `e` and a combining
//!   accent is the letter `é`, and so is a search for it.
//! - Everything is lower-cased. A word of letters only is reduced to its stem by the
//!   Snowball English stemmer (`replied`, `replies` → `repli`), unless it is an English
//!   stop word (`the`, `and`, …), which is left out but keeps its position, so a phrase
//!   spans it as PostgreSQL's own phrases do. Words with digits are kept as they are.
//! - A message's subject weighs most (`A`), then its author's name (`B`), then its text;
//!   each starts [`FIELD_GAP`] positions after the one before ends, so a phrase does not
//!   span two (unless it holds that many stop words in a row).
//! - A search's text follows web-search syntax: words must all be there, `"a phrase"`
//!   must be there in that order, `-word` must not, and `or` between two terms lets
//!   either do. A term that cuts into several words (`e-mail`) is a phrase of them.
//!
//! PostgreSQL's limits are kept: a word over 2,047 bytes is left out, positions stop at
//! 16,383, and a word keeps its first 256 positions.

use rust_stemmers::{Algorithm, Stemmer};
use std::collections::HashMap;
use std::fmt::Write;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// The longest word a `tsvector` holds, in bytes.
const MAX_WORD_BYTES: usize = 2047;
/// The last position a `tsvector` records.
const MAX_POSITION: u16 = 16383;
/// How far apart two fields of a message are, in positions.
const FIELD_GAP: u32 = 10;
/// How many bytes of words and positions a `tsvector` holds in all (PostgreSQL's
/// limit is 1 MB).
const MAX_VECTOR_BYTES: usize = 1 << 19;
/// How many positions of one word a `tsvector` keeps.
const MAX_POSITIONS: usize = 256;

/// How many characters of a search's text are read.
const SEARCH_CHARS: usize = 1_000;

/// How many characters of a message's own text a search covers.
const SEARCHED_CHARS: usize = 16_384;

/// What a search covers of a message's own text (quoted lines are not in it): the text
/// before its signature (a line `-- `), no more than its first [`SEARCHED_CHARS`]
/// characters. The database's `archive_searched_text` is the same rule, for snippets.
pub fn searched_text(text: &str) -> &str {
    let own = if text.starts_with("-- \n") {
        ""
    } else {
        text.find("\n-- \n").map_or(text, |end| &text[..end])
    };
    // (the database's rule counts a line feed before the text)
    match own.char_indices().nth(SEARCHED_CHARS - 1) {
        Some((end, _)) => &own[..end],
        None => own,
    }
}

/// PostgreSQL's English stop words (its `english.stop`, which is Snowball's list).
const STOP_WORDS: [&str; 127] = [
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "did",
    "do",
    "does",
    "doing",
    "don",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "s",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// The weight of a field of a message, as a `tsvector` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// The subject.
    A,
    /// The author's name.
    B,
    /// The text.
    D,
}

/// A message's search vector, as PostgreSQL's `tsvector` holds it: each word once, in
/// the order of their bytes, with its positions in order (the weight in the two bits
/// above each, 3 for `A` down to 0 for `D`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vector {
    text: String,
    /// Each word's end in `text` and the end of its positions in `positions`.
    ends: Vec<(u32, u32)>,
    positions: Vec<u16>,
}

impl Vector {
    /// Each word and its positions, in order.
    pub fn words(&self) -> impl Iterator<Item = (&str, &[u16])> + '_ {
        let mut from = (0, 0);
        self.ends.iter().map(move |&(word, positions)| {
            let (w, p) = (word as usize, positions as usize);
            let out = (&self.text[from.0..w], &self.positions[from.1..p]);
            from = (w, p);
            out
        })
    }

    /// How many bytes of words and positions PostgreSQL stores of it.
    pub fn size(&self) -> usize {
        self.text.len() + 3 * self.ends.len() + 2 * self.positions.len()
    }

    /// How many words it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// The bytes PostgreSQL stores of a word of `bytes` bytes with `positions` positions
/// beside the word itself: their count, and one byte of alignment at most.
fn stored_size(bytes: usize, positions: usize) -> usize {
    bytes + 3 + 2 * positions
}

/// The vector as `tsvector` text.
impl std::fmt::Display for Vector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        for (word, positions) in self.words() {
            if !out.is_empty() {
                out.push(' ');
            }
            quote(&mut out, word);
            for (i, p) in positions.iter().enumerate() {
                out.push(if i == 0 { ':' } else { ',' });
                let _ = write!(out, "{}", p & MAX_POSITION);
                match p >> 14 {
                    3 => out.push('A'),
                    2 => out.push('B'),
                    1 => out.push('C'),
                    _ => {}
                }
            }
        }
        f.write_str(&out)
    }
}

/// A word's number in a [`Words`]' table, or [`STOP`] for a stop word.
type Id = u32;
const STOP: Id = Id::MAX;
/// How many words a [`Words`] remembers before it starts afresh.
const WORDS_KEPT: usize = 200_000;

/// Cuts text into search words. It remembers each word it has seen (as written,
/// lower-cased) with what the search keeps of it, since a large import meets the same
/// words again and again: a word is stemmed once, and compared as a number after.
pub struct Words {
    stemmer: Stemmer,
    /// Each word seen → the number of what is kept of it in `kept`, or [`STOP`].
    seen: HashMap<Box<str>, Id, foldhash::fast::RandomState>,
    /// What is kept of each → its number (so `replies` and `replied` share one).
    numbers: HashMap<Box<str>, Id, foldhash::fast::RandomState>,
    kept: Vec<Box<str>>,
    lower: String,
}

impl Default for Words {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Words {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Words")
            .field("seen", &self.seen.len())
            .finish()
    }
}

impl Words {
    pub fn new() -> Self {
        Self {
            stemmer: Stemmer::create(Algorithm::English),
            seen: HashMap::default(),
            numbers: HashMap::default(),
            kept: Vec::new(),
            lower: String::new(),
        }
    }

    /// A message's search vector: its subject (weight A), its author's name (B) and
    /// what a search covers of its own text ([`searched_text`]).
    pub fn message(&mut self, subject: &str, author: &str, text: &str) -> Vector {
        self.vector(&[
            (subject, Weight::A),
            (author, Weight::B),
            (searched_text(text), Weight::D),
        ])
    }

    /// A search vector: each field's words at their positions, with the field's weight.
    pub fn vector(&mut self, fields: &[(&str, Weight)]) -> Vector {
        if self.seen.len() > WORDS_KEPT {
            self.seen.clear();
            self.numbers.clear();
            self.kept.clear();
        }
        // each word's number and position, the weight in the two bits above the
        // position, as PostgreSQL keeps them
        let mut found: Vec<(Id, u16)> = Vec::new();
        let mut next = 1u32;
        for &(text, weight) in fields {
            let bits = match weight {
                Weight::A => 3 << 14,
                Weight::B => 2 << 14,
                Weight::D => 0,
            };
            let mut last = next;
            self.cut(text, next, |id, position| {
                last = position;
                let position = position.min(u32::from(MAX_POSITION)) as u16;
                found.push((id, position | bits));
            });
            next = last + FIELD_GAP;
        }
        // (stable: each word's positions stay in order)
        found.sort_by_key(|&(id, _)| id);
        let mut words: Vec<&[(Id, u16)]> = found.chunk_by(|a, b| a.0 == b.0).collect();
        // in PostgreSQL's order: by their bytes
        let kept = &self.kept;
        words.sort_unstable_by(|a, b| {
            kept[a[0].0 as usize]
                .as_bytes()
                .cmp(kept[b[0].0 as usize].as_bytes())
        });
        let mut vector = Vector {
            text: String::with_capacity(words.len() * 8),
            ends: Vec::with_capacity(words.len()),
            positions: Vec::with_capacity(found.len()),
        };
        for word in words {
            let kept = &kept[word[0].0 as usize];
            let at = vector.positions.len();
            let mut last = None;
            for &(_, p) in word {
                let position = p & MAX_POSITION;
                if last == Some(position) || vector.positions.len() - at == MAX_POSITIONS {
                    continue;
                }
                vector.positions.push(p);
                last = Some(position);
            }
            // (a huge subject could hold more words than a vector takes: those past its
            // size are left out)
            if vector.size() + stored_size(kept.len(), vector.positions.len() - at)
                > MAX_VECTOR_BYTES
            {
                vector.positions.truncate(at);
                continue;
            }
            vector.text.push_str(kept);
            vector
                .ends
                .push((vector.text.len() as u32, vector.positions.len() as u32));
        }
        vector
    }

    /// A search in web-search syntax as `tsquery` text, or `None` when it holds no word
    /// a message could be found by (only stop words, say). Only the first
    /// [`SEARCH_CHARS`] characters of the search are read.
    pub fn query(&mut self, search: &str) -> Option<String> {
        let search = match search.char_indices().nth(SEARCH_CHARS) {
            Some((end, _)) => &search[..end],
            None => search,
        };
        let mut groups: Vec<Vec<String>> = Vec::new();
        let mut either = false;
        for term in terms(search) {
            let text = match term {
                Term::Or => {
                    either = !groups.is_empty();
                    continue;
                }
                Term::Words { text, negated } => {
                    let Some(phrase) = self.phrase(text) else {
                        continue;
                    };
                    if negated {
                        format!("!{phrase}")
                    } else {
                        phrase
                    }
                }
            };
            match groups.last_mut() {
                Some(group) if either => group.push(text),
                _ => groups.push(vec![text]),
            }
            either = false;
        }
        if groups.is_empty() {
            return None;
        }
        let groups: Vec<String> = groups
            .into_iter()
            .map(|g| match g.len() {
                1 => g.into_iter().next().unwrap_or_default(),
                _ => format!("( {} )", g.join(" | ")),
            })
            .collect();
        Some(groups.join(" & "))
    }

    /// A term's words as a phrase (`'a' <-> 'b' <2> 'c'`, in parentheses when it has
    /// more than one word).
    fn phrase(&mut self, text: &str) -> Option<String> {
        let mut words: Vec<(u32, Id)> = Vec::new();
        self.cut(text, 1, |id, position| words.push((position, id)));
        let (first, rest) = words.split_first()?;
        let mut out = String::new();
        if !rest.is_empty() {
            out.push_str("( ");
        }
        quote(&mut out, &self.kept[first.1 as usize]);
        let mut at = first.0;
        for (position, word) in rest {
            // (a tsquery's distances stop at the last position a vector records)
            match (position - at).min(u32::from(MAX_POSITION) + 1) {
                1 => out.push_str(" <-> "),
                d => {
                    let _ = write!(out, " <{d}> ");
                }
            }
            quote(&mut out, &self.kept[*word as usize]);
            at = *position;
        }
        if !rest.is_empty() {
            out.push_str(" )");
        }
        Some(out)
    }

    /// Hands the number of each search word of `text` to `found` with its position,
    /// counting from `first`; stop words are left out but counted.
    fn cut(&mut self, text: &str, first: u32, mut found: impl FnMut(Id, u32)) {
        // text written decomposed (`é` as `e` and a combining accent, or Hangul as its
        // jamo, as some systems write it) is cut as composed
        let composed: String;
        let text = if text.is_ascii() || is_nfc_quick(text.chars()) == IsNormalized::Yes {
            text
        } else {
            composed = text.nfc().collect();
            &composed
        };
        let mut position = first;
        let mut at = 0;
        while let Some((start, end, spelt)) = next_word(text, at) {
            at = end;
            let id = self.number(&text[start..end], spelt);
            if id != STOP {
                found(id, position);
            }
            position += 1;
        }
    }

    /// The number of what the search keeps of a word, or [`STOP`] for a stop word or a
    /// word too long. `spelt` tells which of [`UPPER`], [`DIGIT`] and [`NON_ASCII`] the
    /// word has.
    fn number(&mut self, word: &str, spelt: u8) -> Id {
        let lower = if spelt & (UPPER | NON_ASCII) == 0 {
            word
        } else {
            self.lower.clear();
            if spelt & NON_ASCII == 0 {
                self.lower.push_str(word);
                self.lower.make_ascii_lowercase();
            } else {
                self.lower.extend(word.chars().flat_map(char::to_lowercase));
            }
            self.lower.as_str()
        };
        if let Some(&id) = self.seen.get(lower) {
            return id;
        }
        let kept = if lower.len() > MAX_WORD_BYTES {
            None
        } else if spelt & DIGIT != 0
            || (spelt & NON_ASCII != 0 && lower.chars().any(|c| !c.is_alphabetic()))
        {
            Some(lower.to_string())
        } else if STOP_WORDS.binary_search(&lower).is_ok() {
            None
        } else {
            Some(self.stemmer.stem(lower).into_owned())
        };
        let key: Box<str> = lower.into();
        let id = match kept {
            None => STOP,
            Some(kept) => match self.numbers.get(kept.as_str()) {
                Some(&id) => id,
                None => {
                    let id = self.kept.len() as Id;
                    self.kept.push(kept.clone().into());
                    self.numbers.insert(kept.into(), id);
                    id
                }
            },
        };
        self.seen.insert(key, id);
        id
    }
}

/// Writes a word quoted for `tsvector` and `tsquery` text.
fn quote(out: &mut String, word: &str) {
    out.push('\'');
    if !word.bytes().any(|b| b == b'\'' || b == b'\\') {
        out.push_str(word);
        out.push('\'');
        return;
    }
    for c in word.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// How a word is spelt: with an upper-case ASCII letter, an ASCII digit, or a
/// character outside ASCII (a digit or letter of another script).
const UPPER: u8 = 1;
const DIGIT: u8 = 2;
const NON_ASCII: u8 = 4;

/// The character at byte `i` of `text` and its length.
fn char_at(text: &str, i: usize) -> (char, usize) {
    match text.as_bytes()[i] {
        b if b < 0x80 => (b as char, 1),
        _ => text[i..]
            .chars()
            .next()
            .map_or(('\0', 1), |c| (c, c.len_utf8())),
    }
}

/// The next word of `text` from byte `at`: its start, end and spelling.
fn next_word(text: &str, mut at: usize) -> Option<(usize, usize, u8)> {
    let bytes = text.as_bytes();
    loop {
        if at >= bytes.len() {
            return None;
        }
        let (c, len) = char_at(text, at);
        if c.is_alphanumeric() {
            break;
        }
        at += len;
    }
    let (start, mut spelt) = (at, 0);
    while at < bytes.len() {
        match bytes[at] {
            b'a'..=b'z' => {}
            b'A'..=b'Z' => spelt |= UPPER,
            b'0'..=b'9' => spelt |= DIGIT,
            b if b < 0x80 => break,
            _ => {
                let (c, len) = char_at(text, at);
                if !c.is_alphanumeric() {
                    break;
                }
                spelt |= NON_ASCII;
                at += len;
                continue;
            }
        }
        at += 1;
    }
    Some((start, at, spelt))
}

/// A piece of a search's text.
#[derive(Debug, PartialEq, Eq)]
enum Term<'a> {
    /// Words or a quoted phrase, which must be there (or must not, negated).
    Words { text: &'a str, negated: bool },
    /// `or`, between two terms either of which will do.
    Or,
}

/// The terms of a search in web-search syntax.
fn terms(search: &str) -> Vec<Term<'_>> {
    let mut out = Vec::new();
    let mut rest = search;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return out;
        }
        let negated = rest.starts_with('-');
        if negated {
            rest = &rest[1..];
        }
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            out.push(Term::Words {
                text: &quoted[..end],
                negated,
            });
            rest = quoted.get(end + 1..).unwrap_or("");
            continue;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"')
            .unwrap_or(rest.len());
        let text = &rest[..end];
        rest = &rest[end..];
        if !negated && text.eq_ignore_ascii_case("or") {
            out.push(Term::Or);
        } else {
            out.push(Term::Words { text, negated });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vector's words in order (PostgreSQL sorts them as it reads them).
    fn sorted(vector: String) -> String {
        let mut words: Vec<&str> = vector.split(' ').collect();
        words.sort_unstable();
        words.join(" ")
    }

    fn vector(text: &str) -> String {
        sorted(Words::new().vector(&[(text, Weight::D)]).to_string())
    }

    fn query(text: &str) -> Option<String> {
        Words::new().query(text)
    }

    #[test]
    fn the_searched_text_ends_at_the_signature_and_its_length() {
        assert_eq!(searched_text("mine\n-- \nAnne"), "mine");
        assert_eq!(searched_text("-- \nAnne"), "");
        assert_eq!(searched_text("a --\nb\n--\nc"), "a --\nb\n--\nc");
        let long = "é".repeat(SEARCHED_CHARS + 10);
        assert_eq!(searched_text(&long).chars().count(), SEARCHED_CHARS - 1);
    }

    #[test]
    fn the_stop_words_are_sorted_for_the_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn words_are_stemmed_and_stop_words_keep_their_place() {
        assert_eq!(
            vector("The cats replied to the Replies"),
            "'cat':2 'repli':3,6"
        );
    }

    #[test]
    fn anything_but_letters_and_digits_parts_words() {
        assert_eq!(
            vector("an e-mail to anne@example.org."),
            "'ann':5 'e':2 'exampl':6 'mail':3 'org':7"
        );
    }

    #[test]
    fn words_with_digits_are_kept_as_they_are() {
        assert_eq!(
            vector("Version 1.2 of ipv6"),
            "'1':2 '2':3 'ipv6':5 'version':1"
        );
    }

    #[test]
    fn each_field_has_its_weight_and_starts_after_a_gap() {
        assert_eq!(
            sorted(
                Words::new()
                    .vector(&[
                        ("Cats", Weight::A),
                        ("Anne", Weight::B),
                        ("cats", Weight::D)
                    ])
                    .to_string()
            ),
            "'ann':11B 'cat':1A,21"
        );
    }

    #[test]
    fn apostrophes_part_words_and_quotes_are_escaped() {
        assert_eq!(vector("o'brien"), "'brien':2 'o':1");
        assert_eq!(query("O’Brien").as_deref(), Some("( 'o' <-> 'brien' )"));
        let mut out = String::new();
        quote(&mut out, "a'b\\c");
        assert_eq!(out, "'a''b\\\\c'");
    }

    #[test]
    fn words_and_positions_stay_within_what_postgresql_keeps() {
        let long = "x".repeat(MAX_WORD_BYTES + 1);
        assert_eq!(vector(&format!("{long} word")), "'word':2");
        let many = "cat ".repeat(20_000);
        let v = vector(&many);
        assert_eq!(v.matches(',').count(), MAX_POSITIONS - 1);
        let far = format!("{} dog", "cat ".repeat(17_000));
        assert!(vector(&far).contains("'dog':16383"));
    }

    #[test]
    fn a_search_is_read_as_web_search_syntax() {
        assert_eq!(query("cats dogs").as_deref(), Some("'cat' & 'dog'"));
        assert_eq!(
            query("cats or dogs mice").as_deref(),
            Some("( 'cat' | 'dog' ) & 'mice'")
        );
        assert_eq!(query("cats -dogs").as_deref(), Some("'cat' & !'dog'"));
        assert_eq!(
            query("\"the merge of the branch\"").as_deref(),
            Some("( 'merg' <3> 'branch' )")
        );
        assert_eq!(
            query("-\"big cats\"").as_deref(),
            Some("!( 'big' <-> 'cat' )")
        );
        assert_eq!(query("e-mail").as_deref(), Some("( 'e' <-> 'mail' )"));
        assert_eq!(
            query("-anne@example.org").as_deref(),
            Some("!( 'ann' <-> 'exampl' <-> 'org' )")
        );
    }

    #[test]
    fn a_search_of_nothing_searchable_is_none() {
        assert_eq!(query(""), None);
        assert_eq!(query("the or a"), None);
        assert_eq!(query("\"\" - or"), None);
    }

    #[test]
    fn or_at_either_end_or_twice_is_ignored() {
        assert_eq!(
            query("or cats or or dogs or").as_deref(),
            Some("( 'cat' | 'dog' )")
        );
        assert_eq!(query("cats OR dogs").as_deref(), Some("( 'cat' | 'dog' )"));
    }

    #[test]
    fn a_long_search_is_read_to_its_thousandth_character_and_distances_are_bounded() {
        let many = "cat ".repeat(1_000);
        assert_eq!(query(&many).unwrap().matches("'cat'").count(), 250);
        let far = format!("\"cat {} dog\"", "the ".repeat(20_000));
        let mut words = Words::new();
        let (cat, dog) = (words.number("cat", 0), words.number("dog", 0));
        let mut out = String::new();
        words.cut(&far[1..far.len() - 1], 1, |id, p| {
            if id == cat || id == dog {
                out.push_str(&format!("{p} "));
            }
        });
        assert_eq!(out, "1 20002 ");
        assert_eq!(
            words.phrase(&far[1..far.len() - 1]).as_deref(),
            Some("( 'cat' <16384> 'dog' )")
        );
    }

    #[test]
    fn a_vector_holds_no_more_words_than_postgresql_takes() {
        let huge: String = (0..200_000).map(|i| format!("w{i} ")).collect();
        let v = Words::new().vector(&[(&huge, Weight::A)]);
        let size: usize = v.words().map(|(w, p)| stored_size(w.len(), p.len())).sum();
        assert_eq!(size, v.size());
        assert!(
            size <= MAX_VECTOR_BYTES && size > MAX_VECTOR_BYTES - 20,
            "{size}"
        );
    }

    #[test]
    fn a_vectors_words_are_in_the_order_of_their_bytes_with_their_positions() {
        let v = Words::new().vector(&[("Zebra apple zebra", Weight::A), ("Ápple 10", Weight::D)]);
        let words: Vec<(&str, Vec<u16>)> = v.words().map(|(w, p)| (w, p.to_vec())).collect();
        assert_eq!(
            words,
            [
                ("10", vec![14]),
                ("appl", vec![2 | 3 << 14]),
                ("zebra", vec![1 | 3 << 14, 3 | 3 << 14]),
                ("ápple", vec![13]),
            ]
        );
        assert_eq!(v.to_string(), "'10':14 'appl':2A 'zebra':1A,3A 'ápple':13");
    }

    #[test]
    fn decomposed_text_is_cut_as_composed() {
        // `café` and Hangul `한글` written decomposed, as some systems write them
        let decomposed = "cafe\u{301} \u{1112}\u{1161}\u{11ab}\u{1100}\u{1173}\u{11af}";
        assert_eq!(vector(decomposed), vector("café 한글"));
        assert_eq!(query(decomposed), query("café 한글"));
        assert_eq!(query("café").as_deref(), Some("'café'"));
    }

    #[test]
    fn an_unclosed_quote_runs_to_the_end() {
        assert_eq!(query("\"big cats").as_deref(), Some("( 'big' <-> 'cat' )"));
    }
}
