//! The footer added to every copy of a post (docs/standards.md#19): its template, the
//! placeholders a list owner may use in it, and its rendering.
//!
//! A template is text with `{placeholder}` names (`{{` and `}}` stand for literal
//! braces). Everything but the member's unsubscribe link is the same in every copy, so
//! a template renders once per post into [`Rendered`]: literal text and the places
//! where each member's link goes. The MIME work (which part, which encoding) is
//! `mail::footer`'s; this module is text only.

/// The template used when a list sets none.
pub const DEFAULT_TEMPLATE: &str = "You are subscribed to {list_name} <{list_address}>.\n\
    Leave the list: {unsubscribe_url}\n\
    List page: {list_url}\n\
    Your subscriptions: {me_url}";

/// Longest template accepted.
pub const MAX_TEMPLATE_LEN: usize = 2000;

/// The placeholders a template may use, with what they stand for.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("list_name", "the list's name"),
    ("list_description", "the list's description"),
    ("list_address", "the posting address"),
    ("list_id", "the list-id"),
    ("list_url", "the list's web page"),
    ("owner_address", "the list owners' address"),
    ("subscribe_address", "the address that subscribes by mail"),
    ("unsubscribe_url", "the member's own unsubscribe link"),
    ("me_url", "the page where people manage their subscriptions"),
];

/// The placeholder that is different in every member's copy.
pub const MEMBER_LINK: &str = "unsubscribe_url";

/// A template that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {{{0}}}; placeholders are {list}", list = placeholder_names())]
    UnknownPlaceholder(String),
    #[error("a `{{` is not closed; write `{{{{` for a brace")]
    Unclosed,
    #[error("a `}}` closes nothing; write `}}}}` for a brace")]
    Unopened,
    #[error(
        "the footer must contain {{unsubscribe_url}}: it is every member's visible way to leave"
    )]
    NoUnsubscribeLink,
    #[error("longer than {MAX_TEMPLATE_LEN} characters")]
    TooLong,
}

fn placeholder_names() -> String {
    PLACEHOLDERS
        .iter()
        .map(|(n, _)| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Placeholder(&'static str),
}

/// A template checked once: every placeholder known, the member's link present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

impl Template {
    /// Parses and checks a template; an empty one (after trimming) is the default.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let text = text.trim();
        if text.is_empty() {
            return Template::parse(DEFAULT_TEMPLATE);
        }
        if text.chars().count() > MAX_TEMPLATE_LEN {
            return Err(TemplateError::TooLong);
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::Unopened),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) if name.len() <= 40 => name.push(c),
                            _ => return Err(TemplateError::Unclosed),
                        }
                    }
                    let known = PLACEHOLDERS
                        .iter()
                        .find(|(n, _)| *n == name.trim())
                        .ok_or(TemplateError::UnknownPlaceholder(name))?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Placeholder(known.0));
                }
                // line ends are normalised; other controls could end a line early
                '\r' => {}
                c if c.is_control() && c != '\n' && c != '\t' => literal.push(' '),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        if !pieces.contains(&Piece::Placeholder(MEMBER_LINK)) {
            return Err(TemplateError::NoUnsubscribeLink);
        }
        Ok(Template(pieces))
    }

    /// Renders everything but the member's link, with `values` giving each
    /// placeholder's text. The text is one line per template line, ended by `\n`
    /// nowhere: the caller decides line ends.
    pub fn render(&self, values: &FooterValues<'_>) -> Rendered {
        let mut out = Rendered::default();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_text(t),
                Piece::Placeholder(MEMBER_LINK) => out.pieces.push(Rendered::LINK),
                Piece::Placeholder(name) => {
                    let (text, url) = values.get(name);
                    if url {
                        out.pieces.push(RenderedPiece::Url(one_line(text)));
                    } else {
                        out.push_text(&one_line(text));
                    }
                }
            }
        }
        out
    }
}

