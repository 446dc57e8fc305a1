//! Mail addresses and list names.
//!
//! `EmailAddress` is a parsed addr-spec: the domain is stored as a lower-case A-label,
//! the local part as written (compared case-insensitively through [`EmailAddress::key`]).
//! `ListAddress` is the stricter form a list's posting address must have, and `ListRef`
//! is what a user may type to name a list: its posting address or its list-id.

use std::fmt;

/// Longest address SMTP can carry (RFC 5321 §4.5.3.1.3, path minus the brackets).
pub const MAX_ADDRESS_LEN: usize = 254;
const MAX_LIST_LOCAL_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("an email address is required")]
    Empty,
    #[error("`{0}` is longer than 254 characters")]
    TooLong(String),
    #[error("`{0}` is not an email address")]
    Invalid(String),
    #[error("`{0}` has a domain that cannot be used")]
    BadDomain(String),
    #[error(
        "`{0}` cannot name a list: use lower-case letters, digits, `.`, `_` or `-` before the @ (no `+`)"
    )]
    BadListLocalPart(String),
    #[error("`{0}` is neither a list address (name@domain) nor a list-id (name.domain)")]
    BadListRef(String),
}

/// A syntactically valid mail address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    local: String,
    domain: String,
}

impl EmailAddress {
    /// Parses a bare addr-spec such as `Anne@Example.org` (no display name, no brackets).
    /// The local part may have at most 64 octets (RFC 5321 §4.5.3.1.1).
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        Self::parse_with(input, false)
    }

    /// [`EmailAddress::parse`] for a recipient of mail to listd itself: a local part may
    /// pass 64 octets (RFC 5321 §4.5.3.1 lets a server take longer ones), since the
    /// addresses of lists with long names that listd writes (`L+bounces+TOKEN@D`, …)
    /// must come back to it.
    pub fn parse_recipient(input: &str) -> Result<Self, AddressError> {
        Self::parse_with(input, true)
    }

    fn parse_with(input: &str, allow_long_local_parts: bool) -> Result<Self, AddressError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if s.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong(shorten(s)));
        }
        // U+FFFD is what bytes that were not UTF-8 became when decoded (a web form's
        // `%ff%fe`): no mailbox has it, so it is refused like any invalid character
        if s.chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>' || c == '\u{fffd}')
        {
            return Err(AddressError::Invalid(shorten(s)));
        }
        let (local, domain) = s
            .rsplit_once('@')
            .ok_or_else(|| AddressError::Invalid(s.into()))?;
        if local.is_empty() || domain.is_empty() {
            return Err(AddressError::Invalid(s.into()));
        }
        let domain = idna::domain_to_ascii(domain.trim_end_matches('.'))
            .map_err(|_| AddressError::BadDomain(s.into()))?;
        let candidate = format!("{local}@{domain}");
        let options = email_address::Options {
            minimum_sub_domains: 2,
            allow_domain_literal: false,
            allow_display_text: false,
            allow_long_local_parts,
        };
        email_address::EmailAddress::parse_with_options(&candidate, options)
            .map_err(|_| AddressError::Invalid(s.into()))?;
        if candidate.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong(shorten(s)));
        }
        Ok(EmailAddress {
            local: local.to_string(),
            domain,
        })
    }

    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain as a lower-case A-label.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The comparison key: `Anne@Example.org` and `anne@example.org` are one person.
    pub fn key(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl std::str::FromStr for EmailAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A list's posting address, e.g. `dev@lists.example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListAddress {
    local: String,
    domain: String,
}

impl ListAddress {
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let address = EmailAddress::parse(input)?;
        let local = address.local_part().to_ascii_lowercase();
        let valid = !local.is_empty()
            && local.len() <= MAX_LIST_LOCAL_LEN
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && local.starts_with(|c: char| c.is_ascii_alphanumeric())
            && local.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            return Err(AddressError::BadListLocalPart(input.trim().to_string()));
        }
        Ok(ListAddress {
            local,
            domain: address.domain().to_string(),
        })
    }

    /// Rebuilds an address read back from the store, where it was validated on the way in.
    pub fn from_parts(local: &str, domain: &str) -> Self {
        ListAddress {
            local: local.to_string(),
            domain: domain.to_string(),
        }
    }

    pub fn local_part(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The RFC 2919 list identifier: `dev.lists.example.org`.
    pub fn list_id(&self) -> String {
        format!("{}.{}", self.local, self.domain)
    }

    /// `local+suffix@domain`, the address of one of the list's commands.
    pub fn with_suffix(&self, suffix: &str) -> String {
        format!("{}+{}@{}", self.local, suffix, self.domain)
    }
}

