//! Tokens put into links and addresses.
//!
//! * [`ConfirmToken`]: 256 random bits for a pending request. Only its SHA-256 is
//!   stored, so a leaked database cannot confirm anything; single use and expiring.
//! * [`UnsubscribeToken`]: a member's id and an HMAC over it and the start of the
//!   membership, signed with the instance's secret key. It needs no storage and keeps
//!   working for as long as that membership lasts.
//! * [`VerpToken`]: a member's id and a short HMAC, in lower-case base32, for the
//!   envelope sender `L+bounces+TOKEN@D` of the copies sent to that member, so a
//!   bounce names its member even when its report does not (STANDARDS 9, 34).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use uuid::Uuid;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Shortest secret key accepted (bytes).
pub const MIN_SECRET_LEN: usize = 32;
const MAC_LEN: usize = 16;

/// The instance's signing key. Never printed.
#[derive(Clone)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    /// Decodes a base64 key (standard or URL-safe alphabet) of at least 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| "is not valid base64".to_string())?;
        if bytes.len() < MIN_SECRET_LEN {
            return Err(format!(
                "must decode to at least {MIN_SECRET_LEN} bytes, not {}",
                bytes.len()
            ));
        }
        Ok(SecretKey(bytes))
    }

    /// A new random key, base64-encoded, for writing to the data directory.
    pub fn generate_base64() -> String {
        base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>())
    }

    fn mac(&self, purpose: &str, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes keys of any length");
        mac.update(purpose.as_bytes());
        for p in parts {
            mac.update(&(p.len() as u32).to_be_bytes());
            mac.update(p);
        }
        mac
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's random source is available");
    b
}

/// SHA-256 of a confirmation token: what the database keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

/// A confirmation token as mailed to the requester.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfirmToken(String);

impl ConfirmToken {
    pub fn generate() -> Self {
        ConfirmToken(URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
    }

    /// Accepts what came back in a URL or an address; anything that cannot be one of
    /// ours is refused before touching the database.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        (t.len() == 43
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| ConfirmToken(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for ConfirmToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConfirmToken(…)")
    }
}

/// A member's unsubscribe token: `base64url(member id ‖ HMAC(id, membership start)[..16])`.
#[derive(Clone, PartialEq, Eq)]
pub struct UnsubscribeToken(String);

impl UnsubscribeToken {
    /// Signs a token for the membership that began at `since` (a timestamp in µs).
    pub fn sign(key: &SecretKey, member_id: Uuid, since: i128) -> Self {
        let tag = key
            .mac("unsubscribe", &[member_id.as_bytes(), &since.to_be_bytes()])
            .finalize()
            .into_bytes();
        let mut raw = Vec::with_capacity(16 + MAC_LEN);
        raw.extend_from_slice(member_id.as_bytes());
        raw.extend_from_slice(&tag[..MAC_LEN]);
        UnsubscribeToken(URL_SAFE_NO_PAD.encode(raw))
    }

    /// Signs the token of a membership that began at `since`.
    pub fn for_membership(key: &SecretKey, member_id: Uuid, since: time::OffsetDateTime) -> Self {
        Self::sign(key, member_id, since.unix_timestamp_nanos() / 1000)
    }

    /// The member id the token claims, before its signature is checked.
    pub fn claimed_member(text: &str) -> Option<Uuid> {
        let raw = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        (raw.len() == 16 + MAC_LEN)
            .then(|| Uuid::from_slice(&raw[..16]).ok())
            .flatten()
    }

    /// Checks the signature in constant time against the membership that began at `since`.
    pub fn verify(key: &SecretKey, text: &str, member_id: Uuid, since: i128) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(text.trim()) else {
            return false;
        };
        if raw.len() != 16 + MAC_LEN || raw[..16] != *member_id.as_bytes() {
            return false;
        }
        key.mac("unsubscribe", &[member_id.as_bytes(), &since.to_be_bytes()])
            .verify_truncated_left(&raw[16..])
            .is_ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UnsubscribeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnsubscribeToken(…)")
    }
}

/// The VERP part of a member's envelope sender: `base32(member id ‖ HMAC(id)[..5])`,
/// 34 lower-case characters. Base32 because mail systems may change the case of
/// local parts; 40 bits of MAC because forging one needs a guess per bounce sent.
#[derive(Clone, PartialEq, Eq)]
pub struct VerpToken(String);

