//! The list's footer in each copy of a post (docs/standards.md#19 and #8), placed
//! where mail clients show it as the last text of the message.
//!
//! [`plan`] looks at the post once and returns a [`CopyLayout`]: the shared header
//! section, then the body as shared bytes and footer slots. A copy is the layout
//! written out with the member's unsubscribe token in each slot, so the per-member
//! work is a few small copies and, for encoded parts, encoding a few hundred bytes.
//!
//! Where the footer goes, by the post's shape:
//! * one `text/plain` part: appended to it, in its own transfer encoding (quoted-
//!   printable encodes the footer alone; base64 re-encodes the last, incomplete line
//!   of 57 octets with the footer). A non-ASCII footer in a 7bit or US-ASCII part
//!   relabels it as UTF-8/8bit (the bytes stay); another charset gets the wrapping
//!   below.
//! * `text/html` alone, or the HTML of a `multipart/related`: inserted before
//!   `</body>` (escaped; non-ASCII as character references, so any charset takes it).
//! * `multipart/alternative`: both the text and the HTML variant (the HTML one also
//!   inside a `multipart/related`), so the footer shows whichever a client picks. A
//!   text variant in a charset other than UTF-8 or US-ASCII (Outlook's ISO-8859-1)
//!   gets the footer's non-ASCII characters as `?`; its HTML variant shows them.
//!   Outlook shows a text part that follows an alternative as an attachment, so no
//!   extra part is added here.
//! * `multipart/mixed`: a trailing inline `text/plain` part.
//! * anything else (signed or encrypted mail, reports, a lone attachment): the post
//!   becomes the first part of a new `multipart/mixed` and the footer the second, so
//!   signatures over the original stay whole.
//!
//! The body's bytes before the first slot are the same in every copy: a DKIM body
//! hash runs over them once, and only what follows the first slot is hashed per copy
//! ([`CopyLayout::first_slot`]). For every shape but `multipart/alternative` that is
//! the footer and a short tail (a closing boundary, `</body></html>`).

use crate::domain::footer::{Rendered, RenderedPiece};
use base64::Engine as _;
use mail_parser::{MessageParser, MimeHeaders};

/// The footer of one post: the rendered template and the start of each member's
/// unsubscribe link (`{PUBLIC_URL}/unsubscribe/`).
#[derive(Debug, Clone, Copy)]
pub struct FooterText<'a> {
    pub rendered: &'a Rendered,
    pub link_base: &'a str,
}

/// The copies of a post with a footer: shared bytes and the slots where each
/// member's footer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyLayout {
    /// The header section every copy shares (after the member's own lines), with the
    /// blank line that ends it.
    head: Vec<u8>,
    body: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Shared(Vec<u8>),
    Slot(Slot),
}

/// One footer, in the encoding of the part it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    /// The footer's text (in the part's charset, escaped for HTML) around each
    /// place where the member's token goes.
    pieces: Vec<Vec<u8>>,
    encoding: SlotEncoding,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SlotEncoding {
    /// 7bit, 8bit, binary: the text as it is.
    AsIs,
    /// Quoted-printable; `soft_end` ends it with a soft line break, for text that
    /// continues after it on the same line.
    QuotedPrintable { soft_end: bool },
    /// Base64 of `before`, the footer and `after` (the octets of the part that do not
    /// fill a whole encoded line).
    Base64 { before: Vec<u8>, after: Vec<u8> },
}

impl CopyLayout {
    /// Appends one member's copy (after their own header lines) to `out`, with
    /// `token` in every unsubscribe link of the footer.
    pub fn write(&self, out: &mut Vec<u8>, token: &str) {
        out.extend_from_slice(&self.head);
        let mut scratch = Vec::new();
        for segment in &self.body {
            match segment {
                Segment::Shared(b) => out.extend_from_slice(b),
                Segment::Slot(slot) => slot.write(out, token, &mut scratch),
            }
        }
    }

    /// Bytes written by [`CopyLayout::write`] besides the slots.
    pub fn shared_len(&self) -> usize {
        self.head.len()
            + self
                .body
                .iter()
                .map(|s| match s {
                    Segment::Shared(b) => b.len(),
                    Segment::Slot(_) => 0,
                })
                .sum::<usize>()
    }

    /// The header section shared by every copy, blank line included.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The body's bytes before its first footer: the same in every copy.
    pub fn first_slot(&self) -> &[u8] {
        match self.body.first() {
            Some(Segment::Shared(b)) => b,
            _ => &[],
        }
    }

    /// The copy for a reader who is no member (the token replaced by `TOKEN`).
    pub fn sample(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out, "TOKEN");
        out
    }

    /// A compact form kept with the post.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = b"LDL1".to_vec();
        put(&mut out, &self.head);
        for segment in &self.body {
            match segment {
                Segment::Shared(b) => {
                    out.push(0);
                    put(&mut out, b);
                }
                Segment::Slot(slot) => {
                    match &slot.encoding {
                        SlotEncoding::AsIs => out.push(1),
                        SlotEncoding::QuotedPrintable { soft_end } => {
                            out.push(if *soft_end { 3 } else { 2 })
                        }
                        SlotEncoding::Base64 { before, after } => {
                            out.push(4);
                            put(&mut out, before);
                            put(&mut out, after);
                        }
                    }
                    out.extend_from_slice(&(slot.pieces.len() as u32).to_le_bytes());
                    for p in &slot.pieces {
                        put(&mut out, p);
                    }
                }
            }
        }
        out
    }

    /// Reads [`CopyLayout::to_bytes`]; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<CopyLayout> {
        let mut r = Reader(bytes.strip_prefix(b"LDL1")?);
        let head = r.bytes()?;
        let mut body = Vec::new();
        while let Some(tag) = r.byte() {
            let encoding = match tag {
                0 => {
                    body.push(Segment::Shared(r.bytes()?));
                    continue;
                }
                1 => SlotEncoding::AsIs,
                2 | 3 => SlotEncoding::QuotedPrintable { soft_end: tag == 3 },
                4 => SlotEncoding::Base64 {
                    before: r.bytes()?,
                    after: r.bytes()?,
                },
                _ => return None,
            };
            let n = r.u32()?;
            let pieces = (0..n).map(|_| r.bytes()).collect::<Option<Vec<_>>>()?;
            body.push(Segment::Slot(Slot { pieces, encoding }));
        }
        Some(CopyLayout { head, body })
    }
}

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u32(&mut self) -> Option<u32> {
        let (n, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_le_bytes(*n))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        let b = self.0.get(..n)?.to_vec();
        self.0 = &self.0[n..];
        Some(b)
    }
}

