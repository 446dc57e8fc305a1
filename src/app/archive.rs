//! The archive (docs/contract.md#archive): archiving accepted posts, importing and
//! exporting mbox files, taking a message down, and what the archive's pages show.
//!
//! Messages are archived in batches (one for a post, in the transaction that accepts
//! it; a thousand at a time for an import). Each batch is threaded under a per-list
//! lock: the threads the batch touches (those of the messages it names, and those of
//! messages naming it) are loaded and threaded again with the new messages by
//! `domain::archive`, and whatever moved is written back. A message's parent depends
//! only on which messages are archived, so the archive ends up the same whatever the
//! order in which its messages came.
//!
//! An import stores each batch's raw messages on a connection of their own
//! (`archive_raw`) while the batch is threaded, and commits them first: a message that
//! can be read always has its raw message, and the raw rows of messages that never came
//! (an import stopped between the two commits) are noted until then and deleted when
//! no import's batch is in flight.
//!
//! A message becomes searchable when its search row (its vector and its own text) is
//! stored: for a post in the same transaction; for an import, on a connection of its
//! own as each batch of messages is stored (the reading thread makes the vectors, most
//! of an import's work), then the list is walked once more for messages still
//! unindexed, whose text is read again from the raw message. Whatever stops an import,
//! running it again stores what is missing and indexes what is unindexed.
//!
//! Who may read an archive is decided in one place, [`App::may_read`]. Everything the
//! pages show passes through [`obscure_addresses`]: no full address leaves in a page,
//! a JSON body or the feed; the raw message and the mbox download keep them.

use super::{App, AppError};
use crate::domain::archive::{
    Entry, Month, Node, bare_id, message_id_path, obscure_addresses, parents, reading_order, roots,
};
use crate::domain::search::{Vector, Words};
use crate::domain::{Archive, EmailAddress, FeedToken, List, ListRef, MemberStatus};
use crate::mail::archive::{AttachmentInfo, Facts, Relayer, read_facts, render};
use crate::mail::mbox::{Entry as MboxEntry, MboxError};
use crate::store;
use serde::Serialize;
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;

/// Threads (or search results) on one page.
pub const PAGE_SIZE: i64 = 50;
/// Messages written to the database in one statement by an import.
const IMPORT_BATCH: usize = 1000;
/// Connections computing search vectors side by side for an import.
const IMPORT_INDEXERS: usize = 2;
/// Messages indexed for search in one transaction for an import.
const INDEX_BATCH: i64 = 1000;
/// Messages an import adds from which it brings the tables' statistics up to date.
const ANALYZE_AFTER: u64 = 10_000;
/// Matches ranked by a search, the newest (docs/contract.md#archive): ranking reads
/// each one, so a word that half the archive holds costs what a rarer one does.
pub const SEARCH_RANKED: i64 = 1000;
/// The newest messages a search tests first, to choose how to find its matches.
const SEARCH_PROBE: i64 = 300;
/// Messages a search may walk, newest first, to find the matches it ranks.
const SEARCH_WALK: i64 = 20_000;
/// The newest messages among which a phrase of common words is looked for
/// (docs/contract.md#archive): each is read to find where its words stand.
const PHRASE_WINDOW: i64 = 30_000;
/// Entries in the feed.
const FEED_SIZE: i64 = 50;

/// A message made ready to be archived.
#[derive(Debug)]
pub struct Readied {
    raw: Vec<u8>,
    facts: Facts,
    envelope_from: Option<String>,
    date: OffsetDateTime,
    post_id: Option<i64>,
    /// Its search vector, when it was made on reading.
    vector: Option<Vector>,
}

impl Readied {
    /// Reads `raw` (CRLF line ends). Its date is its Date header, or `arrival` when
    /// that is missing, unreadable or later than now.
    pub fn new(
        raw: Vec<u8>,
        relayer: Option<Relayer<'_>>,
        envelope_from: Option<String>,
        arrival: OffsetDateTime,
    ) -> Readied {
        let facts = read_facts(&raw, relayer);
        let now = OffsetDateTime::now_utc();
        let date = facts.date.filter(|d| *d <= now).unwrap_or(arrival);
        Readied {
            raw,
            facts,
            envelope_from,
            date,
            post_id: None,
            vector: None,
        }
    }

    /// Makes its search vector.
    fn make_vector(&mut self, words: &mut Words) {
        let f = &self.facts;
        self.vector = Some(words.message(&f.subject, &f.from_name, &f.text));
    }

    pub fn message_id(&self) -> &str {
        &self.facts.message_id
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// Entries read as messages.
    pub read: u64,
    /// Messages new to the archive.
    pub added: u64,
    /// Entries that could not be read, by place in the file.
    pub bad: Vec<BadEntry>,
    /// Messages made searchable ([`App::index_archive_while`]): the new ones, and any
    /// an interrupted import left unindexed.
    pub indexed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BadEntry {
    /// The entry's number in the file (from 1; 0 before the first entry).
    pub entry: usize,
    pub line: usize,
    pub reason: String,
}

/// A thread in a listing.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadSummary {
    /// The root message's Message-ID.
    pub message_id: String,
    pub subject: String,
    pub from_name: String,
    pub messages: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_date: OffsetDateTime,
}

/// A page of threads and the keyset of the next page.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadPage {
    pub threads: Vec<ThreadSummary>,
    pub next: Option<String>,
}

/// One message of a thread, in reading order.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadEntry {
    pub message_id: String,
    /// The Message-ID of the archived message it answers.
    pub parent: Option<String>,
    pub subject: String,
    pub from_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub date: OffsetDateTime,
    pub depth: usize,
    pub removed: bool,
}

/// One message as its page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub message_id: String,
    pub subject: String,
    pub from_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub date: OffsetDateTime,
    /// The text parts (or, for an HTML-only message, its text).
    pub text: String,
    /// Cleaned HTML, for an HTML-only message.
    pub html: Option<String>,
    pub attachments: Vec<AttachmentInfo>,
    pub thread: Vec<ThreadEntry>,
}