const VERP_MAC_LEN: usize = 5;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

impl VerpToken {
    pub fn sign(key: &SecretKey, member_id: Uuid) -> Self {
        let tag = key
            .mac("verp", &[member_id.as_bytes()])
            .finalize()
            .into_bytes();
        let mut raw = [0u8; 16 + VERP_MAC_LEN];
        raw[..16].copy_from_slice(member_id.as_bytes());
        raw[16..].copy_from_slice(&tag[..VERP_MAC_LEN]);
        VerpToken(base32_encode(&raw))
    }

    /// The member a token names, when its signature holds (constant-time check).
    pub fn verify(key: &SecretKey, text: &str) -> Option<Uuid> {
        let raw = base32_decode(text.trim())?;
        if raw.len() != 16 + VERP_MAC_LEN {
            return None;
        }
        let member_id = Uuid::from_slice(&raw[..16]).ok()?;
        key.mac("verp", &[member_id.as_bytes()])
            .verify_truncated_left(&raw[16..])
            .ok()
            .map(|()| member_id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for VerpToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerpToken(…)")
    }
}

/// RFC 4648 base32 in lower case, without padding.
fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes [`base32_encode`]'s output, in either case; `None` for anything else.
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = BASE32.iter().position(|&a| a == c.to_ascii_lowercase())? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // leftover bits must be the zero padding of the last character
    (bits < 5 && acc & ((1 << bits) - 1) == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_base64(&SecretKey::generate_base64()).unwrap()
    }

    #[test]
    fn confirm_tokens_are_long_random_and_url_safe() {
        let a = ConfirmToken::generate();
        let b = ConfirmToken::generate();
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(a.as_str().len(), 43); // 256 bits
        assert!(ConfirmToken::parse(a.as_str()).is_some());
        assert!(ConfirmToken::parse("short").is_none());
        assert!(ConfirmToken::parse(&format!("{}/", &a.as_str()[..42])).is_none());
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn unsubscribe_tokens_verify_only_for_their_membership() {
        let k = key();
        let id = Uuid::new_v4();
        let t = UnsubscribeToken::sign(&k, id, 1000);
        assert_eq!(UnsubscribeToken::claimed_member(t.as_str()), Some(id));
        assert!(UnsubscribeToken::verify(&k, t.as_str(), id, 1000));
        assert!(
            !UnsubscribeToken::verify(&k, t.as_str(), id, 1001),
            "a later membership needs a new token"
        );
        assert!(
            !UnsubscribeToken::verify(&key(), t.as_str(), id, 1000),
            "another key"
        );
        let mut tampered = t.as_str().to_string();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(!UnsubscribeToken::verify(&k, &tampered, id, 1000));
    }

    #[test]
    fn short_secret_keys_are_refused() {
        assert!(SecretKey::from_base64("c2hvcnQ=").is_err());
        assert!(SecretKey::from_base64("not base64!").is_err());
    }

    #[test]
    fn verp_tokens_name_their_member_in_any_case() {
        let k = key();
        let id = Uuid::new_v4();
        let t = VerpToken::sign(&k, id);
        assert_eq!(t.as_str().len(), 34);
        assert!(
            t.as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_eq!(VerpToken::verify(&k, t.as_str()), Some(id));
        assert_eq!(VerpToken::verify(&k, &t.as_str().to_uppercase()), Some(id));
        assert_eq!(VerpToken::verify(&key(), t.as_str()), None, "another key");
        let mut tampered = t.as_str().to_string();
        let first = tampered.remove(0);
        tampered.insert(0, if first == 'a' { 'b' } else { 'a' });
        assert_eq!(VerpToken::verify(&k, &tampered), None);
        assert_eq!(VerpToken::verify(&k, ""), None);
        assert_eq!(VerpToken::verify(&k, "not-base32!"), None);
    }

    proptest::proptest! {
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let text = base32_encode(&bytes);
            proptest::prop_assert_eq!(base32_decode(&text), Some(bytes));
        }

        #[test]
        fn base32_decoding_never_panics(text in ".{0,64}") {
            let _ = base32_decode(&text);
        }
    }
}
