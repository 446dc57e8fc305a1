//! Values of the list headers (RFC 2919, RFC 2369), built the same way for every
//! message about a list.
//!
//! Also the list headers of a relayed post ([`ListHeaders`], docs/standards.md#1 to #7: RFC 2369,
//! RFC 8058 one-click unsubscribe) written with the folding rule of RFC 2369 §2 (only
//! after the comma between two `<URI>` items), and the subject prefix rule
//! ([`prefixed_subject`], docs/standards.md#10). Pure text: no parsing of messages here.

use super::ListAddress;

/// Longest List-Id value allowed by RFC 2919 §3.
const MAX_LIST_ID_HEADER: usize = 255;

/// `"Dev" <dev.lists.example.org>`: the phrase is quoted and escaped, and dropped
/// (then cut) when the whole would exceed 255 octets.
pub fn list_id_header(name: &str, address: &ListAddress) -> String {
    let id = address.list_id();
    let phrase: String = name
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| {
            if c == '"' || c == '\\' {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect();
    let full = format!("\"{phrase}\" <{id}>");
    if phrase.is_empty() {
        return format!("<{id}>");
    }
    if full.len() <= MAX_LIST_ID_HEADER {
        return full;
    }
    let room = MAX_LIST_ID_HEADER.saturating_sub(id.len() + 5);
    let mut cut = String::new();
    for c in phrase.chars() {
        if cut.len() + c.len_utf8() > room {
            break;
        }
        cut.push(c);
    }
    let cut = cut.trim_end_matches('\\');
    if cut.is_empty() {
        format!("<{id}>")
    } else {
        format!("\"{cut}\" <{id}>")
    }
}

/// The value of `List-Unsubscribe-Post` (RFC 8058 §3.1), byte-exact.
pub const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

/// Lines are folded before they pass this many columns (RFC 5322 §2.1.1 "SHOULD").
const FOLD_COLUMNS: usize = 78;

/// The list headers of a post relayed to the members (RFC 2369, RFC 8058).
#[derive(Debug, Clone, Copy)]
pub struct ListHeaders<'a> {
    pub list: &'a ListAddress,
    pub list_name: &'a str,
    /// The list's web page, e.g. `https://lists.example.org/lists/dev.lists.example.org`.
    pub list_url: &'a str,
    /// `List-Post: NO` (RFC 2369 §3.4): members cannot post.
    pub announce_only: bool,
    pub archive_url: Option<&'a str>,
}

/// A list header's value: a `<URI>` list (folded only between items) or plain text.
enum Value {
    Uris(Vec<String>),
    Plain(String),
}

impl ListHeaders<'_> {
    /// The headers that are the same in every member's copy, unfolded, in the order
    /// they are written: List-Id, List-Help, List-Subscribe, List-Post, List-Owner,
    /// List-Archive (when there is an archive) and `Precedence: list`.
    pub fn common(&self) -> Vec<(&'static str, String)> {
        self.values()
            .into_iter()
            .map(|(name, value)| match value {
                Value::Uris(uris) => (name, format!("<{}>", uris.join(">, <"))),
                Value::Plain(text) => (name, text),
            })
            .collect()
    }

    /// Writes [`ListHeaders::common`] as header lines (CRLF, folded after commas).
    pub fn write_common(&self, out: &mut Vec<u8>) {
        for (name, value) in self.values() {
            match value {
                Value::Uris(uris) => {
                    let items: Vec<[&str; 1]> = uris.iter().map(|u| [u.as_str()]).collect();
                    let items: Vec<&[&str]> = items.iter().map(|i| &i[..]).collect();
                    write_uri_list(out, name, &items);
                }
                // List-Id's phrase may hold ", " inside its quotes: never folded
                Value::Plain(text) => write_plain(out, name, &text),
            }
        }
    }

    fn values(&self) -> Vec<(&'static str, Value)> {
        let mailto = |suffix: &str| uri(&format!("mailto:{}", self.list.with_suffix(suffix)));
        let mut values = vec![
            (
                "List-Id",
                Value::Plain(list_id_header(self.list_name, self.list)),
            ),
            ("List-Help", Value::Uris(vec![mailto("help")])),
            (
                "List-Subscribe",
                Value::Uris(vec![mailto("subscribe"), uri(self.list_url)]),
            ),
            (
                "List-Post",
                if self.announce_only {
                    Value::Plain("NO".to_string())
                } else {
                    Value::Uris(vec![uri(&format!("mailto:{}", self.list))])
                },
            ),
            ("List-Owner", Value::Uris(vec![mailto("owner")])),
        ];
        if let Some(archive) = self.archive_url {
            values.push(("List-Archive", Value::Uris(vec![uri(archive)])));
        }
        values.push(("Precedence", Value::Plain("list".to_string())));
        values
    }

    /// The two headers unique to a member (RFC 8058 §3.1), unfolded: an https URI
    /// carrying the member's opaque token, and the tokenized mailto.
    pub fn unsubscribe(
        &self,
        public_url: &str,
        tokens: UnsubscribeTokens<'_>,
    ) -> Vec<(&'static str, String)> {
        let base = public_url.trim_end_matches('/');
        let (token, mailto) = (tokens.link, tokens.mailto);
        vec![
            (
                "List-Unsubscribe",
                format!(
                    "<{}>, <{}>",
                    uri(&format!("{base}/unsubscribe/{token}")),
                    uri(&format!(
                        "mailto:{}+unsubscribe+{mailto}@{}",
                        self.list.local_part(),
                        self.list.domain()
                    ))
                ),
            ),
            ("List-Unsubscribe-Post", ONE_CLICK.to_string()),
        ]
    }

    /// Writes [`ListHeaders::unsubscribe`] as header lines; see [`write_unsubscribe`].
    pub fn write_unsubscribe(
        &self,
        out: &mut Vec<u8>,
        public_url: &str,
        tokens: UnsubscribeTokens<'_>,
    ) {
        write_unsubscribe(out, self.list, public_url, tokens);
    }
}