/// A search result.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub message_id: String,
    pub subject: String,
    pub from_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub date: OffsetDateTime,
    /// Text around the matches; matched words between `<<` and `>>`.
    pub snippet: String,
}

/// A feed entry.
#[derive(Debug, Clone)]
pub struct FeedEntry {
    pub message_id: String,
    pub subject: String,
    pub from_name: String,
    pub date: OffsetDateTime,
    pub text: String,
}

/// Messages to export and the keyset after them.
pub struct ExportPage {
    pub messages: Vec<store::archive::ExportRow>,
    pub next: Option<(OffsetDateTime, i64)>,
}

/// What `archive rm` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveOutcome {
    Removed,
    AlreadyRemoved,
}

impl App {
    /// Whether `viewer` (the signed-in address, if any) may read the list's archive:
    /// anyone when it is public; when it is for members, a subscribed member, owner or
    /// moderator of the list, or a site admin; nobody when it is off.
    pub async fn may_read(
        &self,
        list: &List,
        viewer: Option<&EmailAddress>,
    ) -> Result<bool, AppError> {
        match list.settings.archive {
            Archive::Off => Ok(false),
            Archive::Public => Ok(true),
            Archive::Members => {
                let Some(viewer) = viewer else {
                    return Ok(false);
                };
                if self.settings.admins.iter().any(|a| a.key() == viewer.key()) {
                    return Ok(true);
                }
                let roles = store::members::find_member_roles(&self.db, list.id, viewer).await?;
                Ok(roles.iter().any(|m| m.status == MemberStatus::Subscribed))
            }
        }
    }

    /// The list whose archive `viewer` asks to read; a list they may not read is as
    /// unknown as one that does not exist.
    pub async fn readable_archive(
        &self,
        list: &ListRef,
        viewer: Option<&EmailAddress>,
    ) -> Result<List, AppError> {
        let found = self.get_list(list).await?;
        if self.may_read(&found, viewer).await? {
            Ok(found)
        } else {
            Err(AppError::NoSuchList(list.to_string()))
        }
    }

    /// The list whose feed a personal feed token opens: the token must be that of a
    /// current membership of the list (any role).
    pub async fn archive_by_feed_token(
        &self,
        list: &ListRef,
        token: &str,
    ) -> Result<List, AppError> {
        let found = self.get_list(list).await?;
        let unknown = || AppError::NoSuchList(list.to_string());
        if found.settings.archive == Archive::Off {
            return Err(unknown());
        }
        let member_id = FeedToken::claimed_member(token).ok_or_else(unknown)?;
        let member = store::archive::find_feed_member(&self.db, member_id)
            .await?
            .ok_or_else(unknown)?;
        let current = member.list_id == found.id
            && member.status == MemberStatus::Subscribed.as_str()
            && member.subscribed_at.is_some_and(|since| {
                FeedToken::verify(&self.settings.secret_key, token, member_id, since)
            });
        if current { Ok(found) } else { Err(unknown()) }
    }

    /// The feed URL to give `address` for a list: the public one for a public archive,
    /// a personal one for a members-only archive (for as long as the membership lasts),
    /// none when the archive is off or the address is not a member.
    pub async fn personal_feed_url(
        &self,
        list: &List,
        address: &EmailAddress,
    ) -> Result<Option<String>, AppError> {
        let base = format!("{}/feed.atom", self.archive_url(list));
        match list.settings.archive {
            Archive::Off => Ok(None),
            Archive::Public => Ok(Some(base)),
            Archive::Members => {
                let roles = store::members::find_member_roles(&self.db, list.id, address).await?;
                Ok(roles
                    .iter()
                    .find(|m| m.status == MemberStatus::Subscribed)
                    .and_then(|m| {
                        let since = m.subscribed_at?;
                        let token =
                            FeedToken::for_membership(&self.settings.secret_key, m.id, since);
                        Some(format!("{base}?token={}", token.as_str()))
                    }))
            }
        }
    }

    /// `{PUBLIC_URL}/lists/{list-id}/archive`.
    pub fn archive_url(&self, list: &List) -> String {
        format!("{}/archive", self.list_url(list))
    }

    /// The permalink of an archived message (its `Archived-At`).
    pub fn archived_at_url(&self, list: &List, message_id: &str) -> String {
        format!(
            "{}/m/{}",
            self.archive_url(list),
            message_id_path(bare_id(message_id))
        )
    }

    /// Archives an accepted post in the caller's transaction: `shared` is the copy as
    /// relayed without the members' own header lines (or the author's message, when
    /// it travelled wrapped), `message_id` the copies' Message-ID.
    pub(crate) async fn archive_post(
        &self,
        tx: &mut PgConnection,
        list: &List,
        post_id: i64,
        shared: &[u8],
        message_id: &str,
        envelope_from: Option<&str>,
    ) -> Result<(), AppError> {
        if list.settings.archive == Archive::Off {
            return Ok(());
        }
        let raw = crate::mail::rewrite::crlf_line_ends(shared).into_owned();
        let relayer = Relayer {
            address: &list.address,
            name: &list.settings.name,
        };
        let mut item = Readied::new(
            raw,
            Some(relayer),
            envelope_from.map(str::to_string),
            OffsetDateTime::now_utc(),
        );
        let id = crate::mail::storable(bare_id(message_id));
        if !id.is_empty() && id != item.facts.message_id {
            item.facts.message_id = id;
        }
        item.post_id = Some(post_id);
        // searchable in the same transaction, from the text read above
        item.make_vector(&mut Words::new());
        let raw = std::mem::take(&mut item.raw);
        let ids = store::archive::allocate_ids(&mut *tx, 1).await?;
        let archived = archive_batch(tx, list.id, vec![item], ids).await?;
        if let Some(&id) = archived.added.first() {
            store::archive::insert_raw(tx, &[(id, &raw)]).await?;
        }
        store::archive::insert_search(tx, &archived.made).await?;
        Ok(())
    }

