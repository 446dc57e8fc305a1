//! DKIM keys (docs/contract.md#dkim): generated here, kept in the database, printed
//! only as the DNS record to publish. The delivery workers sign with them.

use super::{App, AppError};
use crate::domain::EmailAddress;
use crate::mail::dkim::{Algorithm, dns_record, generate, public_key_of};
use crate::store;
use time::OffsetDateTime;

/// A key as the commands show it: never its private half.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DkimKeyInfo {
    pub domain: String,
    pub selector: String,
    pub algorithm: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub dns_record: String,
}

impl From<store::dkim::DkimKeyRow> for DkimKeyInfo {
    fn from(r: store::dkim::DkimKeyRow) -> Self {
        let algorithm = r.algorithm.parse().unwrap_or(Algorithm::RsaSha256);
        DkimKeyInfo {
            dns_record: dns_record(&r.domain, &r.selector, algorithm, &r.public_key),
            domain: r.domain,
            selector: r.selector,
            algorithm: r.algorithm,
            created_at: r.created_at,
        }
    }
}

/// What DNS publishes for one key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DkimCheck {
    pub selector: String,
    /// `matches`, `differs`, `missing` or `failed`.
    pub status: &'static str,
    pub detail: String,
}

impl App {
    /// Creates a key pair for `domain` and stores it; the selector defaults to
    /// `listdYYYYa`, then `listdYYYYb`… An existing selector is refused.
    pub async fn generate_dkim_key(
        &self,
        domain: &str,
        selector: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<DkimKeyInfo, AppError> {
        let domain = dkim_domain(domain)?;
        let selector = match selector {
            Some(s) => {
                let s = s.trim().to_ascii_lowercase();
                let valid = !s.is_empty()
                    && s.len() <= 63
                    && s.split('.').all(|label| {
                        !label.is_empty()
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                            && !label.starts_with('-')
                            && !label.ends_with('-')
                    });
                if !valid {
                    return Err(AppError::Refused(format!(
                        "`{s}` is not a selector: use letters, digits and hyphens"
                    )));
                }
                s
            }
            None => {
                let prefix = format!("listd{}", OffsetDateTime::now_utc().year());
                let taken = store::dkim::find_selectors(&self.db, &domain, &prefix).await?;
                next_selector(&prefix, &taken)
            }
        };
        // CPU work (an RSA key takes a moment): off the async threads
        let key = tokio::task::spawn_blocking(move || generate(algorithm))
            .await
            .map_err(|e| anyhow::anyhow!("generating the key: {e}"))?
            .map_err(|e| anyhow::anyhow!(e))?;
        match store::dkim::insert_dkim_key(
            &self.db,
            &domain,
            &selector,
            algorithm.as_str(),
            &key.private_pkcs8,
            &key.public,
        )
        .await
        {
            Ok(row) => {
                tracing::info!(%domain, %selector, %algorithm, "DKIM key generated");
                Ok(row.into())
            }
            Err(e) if store::unique_violation(&e).is_some() => Err(AppError::Refused(format!(
                "{domain} already has a key with the selector {selector}"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKeyInfo>, AppError> {
        let domain = domain.map(dkim_domain).transpose()?;
        let rows = store::dkim::list_dkim_keys(&self.db, domain.as_deref()).await?;
        Ok(rows.into_iter().map(DkimKeyInfo::from).collect())
    }

    /// Removes a key: from the next batch of mail on, nothing is signed with it.
    pub async fn remove_dkim_key(&self, domain: &str, selector: &str) -> Result<(), AppError> {
        let domain = dkim_domain(domain)?;
        let selector = selector.trim().to_ascii_lowercase();
        if store::dkim::delete_dkim_key(&self.db, &domain, &selector).await? {
            tracing::info!(%domain, %selector, "DKIM key removed");
            Ok(())
        } else {
            Err(AppError::Refused(format!(
                "{domain} has no key with the selector {selector}"
            )))
        }
    }

    /// Looks up each key's record in DNS and says whether it is the one to publish.
    pub async fn check_dkim(&self, domain: &str) -> Result<Vec<DkimCheck>, AppError> {
        let keys = self.dkim_keys(Some(domain)).await?;
        if keys.is_empty() {
            return Err(AppError::Refused(format!(
                "{} has no DKIM key; create one with `listd dkim generate`",
                domain.trim()
            )));
        }
        let rows = store::dkim::list_dkim_keys(&self.db, Some(&keys[0].domain)).await?;
        let mut out = Vec::new();
        for row in rows {
            let name = format!("{}._domainkey.{}.", row.selector, row.domain);
            let (status, detail) = match self.dmarc.txt(&name).await {
                Err(e) => ("failed", format!("{name}: {e}")),
                Ok(texts) if texts.is_empty() => ("missing", format!("no TXT record at {name}")),
                Ok(texts) => {
                    let published: Vec<String> =
                        texts.iter().filter_map(|t| public_key_of(t)).collect();
                    if published.contains(&row.public_key) {
                        ("matches", format!("{name} publishes this key"))
                    } else if published.is_empty() {
                        ("differs", format!("{name} holds no DKIM key record"))
                    } else {
                        ("differs", format!("{name} publishes another key"))
                    }
                }
            };
            out.push(DkimCheck {
                selector: row.selector,
                status,
                detail,
            });
        }
        Ok(out)
    }
}

/// A domain as keys are stored: an A-label in lower case.
fn dkim_domain(domain: &str) -> Result<String, AppError> {
    let domain = domain.trim().trim_end_matches('.');
    EmailAddress::parse(&format!("postmaster@{domain}"))
        .map(|a| a.domain().to_string())
        .map_err(|_| AppError::Refused(format!("`{domain}` is not a domain name")))
}

/// The first of `prefix` + `a`, `b`, … `z`, `aa`, … not taken.
fn next_selector(prefix: &str, taken: &[String]) -> String {
    let letters = |mut n: usize| {
        let mut s = Vec::new();
        loop {
            s.push(b'a' + (n % 26) as u8);
            if n < 26 {
                break;
            }
            n = n / 26 - 1;
        }
        s.reverse();
        String::from_utf8(s).unwrap_or_default()
    };
    (0..)
        .map(|n| format!("{prefix}{}", letters(n)))
        .find(|s| !taken.contains(s))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_count_up_by_letters() {
        assert_eq!(next_selector("listd2026", &[]), "listd2026a");
        let taken = vec!["listd2026a".to_string(), "listd2026b".to_string()];
        assert_eq!(next_selector("listd2026", &taken), "listd2026c");
        let all: Vec<String> = (b'a'..=b'z')
            .map(|c| format!("listd2026{}", c as char))
            .collect();
        assert_eq!(next_selector("listd2026", &all), "listd2026aa");
    }
}
