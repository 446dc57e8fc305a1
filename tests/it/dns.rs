//! A tiny DNS server on loopback UDP holding TXT records, and the DMARC policy
//! look-ups driven against it.
//!
//! Messages are read and written with the hickory-proto that hickory-resolver
//! re-exports, so the tests need no second DNS library.

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::TXT;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use listd::domain::dmarc::DmarcPolicy;
use listd::mail::dmarc::{DmarcResolver, PolicyLookup};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;

/// What the server answers. Names are lower-case, without the trailing dot.
#[derive(Default)]
struct Zone {
    /// TXT records by name, each a list of character-strings.
    txt: HashMap<String, Vec<Vec<String>>>,
    failing: HashSet<String>,
    queries: usize,
}

impl Zone {
    fn answer(&mut self, request: &Message) -> Message {
        self.queries += 1;
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        let Some(query) = request.queries.first() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return response;
        };
        response.add_query(query.clone());
        let name = query.name().to_ascii().to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        response.metadata.response_code = if self.failing.contains(name) {
            ResponseCode::ServFail
        } else if let Some(records) = self.txt.get(name) {
            if query.query_type() == RecordType::TXT {
                for strings in records {
                    let rdata = RData::TXT(TXT::new(strings.clone()));
                    response.add_answer(Record::from_rdata(query.name().clone(), 60, rdata));
                }
            }
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        response
    }
}

/// A DNS server for one test; it stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    task: AbortHandle,
}

/// Starts a server on 127.0.0.1 with an empty zone: every name is NXDOMAIN.
pub async fn start() -> DnsServer {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let zone = Arc::new(Mutex::new(Zone::default()));
    let served = zone.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0; 4096];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            // Garbage is dropped unanswered, as a real server would.
            let Ok(request) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let response = served.lock().unwrap().answer(&request);
            let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
        }
    });
    DnsServer {
        addr,
        zone,
        task: task.abort_handle(),
    }
}

impl DnsServer {
    /// Replaces the TXT records at `name` with one record made of `strings`. With no
    /// strings the name exists but has no TXT record.
    pub fn set_txt(&self, name: &str, strings: &[&str]) {
        let records = if strings.is_empty() {
            Vec::new()
        } else {
            vec![strings.iter().map(|s| s.to_string()).collect()]
        };
        self.zone.lock().unwrap().txt.insert(key(name), records);
    }

    /// Adds one more TXT record at `name`.
    pub fn add_txt(&self, name: &str, strings: &[&str]) {
        let record = strings.iter().map(|s| s.to_string()).collect();
        let mut zone = self.zone.lock().unwrap();
        zone.txt.entry(key(name)).or_default().push(record);
    }

    /// Makes every query for `name` fail with SERVFAIL.
    pub fn fail(&self, name: &str) {
        self.zone.lock().unwrap().failing.insert(key(name));
    }

    /// How many queries the server has answered.
    pub fn queries(&self) -> usize {
        self.zone.lock().unwrap().queries
    }

    pub fn resolver(&self) -> DmarcResolver {
        DmarcResolver::new(Some(self.addr)).unwrap()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[tokio::test]
async fn reject_at_the_author_domain_is_strict() {
    let dns = start().await;
    dns.set_txt(
        "_dmarc.example.com",
        &["v=DMARC1; p=reject; ", "rua=mailto:dmarc@example.com"],
    );
    let resolver = dns.resolver();
    assert_eq!(
        resolver.policy("Example.COM").await,
        PolicyLookup::Found(DmarcPolicy::Reject)
    );
    assert!(resolver.requires_from_rewrite("example.com").await);
}

#[tokio::test]
async fn answers_are_cached() {
    let dns = start().await;
    dns.set_txt("_dmarc.example.com", &["v=DMARC1; p=quarantine"]);
    let resolver = dns.resolver();
    assert!(resolver.requires_from_rewrite("example.com").await);
    assert!(resolver.clone().requires_from_rewrite("example.com").await);
    assert_eq!(dns.queries(), 1);
}

#[tokio::test]
async fn a_subdomain_without_a_record_takes_the_organizational_sp() {
    let dns = start().await;
    dns.set_txt("_dmarc.example.com", &["v=DMARC1; p=none; sp=quarantine"]);
    let resolver = dns.resolver();
    assert_eq!(
        resolver.policy("mail.example.com").await,
        PolicyLookup::Found(DmarcPolicy::Quarantine)
    );
    assert!(resolver.requires_from_rewrite("mail.example.com").await);
    assert!(!resolver.requires_from_rewrite("example.com").await);
}

#[tokio::test]
async fn a_relaxed_sp_spares_subdomains_of_a_strict_domain() {
    let dns = start().await;
    dns.set_txt("_dmarc.example.com", &["v=DMARC1; p=reject; sp=none"]);
    // The subdomain exists, with other TXT records at its `_dmarc` name.
    dns.set_txt("_dmarc.news.example.com", &["v=spf1 -all"]);
    let resolver = dns.resolver();
    assert_eq!(
        resolver.policy("a.news.example.com").await,
        PolicyLookup::Found(DmarcPolicy::None)
    );
    assert!(!resolver.requires_from_rewrite("a.news.example.com").await);
    assert!(resolver.requires_from_rewrite("example.com").await);
}

#[tokio::test]
async fn no_record_anywhere_means_no_rewrite_and_the_tld_is_never_asked() {
    let dns = start().await;
    dns.set_txt("_dmarc.com", &["v=DMARC1; p=reject"]);
    let resolver = dns.resolver();
    assert_eq!(
        resolver.policy("a.b.example.com").await,
        PolicyLookup::NoRecord
    );
    assert_eq!(
        dns.queries(),
        3,
        "a.b.example.com, b.example.com, example.com"
    );
    assert!(!resolver.requires_from_rewrite("a.b.example.com").await);
}

#[tokio::test]
async fn a_server_failure_counts_as_strict() {
    let dns = start().await;
    dns.set_txt("_dmarc.example.com", &["v=DMARC1; p=none"]);
    dns.fail("_dmarc.mail.example.com");
    let resolver = dns.resolver();
    let lookup = resolver.policy("mail.example.com").await;
    assert!(
        matches!(&lookup, PolicyLookup::Failed(e) if e.contains("_dmarc.mail.example.com")),
        "{lookup:?}"
    );
    assert_eq!(
        dns.queries(),
        2,
        "one retry, and the walk stops at the failure"
    );
    assert!(resolver.requires_from_rewrite("mail.example.com").await);
}

#[tokio::test]
async fn two_dmarc_records_at_a_name_count_as_none_there() {
    let dns = start().await;
    dns.add_txt("_dmarc.example.com", &["v=DMARC1; p=reject"]);
    dns.add_txt("_dmarc.example.com", &["v=DMARC1; p=quarantine"]);
    dns.add_txt("_dmarc.sub.example.org", &["v=DMARC1; p=none"]);
    dns.add_txt("_dmarc.sub.example.org", &["v=DMARC1; p=none; pct=50"]);
    dns.set_txt("_dmarc.example.org", &["v=DMARC1; p=reject"]);
    let resolver = dns.resolver();
    assert_eq!(resolver.policy("example.com").await, PolicyLookup::NoRecord);
    assert!(!resolver.requires_from_rewrite("example.com").await);
    // The walk goes on to the parent, whose p covers the subdomain.
    assert_eq!(
        resolver.policy("sub.example.org").await,
        PolicyLookup::Found(DmarcPolicy::Reject)
    );
}
