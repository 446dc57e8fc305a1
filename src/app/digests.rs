//! Digests (docs/contract.md#digests): deciding that an issue goes out, and queuing it.
//!
//! The fan-out (`posts`) records what each digest member is owed. An issue is made
//! when the waiting posts reach the list's `digest-size-kb` (in the transaction that
//! accepts the post), when the `digest-frequency` boundary passes (the maintenance,
//! one process at a time), when an owner runs `listd digests send`, and once more
//! when `digest` is turned off. Making an issue takes what is owed, builds its bytes
//! once per format (`mail::digest`, with the list's footer laid out as for posts) and
//! queues one row per member pointing at them, in one transaction; the delivery workers
//! send the copies like those of posts, each with the member's own unsubscribe link.
//! Why each post reaches each member once: docs/standards.md#digest-exactly-once.

use super::{App, AppError};
use crate::domain::digest::{IssueNumber, size_reached};
use crate::domain::headers::ListHeaders;
use crate::domain::{List, ListRef, Posting};
use crate::mail::digest::{Digest, DigestItem, build_digest};
use crate::mail::footer::FooterText;
use crate::store;
use crate::store::digests::{DigestPost, OwedGroup};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

/// An issue queued.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DigestSent {
    /// The list's posting address.
    pub list: String,
    pub volume: i32,
    pub issue: i32,
    pub posts: usize,
    pub copies: u64,
}

impl App {
    /// Sends what waits now, on one list or on every list (`listd digests send`).
    pub async fn send_digests(&self, list: Option<&ListRef>) -> Result<Vec<DigestSent>, AppError> {
        let now = OffsetDateTime::now_utc();
        let lists = match list {
            Some(l) => vec![self.get_list(l).await?],
            None => {
                let mut lists = Vec::new();
                for (id, _) in store::digests::list_waiting_lists(&self.db).await? {
                    if let Some(l) = store::lists::find_list_by_id(&self.db, id).await? {
                        lists.push(l);
                    }
                }
                lists
            }
        };
        let mut sent = Vec::new();
        for list in lists {
            let mut tx = self.db.begin().await?;
            let issued = self.issue_digest(&mut tx, &list, now).await?;
            tx.commit().await?;
            sent.extend(issued);
        }
        if !sent.is_empty() {
            self.wakeups.outbound();
        }
        Ok(sent)
    }