impl Slot {
    fn write(&self, out: &mut Vec<u8>, token: &str, scratch: &mut Vec<u8>) {
        let token = token.as_bytes();
        let join = |into: &mut Vec<u8>| {
            for (i, p) in self.pieces.iter().enumerate() {
                if i > 0 {
                    into.extend_from_slice(token);
                }
                into.extend_from_slice(p);
            }
        };
        match &self.encoding {
            SlotEncoding::AsIs => join(out),
            SlotEncoding::QuotedPrintable { soft_end } => {
                scratch.clear();
                join(scratch);
                encode_qp(out, scratch, *soft_end);
            }
            SlotEncoding::Base64 { before, after } => {
                scratch.clear();
                scratch.extend_from_slice(before);
                join(scratch);
                scratch.extend_from_slice(after);
                encode_base64(out, scratch);
            }
        }
    }
}

/// Lays out the copies of a post whose shared header lines are `header` (each
/// ending in CRLF, without the blank line) and whose body is `body`.
pub fn plan(header: &[u8], body: &[u8], footer: &FooterText<'_>) -> CopyLayout {
    let mut edits = Edits::default();
    let root = read_part_header(header);
    let mut head_fields: Option<Vec<u8>> = None;
    let content = 0..body.len();
    let placed = match root.kind() {
        ("text", "plain") => match text_fit(&root, footer) {
            TextFit::Fits => append_text(&mut edits, body, content, &root, footer, true),
            TextFit::Relabel(fields) => {
                head_fields = Some(replace_fields(header, &fields));
                append_text(&mut edits, body, content, &root, footer, true)
            }
            TextFit::No => false,
        },
        ("text", "html") => insert_html(&mut edits, body, content, &root, footer),
        ("multipart", "mixed") => match &root.boundary {
            Some(b) => {
                append_part(&mut edits, body, b, footer);
                true
            }
            None => false,
        },
        ("multipart", "alternative") => place_in_alternative(&mut edits, body, &root, footer),
        ("multipart", "related") => place_in_related(&mut edits, body, &root, footer),
        _ => false,
    };
    if !placed {
        edits = Edits::default();
        let (fields, boundary) = wrap_header(header, body);
        head_fields = Some(fields);
        wrap(&mut edits, header, body, &boundary, footer);
    }
    let mut head = head_fields.unwrap_or_else(|| header.to_vec());
    head.extend_from_slice(b"\r\n");
    CopyLayout {
        head,
        body: edits.apply(body),
    }
}

/// Lays out the copies of a message whose body is one `text/plain` part in 7bit or
/// 8bit with the footer at `at` (the start of a line of `body`) rather than at its
/// end: for text with a trailer of its own, an RFC 1153 digest's. The footer's lines
/// go there, ended by a line break; the text around them is the caller's. `None` for
/// another shape or encoding, or a footer the part's charset cannot carry: [`plan`]
/// then places it.
pub fn plan_text_at(
    header: &[u8],
    body: &[u8],
    at: usize,
    footer: &FooterText<'_>,
) -> Option<CopyLayout> {
    let root = read_part_header(header);
    let as_is = matches!(root.cte.as_str(), "7bit" | "8bit" | "binary");
    if root.kind() != ("text", "plain") || !as_is || at > body.len() {
        return None;
    }
    if at > 0 && body[at - 1] != b'\n' {
        return None;
    }
    let mut head = match text_fit(&root, footer) {
        TextFit::Fits => header.to_vec(),
        TextFit::Relabel(fields) => replace_fields(header, &fields),
        TextFit::No => return None,
    };
    head.extend_from_slice(b"\r\n");
    let ascii_only =
        !(utf8_charset(root.charset.as_deref()) || ascii_charset(root.charset.as_deref()));
    let mut edits = Edits::default();
    edits.insert(
        at,
        vec![
            Segment::Slot(Slot {
                pieces: plain_pieces(footer, ascii_only),
                encoding: SlotEncoding::AsIs,
            }),
            Segment::Shared(b"\r\n".to_vec()),
        ],
    );
    Some(CopyLayout {
        head,
        body: edits.apply(body),
    })
}

/// Replacements of ranges of the body, applied in order of position.
#[derive(Default)]
struct Edits(Vec<(usize, usize, Vec<Segment>)>);

impl Edits {
    fn replace(&mut self, from: usize, to: usize, with: Vec<Segment>) {
        self.0.push((from, to, with));
    }
    fn insert(&mut self, at: usize, with: Vec<Segment>) {
        self.replace(at, at, with);
    }
    fn apply(mut self, body: &[u8]) -> Vec<Segment> {
        self.0.sort_by_key(|e| (e.0, e.1));
        let mut out: Vec<Segment> = Vec::new();
        let push = |out: &mut Vec<Segment>, s: Segment| match (out.last_mut(), s) {
            (Some(Segment::Shared(last)), Segment::Shared(b)) => last.extend_from_slice(&b),
            (_, Segment::Shared(b)) if b.is_empty() => {}
            (_, s) => out.push(s),
        };
        let mut pos = 0;
        for (from, to, with) in self.0 {
            let from = from.max(pos);
            push(&mut out, Segment::Shared(body[pos..from].to_vec()));
            for s in with {
                push(&mut out, s);
            }
            pos = to.max(from);
        }
        push(&mut out, Segment::Shared(body[pos..].to_vec()));
        out
    }
}

