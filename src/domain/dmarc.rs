//! DMARC policy records and where to look for them (RFC 7489, RFC 9989).
//!
//! Pure rules only: reading a `_dmarc` TXT record and listing the names of the DNS
//! tree walk. `mail::dmarc` does the look-ups with these and decides whether a
//! relayed post's From must be rewritten (docs/standards.md#11).

/// What a domain asks receivers to do with mail that fails DMARC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

impl DmarcPolicy {
    /// Whether mail failing DMARC is likely to be refused or junked, so that a list
    /// copy keeping the author's From would not arrive.
    pub fn is_strict(self) -> bool {
        matches!(self, DmarcPolicy::Quarantine | DmarcPolicy::Reject)
    }

    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "none" => Some(DmarcPolicy::None),
            "quarantine" => Some(DmarcPolicy::Quarantine),
            "reject" => Some(DmarcPolicy::Reject),
            _ => None,
        }
    }
}

/// The policy tags of one DMARC record; the reporting tags do not matter to a list.
///
/// RFC 9989's `np` (policy for non-existent subdomains) is not read: telling that
/// an author domain does not exist would take more queries than the `_dmarc` walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmarcRecord {
    /// Policy for the domain that publishes the record.
    pub p: DmarcPolicy,
    /// Policy for its subdomains, when it differs from `p`.
    pub sp: Option<DmarcPolicy>,
}

impl DmarcRecord {
    /// Reads the text of one TXT record (its strings already concatenated).
    ///
    /// `None` unless the first tag is `v=DMARC1`. A missing or unknown `p` reads as
    /// `none` (RFC 9989 drops the requirement; RFC 7489 §6.6.3 keeps such records for
    /// reporting) and an unknown `sp` as absent. The version is matched without regard
    /// to case: accepting a sloppy record can only make listd rewrite more often,
    /// which is harmless.
    pub fn parse(txt: &str) -> Option<DmarcRecord> {
        let mut tags = txt.split(';').map(|tag| {
            let (name, value) = tag.split_once('=').unwrap_or((tag, ""));
            (name.trim().to_ascii_lowercase(), value.trim())
        });
        match tags.next() {
            Some((name, value)) if name == "v" && value.eq_ignore_ascii_case("DMARC1") => {}
            _ => return None,
        }
        let mut record = DmarcRecord {
            p: DmarcPolicy::None,
            sp: None,
        };
        let (mut seen_p, mut seen_sp) = (false, false);
        // The first occurrence of a tag wins, so a repeated tag cannot override it.
        for (name, value) in tags {
            match name.as_str() {
                "p" if !seen_p => {
                    seen_p = true;
                    record.p = DmarcPolicy::parse(value).unwrap_or(DmarcPolicy::None);
                }
                "sp" if !seen_sp => {
                    seen_sp = true;
                    record.sp = DmarcPolicy::parse(value);
                }
                _ => {}
            }
        }
        Some(record)
    }

    /// The record among the TXT records found at one name: exactly one of them must
    /// be a DMARC record, otherwise the name has none (RFC 7489 §6.6.3).
    pub fn select<'a>(txts: impl IntoIterator<Item = &'a str>) -> Option<DmarcRecord> {
        let mut records = txts.into_iter().filter_map(DmarcRecord::parse);
        match (records.next(), records.next()) {
            (Some(record), None) => Some(record),
            _ => None,
        }
    }

    /// The policy this record sets for the author's domain: `p` when it was published
    /// at that domain itself, `sp` (or else `p`) when it was found at an ancestor.
    pub fn policy(self, at_author_domain: bool) -> DmarcPolicy {
        if at_author_domain {
            self.p
        } else {
            self.sp.unwrap_or(self.p)
        }
    }
}

/// Most labels queried below the author domain (RFC 9989 §4.10): a name with more
/// labels jumps straight to its last seven after the first query, so a long crafted
/// name cannot make us send dozens of queries.
const MAX_WALK_LABELS: usize = 7;

