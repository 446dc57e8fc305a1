//! DKIM signatures (RFC 6376; docs/standards.md#60 to #62) on the mail listd sends.
//!
//! Signatures use `c=relaxed/simple`: relaxed header canonicalization (§3.4.2) and
//! simple body canonicalization (§3.4.3), which leaves the body as it is but for
//! trailing empty lines, so an 8-bit body or one ending in blank lines hashes the same
//! for every verifier. The body hash is computed by [`BodyHash`], a running SHA-256
//! that can be cloned: a post's copies share every body byte before the first footer
//! slot, so that part is hashed once per post and each copy only adds its own footer
//! and what follows. The header hash and the signature are per copy.
//!
//! Signed fields ([`SIGNED`]): From, To, Cc, Reply-To, Subject, Date, Message-ID,
//! MIME-Version, the Content-* fields, In-Reply-To, References, every `List-*`,
//! Archived-At, Precedence and Auto-Submitted present; From, Subject,
//! `List-Unsubscribe` and `List-Unsubscribe-Post` once more than present, so no
//! second one can be added without breaking the signature (RFC 8058 §4).
//!
//! Everything here is CPU work without I/O; the delivery workers run it on threads
//! of its own, off the async runtime.

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use sha2::{Digest, Sha256};

/// Signing algorithms listd offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    /// The `k=` of the DNS record.
    fn key_type(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa",
            Algorithm::Ed25519Sha256 => "ed25519",
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rsa-sha256" | "rsa" => Ok(Algorithm::RsaSha256),
            "ed25519-sha256" | "ed25519" => Ok(Algorithm::Ed25519Sha256),
            other => Err(format!(
                "unknown algorithm `{other}`; algorithms are rsa-sha256, ed25519-sha256"
            )),
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key could not be generated: {0}")]
    Generate(String),
    #[error("the stored private key cannot be read: {0}")]
    Unreadable(String),
}

/// A new key pair: the private key as PKCS#8 DER (kept in the database only) and the
/// public key as the DNS record's `p=` value.
pub struct NewKey {
    pub private_pkcs8: Vec<u8>,
    pub public: String,
}

/// Generates a key pair: RSA with a 2048-bit modulus, or Ed25519 (RFC 8463).
pub fn generate(algorithm: Algorithm) -> Result<NewKey, KeyError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    match algorithm {
        Algorithm::RsaSha256 => {
            use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
            let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let private = key
                .to_pkcs8_der()
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let public = key
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            Ok(NewKey {
                private_pkcs8: private.as_bytes().to_vec(),
                public: b64.encode(public.as_bytes()),
            })
        }
        Algorithm::Ed25519Sha256 => {
            let rng = SystemRandom::new();
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            Ok(NewKey {
                private_pkcs8: pkcs8.as_ref().to_vec(),
                public: b64.encode(pair.public_key().as_ref()),
            })
        }
    }
}

/// The TXT record's text: `v=DKIM1; k=rsa; p=…`.
pub fn txt_value(algorithm: Algorithm, public: &str) -> String {
    format!("v=DKIM1; k={}; p={public}", algorithm.key_type())
}

/// The record to publish, ready to paste into a zone file: the text split into
/// strings of at most 255 octets (RFC 1035 §3.3.14; RFC 6376 §3.6.2.2).
pub fn dns_record(domain: &str, selector: &str, algorithm: Algorithm, public: &str) -> String {
    let text = txt_value(algorithm, public);
    let strings: Vec<String> = text
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!(
        "{selector}._domainkey.{domain}. IN TXT {}",
        strings.join(" ")
    )
}

/// The `p=` of a published record's text, when it is a DKIM key record.
pub fn public_key_of(record: &str) -> Option<String> {
    let mut p = None;
    for tag in record.split(';') {
        let (name, value) = tag.split_once('=')?;
        let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        match name.trim() {
            "v" if value != "DKIM1" => return None,
            "p" => p = Some(value),
            _ => {}
        }
    }
    p
}

/// A private key ready to sign, with where it signs for.
pub struct SigningKey {
    pub domain: String,
    pub selector: String,
    pair: Pair,
}