/// What the placeholders stand for in one list's footer.
#[derive(Debug, Clone, Copy)]
pub struct FooterValues<'a> {
    pub list_name: &'a str,
    pub list_description: &'a str,
    pub list_address: &'a str,
    pub list_id: &'a str,
    pub list_url: &'a str,
    pub owner_address: &'a str,
    pub subscribe_address: &'a str,
    pub me_url: &'a str,
}

#[cfg(test)]
impl FooterValues<'static> {
    /// The values of a list at dev@lists.example.org, for tests.
    pub(crate) fn example(list_name: &'static str, list_description: &'static str) -> Self {
        FooterValues {
            list_name,
            list_description,
            list_address: "dev@lists.example.org",
            list_id: "dev.lists.example.org",
            list_url: "https://lists.example.org/lists/dev.lists.example.org",
            owner_address: "dev+owner@lists.example.org",
            subscribe_address: "dev+subscribe@lists.example.org",
            me_url: "https://lists.example.org/me",
        }
    }
}

impl FooterValues<'_> {
    /// A placeholder's text and whether it is a link.
    fn get(&self, name: &str) -> (&str, bool) {
        match name {
            "list_name" => (self.list_name, false),
            "list_description" => (self.list_description, false),
            "list_address" => (self.list_address, false),
            "list_id" => (self.list_id, false),
            "list_url" => (self.list_url, true),
            "owner_address" => (self.owner_address, false),
            "subscribe_address" => (self.subscribe_address, false),
            "me_url" => (self.me_url, true),
            _ => ("", false),
        }
    }
}

/// A footer rendered for one post: the same for every member but for
/// [`RenderedPiece::MemberLink`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub pieces: Vec<RenderedPiece>,
}

/// A piece of a rendered footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderedPiece {
    /// Plain text; `\n` ends a line.
    Text(String),
    /// A link shared by every copy (shown as a link in HTML).
    Url(String),
    /// The member's own unsubscribe link.
    MemberLink,
}

impl Rendered {
    const LINK: RenderedPiece = RenderedPiece::MemberLink;

    fn push_text(&mut self, t: &str) {
        if let Some(RenderedPiece::Text(last)) = self.pieces.last_mut() {
            last.push_str(t);
        } else {
            self.pieces.push(RenderedPiece::Text(t.to_string()));
        }
    }

    /// Whether every piece is ASCII (the member's link always is).
    pub fn is_ascii(&self) -> bool {
        self.pieces.iter().all(|p| match p {
            RenderedPiece::Text(t) | RenderedPiece::Url(t) => t.is_ascii(),
            RenderedPiece::MemberLink => true,
        })
    }
}

/// A value on one line: a description spanning lines would break the template's own.
fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> FooterValues<'static> {
        FooterValues::example("Dev", "Talk\nabout dev")
    }

    #[test]
    fn the_default_template_has_the_link_and_the_pages() {
        let t = Template::parse("").unwrap();
        let r = t.render(&values());
        assert!(r.pieces.contains(&RenderedPiece::MemberLink));
        assert!(
            r.pieces
                .contains(&RenderedPiece::Url("https://lists.example.org/me".into()))
        );
        assert!(r.is_ascii());
    }

    #[test]
    fn templates_are_checked() {
        assert_eq!(
            Template::parse("Leave: {unsubscribe}"),
            Err(TemplateError::UnknownPlaceholder("unsubscribe".into()))
        );
        assert_eq!(
            Template::parse("no link here"),
            Err(TemplateError::NoUnsubscribeLink)
        );
        assert_eq!(
            Template::parse("{unsubscribe_url"),
            Err(TemplateError::Unclosed)
        );
        assert_eq!(
            Template::parse("a } {unsubscribe_url}"),
            Err(TemplateError::Unopened)
        );
        let t = Template::parse("{{braces}} {list_description}: {unsubscribe_url}").unwrap();
        let r = t.render(&values());
        assert_eq!(
            r.pieces,
            vec![
                RenderedPiece::Text("{braces} Talk about dev: ".into()),
                RenderedPiece::MemberLink,
            ]
        );
        assert!(Template::parse(&"x".repeat(MAX_TEMPLATE_LEN + 1)).is_err());
    }
}