    /// Imports mbox entries into a list's archive: messages it already holds (by
    /// Message-ID, removed ones included) are skipped, nothing is sent, entries that
    /// cannot be read are reported and skipped. `progress` hears how many entries were
    /// read so far. Reading and parsing run on a thread of their own, alongside the
    /// database writes.
    ///
    /// Each batch's raw messages are stored on a connection of their own ([`store_raw`])
    /// while the batch is threaded, and commit before it: a message that can be read
    /// always has its raw message. The batch's transaction holds the imports' shared
    /// lock from before its raw messages are stored until it commits, so that no
    /// [`App::clear_unfinished_imports`] takes them meanwhile.
    ///
    /// The messages are stored and threaded, browsable as soon as their batch commits;
    /// they become searchable with [`App::index_archive_while`], which the import's
    /// caller runs beside it, fed with the search vectors the reading thread makes
    /// (`made`). With `None`, the list is left to [`App::reindex_archives`].
    pub async fn import_archive<I>(
        &self,
        list: &ListRef,
        entries: I,
        mut progress: impl FnMut(u64),
        made: Option<tokio::sync::mpsc::Sender<Made>>,
    ) -> Result<ImportReport, AppError>
    where
        I: Iterator<Item = Result<MboxEntry, MboxError>> + Send + 'static,
    {
        let list = self.get_list(list).await?;
        // what an import stopped midway left is cleared first (unless a batch of
        // another is in flight)
        self.clear_unfinished_imports().await?;
        // until its indexing has finished, the server indexes the list when it starts
        // (an import stopped midway leaves it so)
        store::archive::insert_reindex(&self.db, list.id).await?;
        let (tx_batches, mut batches) = tokio::sync::mpsc::channel::<Batch>(2);
        let (address, name) = (list.address.clone(), list.settings.name.clone());
        let index = made.is_some();
        let reader = std::thread::spawn(move || {
            let relayer = Relayer {
                address: &address,
                name: &name,
            };
            read_batches(entries, relayer, index, &tx_batches);
        });
        let mut report = ImportReport::default();
        let mut failed = None;
        // the indexing beside the import plans with these statistics too: brought up to
        // date each time the import has grown the archive tenfold
        let mut analyze_at = ANALYZE_AFTER;
        let stored: Result<(), AppError> = async {
            while let Some(batch) = batches.recv().await {
                report.read += batch.items.len() as u64;
                report.bad.extend(batch.bad);
                if !batch.items.is_empty() {
                    let mut items = batch.items;
                    let ids = store::archive::allocate_ids(&self.db, items.len() as i64).await?;
                    let raws = items
                        .iter_mut()
                        .zip(&ids)
                        .map(|(item, &id)| RawEntry {
                            id,
                            message_id: item.facts.message_id.clone(),
                            raw: std::mem::take(&mut item.raw),
                        })
                        .collect();
                    let mut tx = self.db.begin().await?;
                    store::archive::set_import_transaction(&mut *tx).await?;
                    store::archive::share_imports_lock(&mut *tx).await?;
                    let raw = tokio::spawn(store_raw(self.db.clone(), list.id, raws));
                    let archived = archive_batch(&mut tx, list.id, items, ids).await?;
                    let raw = raw.await.map_err(|e| {
                        AppError::Unexpected(anyhow::anyhow!("storing raw messages failed: {e}"))
                    })??;
                    raw.finish(&mut tx, &archived.added).await?;
                    tx.commit().await?;
                    report.added += archived.added.len() as u64;
                    // (when the indexing has stopped, its error is reported there)
                    if let Some(made) = &made
                        && !archived.made.is_empty()
                    {
                        let _ = made.send(archived.made).await;
                    }
                    if report.added >= analyze_at {
                        store::archive::analyze_archive(&self.db).await?;
                        analyze_at *= 10;
                    }
                }
                progress(report.read + report.bad.len() as u64);
                if batch.failed.is_some() {
                    failed = batch.failed;
                }
            }
            Ok(())
        }
        .await;
        drop(batches);
        let _ = reader.join();
        stored?;
        // indexing finds the messages to index with plans made from these statistics
        if report.added >= ANALYZE_AFTER {
            store::archive::analyze_archive(&self.db).await?;
        }
        if let Some(e) = failed {
            return Err(AppError::Unexpected(anyhow::anyhow!(
                "{e} (after {} messages)",
                report.read
            )));
        }
        Ok(report)
    }

    /// Deletes the raw messages that imports stopped midway left without their messages
    /// (unless an import's batch is in flight; then they are left for the next time).
    async fn clear_unfinished_imports(&self) -> Result<(), AppError> {
        let mut db = self.db.acquire().await?;
        if let Some(n) = store::archive::delete_unfinished_raw(&mut db).await?
            && n > 0
        {
            tracing::info!(messages = n, "raw messages of a stopped import deleted");
        }
        Ok(())
    }

    /// Indexes for search the archives named in `archive_reindex`: those an upgrade
    /// that changed how search vectors are made left without them (migration 0062),
    /// and those of imports that stopped before their indexing ended. A list is named
    /// no more once all its messages are indexed, so an interrupted run goes on the
    /// next time; a list that fails leaves the others to be done.
    pub async fn reindex_archives(&self) -> Result<Reindexed, AppError> {
        self.clear_unfinished_imports().await?;
        let mut done = Reindexed::default();
        for list_id in store::archive::list_reindexed_lists(&self.db).await? {
            // (one list failing leaves the others to be done)
            match self.index_archive_after(list_id, 0, |_| {}).await {
                Ok((n, _)) => {
                    store::archive::delete_reindex(&self.db, list_id).await?;
                    done.indexed += n;
                }
                Err(e) => {
                    tracing::warn!(%list_id, error = format!("{e:#}"), "indexing an archive for search failed");
                    done.left += 1;
                }
            }
        }
        Ok(done)
    }

