//! The archive's rules (docs/contract.md#archive): threading, reading order, and what a
//! public page may show of an address.
//!
//! Threading is JWZ's without subject grouping: a message's parent is the nearest of
//! the ancestors it names (In-Reply-To, then References from the last) that is in the
//! archive. That depends only on which messages are archived, never on the order they
//! arrived in: a parent archived after its replies becomes their parent. Broken
//! headers can make two messages name each other; such a cycle is cut at its earliest
//! message (by date, then Message-ID), which becomes a root.

use std::borrow::Cow;
use std::collections::HashMap;

/// Most ancestors kept per message (nearest first); a reply's parent is among the first.
pub const MAX_REFS: usize = 50;

/// One archived message as threading sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<'a> {
    /// The Message-ID, without angle brackets.
    pub message_id: &'a str,
    /// The ancestors it names, nearest first.
    pub refs: &'a [String],
    /// Its date, as a Unix timestamp: cycles are cut at the earliest message.
    pub date: i64,
}

/// The ancestors a message names, nearest first, without repeats or itself:
/// In-Reply-To's, then References' from the last (RFC 5322 §3.6.4).
pub fn ancestors(own_id: &str, in_reply_to: &[String], references: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let candidates = in_reply_to.iter().chain(references.iter().rev());
    for id in candidates {
        let id = bare_id(id);
        if id.is_empty() || id == own_id || out.iter().any(|o| o == id) {
            continue;
        }
        out.push(id.to_string());
        if out.len() == MAX_REFS {
            break;
        }
    }
    out
}

/// A Message-ID without white space or angle brackets.
pub fn bare_id(id: &str) -> &str {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
}

/// A Message-ID as a path segment: percent-encoded outside RFC 3986's unreserved
/// characters.
pub fn message_id_path(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 8);
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The parent of each node (an index into `nodes`), or `None` for a root. `nodes`
/// must not repeat a Message-ID. The result does not depend on the order of `nodes`.
pub fn parents(nodes: &[Node<'_>]) -> Vec<Option<usize>> {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.message_id, i))
        .collect();
    let mut parent: Vec<Option<usize>> = nodes
        .iter()
        .map(|n| {
            n.refs
                .iter()
                .filter_map(|r| index.get(r.as_str()).copied())
                .find(|&p| nodes[p].message_id != n.message_id)
        })
        .collect();
    // every node has at most one parent: each cycle is found by walking up once
    #[derive(Clone, Copy, PartialEq)]
    enum Seen {
        No,
        OnPath,
        Done,
    }
    let mut seen = vec![Seen::No; nodes.len()];
    for start in 0..nodes.len() {
        let mut path: Vec<usize> = Vec::new();
        let mut at = Some(start);
        while let Some(i) = at {
            match seen[i] {
                Seen::Done => break,
                Seen::OnPath => {
                    // the path from `i` on is a cycle
                    let from = path.iter().position(|&p| p == i).unwrap_or(0);
                    let cycle: &[usize] = &path[from..];
                    if let Some(&cut) = cycle
                        .iter()
                        .min_by_key(|&&c| (nodes[c].date, nodes[c].message_id))
                    {
                        parent[cut] = None;
                    }
                    break;
                }
                Seen::No => {
                    seen[i] = Seen::OnPath;
                    path.push(i);
                    at = parent[i];
                }
            }
        }
        for p in path {
            seen[p] = Seen::Done;
        }
    }
    parent
}

/// The root of each node's thread, given [`parents`] (which has no cycles).
pub fn roots(parent: &[Option<usize>]) -> Vec<usize> {
    let mut root: Vec<Option<usize>> = vec![None; parent.len()];
    for start in 0..parent.len() {
        let mut path = vec![start];
        let mut at = start;
        let found = loop {
            if let Some(r) = root[at] {
                break r;
            }
            match parent[at] {
                Some(p) if path.len() <= parent.len() => {
                    path.push(p);
                    at = p;
                }
                _ => break at,
            }
        };
        for p in path {
            root[p] = Some(found);
        }
    }
    root.into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or(i))
        .collect()
}

/// One message of a thread as shown: its id, its parent's id, its date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<K> {
    pub key: K,
    pub parent: Option<K>,
    pub date: i64,
}