impl fmt::Display for ListAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// How a user names a list on the command line or in a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListRef {
    Address(ListAddress),
    ListId(String),
}

impl ListRef {
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let s = input.trim();
        if s.contains('@') {
            return ListAddress::parse(s).map(ListRef::Address);
        }
        let id = s.trim_end_matches('.').to_ascii_lowercase();
        let valid = id.contains('.')
            && id.len() <= 255
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && !id.starts_with('.')
            && !id.contains("..");
        if valid {
            Ok(ListRef::ListId(id))
        } else {
            Err(AddressError::BadListRef(shorten(s)))
        }
    }

    /// The list-id this reference names.
    pub fn list_id(&self) -> String {
        match self {
            ListRef::Address(a) => a.list_id(),
            ListRef::ListId(id) => id.clone(),
        }
    }
}

impl fmt::Display for ListRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListRef::Address(a) => a.fmt(f),
            ListRef::ListId(id) => f.write_str(id),
        }
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addresses_differing_in_case_share_a_key() {
        let a = EmailAddress::parse("Anne@Example.ORG").unwrap();
        let b = EmailAddress::parse("anne@example.org").unwrap();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.to_string(), "Anne@example.org");
    }

    #[test]
    fn text_that_was_not_utf8_is_no_address() {
        let decoded = String::from_utf8_lossy(b"\xff\xfe@example.net");
        assert!(matches!(
            EmailAddress::parse(&decoded),
            Err(AddressError::Invalid(_))
        ));
    }

    #[test]
    fn internationalised_domains_become_a_labels() {
        let a = EmailAddress::parse("jürgen@bücher.example").unwrap();
        assert_eq!(a.domain(), "xn--bcher-kva.example");
        assert_eq!(a.local_part(), "jürgen");
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "anne",
            "anne@",
            "@example.org",
            "anne@localhost",
            "Anne <anne@example.org>",
            "a b@example.org",
            "anne@exa mple.org",
            "anne@@example.org",
            "anne@example.org\r\nBcc: x@y.z",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert!(matches!(
            EmailAddress::parse(&long),
            Err(AddressError::TooLong(_)) | Err(AddressError::Invalid(_))
        ));
    }

    #[test]
    fn list_addresses_are_lower_case_and_have_no_plus() {
        let l = ListAddress::parse("Dev@Lists.Example.org").unwrap();
        assert_eq!(l.to_string(), "dev@lists.example.org");
        assert_eq!(l.list_id(), "dev.lists.example.org");
        assert_eq!(
            l.with_suffix("subscribe"),
            "dev+subscribe@lists.example.org"
        );
        assert!(ListAddress::parse("dev+x@lists.example.org").is_err());
        assert!(ListAddress::parse("-dev@lists.example.org").is_err());
        assert!(ListAddress::parse("dev-join@lists.example.org").is_ok());
    }

    #[test]
    fn a_list_is_named_by_address_or_list_id() {
        assert_eq!(
            ListRef::parse("dev@lists.example.org").unwrap().list_id(),
            "dev.lists.example.org"
        );
        assert_eq!(
            ListRef::parse("Dev.Lists.example.org").unwrap().list_id(),
            "dev.lists.example.org"
        );
        assert!(ListRef::parse("dev").is_err());
        assert!(ListRef::parse("dev lists").is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(s in "\\PC{0,80}") {
            if let Ok(a) = EmailAddress::parse(&s) {
                let again = EmailAddress::parse(&a.to_string()).unwrap();
                prop_assert_eq!(again.key(), a.key());
            }
        }
    }
}