    /// Indexes a list's archive while an import is storing it: stores the search
    /// vectors the import made (`made`, a batch a transaction) as its batches commit,
    /// and once the import has ended (the channel closes), walks the whole list for
    /// anything left unindexed (what an interrupted import left, or a concurrent writer
    /// stored). Returns how many vectors were stored.
    pub async fn index_archive_while(
        &self,
        list: &ListRef,
        mut made: tokio::sync::mpsc::Receiver<Made>,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, AppError> {
        let list = self.get_list(list).await?;
        let mut indexed = 0;
        while let Some(made) = made.recv().await {
            let mut tx = self.db.begin().await?;
            store::archive::set_import_transaction(&mut *tx).await?;
            indexed += store::archive::insert_search(&mut tx, &made).await?;
            tx.commit().await?;
            progress(indexed);
        }
        let before = indexed;
        let (n, _) = self
            .index_archive_after(list.id, 0, |n| progress(before + n))
            .await?;
        if n == 0 && indexed > 0 {
            store::archive::flush_search_index(&self.db).await?;
        }
        store::archive::delete_reindex(&self.db, list.id).await?;
        Ok(indexed + n)
    }

    /// Makes searchable every message of a list's archive, after the id `after`, that
    /// is not yet: the search vectors are made [`INDEX_BATCH`] messages a transaction on
    /// [`IMPORT_INDEXERS`] connections side by side, each batch searchable once it
    /// commits. `progress` hears how many messages were handed to the indexers so far.
    /// Returns how many vectors were stored, and the last id it walked.
    async fn index_archive_after(
        &self,
        list_id: uuid::Uuid,
        after: i64,
        mut progress: impl FnMut(u64),
    ) -> Result<(u64, i64), AppError> {
        let (tx_ids, ids) = tokio::sync::mpsc::channel::<Vec<i64>>(IMPORT_INDEXERS);
        let ids = std::sync::Arc::new(tokio::sync::Mutex::new(ids));
        let indexers: Vec<_> = (0..IMPORT_INDEXERS)
            .map(|_| tokio::spawn(index_batches(self.db.clone(), ids.clone())))
            .collect();
        // (when every indexer has stopped on an error, sending fails and the walk ends)
        drop(ids);
        let mut after = after;
        let walked: Result<(), AppError> = async {
            let mut handed = 0;
            loop {
                let batch =
                    store::archive::find_unindexed(&self.db, list_id, after, INDEX_BATCH).await?;
                let Some(&last) = batch.last() else {
                    return Ok(());
                };
                after = last;
                handed += batch.len() as u64;
                if tx_ids.send(batch).await.is_err() {
                    return Ok(());
                }
                progress(handed);
            }
        }
        .await;
        drop(tx_ids);
        let mut indexed = 0;
        for indexer in indexers {
            indexed += indexer
                .await
                .map_err(|e| AppError::Unexpected(anyhow::anyhow!("an indexer failed: {e}")))??;
        }
        walked?;
        if indexed > 0 {
            store::archive::flush_search_index(&self.db).await?;
        }
        Ok((indexed, after))
    }

    /// Takes a message down for good: its page answers 404, its thread shows a
    /// "removed" placeholder in its place, and no import brings it back.
    pub async fn remove_archived(
        &self,
        list: &ListRef,
        message_id: &str,
    ) -> Result<RemoveOutcome, AppError> {
        let list = self.get_list(list).await?;
        let id = bare_id(message_id);
        match store::archive::update_message_removed(&self.db, list.id, id).await? {
            None => Err(AppError::NoSuchMessage(id.to_string())),
            Some(true) => Ok(RemoveOutcome::AlreadyRemoved),
            Some(false) => Ok(RemoveOutcome::Removed),
        }
    }

    /// Threads by most recent activity, a page at a time (`cursor`: the `next` of the
    /// page before).
    pub async fn archive_threads(
        &self,
        list: &List,
        cursor: Option<&str>,
    ) -> Result<ThreadPage, AppError> {
        let before = cursor.and_then(parse_cursor);
        let rows =
            store::archive::list_recent_threads(&self.db, list.id, before, PAGE_SIZE + 1).await?;
        Ok(thread_page(rows, |t| (t.last_date, t.id)))
    }

    /// The threads started in a month, oldest first, a page at a time.
    pub async fn archive_month(
        &self,
        list: &List,
        month: Month,
        cursor: Option<&str>,
    ) -> Result<ThreadPage, AppError> {
        let after = cursor.and_then(parse_cursor);
        let rows = store::archive::list_threads_started(
            &self.db,
            list.id,
            month.start(),
            month.next().start(),
            after,
            PAGE_SIZE + 1,
        )
        .await?;
        Ok(thread_page(rows, |t| (t.started, t.id)))
    }

    /// The months in which threads started, newest first.
    pub async fn archive_months(&self, list: &List) -> Result<Vec<Month>, AppError> {
        Ok(store::archive::list_months(&self.db, list.id)
            .await?
            .into_iter()
            .map(Month::of)
            .collect())
    }

    /// One message in its whole thread.
    pub async fn archived_message(
        &self,
        list: &List,
        message_id: &str,
    ) -> Result<MessageView, AppError> {
        let row = self.find_archived(list, message_id).await?;
        let raw = row.raw.as_deref().unwrap_or_default();
        let rendered = render(raw);
        let entries = store::archive::list_thread(&self.db, row.thread_id).await?;
        let by_id: HashMap<i64, &str> = entries
            .iter()
            .map(|e| (e.id, e.message_id.as_str()))
            .collect();
        let order = reading_order(
            &entries
                .iter()
                .map(|e| Entry {
                    key: e.id,
                    parent: e.parent_id,
                    date: e.date.unix_timestamp(),
                })
                .collect::<Vec<_>>(),
        );
        let thread = order
            .into_iter()
            .map(|(i, depth)| {
                let e = &entries[i];
                ThreadEntry {
                    message_id: e.message_id.clone(),
                    parent: e
                        .parent_id
                        .and_then(|p| by_id.get(&p))
                        .map(|p| p.to_string()),
                    subject: shown_subject(&e.subject, e.removed),
                    from_name: obscure_addresses(&e.from_name).into_owned(),
                    date: e.date,
                    depth,
                    removed: e.removed,
                }
            })
            .collect();
        Ok(MessageView {
            message_id: row.message_id,
            subject: shown_subject(&row.subject, false),
            from_name: obscure_addresses(&row.from_name).into_owned(),
            date: row.date,
            text: obscure_addresses(rendered.text.as_deref().unwrap_or(&row.body)).into_owned(),
            html: rendered.html.map(|h| obscure_addresses(&h).into_owned()),
            attachments: rendered.attachments,
            thread,
        })
    }

    /// The archived message as it is kept.
    pub async fn archived_raw(&self, list: &List, message_id: &str) -> Result<Vec<u8>, AppError> {
        let row = self.find_archived(list, message_id).await?;
        Ok(row.raw.unwrap_or_default())
    }

    /// One attachment of an archived message: its file name and bytes.
    pub async fn archived_attachment(
        &self,
        list: &List,
        message_id: &str,
        index: usize,
    ) -> Result<(String, Vec<u8>), AppError> {
        let row = self.find_archived(list, message_id).await?;
        crate::mail::archive::attachment(row.raw.as_deref().unwrap_or_default(), index)
            .ok_or_else(|| AppError::NoSuchMessage(format!("{}/{index}", row.message_id)))
    }

    /// Full-text search: the best of the newest [`SEARCH_RANKED`] matches first.
    pub async fn search_archive(&self, list: &List, query: &str) -> Result<Vec<Hit>, AppError> {
        // (a search of stop words or punctuation only finds nothing)
        let Some(query) = Words::new().query(query) else {
            return Ok(Vec::new());
        };
        let query = query.as_str();
        let mut tx = self.db.begin().await?;
        // walking the newest messages finds enough matches soon when the newest ones
        // hold them thickly enough; otherwise the search index finds them all
        let probe =
            store::archive::count_recent_matches(&mut *tx, list.id, query, SEARCH_PROBE).await?;
        let dense = |matches: i64| matches * SEARCH_WALK >= SEARCH_RANKED * SEARCH_PROBE;
        // a phrase whose words are common, but not the phrase: every message holding
        // the words would have to be read, so only the newest messages are, walked
        let common_phrase = !dense(probe.matches) && dense(probe.word_matches);
        let since = if common_phrase {
            store::archive::find_nth_newest_date(&mut *tx, list.id, PHRASE_WINDOW).await?
        } else {
            None
        };
        let newest_first = dense(probe.matches) || common_phrase;
        store::archive::set_search_plan(&mut *tx, newest_first).await?;
        let rows =
            store::archive::search(&mut *tx, list.id, query, since, SEARCH_RANKED, PAGE_SIZE)
                .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| Hit {
                message_id: r.message_id,
                subject: shown_subject(&r.subject, false),
                from_name: obscure_addresses(&r.from_name).into_owned(),
                date: r.date,
                snippet: obscure_addresses(
                    &r.snippet.split_whitespace().collect::<Vec<_>>().join(" "),
                )
                .into_owned(),
            })
            .collect())
    }

    /// The newest messages, for the feed.
    pub async fn archive_feed(&self, list: &List) -> Result<Vec<FeedEntry>, AppError> {
        let rows = store::archive::list_newest(&self.db, list.id, FEED_SIZE).await?;
        Ok(rows
            .into_iter()
            .map(|r| FeedEntry {
                message_id: r.message_id,
                subject: shown_subject(&r.subject, false),
                from_name: obscure_addresses(&r.from_name).into_owned(),
                date: r.date,
                text: obscure_addresses(&r.body).into_owned(),
            })
            .collect())
    }

    /// A page of messages to export, dated from the start of `from` to the end of
    /// `to` (both months included; all when absent), after the keyset `after`.
    pub async fn archive_export_page(
        &self,
        list: &List,
        from: Option<Month>,
        to: Option<Month>,
        after: Option<(OffsetDateTime, i64)>,
    ) -> Result<ExportPage, AppError> {
        let start = from.map_or(
            OffsetDateTime::UNIX_EPOCH - time::Duration::days(365 * 200),
            Month::start,
        );
        let end = to.map_or(
            OffsetDateTime::now_utc() + time::Duration::days(365 * 100),
            |m| m.next().start(),
        );
        let messages =
            store::archive::list_export(&self.db, list.id, start, end, after, 200).await?;
        let next = (messages.len() == 200)
            .then(|| messages.last().map(|m| (m.date, m.id)))
            .flatten();
        Ok(ExportPage { messages, next })
    }

    async fn find_archived(
        &self,
        list: &List,
        message_id: &str,
    ) -> Result<store::archive::MessageRow, AppError> {
        let id = bare_id(message_id);
        match store::archive::find_message(&self.db, list.id, id).await? {
            Some(row) if !row.removed => Ok(row),
            _ => Err(AppError::NoSuchMessage(id.to_string())),
        }
    }
}