/// What the planner needs from a part's header fields.
struct PartHeader {
    ctype: String,
    subtype: String,
    charset: Option<String>,
    boundary: Option<String>,
    /// The transfer encoding, lower case; `7bit` when absent.
    cte: String,
    /// The Content-Type's other parameters, as `name=value` pairs.
    params: Vec<(String, String)>,
}

impl PartHeader {
    fn kind(&self) -> (&str, &str) {
        (&self.ctype, &self.subtype)
    }
}

fn read_part_header(fields: &[u8]) -> PartHeader {
    let mut block = fields.to_vec();
    block.extend_from_slice(b"\r\n");
    let parsed = MessageParser::default().parse_headers(&block);
    let part = parsed.as_ref().and_then(|m| m.parts.first());
    let ct = part.and_then(|p| p.content_type());
    let lower = |s: &str| s.trim().to_ascii_lowercase();
    let (ctype, subtype) = match ct {
        Some(ct) => (
            lower(ct.ctype()),
            ct.subtype().map(lower).unwrap_or_default(),
        ),
        None => ("text".into(), "plain".into()),
    };
    let attr = |name: &str| {
        ct.and_then(|c| c.attributes())
            .and_then(|a| a.iter().find(|a| a.name.eq_ignore_ascii_case(name)))
            .map(|a| a.value.to_string())
    };
    let params = ct
        .and_then(|c| c.attributes())
        .unwrap_or_default()
        .iter()
        .filter(|a| !a.name.eq_ignore_ascii_case("charset"))
        .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
        .collect();
    PartHeader {
        ctype,
        subtype,
        charset: attr("charset").map(|c| lower(&c)),
        boundary: attr("boundary"),
        cte: part
            .and_then(|p| p.content_transfer_encoding())
            .map(lower)
            .unwrap_or_else(|| "7bit".into()),
        params,
    }
}

/// Whether a text part takes the footer as it is, after new Content-Type and
/// Content-Transfer-Encoding fields, or not at all.
enum TextFit {
    Fits,
    Relabel(Vec<u8>),
    No,
}

fn utf8_charset(charset: Option<&str>) -> bool {
    matches!(charset, Some("utf-8" | "utf8"))
}

fn ascii_charset(charset: Option<&str>) -> bool {
    matches!(
        charset,
        None | Some("us-ascii" | "ascii" | "ansi_x3.4-1968")
    )
}

fn text_fit(part: &PartHeader, footer: &FooterText<'_>) -> TextFit {
    let known_cte = matches!(
        part.cte.as_str(),
        "7bit" | "8bit" | "binary" | "quoted-printable" | "base64"
    );
    if !known_cte {
        return TextFit::No;
    }
    if footer.rendered.is_ascii() {
        // ASCII reads the same in every charset mail uses for text
        return TextFit::Fits;
    }
    let utf8 = utf8_charset(part.charset.as_deref());
    if !utf8 && !ascii_charset(part.charset.as_deref()) {
        return TextFit::No;
    }
    let seven = part.cte == "7bit";
    if utf8 && !seven {
        return TextFit::Fits;
    }
    // US-ASCII is UTF-8, and 7bit text is 8bit text: only the labels change
    let mut fields = b"Content-Type: ".to_vec();
    fields.extend_from_slice(format!("{}/{}", part.ctype, part.subtype).as_bytes());
    for (name, value) in &part.params {
        fields.extend_from_slice(format!(";\r\n {name}=\"{}\"", quoted(value)).as_bytes());
    }
    fields.extend_from_slice(b"; charset=utf-8\r\n");
    let cte = if seven { "8bit" } else { part.cte.as_str() };
    fields.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\r\n").as_bytes());
    TextFit::Relabel(fields)
}

fn quoted(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

/// `header` with its Content-Type and Content-Transfer-Encoding fields replaced by
/// `fields` (written where the first of them was, or at the end).
fn replace_fields(header: &[u8], fields: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + fields.len());
    let mut written = false;
    for field in split_fields(header) {
        let name = field
            .split(|&b| b == b':')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("content-type") || is("content-transfer-encoding") {
            if !written {
                out.extend_from_slice(fields);
                written = true;
            }
        } else {
            out.extend_from_slice(field);
        }
    }
    if !written {
        out.extend_from_slice(fields);
    }
    out
}

/// The fields of a header block (lines ending in CRLF), each with its continuation lines.
fn split_fields(header: &[u8]) -> Vec<&[u8]> {
    let mut fields: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    for line in header.split_inclusive(|&b| b == b'\n') {
        let end = pos + line.len();
        match fields.last_mut() {
            Some(last) if matches!(line.first(), Some(b' ' | b'\t')) => last.1 = end,
            _ => fields.push((pos, end)),
        }
        pos = end;
    }
    fields.into_iter().map(|(s, e)| &header[s..e]).collect()
}

