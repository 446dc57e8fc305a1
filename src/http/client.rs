//! Who is asking: the client IP (through trusted proxies), the form fields of a
//! urlencoded or multipart body, and the per-IP rate limit.

use crate::config::Rate;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, header};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

/// The client address: the peer, or the last untrusted hop of `X-Forwarded-For`
/// when the peer is a trusted proxy.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    forwarded
        .split(',')
        .rev()
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|ip| !trusted.contains(ip))
        .or(Some(peer))
}

/// Whether the client prefers JSON over a page.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

/// Text fields of a form post, urlencoded or multipart.
#[derive(Debug, Default)]
pub struct FormFields(pub HashMap<String, String>);

impl FormFields {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// A body that is not a readable form.
#[derive(Debug)]
pub struct BadForm(pub String);

impl axum::response::IntoResponse for BadForm {
    fn into_response(self) -> axum::response::Response {
        (axum::http::StatusCode::BAD_REQUEST, self.0).into_response()
    }
}

/// The TCP peer, when the server was started with connect info (tests may not).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

impl<S: Send + Sync> FromRequest<S> for FormFields {
    type Rejection = BadForm;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            let mut multipart = Multipart::from_request(req, state)
                .await
                .map_err(|e| BadForm(e.body_text()))?;
            let mut fields = HashMap::new();
            while let Some(field) = multipart
                .next_field()
                .await
                .map_err(|e| BadForm(e.body_text()))?
            {
                let Some(name) = field.name().map(str::to_string) else {
                    continue;
                };
                if field.file_name().is_some() {
                    continue;
                }
                let value = field.text().await.map_err(|e| BadForm(e.body_text()))?;
                fields.entry(name).or_insert(value);
            }
            Ok(FormFields(fields))
        } else {
            let bytes = axum::body::Bytes::from_request(req, state)
                .await
                .map_err(|e| BadForm(e.body_text()))?;
            let mut fields = HashMap::new();
            for (k, v) in url::form_urlencoded::parse(&bytes) {
                fields
                    .entry(k.into_owned())
                    .or_insert_with(|| v.into_owned());
            }
            Ok(FormFields(fields))
        }
    }
}

/// A fixed-window counter per client IP.
#[derive(Debug)]
pub struct IpLimiter {
    rate: Option<Rate>,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl IpLimiter {
    pub fn new(rate: Option<Rate>) -> Self {
        IpLimiter {
            rate,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request; over the limit, how long until the client's window ends.
    pub fn allow(&self, ip: Option<IpAddr>) -> Result<(), std::time::Duration> {
        let (Some(rate), Some(ip)) = (self.rate, ip) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < rate.per);
        }
        let entry = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= rate.per {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 <= rate.count {
            Ok(())
        } else {
            Err(rate.per.saturating_sub(now.duration_since(entry.0)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let trusted: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        assert_eq!(
            client_ip(Some(proxy), &h, &trusted),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            client_ip(Some(proxy), &h, &[]),
            Some("10.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn the_limiter_counts_per_ip() {
        let l = IpLimiter::new(Some(Rate {
            count: 2,
            per: Duration::from_secs(60),
        }));
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        assert!(l.allow(a).is_ok() && l.allow(a).is_ok());
        let wait = l.allow(a).unwrap_err();
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        assert!(l.allow(b).is_ok());
        assert!(IpLimiter::new(None).allow(a).is_ok());
    }
}