/// What the reading thread of an import hands over.
#[derive(Debug, Default)]
struct Batch {
    items: Vec<Readied>,
    bad: Vec<BadEntry>,
    failed: Option<String>,
}

/// The reading thread of an import: reads and parses the entries (and makes their
/// search vectors, with `index`) and hands them over in batches of [`IMPORT_BATCH`]
/// messages (or 16 MB), with the entries it could not read. Stops at a read error
/// (handed over as `failed`) or when the import stops.
fn read_batches<I>(
    entries: I,
    relayer: Relayer<'_>,
    index: bool,
    out: &tokio::sync::mpsc::Sender<Batch>,
) where
    I: Iterator<Item = Result<MboxEntry, MboxError>>,
{
    let mut batch = Batch::default();
    let mut bytes = 0;
    let mut words = Words::new();
    for entry in entries {
        match entry {
            Ok(e) if looks_like_message(&e.raw) => {
                bytes += e.raw.len();
                let mut item = ready_entry(e, relayer);
                if index {
                    item.make_vector(&mut words);
                }
                batch.items.push(item);
            }
            Ok(e) => batch.bad.push(BadEntry {
                entry: e.number,
                line: e.line,
                reason: if e.raw.is_empty() {
                    "the entry is empty".into()
                } else {
                    "the entry does not start with a header field".into()
                },
            }),
            Err(MboxError::NoFromLine { line }) => batch.bad.push(BadEntry {
                entry: 0,
                line,
                reason: "text before the first `From ` line is not a message".into(),
            }),
            Err(e @ MboxError::Io(_)) => {
                batch.failed = Some(e.to_string());
                break;
            }
        }
        if batch.items.len() >= IMPORT_BATCH || bytes >= 16 << 20 {
            bytes = 0;
            if out.blocking_send(std::mem::take(&mut batch)).is_err() {
                return;
            }
        }
    }
    let _ = out.blocking_send(batch);
}