    /// The schedule, as of `now`: every list whose oldest waiting post arrived before
    /// the last boundary of its `digest-frequency` gets its issue (and a list whose
    /// digests were turned off, what still waits). Run by the maintenance.
    pub(crate) async fn send_due_digests(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<DigestSent>, AppError> {
        let mut sent = Vec::new();
        for (id, oldest) in store::digests::list_waiting_lists(&self.db).await? {
            let Some(list) = store::lists::find_list_by_id(&self.db, id).await? else {
                continue;
            };
            let s = &list.settings;
            if s.digest && !s.digest_frequency.due(oldest, now) {
                continue;
            }
            let mut tx = self.db.begin().await?;
            let issued = self.issue_digest(&mut tx, &list, now).await?;
            tx.commit().await?;
            sent.extend(issued);
        }
        if !sent.is_empty() {
            self.wakeups.outbound();
        }
        Ok(sent)
    }

    /// After a fan-out that left the post owed to digest members, in its transaction:
    /// records the post as waiting, and makes the issue at once when the waiting posts
    /// reach the list's size.
    pub(crate) async fn post_owed(
        &self,
        tx: &mut PgConnection,
        list: &List,
        post_id: i64,
        size: usize,
    ) -> Result<Option<DigestSent>, AppError> {
        let size = i32::try_from(size).unwrap_or(i32::MAX);
        store::digests::insert_digest_post(&mut *tx, list.id, post_id, size).await?;
        let waiting = store::digests::find_waiting(&mut *tx, list.id).await?;
        if !size_reached(waiting.bytes, list.settings.digest_size_kb) {
            return Ok(None);
        }
        self.issue_digest(tx, list, OffsetDateTime::now_utc()).await
    }

    /// Makes the list's next issue from everything its members are owed, in `tx`:
    /// numbers it, builds it once per format and set of posts, and queues one copy
    /// per member. Nothing when nobody is owed anything (no number is used up).
    pub(crate) async fn issue_digest(
        &self,
        tx: &mut PgConnection,
        list: &List,
        now: OffsetDateTime,
    ) -> Result<Option<DigestSent>, AppError> {
        // one issue of a list at a time: the numbering, and no two issues taking the
        // same rows in different orders
        store::lock_in(&mut *tx, &format!("digest/{}", list.id)).await?;
        let (taken, groups) = store::digests::take_owed(&mut *tx, list.id).await?;
        if groups.is_empty() {
            if !taken.is_empty() {
                tracing::info!(list = %list.address, posts = taken.len(), "digest not sent: nobody to send it to");
            }
            return Ok(None);
        }
        let mut wanted: Vec<i64> = groups.iter().flat_map(|g| g.post_ids.clone()).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let posts = store::digests::list_digest_posts(&mut *tx, &wanted).await?;
        if posts.is_empty() {
            return Ok(None);
        }
        let volume = IssueNumber::volume_at(now);
        let (issue_id, number) = store::digests::insert_digest_issue(
            &mut *tx,
            list.id,
            volume,
            i32::try_from(posts.len()).unwrap_or(i32::MAX),
        )
        .await?;
        let list_url = self.list_url(list);
        let headers = ListHeaders {
            list: &list.address,
            list_name: &list.settings.name,
            list_url: &list_url,
            announce_only: list.settings.posting == Posting::Announce,
            archive_url: None,
        };
        // every copy ends with the list's footer and the member's own link, as posts do
        let footer = self.footer(list);
        let link_base = self.unsubscribe_link_base();
        // what every edition of the issue shares
        let shared = Digest {
            headers,
            issue: IssueNumber { volume, number },
            date: now,
            items: &[],
            plain: false,
            footer: footer.as_ref().map(|rendered| FooterText {
                rendered,
                link_base: &link_base,
            }),
        };
        let mut copies = 0;
        for group in &groups {
            copies += queue_edition(&mut *tx, list.id, issue_id, &shared, group, &posts).await?;
        }
        tracing::info!(list = %list.address, volume, issue = number, posts = posts.len(), copies, "digest queued");
        Ok(Some(DigestSent {
            list: list.address.to_string(),
            volume,
            issue: number,
            posts: posts.len(),
            copies,
        }))
    }
}

/// Builds the edition of an issue that a group of members is owed (its posts, in its
/// format) and queues one copy per member of the group; returns how many.
async fn queue_edition(
    tx: &mut PgConnection,
    list_id: Uuid,
    issue_id: i64,
    shared: &Digest<'_>,
    group: &OwedGroup,
    posts: &[DigestPost],
) -> Result<u64, AppError> {
    let items: Vec<DigestItem<'_>> = posts
        .iter()
        .filter(|p| group.post_ids.binary_search(&p.id).is_ok())
        .map(|p| DigestItem {
            subject: &p.subject,
            author: p.author.as_deref(),
            relayed: &p.relayed,
        })
        .collect();
    if items.is_empty() {
        return Ok(0);
    }
    let built = build_digest(&Digest {
        items: &items,
        plain: group.plain,
        ..*shared
    });
    let edition = store::digests::insert_digest_edition(
        &mut *tx,
        issue_id,
        list_id,
        group.plain,
        &group.post_ids,
        &built.message,
        built.layout.map(|l| l.to_bytes()).as_deref(),
    )
    .await?;
    Ok(store::digests::insert_digest_copies(&mut *tx, edition, &group.member_ids).await?)
}