/// A member's two unsubscribe tokens: the https link's and the mailto address's.
#[derive(Debug, Clone, Copy)]
pub struct UnsubscribeTokens<'a> {
    pub link: &'a str,
    pub mailto: &'a str,
}

/// Writes a member's `List-Unsubscribe` and `List-Unsubscribe-Post` lines without
/// allocating: this runs once per member copy of every post, so the usual case (all
/// parts URI-safe) is a few length sums and copies.
pub fn write_unsubscribe(
    out: &mut Vec<u8>,
    list: &ListAddress,
    public_url: &str,
    tokens: UnsubscribeTokens<'_>,
) {
    let base = public_url.trim_end_matches('/');
    let (token, mailto) = (tokens.link, tokens.mailto);
    let (local, domain) = (list.local_part(), list.domain());
    if [base, token, mailto, local, domain]
        .iter()
        .all(|s| uri_safe(s))
    {
        const NAME: &[u8] = b"List-Unsubscribe: <";
        const PATH: &[u8] = b"/unsubscribe/";
        const MAILTO: &[u8] = b"<mailto:";
        const PLUS: &[u8] = b"+unsubscribe+";
        const POST: &[u8] = b">\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n";
        // the same fold rule as `write_uri_list`: after the comma, past column 78
        let first = NAME.len() + base.len() + PATH.len() + token.len() + 2;
        let second = MAILTO.len() + local.len() + PLUS.len() + mailto.len() + 1 + domain.len() + 1;
        out.extend_from_slice(NAME);
        out.extend_from_slice(base.as_bytes());
        out.extend_from_slice(PATH);
        out.extend_from_slice(token.as_bytes());
        out.extend_from_slice(if first + 1 + second > FOLD_COLUMNS {
            b">,\r\n "
        } else {
            b">, "
        });
        out.extend_from_slice(MAILTO);
        out.extend_from_slice(local.as_bytes());
        out.extend_from_slice(PLUS);
        out.extend_from_slice(mailto.as_bytes());
        out.push(b'@');
        out.extend_from_slice(domain.as_bytes());
        out.extend_from_slice(POST);
        return;
    }
    write_uri_list(
        out,
        "List-Unsubscribe",
        &[
            &[base, "/unsubscribe/", token],
            &[
                "mailto:",
                list.local_part(),
                "+unsubscribe+",
                mailto,
                "@",
                list.domain(),
            ],
        ],
    );
    out.extend_from_slice(b"List-Unsubscribe-Post: ");
    out.extend_from_slice(ONE_CLICK.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `Name: value` CRLF, for values that are never folded.
fn write_plain(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `Name: <a>, <b>` CRLF, where each item is the concatenation of its pieces. A line
/// is folded only after the comma between two items (RFC 2369 §2: a fold inside a
/// URI would be read as part of it) and only when the next item would pass column 78.
fn write_uri_list(out: &mut Vec<u8>, name: &str, items: &[&[&str]]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b":");
    let mut column = name.len() + 1;
    for (i, pieces) in items.iter().enumerate() {
        let comma = usize::from(i + 1 < items.len());
        let width = 2 + pieces.iter().map(|p| uri_len(p)).sum::<usize>() + comma;
        if i > 0 && column + 1 + width > FOLD_COLUMNS {
            out.extend_from_slice(b"\r\n ");
            column = 1;
        } else {
            out.push(b' ');
            column += 1;
        }
        out.push(b'<');
        for piece in pieces.iter() {
            push_uri(out, piece);
        }
        out.push(b'>');
        if comma == 1 {
            out.push(b',');
        }
        column += width;
    }
    out.extend_from_slice(b"\r\n");
}

/// Bytes that cannot stand inside `<URI>` in a header: controls (a CR or LF would
/// start a new header line), space, non-ASCII, and the delimiters of RFC 3986 §2.
fn uri_unsafe(b: u8) -> bool {
    !URI_SAFE[usize::from(b)]
}

/// [`uri_unsafe`] as a table: it is looked up for every byte of every member's token.
const URI_SAFE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_graphic()
            && !matches!(
                c,
                b'<' | b'>' | b'"' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            );
        b += 1;
    }
    table
};