/// The footer as plain text lines (CRLF), in UTF-8 or, for `ascii`, with other
/// characters as `?`: pieces around the member's token.
fn plain_pieces(footer: &FooterText<'_>, ascii: bool) -> Vec<Vec<u8>> {
    let mut pieces = vec![b"-- \r\n".to_vec()];
    let mut column = 0;
    for piece in &footer.rendered.pieces {
        let text = match piece {
            RenderedPiece::Text(t) | RenderedPiece::Url(t) => t.as_str(),
            RenderedPiece::MemberLink => {
                let last = pieces.last_mut().expect("a piece");
                last.extend_from_slice(footer.link_base.as_bytes());
                pieces.push(Vec::new());
                column += footer.link_base.len() + 64;
                continue;
            }
        };
        let last = pieces.last_mut().expect("a piece");
        for c in text.chars() {
            match c {
                '\n' => {
                    last.extend_from_slice(b"\r\n");
                    column = 0;
                }
                // lines stay well within SMTP's 998 octets
                ' ' if column > 800 => {
                    last.extend_from_slice(b"\r\n");
                    column = 0;
                }
                c if ascii && !c.is_ascii() => {
                    last.push(b'?');
                    column += 1;
                }
                c => {
                    let mut buf = [0; 4];
                    last.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    column += c.len_utf8();
                }
            }
        }
    }
    pieces
}

/// The footer as HTML (ASCII only: other characters as references), pieces around
/// the member's token, which appears in each link's target and text.
fn html_pieces(footer: &FooterText<'_>) -> Vec<Vec<u8>> {
    let mut pieces = vec![
        b"\r\n<div class=\"listd-footer\" style=\"margin-top:1.5em;padding-top:0.5em;\
          border-top:1px solid #999;font-size:small\">\r\n"
            .to_vec(),
    ];
    let escape = |out: &mut Vec<u8>, text: &str| {
        let mut column = 0;
        for c in text.chars() {
            match c {
                '&' => out.extend_from_slice(b"&amp;"),
                '<' => out.extend_from_slice(b"&lt;"),
                '>' => out.extend_from_slice(b"&gt;"),
                '"' => out.extend_from_slice(b"&quot;"),
                '\n' => {
                    out.extend_from_slice(b"<br>\r\n");
                    column = 0;
                }
                ' ' if column > 800 => {
                    out.extend_from_slice(b"\r\n");
                    column = 0;
                }
                c if c.is_ascii() => out.push(c as u8),
                c => out.extend_from_slice(format!("&#{};", u32::from(c)).as_bytes()),
            }
            column += 1;
        }
    };
    let base = {
        let mut b = Vec::new();
        escape(&mut b, footer.link_base);
        b
    };
    for piece in &footer.rendered.pieces {
        let last = pieces.last_mut().expect("a piece");
        match piece {
            RenderedPiece::Text(t) => escape(last, t),
            RenderedPiece::Url(u) => {
                last.extend_from_slice(b"<a href=\"");
                escape(last, u);
                last.extend_from_slice(b"\">");
                escape(last, u);
                last.extend_from_slice(b"</a>");
            }
            RenderedPiece::MemberLink => {
                last.extend_from_slice(b"<a href=\"");
                last.extend_from_slice(&base);
                pieces.push(b"\">".to_vec());
                let last = pieces.last_mut().expect("a piece");
                last.extend_from_slice(&base);
                pieces.push(b"</a>".to_vec());
            }
        }
    }
    pieces
        .last_mut()
        .expect("a piece")
        .extend_from_slice(b"\r\n</div>\r\n");
    pieces
}

/// Appends the footer to a text/plain part whose content is `body[content]`;
/// `relabelled` says the charset is UTF-8 (or the footer ASCII).
fn append_text(
    edits: &mut Edits,
    body: &[u8],
    content: std::ops::Range<usize>,
    part: &PartHeader,
    footer: &FooterText<'_>,
    utf8_ok: bool,
) -> bool {
    let ascii_only = !utf8_ok
        || !(utf8_charset(part.charset.as_deref()) || ascii_charset(part.charset.as_deref()));
    let pieces = plain_pieces(footer, ascii_only);
    let text = &body[content.clone()];
    match part.cte.as_str() {
        "base64" => {
            let Some(decoded) = decode_base64(text) else {
                return false;
            };
            let whole = decoded.len() / 57 * 57;
            let mut shared = Vec::new();
            encode_base64(&mut shared, &decoded[..whole]);
            let rest = &decoded[whole..];
            let mut before = rest.to_vec();
            before.extend_from_slice(separator(&decoded));
            edits.replace(
                content.start,
                content.end,
                vec![
                    Segment::Shared(shared),
                    Segment::Slot(Slot {
                        pieces,
                        encoding: SlotEncoding::Base64 {
                            before,
                            after: b"\r\n".to_vec(),
                        },
                    }),
                ],
            );
        }
        cte => {
            let qp = cte == "quoted-printable";
            let ends_line = text.ends_with(b"\r\n");
            let soft = qp && text.ends_with(b"=\r\n");
            let sep: &[u8] = if text.is_empty() {
                b""
            } else if ends_line && !soft {
                b"\r\n"
            } else {
                b"\r\n\r\n"
            };
            let encoding = if qp {
                SlotEncoding::QuotedPrintable { soft_end: false }
            } else {
                SlotEncoding::AsIs
            };
            let tail: &[u8] = if ends_line || content.end == body.len() {
                b"\r\n"
            } else {
                b""
            };
            edits.insert(
                content.end,
                vec![
                    Segment::Shared(sep.to_vec()),
                    Segment::Slot(Slot { pieces, encoding }),
                    Segment::Shared(tail.to_vec()),
                ],
            );
        }
    }
    true
}

/// The line breaks between decoded text and its footer: a blank line.
fn separator(text: &[u8]) -> &'static [u8] {
    if text.is_empty() {
        b""
    } else if text.ends_with(b"\n") {
        b"\r\n"
    } else {
        b"\r\n\r\n"
    }
}