/// The names whose `_dmarc` TXT records are looked up, in order: the author domain,
/// then its ancestors one label at a time, never a single label (a TLD).
///
/// Lower-cased, without a trailing dot. Empty for a single label or a malformed name.
pub fn lookup_names(domain: &str) -> Vec<String> {
    let domain = domain.trim().to_ascii_lowercase();
    let domain = domain.strip_suffix('.').unwrap_or(&domain);
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|label| label.is_empty()) {
        return Vec::new();
    }
    let first_ancestor = if labels.len() > MAX_WALK_LABELS + 1 {
        labels.len() - MAX_WALK_LABELS
    } else {
        1
    };
    std::iter::once(domain.to_string())
        .chain((first_ancestor..labels.len() - 1).map(|i| labels[i..].join(".")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(p: DmarcPolicy, sp: Option<DmarcPolicy>) -> Option<DmarcRecord> {
        Some(DmarcRecord { p, sp })
    }

    #[test]
    fn a_plain_record_is_read() {
        assert_eq!(
            DmarcRecord::parse("v=DMARC1; p=reject; rua=mailto:d@example.com"),
            record(DmarcPolicy::Reject, None)
        );
        assert_eq!(
            DmarcRecord::parse("v=DMARC1;p=none;sp=quarantine;pct=100"),
            record(DmarcPolicy::None, Some(DmarcPolicy::Quarantine))
        );
    }

    #[test]
    fn whitespace_and_case_do_not_matter() {
        assert_eq!(
            DmarcRecord::parse(" v = DMARC1 ;  P = Quarantine ; SP=REJECT ; "),
            record(DmarcPolicy::Quarantine, Some(DmarcPolicy::Reject))
        );
    }

    #[test]
    fn only_records_starting_with_the_version_count() {
        assert_eq!(DmarcRecord::parse("v=spf1 -all"), None);
        assert_eq!(DmarcRecord::parse("p=reject; v=DMARC1"), None);
        assert_eq!(DmarcRecord::parse("v=DMARC2; p=reject"), None);
        assert_eq!(DmarcRecord::parse("v=DMARC1p=reject"), None);
        assert_eq!(DmarcRecord::parse(""), None);
    }

    #[test]
    fn an_unknown_or_missing_p_reads_as_none() {
        assert_eq!(
            DmarcRecord::parse("v=DMARC1; p=block; sp=reject"),
            record(DmarcPolicy::None, Some(DmarcPolicy::Reject))
        );
        assert_eq!(
            DmarcRecord::parse("v=DMARC1; rua=mailto:d@example.com"),
            record(DmarcPolicy::None, None)
        );
        assert_eq!(
            DmarcRecord::parse("v=DMARC1; p=reject; sp=maybe"),
            record(DmarcPolicy::Reject, None)
        );
    }

    #[test]
    fn a_repeated_tag_does_not_override_the_first() {
        assert_eq!(
            DmarcRecord::parse("v=DMARC1; p=reject; p=none"),
            record(DmarcPolicy::Reject, None)
        );
    }

    #[test]
    fn a_name_has_a_record_only_when_exactly_one_txt_is_dmarc() {
        let one = DmarcRecord::select(["v=spf1 -all", "v=DMARC1; p=reject"]);
        assert_eq!(one, record(DmarcPolicy::Reject, None));
        assert_eq!(
            DmarcRecord::select(["v=DMARC1; p=reject", "v=DMARC1; p=none"]),
            None
        );
        assert_eq!(DmarcRecord::select(["v=spf1 -all"]), None);
        assert_eq!(DmarcRecord::select([]), None);
    }

    #[test]
    fn sp_applies_only_below_the_publishing_domain() {
        let r = DmarcRecord {
            p: DmarcPolicy::Reject,
            sp: Some(DmarcPolicy::None),
        };
        assert_eq!(r.policy(true), DmarcPolicy::Reject);
        assert_eq!(r.policy(false), DmarcPolicy::None);
        let no_sp = DmarcRecord {
            p: DmarcPolicy::Quarantine,
            sp: None,
        };
        assert_eq!(no_sp.policy(false), DmarcPolicy::Quarantine);
    }

    #[test]
    fn strict_means_quarantine_or_reject() {
        assert!(!DmarcPolicy::None.is_strict());
        assert!(DmarcPolicy::Quarantine.is_strict());
        assert!(DmarcPolicy::Reject.is_strict());
    }

    #[test]
    fn the_walk_climbs_label_by_label_and_stops_before_the_tld() {
        assert_eq!(
            lookup_names("Mail.Sub.Example.COM."),
            ["mail.sub.example.com", "sub.example.com", "example.com"]
        );
        assert_eq!(lookup_names("example.com"), ["example.com"]);
        assert!(lookup_names("com").is_empty());
        assert!(lookup_names("").is_empty());
        assert!(lookup_names("a..example.com").is_empty());
    }

    #[test]
    fn a_long_name_jumps_to_its_last_seven_labels() {
        let eight = lookup_names("a.b.c.d.e.f.example.com");
        assert_eq!(eight.len(), 7, "{eight:?}");
        assert_eq!(eight[1], "b.c.d.e.f.example.com");

        let names = lookup_names("x.y.z.a.b.c.d.e.f.example.com");
        assert_eq!(
            names,
            [
                "x.y.z.a.b.c.d.e.f.example.com",
                "b.c.d.e.f.example.com",
                "c.d.e.f.example.com",
                "d.e.f.example.com",
                "e.f.example.com",
                "f.example.com",
                "example.com",
            ]
        );
    }

    proptest! {
        #[test]
        fn parsing_any_text_never_panics(txt in "\\PC*") {
            let _ = DmarcRecord::parse(&txt);
        }

        #[test]
        fn parsing_tag_soup_never_panics(txt in "(v|p|sp|DMARC1|reject|=|;| |\\PC){0,40}") {
            let _ = DmarcRecord::parse(&txt);
        }

        #[test]
        fn the_walk_starts_at_the_domain_and_never_queries_a_tld(
            labels in prop::collection::vec("[a-zA-Z0-9-]{1,10}", 1..14),
        ) {
            let domain = labels.join(".");
            let names = lookup_names(&domain);
            if labels.len() >= 2 {
                prop_assert_eq!(&names[0], &domain.to_ascii_lowercase());
            } else {
                prop_assert!(names.is_empty());
            }
            prop_assert!(names.len() <= MAX_WALK_LABELS);
            for pair in names.windows(2) {
                let parent = format!(".{}", pair[1]);
                prop_assert!(pair[0].ends_with(&parent), "{:?}", pair);
            }
            for name in &names {
                prop_assert!(name.contains('.'), "single label {}", name);
            }
        }
    }
}