/// Whether `s` can stand in a `<URI>` item as it is.
pub fn uri_safe(s: &str) -> bool {
    s.bytes().all(|b| URI_SAFE[usize::from(b)])
}

/// Length of `s` once made safe by [`push_uri`].
fn uri_len(s: &str) -> usize {
    s.len() + 2 * s.bytes().filter(|&b| uri_unsafe(b)).count()
}

/// Appends `s`, percent-encoding the bytes a `<URI>` item cannot hold, so that no
/// configured URL or token can end the item or the header line early.
pub fn push_uri(out: &mut Vec<u8>, s: &str) {
    if !s.bytes().any(uri_unsafe) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if uri_unsafe(b) {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.push(b);
        }
    }
}

fn uri(s: &str) -> String {
    let mut out = Vec::with_capacity(uri_len(s));
    push_uri(&mut out, s);
    String::from_utf8(out).unwrap_or_default()
}

/// `subject` with `prefix` in front, unless the prefix is empty or the subject already
/// carries it after reply and forward markers (`Re: [dev] …`, `RE: AW: [dev] …`,
/// `Fwd: [dev] …`) or other lists' tags (`[other] [dev] …`). Otherwise the subject is
/// kept as it is.
pub fn prefixed_subject(subject: &str, prefix: &str) -> String {
    let prefix = prefix.trim();
    if prefix.is_empty() || has_prefix(subject, prefix) {
        return subject.to_string();
    }
    let subject = subject.trim_start();
    if subject.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix} {subject}")
    }
}

/// Whether `subject` already carries `prefix` (see [`prefixed_subject`]).
pub fn has_prefix(subject: &str, prefix: &str) -> bool {
    let prefix = prefix.trim();
    if prefix.is_empty() {
        return true;
    }
    let mut rest = subject;
    loop {
        rest = rest.trim_start();
        if rest
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        {
            return true;
        }
        if let Some(after) = strip_reply_marker(rest) {
            rest = after;
        } else if rest.starts_with('[')
            && let Some(end) = rest.find(']')
        {
            rest = &rest[end + 1..];
        } else {
            return false;
        }
    }
}

/// Reply and forward markers of common mail programs, in several languages.
const REPLY_MARKERS: &[&str] = &[
    "re",
    "fw",
    "fwd",
    "aw",
    "wg",
    "sv",
    "vs",
    "antw",
    "antwort",
    "ref",
    "rif",
    "tr",
    "r",
    "res",
    "enc",
    "odp",
    "pd",
    "ynt",
    "ilt",
    "atb",
    "vb",
    "vl",
    "rv",
    "ats",
    "απ",
    "σχετ",
    "ответ",
    "回复",
    "回覆",
    "答复",
    "转发",
    "轉寄",
];

