//! Tokens put into links and addresses.
//!
//! * [`ConfirmToken`]: random bits for a pending request, in two forms: 256 bits for
//!   the link, and 100 bits in lower-case base32 for the `L+confirm+TOKEN@D` reply
//!   address. Only their SHA-256 is stored, so a leaked database cannot confirm
//!   anything; single use and expiring.
//! * [`UnsubscribeToken`]: a member's id and an HMAC over it and the start of the
//!   membership, signed with the instance's secret key: the token of the https
//!   unsubscribe link. It needs no storage and keeps working for as long as that
//!   membership lasts.
//! * [`MailtoToken`]: the token of the `L+unsubscribe+TOKEN@D` address, 98 random bits
//!   kept with the membership, in 19 lower-case letters and digits.
//! * [`ModerateToken`]: 100 random bits in lower-case base32, for the
//!   `L+moderate+TOKEN@D` Reply-To of a held post's notice; stored hashed with the post.
//! * [`VerpToken`]: a member's short id and a 40-bit HMAC, in lower-case base32, for
//!   the envelope sender `L+bounces+TOKEN@D` of the copies sent to that member, so a
//!   bounce names its member even when its report does not.
//!
//! Addresses must fit (docs/standards.md#addresses): RFC 5321 §4.5.3.1.1 allows 64
//! octets in a local part, and for a list name of up to 32 octets every address listd
//! writes stays within it. Mail systems may change the case of local parts, so every
//! token that travels in an address is lower-case and read in any case. The formats
//! of earlier versions (43-character base64url tokens, 34-character VERP tokens) are
//! still read, so that mail already sent keeps working.

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
#[derive(Clone, PartialEq, Eq)]
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

    /// The key, base64-encoded (for keeping it in the database).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }

    /// A new random key, base64-encoded.
    pub fn generate_base64() -> String {
        base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>())
    }

    /// An HMAC-SHA-256 tag over `parts` for one purpose (for secrets kept nowhere, such
    /// as the CSRF token of a session).
    pub fn sign(&self, purpose: &str, parts: &[&[u8]]) -> [u8; 32] {
        self.mac(purpose, parts).finalize().into_bytes().into()
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

/// Characters of a short confirmation token: 20 × 5 = 100 random bits.
pub const SHORT_TOKEN_LEN: usize = 20;

impl ConfirmToken {
    /// A token for a link: 256 random bits, base64url.
    pub fn generate() -> Self {
        ConfirmToken(URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
    }

    /// A token for an address (`L+confirm+TOKEN@D`): 100 random bits in lower-case
    /// base32, which survives mail systems that change the case of local parts.
    pub fn generate_short() -> Self {
        let mut text = base32_encode(&random_bytes::<13>());
        text.truncate(SHORT_TOKEN_LEN);
        ConfirmToken(text)
    }

    /// Accepts what came back in a URL or an address, in either form (a short token in
    /// any case); anything that cannot be one of ours is refused before touching the
    /// database.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        if t.len() == 43
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Some(ConfirmToken(t.to_string()));
        }
        let lower = t.to_ascii_lowercase();
        (lower.len() == SHORT_TOKEN_LEN && lower.bytes().all(|b| BASE32.contains(&b)))
            .then_some(ConfirmToken(lower))
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

/// The token of a held post's `L+moderate+TOKEN@D` address: 100 random bits in 20
/// lower-case base32 characters (`+moderate+` and 20 characters leave a 32-octet list
/// name at 62 octets), stored only as its SHA-256 with the post.
#[derive(Clone, PartialEq, Eq)]
pub struct ModerateToken(String);

impl ModerateToken {
    pub fn generate() -> Self {
        ModerateToken(ConfirmToken::generate_short().0)
    }

    /// Reads a token in any case; `None` for anything that cannot be one.
    pub fn parse(text: &str) -> Option<Self> {
        let lower = text.trim().to_ascii_lowercase();
        (lower.len() == SHORT_TOKEN_LEN && lower.bytes().all(|b| BASE32.contains(&b)))
            .then_some(ModerateToken(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for ModerateToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ModerateToken(…)")
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

/// The token of a member's personal Atom feed of a members-only archive
/// (docs/contract.md#archive): `base64url(member id ‖ HMAC(id, membership start)[..16])`
/// under a purpose of its own, so it opens the feed and nothing else, and stops working
/// when the membership ends.
#[derive(Clone, PartialEq, Eq)]
pub struct FeedToken(String);

impl FeedToken {
    /// Signs the token of a membership that began at `since`.
    pub fn for_membership(key: &SecretKey, member_id: Uuid, since: time::OffsetDateTime) -> Self {
        let since = since.unix_timestamp_nanos() / 1000;
        let tag = key
            .mac("feed", &[member_id.as_bytes(), &since.to_be_bytes()])
            .finalize()
            .into_bytes();
        let mut raw = Vec::with_capacity(16 + MAC_LEN);
        raw.extend_from_slice(member_id.as_bytes());
        raw.extend_from_slice(&tag[..MAC_LEN]);
        FeedToken(URL_SAFE_NO_PAD.encode(raw))
    }

    /// The member id the token claims, before its signature is checked.
    pub fn claimed_member(text: &str) -> Option<Uuid> {
        UnsubscribeToken::claimed_member(text)
    }

    /// Checks the signature in constant time against the membership that began at `since`.
    pub fn verify(
        key: &SecretKey,
        text: &str,
        member_id: Uuid,
        since: time::OffsetDateTime,
    ) -> bool {
        let since = since.unix_timestamp_nanos() / 1000;
        let Ok(raw) = URL_SAFE_NO_PAD.decode(text.trim()) else {
            return false;
        };
        if raw.len() != 16 + MAC_LEN || raw[..16] != *member_id.as_bytes() {
            return false;
        }
        key.mac("feed", &[member_id.as_bytes(), &since.to_be_bytes()])
            .verify_truncated_left(&raw[16..])
            .is_ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for FeedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FeedToken(…)")
    }
}

/// The token of a member's `L+unsubscribe+TOKEN@D` address: the membership's random
/// unsubscribe key (98 bits, kept with the member and renewed with each membership),
/// written as 19 lower-case letters and digits. 19 characters is what a 32-octet list
/// name leaves of a 64-octet local part after `+unsubscribe+`; base 36 fits 98 bits
/// there where base 32 would fit 95.
#[derive(Clone, PartialEq, Eq)]
pub struct MailtoToken(String);

/// Bytes of a stored unsubscribe key: 98 bits, the first byte's top six always zero.
pub const UNSUBSCRIBE_KEY_LEN: usize = 13;
const MAILTO_TOKEN_LEN: usize = 19;
const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

impl MailtoToken {
    /// The token for a stored key; `None` for anything that is not one.
    pub fn from_key(key: &[u8]) -> Option<Self> {
        let value = key_value(key)?;
        let mut digits = [b'0'; MAILTO_TOKEN_LEN];
        let mut v = value;
        for d in digits.iter_mut().rev() {
            *d = BASE36[(v % 36) as usize];
            v /= 36;
        }
        Some(MailtoToken(String::from_utf8_lossy(&digits).into_owned()))
    }

    /// The stored key a token names (in any case); `None` for anything else.
    pub fn parse_key(text: &str) -> Option<Vec<u8>> {
        let t = text.trim();
        if t.len() != MAILTO_TOKEN_LEN {
            return None;
        }
        let mut value: u128 = 0;
        for c in t.bytes() {
            let d = BASE36.iter().position(|&a| a == c.to_ascii_lowercase())? as u128;
            value = value * 36 + d;
        }
        (value >> 98 == 0).then(|| value.to_be_bytes()[16 - UNSUBSCRIBE_KEY_LEN..].to_vec())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored key as a number below 2^98.
fn key_value(key: &[u8]) -> Option<u128> {
    if key.len() != UNSUBSCRIBE_KEY_LEN {
        return None;
    }
    let mut b = [0u8; 16];
    b[16 - UNSUBSCRIBE_KEY_LEN..].copy_from_slice(key);
    let value = u128::from_be_bytes(b);
    (value >> 98 == 0).then_some(value)
}

impl fmt::Debug for MailtoToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MailtoToken(…)")
    }
}

/// The VERP part of an envelope sender: a kind (`m` for a member's copy of a post, `o`
/// for any other message to one person, named by its queue row), a number in base 32,
/// and 8 characters of HMAC (40 bits), all lower case: at most 22 characters, what a
/// 32-octet list name leaves after `+bounces+`. 40 bits of MAC because forging one
/// needs a guess per bounce sent.
#[derive(Clone, PartialEq, Eq)]
pub struct VerpToken(String);

/// What a verified VERP token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerpRef {
    /// A member, by short id.
    Member(i64),
    /// A member, by id (tokens of earlier versions).
    MemberId(Uuid),
    /// A queued message (confirmations, welcome, notices), by its queue row's id.
    Message(i64),
}

const VERP_MAC_CHARS: usize = 8;
const LEGACY_VERP_MAC_LEN: usize = 5;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

impl VerpToken {
    /// The token for copies sent to the member with this short id.
    pub fn for_member(key: &SecretKey, short_id: i64) -> Self {
        Self::sign(key, 'm', short_id)
    }

    /// The token for the queued message with this id (sent to one person).
    pub fn for_message(key: &SecretKey, outbound_id: i64) -> Self {
        Self::sign(key, 'o', outbound_id)
    }

    fn sign(key: &SecretKey, kind: char, number: i64) -> Self {
        let mut text = String::with_capacity(22);
        text.push(kind);
        push_base32_number(&mut text, number as u64);
        let mac = key.mac("verp2", &[text.as_bytes()]).finalize().into_bytes();
        text.push_str(&base32_encode(&mac[..5]));
        VerpToken(text)
    }

    /// What a token names, when its signature holds (constant-time check). Reads
    /// tokens of this version and of earlier ones, in any case.
    pub fn verify(key: &SecretKey, text: &str) -> Option<VerpRef> {
        let t = text.trim().to_ascii_lowercase();
        if t.len() == 34 {
            return verify_legacy_verp(key, &t).map(VerpRef::MemberId);
        }
        let (body, mac) = t.split_at_checked(t.len().checked_sub(VERP_MAC_CHARS)?)?;
        let (kind, number) = body.split_at_checked(1)?;
        if number.is_empty() || number.len() > 13 {
            return None;
        }
        let mut n: u64 = 0;
        for c in number.bytes() {
            let d = BASE32.iter().position(|&a| a == c)? as u64;
            n = n.checked_mul(32)?.checked_add(d)?;
        }
        let mac = base32_decode(mac)?;
        key.mac("verp2", &[body.as_bytes()])
            .verify_truncated_left(&mac)
            .ok()?;
        let n = i64::try_from(n).ok()?;
        match kind {
            "m" => Some(VerpRef::Member(n)),
            "o" => Some(VerpRef::Message(n)),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Earlier versions' VERP token: `base32(member id ‖ HMAC(id)[..5])`, 34 characters.
fn verify_legacy_verp(key: &SecretKey, text: &str) -> Option<Uuid> {
    let raw = base32_decode(text)?;
    if raw.len() != 16 + LEGACY_VERP_MAC_LEN {
        return None;
    }
    let member_id = Uuid::from_slice(&raw[..16]).ok()?;
    key.mac("verp", &[member_id.as_bytes()])
        .verify_truncated_left(&raw[16..])
        .ok()
        .map(|()| member_id)
}

impl fmt::Debug for VerpToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerpToken(…)")
    }
}

/// A number in base 32 (the [`BASE32`] digits), without leading zeros.
fn push_base32_number(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 13];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = BASE32[(n % 32) as usize];
        n /= 32;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).expect("ascii"));
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

#[derive(Debug, Clone, serde::Serialize)]
/// An API token as shown to its admin (never the token itself).
pub struct ApiToken {
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<time::OffsetDateTime>,
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
        for id in [0i64, 1, 31, 32, 1_000_000, i64::MAX] {
            let t = VerpToken::for_member(&k, id);
            assert!(t.as_str().len() <= 22, "{}", t.as_str());
            assert!(
                t.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            );
            assert_eq!(VerpToken::verify(&k, t.as_str()), Some(VerpRef::Member(id)));
            assert_eq!(
                VerpToken::verify(&k, &t.as_str().to_uppercase()),
                Some(VerpRef::Member(id))
            );
            assert_eq!(VerpToken::verify(&key(), t.as_str()), None, "another key");
        }
        let t = VerpToken::for_member(&k, 123_456);
        let mut tampered = t.as_str().to_string();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'a' { 'b' } else { 'a' });
        assert_eq!(VerpToken::verify(&k, &tampered), None);
        let other_member = format!("m{}", &t.as_str()[2..]);
        assert_eq!(VerpToken::verify(&k, &other_member), None);
        let message = VerpToken::for_message(&k, 123_456);
        assert_eq!(
            VerpToken::verify(&k, message.as_str()),
            Some(VerpRef::Message(123_456))
        );
        let as_member = format!("m{}", &message.as_str()[1..]);
        assert_eq!(
            VerpToken::verify(&k, &as_member),
            None,
            "the kind is signed"
        );
        assert_eq!(VerpToken::verify(&k, ""), None);
        assert_eq!(VerpToken::verify(&k, "not-base32!"), None);
        assert_eq!(VerpToken::verify(&k, "m"), None);
    }

    #[test]
    fn verp_tokens_of_earlier_versions_still_verify() {
        // what earlier versions wrote: base32(member id ‖ HMAC("verp", id)[..5])
        let k = key();
        let id = Uuid::new_v4();
        let tag = k.mac("verp", &[id.as_bytes()]).finalize().into_bytes();
        let mut raw = id.as_bytes().to_vec();
        raw.extend_from_slice(&tag[..5]);
        let old = base32_encode(&raw);
        assert_eq!(old.len(), 34);
        assert_eq!(VerpToken::verify(&k, &old), Some(VerpRef::MemberId(id)));
        assert_eq!(VerpToken::verify(&key(), &old), None);
    }

    #[test]
    fn short_confirm_tokens_carry_100_bits_and_read_in_any_case() {
        let t = ConfirmToken::generate_short();
        assert_eq!(t.as_str().len(), SHORT_TOKEN_LEN);
        assert!(t.as_str().bytes().all(|b| BASE32.contains(&b)));
        assert_ne!(t.as_str(), ConfirmToken::generate_short().as_str());
        let upper = ConfirmToken::parse(&t.as_str().to_uppercase()).unwrap();
        assert_eq!(upper.hash(), t.hash());
        assert!(ConfirmToken::parse(&t.as_str()[1..]).is_none());
        assert!(
            ConfirmToken::parse("0123456789abcdefghij").is_none(),
            "0 and 1 are not base32"
        );
    }

    #[test]
    fn moderate_tokens_fit_the_address_of_a_32_octet_list_name() {
        let t = ModerateToken::generate();
        assert_eq!(t.as_str().len(), SHORT_TOKEN_LEN);
        let local = format!("{}+moderate+{}", "l".repeat(32), t.as_str());
        assert!(local.len() <= 64, "{}", local.len());
        let upper = ModerateToken::parse(&t.as_str().to_uppercase()).unwrap();
        assert_eq!(upper.hash(), t.hash());
        assert_ne!(t.hash(), ModerateToken::generate().hash());
        assert!(ModerateToken::parse(&t.as_str()[1..]).is_none());
        assert!(ModerateToken::parse("0123456789abcdefghij").is_none());
    }

    #[test]
    fn mailto_tokens_are_19_characters_for_98_bit_keys() {
        let mut k = random_bytes::<UNSUBSCRIBE_KEY_LEN>();
        k[0] &= 3;
        let t = MailtoToken::from_key(&k).unwrap();
        assert_eq!(t.as_str().len(), 19);
        assert_eq!(MailtoToken::parse_key(t.as_str()), Some(k.to_vec()));
        assert_eq!(
            MailtoToken::parse_key(&t.as_str().to_uppercase()),
            Some(k.to_vec())
        );
        let max = [&[3u8][..], &[0xff; 12][..]].concat();
        assert_eq!(
            MailtoToken::parse_key(MailtoToken::from_key(&max).unwrap().as_str()),
            Some(max)
        );
        assert!(MailtoToken::from_key(&[4u8; UNSUBSCRIBE_KEY_LEN]).is_none());
        assert!(
            MailtoToken::parse_key("zzzzzzzzzzzzzzzzzzz").is_none(),
            "over 98 bits"
        );
        assert!(MailtoToken::parse_key("short").is_none());
        assert!(MailtoToken::parse_key("abcdefghijklmnopqr-").is_none());
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

        #[test]
        fn token_readers_never_panic(text in ".{0,40}") {
            let k = SecretKey::from_base64(&"a".repeat(44)).unwrap();
            let _ = VerpToken::verify(&k, &text);
            let _ = MailtoToken::parse_key(&text);
            let _ = ConfirmToken::parse(&text);
        }

        #[test]
        fn mailto_keys_round_trip(mut k in proptest::array::uniform13(proptest::num::u8::ANY)) {
            k[0] &= 3;
            let t = MailtoToken::from_key(&k).unwrap();
            proptest::prop_assert_eq!(MailtoToken::parse_key(t.as_str()), Some(k.to_vec()));
        }
    }
}