enum Pair {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for SigningKey {
    /// Never the key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, {})", self.domain, self.selector)
    }
}

impl SigningKey {
    pub fn from_pkcs8(
        domain: &str,
        selector: &str,
        algorithm: Algorithm,
        pkcs8: &[u8],
    ) -> Result<SigningKey, KeyError> {
        let pair = match algorithm {
            Algorithm::RsaSha256 => Pair::Rsa(
                RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| KeyError::Unreadable(e.to_string()))?,
            ),
            Algorithm::Ed25519Sha256 => Pair::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                    .map_err(|e| KeyError::Unreadable(e.to_string()))?,
            ),
        };
        Ok(SigningKey {
            domain: domain.to_string(),
            selector: selector.to_string(),
            pair,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.pair {
            Pair::Rsa(_) => Algorithm::RsaSha256,
            Pair::Ed25519(_) => Algorithm::Ed25519Sha256,
        }
    }

    /// The signature over the header hash input `data` (RFC 6376 §3.7; for Ed25519,
    /// RFC 8463 §3: over its SHA-256 digest).
    fn sign(&self, data: &[u8]) -> Vec<u8> {
        match &self.pair {
            Pair::Rsa(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), data, &mut sig)
                    .expect("RSA signing with a loaded key");
                sig
            }
            Pair::Ed25519(pair) => pair.sign(&Sha256::digest(data)).as_ref().to_vec(),
        }
    }
}

/// Names of the fields signed when present (lower case), in the order of `h=`.
pub const SIGNED: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "to",
    "cc",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "list-id",
    "list-help",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
    "archived-at",
    "precedence",
    "auto-submitted",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// Signed once more than present (RFC 6376 §8.15).