/// `rest` after a leading `Re:`, `Re[2]:`, `Re^2:`, `Re(2):`, `AW:` … marker.
fn strip_reply_marker(rest: &str) -> Option<&str> {
    let colon = rest.find([':', '：'])?;
    let (word, after) = rest.split_at(colon);
    let after = &after[after.chars().next()?.len_utf8()..];
    let word = word.trim_end();
    let word = match word.find(['[', '(', '^']) {
        Some(i)
            if word[i + 1..]
                .trim_end_matches([']', ')'])
                .bytes()
                .all(|b| b.is_ascii_digit()) =>
        {
            &word[..i]
        }
        Some(_) => return None,
        None => word,
    };
    let word = word.to_lowercase();
    REPLY_MARKERS.contains(&word.as_str()).then_some(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_id_quotes_the_name_and_fits_in_255_octets() {
        let a = ListAddress::parse("dev@lists.example.org").unwrap();
        assert_eq!(list_id_header("Dev", &a), "\"Dev\" <dev.lists.example.org>");
        assert_eq!(
            list_id_header("Say \"hi\"", &a),
            "\"Say \\\"hi\\\"\" <dev.lists.example.org>"
        );
        let long = list_id_header(&"ü".repeat(300), &a);
        assert!(
            long.len() <= 255 && long.ends_with("<dev.lists.example.org>"),
            "{long}"
        );
        assert!(!list_id_header("a\r\nb", &a).contains('\n'));
    }

    fn dev() -> ListAddress {
        ListAddress::parse("dev@lists.example.org").unwrap()
    }

    fn headers(list: &ListAddress) -> ListHeaders<'_> {
        ListHeaders {
            list,
            list_name: "Dev",
            list_url: "https://lists.example.org/lists/dev.lists.example.org",
            announce_only: false,
            archive_url: None,
        }
    }

    #[test]
    fn common_headers_follow_rfc_2369() {
        let list = dev();
        let h = headers(&list);
        assert_eq!(
            h.common(),
            vec![
                ("List-Id", "\"Dev\" <dev.lists.example.org>".to_string()),
                (
                    "List-Help",
                    "<mailto:dev+help@lists.example.org>".to_string()
                ),
                (
                    "List-Subscribe",
                    "<mailto:dev+subscribe@lists.example.org>, \
                     <https://lists.example.org/lists/dev.lists.example.org>"
                        .to_string()
                ),
                ("List-Post", "<mailto:dev@lists.example.org>".to_string()),
                (
                    "List-Owner",
                    "<mailto:dev+owner@lists.example.org>".to_string()
                ),
                ("Precedence", "list".to_string()),
            ]
        );
        let announce = ListHeaders {
            announce_only: true,
            archive_url: Some("https://lists.example.org/archive/dev"),
            ..h
        };
        let common = announce.common();
        assert!(common.contains(&("List-Post", "NO".to_string())));
        assert!(common.contains(&(
            "List-Archive",
            "<https://lists.example.org/archive/dev>".to_string()
        )));
    }

    #[test]
    fn unsubscribe_headers_carry_the_token_and_one_click() {
        let list = dev();
        let h = headers(&list);
        assert_eq!(
            h.unsubscribe("https://lists.example.org/", same("T0k-_en")),
            vec![
                (
                    "List-Unsubscribe",
                    "<https://lists.example.org/unsubscribe/T0k-_en>, \
                     <mailto:dev+unsubscribe+T0k-_en@lists.example.org>"
                        .to_string()
                ),
                (
                    "List-Unsubscribe-Post",
                    "List-Unsubscribe=One-Click".to_string()
                ),
            ]
        );
        let mut out = Vec::new();
        h.write_unsubscribe(&mut out, "https://lists.example.org", same("T0k-_en"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "List-Unsubscribe: <https://lists.example.org/unsubscribe/T0k-_en>,\r\n \
             <mailto:dev+unsubscribe+T0k-_en@lists.example.org>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        );
    }

    /// One token for both places, as the tests of folding and escaping need.
    fn same(token: &str) -> UnsubscribeTokens<'_> {
        UnsubscribeTokens {
            link: token,
            mailto: token,
        }
    }

    /// Unfolds a header block written by this module into (name, value) pairs.
    fn unfold(block: &str) -> Vec<(String, String)> {
        assert!(block.ends_with("\r\n"), "{block:?}");
        assert!(
            !block.replace("\r\n", "").contains(['\r', '\n']),
            "{block:?}"
        );
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in block.trim_end_matches("\r\n").split("\r\n") {
            assert!(line.len() <= 998);
            if let Some(rest) = line.strip_prefix(' ') {
                fields.last_mut().unwrap().1.push_str(&format!(" {rest}"));
            } else {
                let (name, value) = line.split_once(": ").unwrap();
                fields.push((name.to_string(), value.to_string()));
            }
        }
        fields
    }

    #[test]
    fn written_headers_fold_only_after_commas_and_unfold_to_the_values() {
        let list = dev();
        let long_url = format!("https://lists.example.org/{}/dev", "x".repeat(120));
        let h = ListHeaders {
            list_name: "Dev, the <list>",
            list_url: &long_url,
            archive_url: Some("https://lists.example.org/archive/dev"),
            ..headers(&list)
        };
        let mut out = Vec::new();
        h.write_common(&mut out);
        h.write_unsubscribe(&mut out, "https://lists.example.org", same(&"t".repeat(43)));
        let text = String::from_utf8(out).unwrap();
        for line in text.split("\r\n") {
            // a line may pass 78 columns only when it holds a single unbreakable item
            if line.len() > 78 {
                let items = line.matches('<').count();
                assert!(
                    items == 1 || line.starts_with("List-Id:"),
                    "{line:?} could have been folded"
                );
            }
            if line.starts_with(' ') {
                assert!(
                    line.starts_with(" <"),
                    "folded elsewhere than after a comma: {line:?}"
                );
            }
        }
        let mut expected = h.common();
        expected.extend(h.unsubscribe("https://lists.example.org", same(&"t".repeat(43))));
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        assert_eq!(unfold(&text), expected);
    }

    #[test]
    fn the_fast_unsubscribe_writer_folds_like_the_general_one() {
        let list = ListAddress::parse("d@x.example").unwrap();
        for base_len in [5, 20, 40, 60] {
            for token_len in [1, 10, 22, 43, 200] {
                let base = format!("https://{}", "b".repeat(base_len));
                let token = "t".repeat(token_len);
                let mut fast = Vec::new();
                write_unsubscribe(&mut fast, &list, &base, same(&token));
                let mut general = Vec::new();
                write_uri_list(
                    &mut general,
                    "List-Unsubscribe",
                    &[
                        &[&base, "/unsubscribe/", &token],
                        &["mailto:d+unsubscribe+", &token, "@x.example"],
                    ],
                );
                general.extend_from_slice(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    String::from_utf8(general).unwrap()
                );
            }
        }
        let mut short = Vec::new();
        let io = ListAddress::parse("d@x.io").unwrap();
        write_unsubscribe(&mut short, &io, "http://a.b", same("t"));
        assert_eq!(
            String::from_utf8(short).unwrap(),
            "List-Unsubscribe: <http://a.b/unsubscribe/t>, <mailto:d+unsubscribe+t@x.io>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        );
    }

    #[test]
    fn configured_urls_and_tokens_cannot_end_a_header_line() {
        let list = dev();
        let h = ListHeaders {
            list_url: "https://x.example/a b>\r\nBcc: victim@example.org",
            archive_url: Some("https://x.example/\"q\"\n"),
            ..headers(&list)
        };
        let mut out = Vec::new();
        h.write_common(&mut out);
        h.write_unsubscribe(&mut out, "https://x.example\r\n", same("to>ken\r\nBcc: x"));
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("\r\nBcc"), "{text}");
        assert!(
            text.contains("a%20b%3E%0D%0ABcc:%20victim@example.org"),
            "{text}"
        );
        assert!(
            text.contains("/unsubscribe/to%3Eken%0D%0ABcc:%20x>"),
            "{text}"
        );
        assert_eq!(unfold(&text).len(), 9);
    }

    #[test]
    fn the_prefix_is_added_once() {
        let p = "[dev]";
        assert_eq!(prefixed_subject("Hello", p), "[dev] Hello");
        assert_eq!(prefixed_subject("[dev] Hello", p), "[dev] Hello");
        assert_eq!(prefixed_subject("Re: [dev] Hello", p), "Re: [dev] Hello");
        assert_eq!(
            prefixed_subject("RE: AW: [dev] Hello", p),
            "RE: AW: [dev] Hello"
        );
        assert_eq!(prefixed_subject("Fwd: [dev] Hello", p), "Fwd: [dev] Hello");
        assert_eq!(
            prefixed_subject("Re[2]: Fw:[DEV] Hello", p),
            "Re[2]: Fw:[DEV] Hello"
        );
        assert_eq!(
            prefixed_subject("[other] [dev] Hello", p),
            "[other] [dev] Hello"
        );
        assert_eq!(prefixed_subject("回复: [dev] 你好", p), "回复: [dev] 你好");
        assert_eq!(prefixed_subject("Re: Hello", p), "[dev] Re: Hello");
        assert_eq!(
            prefixed_subject("About the [dev] tag", p),
            "[dev] About the [dev] tag"
        );
        assert_eq!(
            prefixed_subject("Meeting at 10:30", p),
            "[dev] Meeting at 10:30"
        );
        assert_eq!(prefixed_subject("", p), "[dev]");
        assert_eq!(prefixed_subject("Hello", ""), "Hello");
        assert_eq!(prefixed_subject("  Hello  ", "  "), "  Hello  ");
        assert_eq!(prefixed_subject("Grüße", "[dév]"), "[dév] Grüße");
        assert_eq!(
            prefixed_subject("Re: [dév] Grüße", "[dév]"),
            "Re: [dév] Grüße"
        );
    }
}