/// Inserts the HTML footer before `</body>` of a text/html part.
fn insert_html(
    edits: &mut Edits,
    body: &[u8],
    content: std::ops::Range<usize>,
    part: &PartHeader,
    footer: &FooterText<'_>,
) -> bool {
    let pieces = html_pieces(footer);
    let text = &body[content.clone()];
    match part.cte.as_str() {
        "base64" => {
            let Some(decoded) = decode_base64(text) else {
                return false;
            };
            let at = html_insertion_point(&decoded);
            let whole = at / 57 * 57;
            let mut shared = Vec::new();
            encode_base64(&mut shared, &decoded[..whole]);
            edits.replace(
                content.start,
                content.end,
                vec![
                    Segment::Shared(shared),
                    Segment::Slot(Slot {
                        pieces,
                        encoding: SlotEncoding::Base64 {
                            before: decoded[whole..at].to_vec(),
                            after: decoded[at..].to_vec(),
                        },
                    }),
                ],
            );
        }
        "quoted-printable" => {
            let decoded = decode_qp(text);
            let at = html_insertion_point(&decoded);
            let mut before = Vec::new();
            encode_qp(&mut before, &decoded[..at], true);
            let mut after = Vec::new();
            encode_qp(&mut after, &decoded[at..], false);
            edits.replace(
                content.start,
                content.end,
                vec![
                    Segment::Shared(before),
                    Segment::Slot(Slot {
                        pieces,
                        encoding: SlotEncoding::QuotedPrintable { soft_end: true },
                    }),
                    Segment::Shared(after),
                ],
            );
        }
        "7bit" | "8bit" | "binary" => {
            let at = html_insertion_point(text);
            edits.insert(
                content.start + at,
                vec![Segment::Slot(Slot {
                    pieces,
                    encoding: SlotEncoding::AsIs,
                })],
            );
        }
        _ => return false,
    }
    true
}

/// Before the last `</body` (any case), else before the last `</html`, else the end.
fn html_insertion_point(html: &[u8]) -> usize {
    let find_last = |needle: &[u8]| {
        html.windows(needle.len())
            .rposition(|w| w.eq_ignore_ascii_case(needle))
    };
    find_last(b"</body")
        .or_else(|| find_last(b"</html"))
        .unwrap_or_else(|| html.len() - trailing_line_ends(html))
}

fn trailing_line_ends(b: &[u8]) -> usize {
    b.iter()
        .rev()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count()
}

/// A part of a multipart body: where its header block starts, where its content
/// starts and ends (before the CRLF of the next delimiter).
struct Child {
    header: std::ops::Range<usize>,
    content: std::ops::Range<usize>,
}

