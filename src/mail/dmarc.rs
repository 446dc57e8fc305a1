//! DMARC policy look-ups in DNS: does a post's author domain ask receivers to refuse
//! or junk mail that fails DMARC (docs/standards.md#11)?
//!
//! A list copy keeps the author's From but changes the message and is sent from the
//! list's server, so it fails DMARC at receivers; for a strict author domain the
//! relay rewrites From. The record format and the walk's names come from
//! `domain::dmarc`; this module only asks DNS, through hickory's caching resolver.

use crate::domain::dmarc::{DmarcPolicy, DmarcRecord, lookup_names};
use anyhow::Context;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How long one query may take, and how often it is sent again after a time-out or
/// a server failure: look-ups happen while a post is being relayed, so a dead name
/// server must not stall it for long (at most 4 s, as a failure ends the walk).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// hickory's `attempts` counts the retries after the first try, unlike resolv.conf's.
const QUERY_RETRIES: usize = 1;

/// What the DNS says about an author domain's DMARC policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyLookup {
    /// The policy that applies to the author domain.
    Found(DmarcPolicy),
    /// No DMARC record at the domain nor at any ancestor.
    NoRecord,
    /// A query failed (time-out, SERVFAIL, refused…), so the answer is unknown.
    Failed(String),
}

/// A DNS resolver for `_dmarc` TXT records, with hickory's answer cache. Cheap to
/// clone; clones share the cache.
#[derive(Clone)]
pub struct DmarcResolver {
    resolver: Arc<TokioResolver>,
}

impl DmarcResolver {
    /// A resolver asking `server` (UDP, then TCP for truncated answers), or the
    /// servers of `/etc/resolv.conf` when `None`.
    pub fn new(server: Option<SocketAddr>) -> anyhow::Result<Self> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match server {
            Some(addr) => TokioResolver::builder_with_config(only_server(addr), provider),
            None => TokioResolver::builder(provider.clone()).unwrap_or_else(|e| {
                // A host without resolv.conf still usually runs a local resolver, which
                // is what the C library would ask in this case too.
                tracing::warn!(error = %e, "no system DNS configuration; asking 127.0.0.1");
                let localhost = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);
                TokioResolver::builder_with_config(only_server(localhost), provider)
            }),
        };
        let options = builder.options_mut();
        options.timeout = QUERY_TIMEOUT;
        options.attempts = QUERY_RETRIES;
        let resolver = builder.build().context("building the DNS resolver")?;
        Ok(Self {
            resolver: Arc::new(resolver),
        })
    }

    /// The DMARC policy for mail from `author_domain`: the record at the domain
    /// itself (its `p`) or else the first one found walking up towards the
    /// organizational domain (its `sp`, or else `p`), as RFC 9989's tree walk does.
    pub async fn policy(&self, author_domain: &str) -> PolicyLookup {
        for (i, name) in lookup_names(author_domain).iter().enumerate() {
            match self.record_at(name).await {
                Ok(Some(record)) => return PolicyLookup::Found(record.policy(i == 0)),
                Ok(None) => {}
                Err(e) => return PolicyLookup::Failed(format!("_dmarc.{name}: {e}")),
            }
        }
        PolicyLookup::NoRecord
    }

    /// Whether a post from `author_domain` needs its From rewritten under
    /// `dmarc = when-needed`. When DNS cannot tell, it does: a needless rewrite is
    /// harmless, while a missing one gets the copies refused.
    pub async fn requires_from_rewrite(&self, author_domain: &str) -> bool {
        match self.policy(author_domain).await {
            PolicyLookup::Found(policy) => policy.is_strict(),
            PolicyLookup::NoRecord => false,
            PolicyLookup::Failed(error) => {
                tracing::warn!(author_domain, %error, "DMARC look-up failed; rewriting From");
                true
            }
        }
    }

    /// The TXT records at a fully qualified `name` (none when it has none), each
    /// record's strings read back to back.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, NetError> {
        let lookup = match self.resolver.txt_lookup(name).await {
            Ok(lookup) => lookup,
            Err(e) if e.is_no_records_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::TXT(txt) => {
                    Some(String::from_utf8_lossy(&txt.txt_data.concat()).into_owned())
                }
                _ => None,
            })
            .collect())
    }

    /// The DMARC record published at `_dmarc.<name>`, if exactly one is.
    async fn record_at(&self, name: &str) -> Result<Option<DmarcRecord>, NetError> {
        // Fully qualified, so no search domain of resolv.conf is tried.
        let fqdn = format!("_dmarc.{name}.");
        let lookup = match self.resolver.txt_lookup(fqdn.as_str()).await {
            Ok(lookup) => lookup,
            // NXDOMAIN, or the name exists without TXT records.
            Err(e) if e.is_no_records_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let texts: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                // A record longer than 255 bytes is split into several strings, which
                // are read back to back, as for SPF (RFC 7208 §3.3).
                RData::TXT(txt) => {
                    Some(String::from_utf8_lossy(&txt.txt_data.concat()).into_owned())
                }
                _ => None,
            })
            .collect();
        Ok(DmarcRecord::select(texts.iter().map(String::as_str)))
    }
}

/// A configuration with a single name server, reached over UDP and over TCP when an
/// answer comes back truncated.
fn only_server(addr: SocketAddr) -> ResolverConfig {
    let mut server = NameServerConfig::udp_and_tcp(addr.ip());
    for connection in &mut server.connections {
        connection.port = addr.port();
    }
    ResolverConfig::from_parts(None, Vec::new(), vec![server])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolvers_build_without_a_running_runtime() {
        assert!(DmarcResolver::new(None).is_ok());
        assert!(DmarcResolver::new(Some("127.0.0.1:5353".parse().unwrap())).is_ok());
    }
}