/// An mbox entry made ready to be archived.
fn ready_entry(e: MboxEntry, relayer: Relayer<'_>) -> Readied {
    // the null sender is written MAILER-DAEMON
    let envelope =
        Some(e.envelope_from).filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("MAILER-DAEMON"));
    // whole seconds, as a `From ` line keeps them: an export reads back
    let arrival = e.received.unwrap_or_else(|| {
        let now = OffsetDateTime::now_utc();
        now.replace_nanosecond(0).unwrap_or(now)
    });
    Readied::new(e.raw, Some(relayer), envelope, arrival)
}

/// An indexer of [`App::index_archive_after`]: stores the search vectors of each batch of ids
/// it takes, in a transaction of its own; returns how many it stored. The vectors are
/// made on a blocking thread, a batch at a time.
async fn index_batches(
    db: sqlx::PgPool,
    ids: std::sync::Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Vec<i64>>>>,
) -> Result<u64, AppError> {
    let mut indexed = 0;
    let mut words = Words::new();
    loop {
        let Some(batch) = ids.lock().await.recv().await else {
            return Ok(indexed);
        };
        let mut tx = db.begin().await?;
        store::archive::set_import_transaction(&mut *tx).await?;
        let rows = store::archive::find_unindexed_messages(&mut *tx, &batch).await?;
        let (back, made) = tokio::task::spawn_blocking(move || {
            let made = search_rows(&mut words, rows);
            (words, made)
        })
        .await
        .map_err(|e| AppError::Unexpected(anyhow::anyhow!("an indexer failed: {e}")))?;
        words = back;
        indexed += store::archive::insert_search(&mut tx, &made).await?;
        tx.commit().await?;
    }
}

/// The search rows of these messages (their own text read from the raw message, as
/// when it was archived).
fn search_rows(words: &mut Words, rows: Vec<store::archive::UnindexedMessage>) -> Made {
    rows.into_iter()
        .map(|r| {
            let body = read_facts(&r.raw, None).text;
            store::archive::SearchRow {
                id: r.id,
                list_id: r.list_id,
                date: r.date,
                search: words.message(&r.subject, &r.from_name, &body),
                body,
            }
        })
        .collect()
}

/// Whether an entry starts with a header field (`Name: value`).
fn looks_like_message(raw: &[u8]) -> bool {
    let first = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    match first.iter().position(|&b| b == b':') {
        Some(colon) if colon > 0 => first[..colon]
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b':'),
        _ => false,
    }
}

/// The subject a page shows: a placeholder for none or a removed message.
fn shown_subject(subject: &str, removed: bool) -> String {
    if removed {
        "(removed)".to_string()
    } else if subject.trim().is_empty() {
        "(no subject)".to_string()
    } else {
        obscure_addresses(subject).into_owned()
    }
}

fn thread_page(
    mut rows: Vec<store::archive::ThreadRow>,
    key: impl Fn(&store::archive::ThreadRow) -> (OffsetDateTime, i64),
) -> ThreadPage {
    let more = rows.len() as i64 > PAGE_SIZE;
    rows.truncate(PAGE_SIZE as usize);
    let next = more.then(|| rows.last().map(|r| cursor(key(r)))).flatten();
    ThreadPage {
        threads: rows
            .into_iter()
            .map(|r| ThreadSummary {
                message_id: r.message_id,
                subject: shown_subject(&r.subject, r.removed),
                from_name: obscure_addresses(&r.from_name).into_owned(),
                messages: r.messages,
                started: r.started,
                last_date: r.last_date,
            })
            .collect(),
        next,
    }
}

/// A keyset as text: `MICROSECONDS.ID`.
fn cursor((date, id): (OffsetDateTime, i64)) -> String {
    format!("{}.{id}", date.unix_timestamp_nanos() / 1000)
}

fn parse_cursor(text: &str) -> Option<(OffsetDateTime, i64)> {
    let (micros, id) = text.split_once('.')?;
    let micros: i128 = micros.parse().ok()?;
    let date = OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1000)?).ok()?;
    Some((date, id.parse().ok()?))
}

/// What [`archive_batch`] did.
struct Archived {
    /// The ids of the new messages (those the archive did not hold).
    added: Vec<i64>,
    /// The new messages' search vectors made on reading, with their ids.
    made: Made,
}

/// What [`App::reindex_archives`] did: how many vectors it stored, and how many lists
/// it could not finish (to be tried again).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reindexed {
    pub indexed: u64,
    pub left: usize,
}

/// Search rows made while an import reads: handed from the storing to the indexing.
pub type Made = Vec<store::archive::SearchRow>;

/// A raw message of an import's batch, handed to [`store_raw`].
struct RawEntry {
    id: i64,
    message_id: String,
    raw: Vec<u8>,
}

/// What [`store_raw`] stored of a batch.
struct RawStored {
    /// The ids of the raw rows it stored.
    stored: HashSet<i64>,
    /// The note naming the stored rows' ids until their messages commit.
    pending: Option<i64>,
}

/// Stores the raw messages of an import's batch and commits them, noted as pending,
/// while the batch is threaded on another connection: those the archive holds already
/// (by Message-ID) and repeats within the batch are left out, as the threading leaves
/// them out.
async fn store_raw(
    db: sqlx::PgPool,
    list_id: uuid::Uuid,
    raws: Vec<RawEntry>,
) -> Result<RawStored, sqlx::Error> {
    let mut tx = db.begin().await?;
    store::archive::set_import_transaction(&mut *tx).await?;
    let names: Vec<String> = raws.iter().map(|r| r.message_id.clone()).collect();
    let is_new = new_in_batch(&mut tx, list_id, names).await?;
    let rows: Vec<(i64, &[u8])> = raws
        .iter()
        .zip(is_new)
        .filter(|(_, new)| *new)
        .map(|(r, _)| (r.id, r.raw.as_slice()))
        .collect();
    let mut pending = None;
    if let (Some(first), Some(last)) = (
        rows.iter().map(|r| r.0).min(),
        rows.iter().map(|r| r.0).max(),
    ) {
        store::archive::insert_raw(&mut tx, &rows).await?;
        pending = Some(store::archive::insert_raw_pending(&mut *tx, first, last).await?);
    }
    tx.commit().await?;
    Ok(RawStored {
        stored: rows.iter().map(|r| r.0).collect(),
        pending,
    })
}