/// The children of a multipart whose content is `body[range]`, and the position of
/// the CRLF before its closing delimiter (`None` when it has none).
fn children(
    body: &[u8],
    range: std::ops::Range<usize>,
    boundary: &str,
) -> (Vec<Child>, Option<usize>) {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let mut children = Vec::new();
    let mut open: Option<usize> = None;
    let mut pos = range.start;
    let text = &body[..range.end];
    let mut close = None;
    while pos < range.end {
        let at_line_start = pos == range.start || text[..pos].ends_with(b"\r\n");
        let after = pos + d.len();
        // the boundary is the whole line (trailing white space allowed), so that
        // `--b` does not match the delimiter of a nested `--b2`
        let ends_delimiter = |rest: &[u8]| {
            let blank = rest
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            rest.starts_with(b"--") || rest[blank..].starts_with(b"\r\n") || rest.len() == blank
        };
        if at_line_start && text[pos..].starts_with(d) && ends_delimiter(&text[after..]) {
            let closing = text[after..].starts_with(b"--");
            let line_end = text[after..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(range.end, |i| after + i + 2);
            let crlf_before = if pos >= range.start + 2 { pos - 2 } else { pos };
            if let Some(start) = open.take() {
                children.push(child(body, start, crlf_before.max(start)));
            }
            if closing {
                close = Some(crlf_before);
                break;
            }
            open = Some(line_end);
            pos = line_end;
            continue;
        }
        pos = text[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(range.end, |i| pos + i + 2);
    }
    if let Some(start) = open {
        children.push(child(body, start, range.end));
    }
    (children, close)
}

fn child(body: &[u8], start: usize, end: usize) -> Child {
    let part = &body[start..end];
    let header_end = if part.starts_with(b"\r\n") {
        0
    } else {
        part.windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(part.len(), |i| i + 2)
    };
    let content_start = (start + header_end + 2).min(end);
    Child {
        header: start..start + header_end,
        content: content_start..end,
    }
}

fn child_header(body: &[u8], c: &Child) -> PartHeader {
    read_part_header(&body[c.header.clone()])
}

/// The text and HTML variants of an alternative (the HTML one also inside a related).
fn place_in_alternative(
    edits: &mut Edits,
    body: &[u8],
    root: &PartHeader,
    footer: &FooterText<'_>,
) -> bool {
    let Some(boundary) = &root.boundary else {
        return false;
    };
    let (kids, _) = children(body, 0..body.len(), boundary);
    let mut text = None;
    let mut html = None;
    for kid in &kids {
        let h = child_header(body, kid);
        match h.kind() {
            ("text", "plain") if text.is_none() => text = Some((kid, h)),
            ("text", "html") => html = Some((kid.content.clone(), h)),
            ("multipart", "related") => {
                if let Some(found) = related_html(body, kid.content.clone(), &h) {
                    html = Some(found);
                }
            }
            _ => {}
        }
    }
    if text.is_none() && html.is_none() {
        return false;
    }
    if let Some((kid, h)) = text {
        let placed = match text_fit(&h, footer) {
            TextFit::Fits => append_text(edits, body, kid.content.clone(), &h, footer, true),
            TextFit::Relabel(fields) => {
                let header = replace_fields(&body[kid.header.clone()], &fields);
                edits.replace(
                    kid.header.start,
                    kid.header.end,
                    vec![Segment::Shared(header)],
                );
                append_text(edits, body, kid.content.clone(), &h, footer, true)
            }
            // the HTML variant has the footer as it is; this one has it in ASCII
            TextFit::No => append_text(edits, body, kid.content.clone(), &h, footer, false),
        };
        if !placed {
            return false;
        }
    }
    match html {
        Some((content, h)) => insert_html(edits, body, content, &h, footer),
        None => true,
    }
}

fn related_html(
    body: &[u8],
    range: std::ops::Range<usize>,
    related: &PartHeader,
) -> Option<(std::ops::Range<usize>, PartHeader)> {
    let (kids, _) = children(body, range, related.boundary.as_deref()?);
    kids.iter().find_map(|k| {
        let h = child_header(body, k);
        (h.kind() == ("text", "html")).then(|| (k.content.clone(), h))
    })
}

fn place_in_related(
    edits: &mut Edits,
    body: &[u8],
    root: &PartHeader,
    footer: &FooterText<'_>,
) -> bool {
    match related_html(body, 0..body.len(), root) {
        Some((content, h)) => insert_html(edits, body, content, &h, footer),
        None => false,
    }
}

/// The footer as a trailing `text/plain` part of a multipart/mixed.
fn append_part(edits: &mut Edits, body: &[u8], boundary: &str, footer: &FooterText<'_>) {
    let (_, close) = children(body, 0..body.len(), boundary);
    let (part, encoding) = footer_part_header(boundary, footer);
    let pieces = plain_pieces(footer, false);
    match close {
        Some(at) => edits.insert(
            at,
            vec![
                Segment::Shared(part),
                Segment::Slot(Slot { pieces, encoding }),
            ],
        ),
        // no closing delimiter: the footer part and one are added at the end
        None => {
            let end = body.len() - usize::from(body.ends_with(b"\r\n")) * 2;
            edits.insert(
                end,
                vec![
                    Segment::Shared(part),
                    Segment::Slot(Slot { pieces, encoding }),
                    Segment::Shared(format!("\r\n--{boundary}--").into_bytes()),
                ],
            );
        }
    }
}

/// The delimiter and header block of the footer's own part (CRLF before the
/// delimiter included).
fn footer_part_header(boundary: &str, footer: &FooterText<'_>) -> (Vec<u8>, SlotEncoding) {
    let (cte, encoding) = if footer.rendered.is_ascii() {
        ("7bit", SlotEncoding::AsIs)
    } else {
        (
            "quoted-printable",
            SlotEncoding::QuotedPrintable { soft_end: false },
        )
    };
    let header = format!(
        "\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: {cte}\r\nContent-Disposition: inline\r\n\r\n"
    );
    (header.into_bytes(), encoding)
}

/// The root header of a post wrapped with its footer: a multipart/mixed, and the
/// boundary chosen.
fn wrap_header(header: &[u8], body: &[u8]) -> (Vec<u8>, String) {
    let hash = header
        .iter()
        .chain(body)
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    let boundary = (0u64..)
        .map(|n| format!("listd-footer-{:016x}", hash.wrapping_add(n)))
        .find(|b| !body.windows(b.len()).any(|w| w == b.as_bytes()))
        .unwrap_or_default();
    let mut fields =
        format!("Content-Type: multipart/mixed;\r\n boundary=\"{boundary}\"\r\n").into_bytes();
    if !body.is_ascii() {
        // a multipart's encoding says whether any part holds 8-bit data (RFC 2045 §6.4)
        fields.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n");
    }
    let mut out = replace_fields(header, &fields);
    let has_mime_version = split_fields(header).iter().any(|f| {
        f.get(..13)
            .is_some_and(|n| n.eq_ignore_ascii_case(b"mime-version:"))
    });
    if !has_mime_version {
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }
    (out, boundary)
}

/// The body of a wrapped post: the original part (its own Content-* fields moved
/// into it), then the footer's.
fn wrap(edits: &mut Edits, header: &[u8], body: &[u8], boundary: &str, footer: &FooterText<'_>) {
    let mut first = format!("--{boundary}\r\n").into_bytes();
    let mut has_type = false;
    for field in split_fields(header) {
        if field
            .get(..8)
            .is_some_and(|n| n.eq_ignore_ascii_case(b"content-"))
        {
            has_type |= field
                .get(..13)
                .is_some_and(|n| n.eq_ignore_ascii_case(b"content-type:"));
            first.extend_from_slice(field);
        }
    }
    if !has_type {
        first.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n");
    }
    first.extend_from_slice(b"\r\n");
    edits.insert(0, vec![Segment::Shared(first)]);
    // the original keeps its last line end: the delimiter's CRLF comes after it
    let (part, encoding) = footer_part_header(boundary, footer);
    edits.insert(
        body.len(),
        vec![
            Segment::Shared(part),
            Segment::Slot(Slot {
                pieces: plain_pieces(footer, false),
                encoding,
            }),
            Segment::Shared(format!("\r\n--{boundary}--\r\n").into_bytes()),
        ],
    );
}

/// Base64 in lines of 76 characters, each ended by CRLF.
fn encode_base64(out: &mut Vec<u8>, data: &[u8]) {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut buf = [0u8; 76];
    for chunk in data.chunks(57) {
        let n = engine
            .encode_slice(chunk, &mut buf)
            .expect("57 octets fit 76 characters");
        out.extend_from_slice(&buf[..n]);
        out.extend_from_slice(b"\r\n");
    }
}

/// The octets of base64 text, or `None` when it is not plain base64 (padding in
/// the middle, say): such a part is left as it is.
fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let lenient = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let mut clean: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let data_end = clean.iter().position(|&b| b == b'=').unwrap_or(clean.len());
    if clean[data_end..].iter().any(|&b| b != b'=') {
        return None;
    }
    clean.truncate(data_end);
    lenient.decode(&clean).ok()
}

/// Quoted-printable (RFC 2045 §6.7): CRLF stays a line break, lines of at most 76
/// characters; `soft_end` ends an unfinished last line with a soft break.
fn encode_qp(out: &mut Vec<u8>, data: &[u8], soft_end: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut column = 0;
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if b == b'\r' && data.get(i + 1) == Some(&b'\n') {
            out.extend_from_slice(b"\r\n");
            column = 0;
            i += 2;
            continue;
        }
        // white space is literal unless it would end a line
        let ends_line = match data.get(i + 1) {
            None => !soft_end,
            Some(b'\r') => data.get(i + 2) == Some(&b'\n'),
            Some(_) => false,
        };
        let literal =
            ((b == b' ' || b == b'\t') && !ends_line) || ((b'!'..=b'~').contains(&b) && b != b'=');
        let width = if literal { 1 } else { 3 };
        if column + width > 75 {
            out.extend_from_slice(b"=\r\n");
            column = 0;
        }
        if literal {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
        column += width;
        i += 1;
    }
    if soft_end && column > 0 {
        out.extend_from_slice(b"=\r\n");
    }
}

fn decode_qp(text: &[u8]) -> Vec<u8> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'=' if text[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' => match (
                text.get(i + 1).copied().and_then(hex),
                text.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ListAddress;
    use crate::domain::footer::{FooterValues, Template};
    use crate::domain::headers::{ListHeaders, UnsubscribeTokens};
    use crate::mail::rewrite::{FromMode, Rewrite, prepare};
    use mail_parser::{Message, MessagePart, PartType};

    const TOKEN: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const LINK: &str =
        "https://lists.example.org/unsubscribe/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const SHAPES: &[&str] = &[
        "plain-ascii-7bit",
        "plain-utf8-qp",
        "plain-base64",
        "mixed-attachment",
        "gmail-alternative",
        "outlook-alternative-related",
        "apple-mail",
        "html-only",
    ];

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/posts/{name}.eml",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn rendered(name: &'static str) -> Rendered {
        Template::parse("")
            .unwrap()
            .render(&FooterValues::example(name, ""))
    }

    fn copy(raw: &[u8], footer: Option<&Rendered>, mode: FromMode) -> (Vec<u8>, Vec<u8>) {
        let list = ListAddress::parse("dev@lists.example.org").unwrap();
        let rw = Rewrite {
            headers: ListHeaders {
                list: &list,
                list_name: "Dev",
                list_url: "https://lists.example.org/lists/dev.lists.example.org",
                announce_only: false,
                archive_url: None,
            },
            subject_prefix: "[dev]",
            reply_to_list: false,
            from_mode: mode,
            archived_at: None,
            footer: footer.map(|rendered| FooterText {
                rendered,
                link_base: "https://lists.example.org/unsubscribe/",
            }),
        };
        let prepared = prepare(raw, &rw).unwrap();
        if let Some(layout) = prepared.layout() {
            assert_eq!(
                CopyLayout::from_bytes(&layout.to_bytes()).as_ref(),
                Some(layout)
            );
        }
        let tokens = UnsubscribeTokens {
            link: TOKEN,
            mailto: TOKEN,
        };
        (
            prepared.for_member("https://lists.example.org", tokens),
            prepared.body().to_vec(),
        )
    }

    fn parse(raw: &[u8]) -> Message<'_> {
        MessageParser::default().parse(raw).unwrap()
    }

    /// Every leaf part's content type and decoded content.
    fn leaves(msg: &Message<'_>) -> Vec<(String, Vec<u8>)> {
        msg.parts
            .iter()
            .filter_map(|p: &MessagePart<'_>| {
                let ct = p
                    .content_type()
                    .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
                    .unwrap_or_else(|| "text/plain".into())
                    .to_ascii_lowercase();
                match &p.body {
                    PartType::Text(t) | PartType::Html(t) => Some((ct, t.as_bytes().to_vec())),
                    PartType::Binary(b) | PartType::InlineBinary(b) => Some((ct, b.to_vec())),
                    PartType::Message(m) => Some((ct, m.raw_message().to_vec())),
                    PartType::Multipart(_) => None,
                }
            })
            .collect()
    }

    fn text_of(leaves: &[(String, Vec<u8>)], ct: &str) -> Option<String> {
        // the last: a mixed post's footer is a part of its own
        leaves
            .iter()
            .rfind(|(c, _)| c == ct)
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
    }

    fn lines_fit(raw: &[u8]) -> bool {
        raw.split(|&b| b == b'\n').all(|l| l.len() <= 999)
            && raw.iter().enumerate().all(|(i, &b)| match b {
                b'\n' => i > 0 && raw[i - 1] == b'\r',
                b'\r' => raw.get(i + 1) == Some(&b'\n'),
                _ => true,
            })
    }

    #[test]
    fn every_shape_shows_the_footer_and_keeps_its_parts() {
        for name in ["Dev", "Café des sciences"] {
            let footer = rendered(name);
            for shape in SHAPES {
                let raw = fixture(shape);
                let original = leaves(&parse(&raw));
                let (out, _) = copy(&raw, Some(&footer), FromMode::Keep);
                assert!(lines_fit(&out), "{shape}");
                let msg = parse(&out);
                let got = leaves(&msg);
                let plain = text_of(&got, "text/plain");
                let html = text_of(&got, "text/html");
                // the footer is the last text in each variant a client may show
                if let Some(plain) = &plain {
                    let at = plain
                        .find(LINK)
                        .unwrap_or_else(|| panic!("{shape}: {plain}"));
                    assert!(plain[..at].contains("-- \r\n"), "{shape}");
                    assert!(plain.contains("https://lists.example.org/me"), "{shape}");
                    assert!(plain.trim_end().ends_with("https://lists.example.org/me"));
                    if name != "Dev" && *shape != "outlook-alternative-related" {
                        assert!(plain.contains("Café des sciences"), "{shape}: {plain}");
                    }
                }
                if let Some(html) = &html {
                    assert!(
                        html.contains(&format!("<a href=\"{LINK}\">{LINK}</a>")),
                        "{shape}: {html}"
                    );
                    let footer_at = html.find("listd-footer").unwrap();
                    let lower = html.to_ascii_lowercase();
                    if let Some(body_end) = lower.rfind("</body") {
                        assert!(footer_at < body_end, "{shape}");
                    }
                    if name != "Dev" {
                        assert!(html.contains("Caf&#233; des sciences"), "{shape}");
                    }
                }
                assert!(plain.is_some() || html.is_some(), "{shape}");
                // the original parts are all there: text starts as it was, the rest whole
                for (ct, content) in &original {
                    let same = got.iter().any(|(c, b)| {
                        c == ct
                            && if ct.starts_with("text/") {
                                let (b, o) =
                                    (String::from_utf8_lossy(b), String::from_utf8_lossy(content));
                                let o = o.trim_end();
                                let b = b.replace("\r\n", "\n");
                                let o = o.replace("\r\n", "\n");
                                if ct == "text/html" {
                                    let cut =
                                        o.to_ascii_lowercase().rfind("</body").unwrap_or(o.len());
                                    b.starts_with(&o[..cut])
                                } else {
                                    b.starts_with(&o)
                                }
                            } else {
                                b == content
                            }
                    });
                    assert!(same, "{shape}: {ct} changed");
                }
                if *shape == "mixed-attachment" {
                    let parts: Vec<_> = got.iter().map(|(c, _)| c.as_str()).collect();
                    assert_eq!(parts, ["text/plain", "application/pdf", "text/plain"]);
                }
            }
        }
    }

    #[test]
    fn without_a_footer_the_body_is_relayed_byte_for_byte() {
        for shape in SHAPES {
            let raw = fixture(shape);
            let (out, body) = copy(&raw, None, FromMode::Keep);
            let start = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            assert_eq!(body, &raw[start..], "{shape}");
            assert!(out.ends_with(&raw[start..]));
        }
    }

    #[test]
    fn a_wrapped_post_gets_a_footer_part_after_the_original() {
        let footer = rendered("Dev");
        let raw = fixture("gmail-alternative");
        let (out, _) = copy(&raw, Some(&footer), FromMode::Wrap);
        let msg = parse(&out);
        let got = leaves(&msg);
        let last = got.last().unwrap();
        assert_eq!(last.0, "text/plain");
        assert!(String::from_utf8_lossy(&last.1).contains(LINK));
        assert!(got.iter().any(|(c, _)| c == "message/rfc822"));
        // the original travels whole
        assert!(out.windows(raw.len()).any(|w| w == &raw[..]));
    }

    #[test]
    fn signed_posts_are_wrapped_so_the_signature_stays_whole() {
        let footer = rendered("Café");
        let raw = b"From: anne@example.net\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/signed; protocol=\"application/pgp-signature\";\r\n boundary=\"sig\"\r\n\r\n\
            --sig\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n--sig\r\n\
            Content-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\n--sig--\r\n";
        let (out, _) = copy(raw, Some(&footer), FromMode::Keep);
        let msg = parse(&out);
        assert_eq!(msg.content_type().unwrap().subtype(), Some("mixed"));
        let body_start = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(
            out.windows(raw.len() - body_start)
                .any(|w| w == &raw[body_start..])
        );
        let got = leaves(&msg);
        let footer_text = String::from_utf8_lossy(&got.last().unwrap().1).into_owned();
        assert!(footer_text.contains(LINK) && footer_text.contains("Café"));
        // a plain text in another charset cannot take a non-ASCII footer either
        let latin = b"From: anne@example.net\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
            Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nCaf\xe9\r\n";
        let (out, _) = copy(latin, Some(&footer), FromMode::Keep);
        let got = leaves(&parse(&out));
        assert_eq!(got.len(), 2);
        assert_eq!(String::from_utf8_lossy(&got[0].1).trim_end(), "Café");
    }

    #[test]
    fn a_seven_bit_text_is_relabelled_for_a_non_ascii_footer() {
        let footer = rendered("Café");
        let (out, _) = copy(&fixture("plain-ascii-7bit"), Some(&footer), FromMode::Keep);
        let msg = parse(&out);
        let ct = msg.content_type().unwrap();
        assert_eq!(ct.attribute("charset"), Some("utf-8"));
        assert_eq!(ct.attribute("format"), Some("flowed"));
        assert_eq!(msg.content_transfer_encoding(), Some("8bit"));
        assert!(msg.body_text(0).unwrap().contains("Café"));
    }

    #[test]
    fn encoders_round_trip() {
        for data in [
            &b"plain line\r\nwith trailing space \r\nand = signs\r\n"[..],
            "Grüße, a long line ".repeat(20).as_bytes(),
            b"tab at end\t",
        ] {
            let mut qp = Vec::new();
            encode_qp(&mut qp, data, false);
            assert!(qp.split(|&b| b == b'\n').all(|l| l.len() <= 77), "{qp:?}");
            assert_eq!(decode_qp(&qp), data);
            let mut soft = Vec::new();
            encode_qp(&mut soft, data, true);
            soft.extend_from_slice(b"next");
            assert_eq!(decode_qp(&soft), [data, b"next"].concat());
            let mut b64 = Vec::new();
            encode_base64(&mut b64, data);
            assert_eq!(decode_base64(&b64).unwrap(), data);
        }
        assert_eq!(decode_base64(b"QQ==QQ=="), None);
    }
}