const OVER_SIGNED: &[&str] = &[
    "from",
    "subject",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// The fields of a header section (each with its CRLF and continuation lines), up to
/// the blank line; and where the body starts.
pub fn header_fields(message: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut fields: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let end = message[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(message.len(), |i| pos + i + 2);
        let line = &message[pos..end];
        if line == b"\r\n" {
            return (
                fields.into_iter().map(|(s, e)| &message[s..e]).collect(),
                end,
            );
        }
        match fields.last_mut() {
            Some(last) if matches!(line.first(), Some(b' ' | b'\t')) => last.1 = end,
            _ => fields.push((pos, end)),
        }
        pos = end;
    }
    (
        fields.into_iter().map(|(s, e)| &message[s..e]).collect(),
        message.len(),
    )
}

fn field_name(field: &[u8]) -> String {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(0);
    String::from_utf8_lossy(field[..colon].trim_ascii()).to_ascii_lowercase()
}

/// Appends a field in relaxed canonical form (RFC 6376 §3.4.2): name in lower case,
/// unfolded, runs of white space made one space, none at the ends of the value or
/// around the colon; then CRLF.
pub fn relaxed_field(out: &mut Vec<u8>, field: &[u8]) {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    let name = field[..colon].trim_ascii();
    out.extend(name.iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let value = field.get(colon + 1..).unwrap_or_default();
    let mut space = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && started {
                    out.push(b' ');
                }
                space = false;
                started = true;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// A running hash of a body in simple canonical form (RFC 6376 §3.4.3): trailing
/// empty lines are dropped and a body not ending in CRLF gets one. Line ends at the
/// end are held back until more text shows they are not the end. Clone it to
/// continue from a shared prefix.
#[derive(Clone)]
pub struct BodyHash {
    sha: Sha256,
    held: Vec<u8>,
}

impl Default for BodyHash {
    fn default() -> Self {
        BodyHash {
            sha: Sha256::new(),
            held: Vec::new(),
        }
    }
}

impl BodyHash {
    pub fn update(&mut self, data: &[u8]) {
        match data.iter().rposition(|&b| b != b'\r' && b != b'\n') {
            None => self.held.extend_from_slice(data),
            Some(last) => {
                self.sha.update(&self.held);
                self.held.clear();
                self.sha.update(&data[..=last]);
                self.held.extend_from_slice(&data[last + 1..]);
            }
        }
    }

    /// The `bh=` value.
    pub fn finish(mut self) -> [u8; 32] {
        // the longest run of CRLF pairs at the end is the trailing empty lines
        let mut keep = self.held.len();
        while keep >= 2 && &self.held[keep - 2..keep] == b"\r\n" {
            keep -= 2;
        }
        self.sha.update(&self.held[..keep]);
        self.sha.update(b"\r\n");
        self.sha.finalize().into()
    }
}

/// The header fields a message's signatures cover: their canonical form in `h=`
/// order, computed once for the fields every copy shares, then completed per copy.
#[derive(Clone)]
pub struct SignedHeaders {
    /// `h=` names in order; an over-signed name appears once more than present.
    names: Vec<&'static str>,
    /// Canonical form of the shared fields in `names`' order.
    canonical: Vec<u8>,
    /// Names left for each copy's own fields, in `h=` order (each present once).
    own: Vec<&'static str>,
}

impl SignedHeaders {
    /// The signed fields among `shared`, with `own` the names every copy adds itself
    /// (its `List-Unsubscribe` lines), hashed after the shared ones.
    pub fn new(shared: &[&[u8]], own: &[&'static str]) -> SignedHeaders {
        let mut names = Vec::new();
        let mut canonical = Vec::new();
        for &name in SIGNED.iter().filter(|n| !own.contains(n)) {
            // instances are used from the last one up (RFC 6376 §5.4.2)
            for field in shared.iter().rev().filter(|f| field_name(f) == name) {
                names.push(name);
                relaxed_field(&mut canonical, field);
            }
        }
        SignedHeaders {
            names,
            canonical,
            own: own.to_vec(),
        }
    }

    /// The `h=` value: shared names, own names, then the over-signed ones.
    fn h_tag(&self) -> String {
        let mut all: Vec<&str> = self.names.clone();
        all.extend(&self.own);
        all.extend(OVER_SIGNED.iter().copied());
        all.join(":")
    }
}

/// Signs a whole message: `DKIM-Signature` lines (one per key) to put before it.
pub fn sign_message(keys: &[impl AsRef<SigningKey>], message: &[u8], now: i64) -> Vec<u8> {
    if keys.is_empty() {
        return Vec::new();
    }
    let (fields, body_start) = header_fields(message);
    let mut body = BodyHash::default();
    body.update(&message[body_start..]);
    let headers = SignedHeaders::new(&fields, &[]);
    sign_copy(keys, &headers, &[], body.finish(), now)
}

/// Signs one copy: `headers` (the shared fields), the copy's own fields `own` (in
/// the order of the names given to [`SignedHeaders::new`]) and its body hash.
pub fn sign_copy(
    keys: &[impl AsRef<SigningKey>],
    headers: &SignedHeaders,
    own: &[&[u8]],
    body_hash: [u8; 32],
    now: i64,
) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let bh = b64.encode(body_hash);
    let h = headers.h_tag();
    let mut out = Vec::new();
    let mut data = Vec::with_capacity(headers.canonical.len() + 1024);
    for key in keys {
        let key = key.as_ref();
        let mut field = format!(
            "DKIM-Signature: v=1; a={}; c=relaxed/simple; d={}; s={};\r\n\tt={now}; h=",
            key.algorithm(),
            key.domain,
            key.selector,
        );
        fold_list(&mut field, &h);
        field.push_str(&format!(";\r\n\tbh={bh};\r\n\tb="));
        data.clear();
        data.extend_from_slice(&headers.canonical);
        for f in own {
            relaxed_field(&mut data, f);
        }
        relaxed_field(&mut data, field.as_bytes());
        // the signature field is hashed without its final CRLF (RFC 6376 §3.7)
        data.truncate(data.len() - 2);
        let signature = b64.encode(key.sign(&data));
        out.extend_from_slice(field.as_bytes());
        // white space inside b= is ignored by verifiers (§3.5): folded for line length
        for (i, chunk) in signature.as_bytes().chunks(72).enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\r\n\t ");
            }
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Appends a colon-separated list, folding after a colon before a line gets long.
fn fold_list(out: &mut String, list: &str) {
    let mut column = out.len() - out.rfind('\n').map_or(0, |i| i + 1);
    for (i, name) in list.split(':').enumerate() {
        if i > 0 {
            out.push(':');
            column += 1;
            if column + name.len() > 76 {
                out.push_str("\r\n\t");
                column = 1;
            }
        }
        out.push_str(name);
        column += name.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_canonicalization_follows_rfc_6376() {
        // the examples of RFC 6376 §3.4.5
        let mut out = Vec::new();
        relaxed_field(&mut out, b"A: X\r\n");
        relaxed_field(&mut out, b"B : Y\t\r\n\tZ  \r\n");
        assert_eq!(out, b"a:X\r\nb:Y Z\r\n");
        out.clear();
        relaxed_field(&mut out, b"Subject:\r\n  folded   value \t\r\n");
        assert_eq!(out, b"subject:folded value\r\n");
    }

    #[test]
    fn simple_body_canonicalization_drops_trailing_empty_lines() {
        let hash = |parts: &[&[u8]]| {
            let mut h = BodyHash::default();
            for p in parts {
                h.update(p);
            }
            h.finish()
        };
        let digest = |b: &[u8]| -> [u8; 32] { Sha256::digest(b).into() };
        assert_eq!(
            hash(&[b" C \r\nD \t E\r\n\r\n\r\n"]),
            digest(b" C \r\nD \t E\r\n")
        );
        assert_eq!(hash(&[b""]), digest(b"\r\n"));
        assert_eq!(hash(&[b"\r\n\r\n"]), digest(b"\r\n"));
        assert_eq!(hash(&[b"no end"]), digest(b"no end\r\n"));
        // split anywhere, the same
        assert_eq!(
            hash(&[b"a\r", b"\n\r\n", b"\r\nb\r\n", b"\r\n"]),
            digest(b"a\r\n\r\n\r\nb\r\n")
        );
        // the midstate continues
        let mut shared = BodyHash::default();
        shared.update(b"text\r\n\r\n");
        let mut copy = shared.clone();
        copy.update(b"footer\r\n");
        assert_eq!(copy.finish(), digest(b"text\r\n\r\nfooter\r\n"));
        assert_eq!(shared.finish(), digest(b"text\r\n"));
    }

    #[test]
    fn the_dns_record_is_split_into_strings_of_255_octets() {
        let key = generate(Algorithm::RsaSha256).unwrap();
        let record = dns_record("lists.example.org", "s1", Algorithm::RsaSha256, &key.public);
        assert!(record.starts_with("s1._domainkey.lists.example.org. IN TXT \"v=DKIM1; k=rsa; p="));
        let strings: Vec<&str> = record.split('"').skip(1).step_by(2).collect();
        assert!(strings.len() >= 2 && strings.iter().all(|s| s.len() <= 255));
        assert_eq!(
            public_key_of(&strings.concat()).as_deref(),
            Some(key.public.as_str())
        );
        let signing = SigningKey::from_pkcs8(
            "lists.example.org",
            "s1",
            Algorithm::RsaSha256,
            &key.private_pkcs8,
        )
        .unwrap();
        assert_eq!(format!("{signing:?}"), "SigningKey(lists.example.org, s1)");
        let ed = generate(Algorithm::Ed25519Sha256).unwrap();
        assert!(
            SigningKey::from_pkcs8("d", "s", Algorithm::Ed25519Sha256, &ed.private_pkcs8).is_ok()
        );
    }

    #[test]
    fn h_lists_each_instance_and_over_signs() {
        let msg = b"From: a@x\r\nSubject: s\r\nReceived: r\r\nReferences: <1>\r\nReferences: <2>\r\n\r\nbody";
        let (fields, start) = header_fields(msg);
        assert_eq!(&msg[start..], b"body");
        let h = SignedHeaders::new(&fields, &["list-unsubscribe", "list-unsubscribe-post"]);
        assert_eq!(
            h.h_tag(),
            "from:subject:references:references:list-unsubscribe:list-unsubscribe-post:\
             from:subject:list-unsubscribe:list-unsubscribe-post"
        );
        assert_eq!(
            h.canonical,
            b"from:a@x\r\nsubject:s\r\nreferences:<2>\r\nreferences:<1>\r\n"
        );
    }
}