impl RawStored {
    /// Brings the raw rows in line with the messages the batch added (`added`), in the
    /// transaction that stores them: those of the messages it did not add are deleted
    /// (another import stored them meanwhile), and the note goes.
    ///
    /// Every message it added has its raw row: a message the raw connection found in
    /// the archive was committed before, under the list's lock, so the threading finds
    /// it too. Should one lack it all the same, the batch fails and nothing is stored.
    async fn finish(self, tx: &mut PgConnection, added: &[i64]) -> Result<(), AppError> {
        if let Some(id) = added.iter().find(|id| !self.stored.contains(id)) {
            return Err(AppError::Unexpected(anyhow::anyhow!(
                "the raw message of archived message {id} was not stored"
            )));
        }
        let added: HashSet<i64> = added.iter().copied().collect();
        let extra: Vec<i64> = self.stored.difference(&added).copied().collect();
        if !extra.is_empty() {
            store::archive::delete_raw(&mut *tx, &extra).await?;
        }
        if let Some(pending) = self.pending {
            store::archive::delete_raw_pending(&mut *tx, pending).await?;
        }
        Ok(())
    }
}

/// Archives a batch of messages in `tx` (their raw messages are stored by the caller)
/// and threads them with what is there; `ids` are the messages' ids, given out before
/// (those of messages the archive holds already go unused).
///
/// The threads a batch can change are those of the nearest archived ancestor of each
/// new message, and those of the messages waiting for one of the new ones
/// ([`touched_threads`]). Every message of those threads is threaded again with the new
/// ones; the rows that moved, the new rows and the threads' rows are written back.
async fn archive_batch(
    tx: &mut PgConnection,
    list_id: uuid::Uuid,
    items: Vec<Readied>,
    ids: Vec<i64>,
) -> Result<Archived, sqlx::Error> {
    store::archive::lock_list_archive(&mut *tx, list_id).await?;
    let (items, new_ids) = without_known(tx, list_id, items, ids).await?;
    let mut archived = Archived {
        added: Vec::new(),
        made: Made::default(),
    };
    if items.is_empty() {
        return Ok(archived);
    }
    let touched = touched_threads(tx, list_id, &items).await?;
    let old = if touched.is_empty() {
        Vec::new()
    } else {
        store::archive::find_thread_nodes(&mut *tx, &touched).await?
    };
    let threaded = Threaded::new(&old, &items, &new_ids);
    write_moves(tx, &old, &threaded).await?;
    // every message of every thread the batch leaves is among the nodes: count them here
    let threads = threaded.threads();
    let gone: Vec<i64> = touched
        .iter()
        .copied()
        .filter(|t| !threads.contains_key(t))
        .collect();
    let placed = threaded.placed_new();
    let mut items = items;
    for (item, id) in items.iter_mut().zip(&new_ids) {
        if let Some(search) = item.vector.take() {
            archived.made.push(store::archive::SearchRow {
                id: *id,
                list_id,
                date: item.date,
                search,
                body: std::mem::take(&mut item.facts.text),
            });
        }
    }
    let new = new_rows(items, new_ids, placed);
    store::archive::insert_messages(&mut *tx, list_id, &new).await?;
    archived.added = new.id;
    if !gone.is_empty() {
        store::archive::delete_threads(&mut *tx, &gone).await?;
    }
    let (mut ids, mut started, mut last, mut counts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, (s, l, n)) in threads {
        ids.push(id);
        started.push(s);
        last.push(l);
        counts.push(n);
    }
    store::archive::upsert_threads(&mut *tx, list_id, &ids, &started, &last, &counts).await?;
    Ok(archived)
}

/// The batch (with its ids) without repeats and without the messages the archive
/// holds already.
async fn without_known(
    tx: &mut PgConnection,
    list_id: uuid::Uuid,
    items: Vec<Readied>,
    ids: Vec<i64>,
) -> Result<(Vec<Readied>, Vec<i64>), sqlx::Error> {
    let names: Vec<String> = items.iter().map(|i| i.facts.message_id.clone()).collect();
    let is_new = new_in_batch(tx, list_id, names).await?;
    Ok(items
        .into_iter()
        .zip(ids)
        .zip(is_new)
        .filter_map(|(item, new)| new.then_some(item))
        .unzip())
}

/// Which of a batch's Message-IDs are new: those the archive does not hold (removed
/// ones included), each the first time the batch names it.
async fn new_in_batch(
    tx: &mut PgConnection,
    list_id: uuid::Uuid,
    names: Vec<String>,
) -> Result<Vec<bool>, sqlx::Error> {
    let known: HashSet<String> =
        store::archive::find_archived_message_ids(&mut *tx, list_id, &names)
            .await?
            .into_iter()
            .collect();
    let mut seen = HashSet::new();
    Ok(names
        .into_iter()
        .map(|name| !known.contains(&name) && seen.insert(name))
        .collect())
}