/// A thread in reading order: depth first, replies after their parent, siblings by
/// date (then key); with each entry's depth. Entries whose parent is not among them
/// are read as roots.
pub fn reading_order<K: Clone + Ord + std::hash::Hash>(
    entries: &[Entry<K>],
) -> Vec<(usize, usize)> {
    let known: HashMap<&K, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (&e.key, i))
        .collect();
    let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let parent = e
            .parent
            .as_ref()
            .and_then(|p| known.get(p).copied())
            .filter(|&p| p != i);
        children.entry(parent).or_default().push(i);
    }
    for list in children.values_mut() {
        list.sort_by(|&a, &b| {
            (entries[a].date, &entries[a].key).cmp(&(entries[b].date, &entries[b].key))
        });
    }
    let mut out = Vec::with_capacity(entries.len());
    let mut visited = vec![false; entries.len()];
    let mut stack: Vec<(usize, usize)> = children
        .get(&None)
        .map(|r| r.iter().rev().map(|&i| (i, 0)).collect())
        .unwrap_or_default();
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut visited[i], true) {
            continue;
        }
        out.push((i, depth));
        if let Some(kids) = children.get(&Some(i)) {
            stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
        }
    }
    // a cycle among the entries (the caller's data was inconsistent): shown at the end
    for (i, v) in visited.iter().enumerate() {
        if !v {
            out.push((i, 0));
        }
    }
    out
}

/// `text` with the domain of every mail address replaced by `…` (`anne@…`), for the
/// archive's pages, JSON and feed.
pub fn obscure_addresses(text: &str) -> Cow<'_, str> {
    if !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let local_char = |c: char| c.is_alphanumeric() || "._%+-!#$&'*/=?^`{|}~".contains(c);
    let domain_char = |c: char| c.is_alphanumeric() || c == '.' || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let (before, after) = rest.split_at(at);
        let after = &after[1..];
        let has_local = before.chars().next_back().is_some_and(local_char);
        let domain_len: usize = after
            .char_indices()
            .find(|&(_, c)| !domain_char(c))
            .map_or(after.len(), |(i, _)| i);
        let domain = after[..domain_len].trim_end_matches(['.', '-']);
        if has_local && domain.contains('.') {
            out.push_str(before);
            out.push_str("@…");
            rest = &after[domain.len()..];
        } else {
            out.push_str(before);
            out.push('@');
            rest = after;
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A year and month, as in `/archive/2024/03` and `?from=2024-03`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    pub month: u8,
}

impl Month {
    /// `2024-03` (or `2024/03`).
    pub fn parse(text: &str) -> Option<Month> {
        let (y, m) = text.trim().split_once(['-', '/'])?;
        Month::from_parts(y, m)
    }

    pub fn from_parts(year: &str, month: &str) -> Option<Month> {
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let year: i32 = year.parse().ok()?;
        let month: u8 = month.parse().ok()?;
        ((1..=12).contains(&month) && year >= 1970).then_some(Month { year, month })
    }

