//! Signed-in people: the session id kept in the browser's cookie and the CSRF rule
//! (docs/standards.md#52, #53).
//!
//! A session id is 256 random bits; the database keeps only its SHA-256, so a copy of
//! the database signs nobody in. The CSRF token of a session is an HMAC over that hash
//! with the instance secret: nothing to store, different for every session, and
//! worthless once the session ends.

use super::token::{SecretKey, TokenHash};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::fmt;

/// How long a session lasts after sign-in.
pub const SESSION_DAYS: i64 = 30;
/// How long a sign-in link works.
pub const SIGNIN_MINUTES: i64 = 15;

/// The secret in a session cookie.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the operating system's random source is available");
        SessionId(URL_SAFE_NO_PAD.encode(b))
    }

    /// Accepts a cookie value of the right shape; anything else is no session.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 43
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| SessionId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(…)")
    }
}

/// Where a person was going when they were asked to sign in: a path on this site
/// (with its query), to return to after the sign-in link. Only a local path is taken:
/// it starts with one `/` (not `//` or `/\`, which browsers read as another host),
/// and holds printable ASCII without spaces or backslashes; anything else is no path,
/// so a link cannot send a person to another site after signing in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnPath(String);

/// The longest path kept (a console page with its search is far shorter).
const RETURN_PATH_MAX: usize = 1024;

impl ReturnPath {
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        (b.first() == Some(&b'/')
            && !matches!(b.get(1), Some(b'/' | b'\\'))
            && b.len() <= RETURN_PATH_MAX
            && b.iter().all(|c| c.is_ascii_graphic() && *c != b'\\'))
        .then(|| ReturnPath(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The CSRF token of a session: the value of every form's hidden `csrf` field.
pub fn csrf_token(secret: &SecretKey, session: &TokenHash) -> String {
    URL_SAFE_NO_PAD.encode(secret.sign("csrf", &[&session.0]))
}

/// Whether a submitted `csrf` field belongs to the session (in constant time).
pub fn csrf_matches(secret: &SecretKey, session: &TokenHash, submitted: &str) -> bool {
    let expected = csrf_token(secret, session);
    expected.len() == submitted.len()
        && expected
            .bytes()
            .zip(submitted.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretKey {
        SecretKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([b; 32])).unwrap()
    }

    #[test]
    fn session_ids_are_random_and_parse_back() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(SessionId::parse("short"), None);
        assert_eq!(SessionId::parse(&format!("{}!", &a.as_str()[..42])), None);
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn a_return_path_is_a_local_path_only() {
        for ok in [
            "/admin/lists/a.example.org/held",
            "/me",
            "/",
            "/admin/lists/a.example.org/members?q=ann&status=all",
        ] {
            assert_eq!(
                ReturnPath::parse(ok).map(|p| p.0),
                Some(ok.to_string()),
                "{ok}"
            );
        }
        for bad in [
            "",
            "me",
            "//evil.example",
            "//evil.example/admin",
            "/\\evil",
            "/\\/evil",
            "https://evil.example",
            "http:/evil.example",
            "javascript:alert(1)",
            "/a\\b",
            "/a b",
            "/a\tb",
            "/a\nb",
            "/caf\u{e9}",
            " /me",
        ] {
            assert_eq!(ReturnPath::parse(bad), None, "{bad:?}");
        }
        assert!(ReturnPath::parse(&format!("/{}", "a".repeat(RETURN_PATH_MAX))).is_none());
    }

    #[test]
    fn a_csrf_token_belongs_to_one_session_and_one_key() {
        let (s1, s2) = (SessionId::generate().hash(), SessionId::generate().hash());
        let t = csrf_token(&key(1), &s1);
        assert!(csrf_matches(&key(1), &s1, &t));
        assert!(!csrf_matches(&key(1), &s2, &t));
        assert!(!csrf_matches(&key(2), &s1, &t));
        assert!(!csrf_matches(&key(1), &s1, ""));
        assert!(!csrf_matches(&key(1), &s1, &t[1..]));
    }
}