/// The threads new messages can change: that of the nearest archived ancestor of each
/// (looked up nearest first, one query per step back: most replies stop at the first),
/// and those of the messages waiting for one of them.
async fn touched_threads(
    tx: &mut PgConnection,
    list_id: uuid::Uuid,
    items: &[Readied],
) -> Result<Vec<i64>, sqlx::Error> {
    let names: Vec<String> = items.iter().map(|i| i.facts.message_id.clone()).collect();
    let in_batch: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut touched: HashSet<i64> = HashSet::new();
    let mut open: Vec<usize> = (0..items.len()).collect();
    let mut step = 0;
    while !open.is_empty() {
        let mut ask = Vec::new();
        let mut still = Vec::new();
        for &i in &open {
            match items[i].facts.refs.get(step) {
                Some(r) if !in_batch.contains(r.as_str()) => {
                    ask.push(r.clone());
                    still.push(i);
                }
                _ => {}
            }
        }
        if ask.is_empty() {
            break;
        }
        ask.sort();
        ask.dedup();
        let found: HashMap<String, i64> = store::archive::find_threads_of(&mut *tx, list_id, &ask)
            .await?
            .into_iter()
            .collect();
        touched.extend(found.values().copied());
        open = still
            .into_iter()
            .filter(|&i| !found.contains_key(&items[i].facts.refs[step]))
            .collect();
        step += 1;
    }
    touched.extend(store::archive::find_waiting_threads(&mut *tx, list_id, &names).await?);
    Ok(touched.into_iter().collect())
}

/// The messages of the touched threads (`old`) and the new ones threaded together:
/// node `i` is `old[i]` below `old.len()`, the new message `i - old.len()` above.
struct Threaded<'a> {
    old_len: usize,
    /// Each node's row id.
    id: Vec<i64>,
    date: Vec<OffsetDateTime>,
    parent: Vec<Option<usize>>,
    root: Vec<usize>,
    /// The ancestors it names nearer than its parent: it moves when one arrives.
    waiting: Vec<&'a [String]>,
}

/// Where a new message goes: its parent's and thread's ids, what it waits for.
struct Placed {
    parent_id: Option<i64>,
    thread_id: i64,
    waiting: String,
}

impl<'a> Threaded<'a> {
    fn new(old: &'a [store::archive::NodeRow], items: &'a [Readied], new_ids: &[i64]) -> Self {
        let nodes: Vec<Node<'a>> = old
            .iter()
            .map(|r| Node {
                message_id: &r.message_id,
                refs: &r.refs,
                date: r.date.unix_timestamp(),
            })
            .chain(items.iter().map(|i| Node {
                message_id: &i.facts.message_id,
                refs: &i.facts.refs,
                date: i.date.unix_timestamp(),
            }))
            .collect();
        let parent = parents(&nodes);
        let root = roots(&parent);
        let waiting = nodes
            .iter()
            .zip(&parent)
            .map(|(node, p)| {
                let upto = p
                    .and_then(|p| node.refs.iter().position(|r| r == nodes[p].message_id))
                    .unwrap_or(node.refs.len());
                &node.refs[..upto]
            })
            .collect();
        Threaded {
            old_len: old.len(),
            id: old
                .iter()
                .map(|r| r.id)
                .chain(new_ids.iter().copied())
                .collect(),
            date: old
                .iter()
                .map(|r| r.date)
                .chain(items.iter().map(|i| i.date))
                .collect(),
            parent,
            root,
            waiting,
        }
    }

    fn parent_id(&self, i: usize) -> Option<i64> {
        self.parent[i].map(|p| self.id[p])
    }

    fn thread_id(&self, i: usize) -> i64 {
        self.id[self.root[i]]
    }

    /// Each thread's start, last message and count, by its root's id.
    fn threads(&self) -> HashMap<i64, (OffsetDateTime, OffsetDateTime, i32)> {
        let mut threads = HashMap::new();
        for (i, &r) in self.root.iter().enumerate() {
            let started = self.date[r];
            let t = threads.entry(self.id[r]).or_insert((started, started, 0));
            t.1 = t.1.max(self.date[i]);
            t.2 += 1;
        }
        threads
    }

    /// Where each new message goes, in the batch's order.
    fn placed_new(&self) -> Vec<Placed> {
        (self.old_len..self.id.len())
            .map(|i| Placed {
                parent_id: self.parent_id(i),
                thread_id: self.thread_id(i),
                waiting: self.waiting[i].join("\n"),
            })
            .collect()
    }
}

/// Writes back the old messages whose parent, thread or waiting list changed.
async fn write_moves(
    tx: &mut PgConnection,
    old: &[store::archive::NodeRow],
    threaded: &Threaded<'_>,
) -> Result<(), sqlx::Error> {
    let (mut moved, mut moved_parent, mut moved_thread, mut moved_waiting) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, row) in old.iter().enumerate() {
        let (p, t, w) = (
            threaded.parent_id(i),
            threaded.thread_id(i),
            threaded.waiting[i],
        );
        if p != row.parent_id || t != row.thread_id || w != row.waiting.as_slice() {
            moved.push(row.id);
            moved_parent.push(p);
            moved_thread.push(t);
            moved_waiting.push(w.join("\n"));
        }
    }
    if moved.is_empty() {
        return Ok(());
    }
    store::archive::update_tree(
        &mut *tx,
        &moved,
        &moved_parent,
        &moved_thread,
        &moved_waiting,
    )
    .await
}

/// The rows of the new messages, column by column.
fn new_rows(
    items: Vec<Readied>,
    ids: Vec<i64>,
    placed: Vec<Placed>,
) -> store::archive::NewMessages {
    let mut new = store::archive::NewMessages {
        id: ids,
        ..Default::default()
    };
    for (item, place) in items.into_iter().zip(placed) {
        new.parent_id.push(place.parent_id);
        new.thread_id.push(place.thread_id);
        new.waiting.push(place.waiting);
        new.message_id.push(item.facts.message_id);
        new.post_id.push(item.post_id);
        new.envelope_from.push(item.envelope_from);
        new.date.push(item.date);
        new.subject.push(item.facts.subject);
        new.from_name.push(item.facts.from_name);
        new.refs.push(item.facts.refs.join("\n"));
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000).unwrap();
        assert_eq!(parse_cursor(&cursor((t, 42))), Some((t, 42)));
        assert_eq!(parse_cursor("x.1"), None);
    }

    #[test]
    fn an_entry_is_a_message_when_it_starts_with_a_header_field() {
        assert!(looks_like_message(b"From: a@b\r\n\r\nx"));
        assert!(!looks_like_message(b"hello there\r\n"));
        assert!(!looks_like_message(b""));
    }
}