    /// The month after this one.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Its first instant, UTC.
    pub fn start(self) -> time::OffsetDateTime {
        let month = time::Month::try_from(self.month).unwrap_or(time::Month::January);
        time::Date::from_calendar_date(self.year, month, 1)
            .map(|d| d.midnight().assume_utc())
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    /// The month a time falls in, UTC.
    pub fn of(t: time::OffsetDateTime) -> Month {
        let t = t.to_offset(time::UtcOffset::UTC);
        Month {
            year: t.year(),
            month: u8::from(t.month()),
        }
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// (message id, parent id) pairs for a set of messages given in some order.
    fn tree(msgs: &[(String, Vec<String>, i64)]) -> Vec<(String, Option<String>, String)> {
        let nodes: Vec<Node<'_>> = msgs
            .iter()
            .map(|(id, refs, date)| Node {
                message_id: id,
                refs,
                date: *date,
            })
            .collect();
        let parent = parents(&nodes);
        let root = roots(&parent);
        let mut out: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.message_id.to_string(),
                    parent[i].map(|p| nodes[p].message_id.to_string()),
                    nodes[root[i]].message_id.to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn the_nearest_archived_ancestor_is_the_parent() {
        let msgs = vec![
            ("a".to_string(), ids(&[]), 1),
            // c answers b, which is not archived; b answered a
            ("c".to_string(), ids(&["b", "a"]), 3),
            ("d".to_string(), ids(&["c", "b", "a"]), 4),
        ];
        let t = tree(&msgs);
        assert_eq!(t[1], ("c".into(), Some("a".into()), "a".into()));
        assert_eq!(t[2], ("d".into(), Some("c".into()), "a".into()));
    }

    #[test]
    fn a_cycle_is_cut_at_its_earliest_message() {
        let msgs = vec![
            ("x".to_string(), ids(&["y"]), 5),
            ("y".to_string(), ids(&["x"]), 2),
            ("z".to_string(), ids(&["x"]), 9),
        ];
        let t = tree(&msgs);
        assert_eq!(t[1], ("y".into(), None, "y".into()));
        assert_eq!(t[0], ("x".into(), Some("y".into()), "y".into()));
        assert_eq!(t[2], ("z".into(), Some("x".into()), "y".into()));
        let own = vec![("s".to_string(), ids(&["s"]), 1)];
        assert_eq!(tree(&own)[0].1, None, "a message naming itself is a root");
    }

    #[test]
    fn ancestors_are_nearest_first_without_repeats() {
        let a = ancestors(
            "me",
            &ids(&["<p>"]),
            &ids(&["<root>", "<mid>", "<p>", "<me>"]),
        );
        assert_eq!(a, ids(&["p", "mid", "root"]));
    }

    #[test]
    fn reading_order_is_depth_first_with_siblings_by_date() {
        let e = |k: &str, p: Option<&str>, d: i64| Entry {
            key: k.to_string(),
            parent: p.map(str::to_string),
            date: d,
        };
        let entries = vec![
            e("r2", Some("root"), 3),
            e("r1", Some("root"), 2),
            e("r1a", Some("r1"), 5),
            e("root", None, 1),
        ];
        let order: Vec<(String, usize)> = reading_order(&entries)
            .into_iter()
            .map(|(i, d)| (entries[i].key.clone(), d))
            .collect();
        assert_eq!(
            order,
            vec![
                ("root".into(), 0),
                ("r1".into(), 1),
                ("r1a".into(), 2),
                ("r2".into(), 1)
            ]
        );
    }

    #[test]
    fn addresses_lose_their_domain() {
        assert_eq!(
            obscure_addresses("Anne <anne.b@example.net> wrote: mail me at x@y.org."),
            "Anne <anne.b@…> wrote: mail me at x@….",
        );
        assert_eq!(
            obscure_addresses("@home, a@b, 100 @ 5"),
            "@home, a@b, 100 @ 5"
        );
        assert_eq!(obscure_addresses("zoë@exämple.de"), "zoë@…");
    }

    #[test]
    fn months_parse_and_step() {
        let m = Month::parse("2024-12").unwrap();
        assert_eq!(
            m.next(),
            Month {
                year: 2025,
                month: 1
            }
        );
        assert_eq!(m.to_string(), "2024-12");
        assert!(Month::parse("2024-13").is_none());
        assert!(Month::parse("24-01").is_none());
        assert_eq!(Month::of(m.start()), m);
    }

    /// Random threads: each message names some earlier messages of the set (and
    /// messages that are not there), nearest first; now and then a loop.
    fn message_set() -> impl Strategy<Value = Vec<(String, Vec<String>, i64)>> {
        (1usize..40).prop_flat_map(|n| {
            let refs = proptest::collection::vec(
                proptest::collection::vec((0usize..n + 5, any::<bool>()), 0..5),
                n,
            );
            let dates = proptest::collection::vec(0i64..20, n);
            (refs, dates).prop_map(move |(refs, dates)| {
                (0..n)
                    .map(|i| {
                        let named: Vec<String> =
                            refs[i].iter().map(|&(r, _)| format!("m{r}")).collect();
                        (format!("m{i}"), named, dates[i])
                    })
                    .collect()
            })
        })
    }

    proptest! {
        #[test]
        fn threads_do_not_depend_on_arrival_order(
            msgs in message_set(),
            seed in any::<u64>(),
        ) {
            let expected = tree(&msgs);
            // arrival orders: reversed, and shuffled by the seed
            let mut reversed = msgs.clone();
            reversed.reverse();
            prop_assert_eq!(&tree(&reversed), &expected);
            let mut shuffled = msgs.clone();
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            prop_assert_eq!(&tree(&shuffled), &expected);
            // and a thread's order holds every message once
            let nodes: Vec<Node<'_>> = msgs.iter().map(|(id, refs, date)| Node { message_id: id, refs, date: *date }).collect();
            let parent = parents(&nodes);
            let entries: Vec<Entry<usize>> = (0..nodes.len()).map(|i| Entry { key: i, parent: parent[i], date: nodes[i].date }).collect();
            let mut order: Vec<usize> = reading_order(&entries).into_iter().map(|(i, _)| i).collect();
            order.sort();
            prop_assert_eq!(order, (0..nodes.len()).collect::<Vec<_>>());
        }
    }
}
