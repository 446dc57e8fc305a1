//! The archive's tables: `archive_message` (each message and its place in its thread),
//! `archive_raw` (each message as archived), `archive_search` (each message's search
//! vector, date and own text) and `archive_thread` (one row per thread for the thread
//! list).
//!
//! Pages are read with keysets (`(last_date, id)`, `(started, id)`, `(date, id)`),
//! never with OFFSET, so the thousandth page costs what the first does. Search is
//! PostgreSQL's full-text search over the stored `tsvector`s of `archive_search`, with a
//! GIN index for rare words and a date index to walk the newest matches of common ones.

use crate::domain::search::Vector;
use sqlx::PgExecutor;
use std::collections::HashSet;
use time::OffsetDateTime;
use uuid::Uuid;

/// Serialises the threading of one list's archive until the transaction ends.
pub async fn lock_list_archive(db: impl PgExecutor<'_>, list_id: Uuid) -> Result<(), sqlx::Error> {
    let key = super::lock_key(&format!("archive/{list_id}"));
    sqlx::query!("select pg_advisory_xact_lock($1)", key)
        .execute(db)
        .await
        .map(|_| ())
}

/// Sets up a transaction of an import: it commits without waiting for its write-ahead
/// log to reach the disk (a crash leaves the import to be run again; it is
/// idempotent), and a batch handed over as arrays is unnested in memory (a thousand
/// messages are several megabytes: with the default `work_mem` they went through a
/// temporary file, which took a third of the insert's time).
pub async fn set_import_transaction(db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"select set_config('synchronous_commit', 'off', true) as "commit!",
                  set_config('work_mem', '64MB', true) as "work_mem!""#
    )
    .fetch_one(db)
    .await
    .map(|_| ())
}

/// Moves the search index's pending entries into the index proper (after an import:
/// searches would otherwise read them all until the next vacuum).
pub async fn flush_search_index(db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!(
        r#"select gin_clean_pending_list('archive_search_idx'::regclass) as "moved!""#
    )
    .fetch_one(db)
    .await
    .map(|_| ())
}

/// Brings the planner's statistics of the archive's tables up to date (after a large
/// import: until autovacuum comes by, PostgreSQL would plan for the tables as they were).
pub async fn analyze_archive(db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!("analyze archive_message, archive_thread")
        .execute(db)
        .await
        .map(|_| ())
}

/// Ids for `n` new messages, from the sequence of `archive_message.id` (named as a
/// constant: looked up by `pg_get_serial_sequence` for each id, a thousand ids took
/// several times as long).
pub async fn allocate_ids(db: impl PgExecutor<'_>, n: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select nextval('archive_message_id_seq'::regclass) as "id!"
           from generate_series(1, $1::bigint)"#,
        n
    )
    .fetch_all(db)
    .await
}

/// Which of these Message-IDs the list's archive already holds (removed ones too).
pub async fn find_archived_message_ids(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    message_ids: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "select message_id from archive_message where list_id = $1 and message_id = any($2)",
        list_id,
        message_ids
    )
    .fetch_all(db)
    .await
}

/// The threads of those of `message_ids` that the archive holds, by Message-ID.
pub async fn find_threads_of(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    message_ids: &[String],
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    Ok(sqlx::query!(
        "select message_id, thread_id from archive_message where list_id = $1 and message_id = any($2)",
        list_id,
        message_ids
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| (r.message_id, r.thread_id))
    .collect())
}

/// The threads of the messages that wait for one of `message_ids` (they name it as
/// an ancestor nearer than their parent). The test that a message waits at all comes
/// first: while a growing archive's statistics are behind, PostgreSQL may scan the
/// table, and the overlap test, which reads the whole array of Message-IDs for each
/// row, then runs for only the few rows that wait.
pub async fn find_waiting_threads(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    message_ids: &[String],
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select distinct thread_id as "thread_id!" from archive_message
           where waiting <> '{}' and waiting && $2 and list_id = $1"#,
        list_id,
        message_ids
    )
    .fetch_all(db)
    .await
}

/// A message as threading sees it.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub id: i64,
    pub message_id: String,
    pub refs: Vec<String>,
    pub waiting: Vec<String>,
    pub date: OffsetDateTime,
    pub parent_id: Option<i64>,
    pub thread_id: i64,
}

/// Every message of these threads.
pub async fn find_thread_nodes(
    db: impl PgExecutor<'_>,
    thread_ids: &[i64],
) -> Result<Vec<NodeRow>, sqlx::Error> {
    sqlx::query_as!(
        NodeRow,
        "select id, message_id, refs, waiting, date, parent_id, thread_id from archive_message
         where thread_id = any($1)",
        thread_ids
    )
    .fetch_all(db)
    .await
}

/// New messages to insert, column by column (one statement for a whole batch).
#[derive(Debug, Default)]
pub struct NewMessages {
    pub id: Vec<i64>,
    pub message_id: Vec<String>,
    pub post_id: Vec<Option<i64>>,
    pub envelope_from: Vec<Option<String>>,
    pub date: Vec<OffsetDateTime>,
    pub subject: Vec<String>,
    pub from_name: Vec<String>,
    /// Each message's ancestors joined by line feeds (no Message-ID holds one).
    pub refs: Vec<String>,
    /// The ancestors it waits for, joined the same way.
    pub waiting: Vec<String>,
    pub parent_id: Vec<Option<i64>>,
    pub thread_id: Vec<i64>,
}

/// Inserts new messages with binary `COPY`, on the import's critical path: cheaper for
/// PostgreSQL than the same rows unnested from arrays (an import of 100,000 messages
/// took 16.1–17.1 s against 17.4–17.9 s). The caller holds
/// the list's archive lock and has left out the Message-IDs the archive holds, so no
/// row conflicts (one would fail the statement, and the batch with it).
pub async fn insert_messages(
    db: &mut sqlx::PgConnection,
    list_id: Uuid,
    m: &NewMessages,
) -> Result<u64, sqlx::Error> {
    let mut copy = db
        .copy_in_raw(
            "copy archive_message (id, list_id, message_id, post_id, envelope_from, date, \
             subject, from_name, refs, waiting, parent_id, thread_id) \
             from stdin (format binary)",
        )
        .await?;
    let mut rows = CopyRows::new();
    for i in 0..m.id.len() {
        rows.row(12);
        rows.int8(Some(m.id[i]));
        rows.bytes(Some(list_id.as_bytes()));
        rows.bytes(Some(m.message_id[i].as_bytes()));
        rows.int8(m.post_id[i]);
        rows.bytes(m.envelope_from[i].as_deref().map(str::as_bytes));
        rows.timestamptz(m.date[i]);
        rows.bytes(Some(m.subject[i].as_bytes()));
        rows.bytes(Some(m.from_name[i].as_bytes()));
        rows.text_array(&m.refs[i]);
        rows.text_array(&m.waiting[i]);
        rows.int8(m.parent_id[i]);
        rows.int8(Some(m.thread_id[i]));
        rows.send_full(&mut copy).await?;
    }
    rows.finish(copy).await
}

/// Stores raw messages (id and bytes) with binary `COPY`, in the order of their ids.
/// Their messages' rows come in the same transaction or a later one.
pub async fn insert_raw(
    db: &mut sqlx::PgConnection,
    rows: &[(i64, &[u8])],
) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut copy = db
        .copy_in_raw("copy archive_raw (id, raw) from stdin (format binary)")
        .await?;
    let mut sorted: Vec<&(i64, &[u8])> = rows.iter().collect();
    sorted.sort_unstable_by_key(|r| r.0);
    let mut out = CopyRows::new();
    for (id, raw) in sorted {
        out.row(2);
        out.int8(Some(*id));
        out.bytes(Some(raw));
        out.send_full(&mut copy).await?;
    }
    out.finish(copy).await
}

/// Deletes raw messages (those of an import's batch whose messages were there already).
pub async fn delete_raw(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query!("delete from archive_raw where id = any($1)", ids)
            .execute(db)
            .await?
            .rows_affected(),
    )
}

/// Names the ids `[first, last]` as holding raw rows whose messages are not stored yet
/// (an import's batch, until its messages commit); returns the note's id.
pub async fn insert_raw_pending(
    db: impl PgExecutor<'_>,
    first: i64,
    last: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "insert into archive_raw_pending (first_id, last_id) values ($1, $2) returning id",
        first,
        last
    )
    .fetch_one(db)
    .await
}

/// Drops the note of [`insert_raw_pending`] (in the transaction that stores its messages).
pub async fn delete_raw_pending(db: impl PgExecutor<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!("delete from archive_raw_pending where id = $1", id)
        .execute(db)
        .await
        .map(|_| ())
}

/// Holds, until the transaction ends, the lock every batch of a running import shares
/// from before its raw messages are stored until its messages commit: while a
/// transaction holds it, [`delete_unfinished_raw`] leaves the pending raw rows be. (A
/// transaction's lock, not a session's: should the connection die, the batch's
/// messages die with it, and its raw rows are then indeed left over.)
pub async fn share_imports_lock(db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
    let key = super::lock_key("archive/imports");
    sqlx::query!("select pg_advisory_xact_lock_shared($1)", key)
        .execute(db)
        .await
        .map(|_| ())
}

/// Deletes the raw rows that imports stopped between storing them and storing their
/// messages left behind (those of the noted batches whose messages never came), when no
/// import's batch is in flight ([`share_imports_lock`]); `None` when one is (they are
/// left for the next time).
pub async fn delete_unfinished_raw(
    db: &mut sqlx::PgConnection,
) -> Result<Option<u64>, sqlx::Error> {
    use sqlx::Connection;
    let key = super::lock_key("archive/imports");
    let mut tx = db.begin().await?;
    let free = sqlx::query_scalar!(r#"select pg_try_advisory_xact_lock($1) as "free!""#, key)
        .fetch_one(&mut *tx)
        .await?;
    if !free {
        return Ok(None);
    }
    let deleted = sqlx::query!(
        r#"
        with pending as (delete from archive_raw_pending returning first_id, last_id)
        delete from archive_raw r using pending p
        where r.id between p.first_id and p.last_id
          and not exists (select 1 from archive_message m where m.id = r.id)
        "#
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Some(deleted))
}

/// A `COPY … from stdin` under way.
type CopyIn<'c> = sqlx::postgres::PgCopyIn<&'c mut sqlx::PgConnection>;

/// Rows in `COPY`'s binary format.
struct CopyRows(Vec<u8>);

impl CopyRows {
    fn new() -> Self {
        // the signature, no flags, no header extension
        let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
        out.extend_from_slice(&[0; 8]);
        Self(out)
    }

    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }

    /// Sends the rows gathered once they make a megabyte.
    async fn send_full(&mut self, copy: &mut CopyIn<'_>) -> Result<(), sqlx::Error> {
        if self.0.len() >= 1 << 20 {
            copy.send(self.take()).await?;
        }
        Ok(())
    }

    /// Ends the rows, sends what is left and ends the copy; returns how many rows it
    /// stored.
    async fn finish(mut self, mut copy: CopyIn<'_>) -> Result<u64, sqlx::Error> {
        self.end();
        copy.send(self.take()).await?;
        copy.finish().await
    }

    fn row(&mut self, fields: i16) {
        self.0.extend_from_slice(&fields.to_be_bytes());
    }

    fn end(&mut self) {
        self.0.extend_from_slice(&(-1i16).to_be_bytes());
    }

    fn bytes(&mut self, value: Option<&[u8]>) {
        match value {
            None => self.0.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                self.0.extend_from_slice(&(v.len() as i32).to_be_bytes());
                self.0.extend_from_slice(v);
            }
        }
    }

    fn int8(&mut self, value: Option<i64>) {
        self.bytes(value.map(i64::to_be_bytes).as_ref().map(|b| &b[..]));
    }

    /// Microseconds since 2000-01-01 UTC.
    fn timestamptz(&mut self, t: OffsetDateTime) {
        const EPOCH_2000: i128 = 946_684_800_000_000;
        let micros = (t.unix_timestamp_nanos() / 1000 - EPOCH_2000) as i64;
        self.int8(Some(micros));
    }

    /// A `tsvector` in its binary form: the count of words, then each word ended by a
    /// zero byte, its count of positions and its positions.
    fn tsvector(&mut self, v: &Vector) {
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        self.0.extend_from_slice(&(v.len() as i32).to_be_bytes());
        for (word, positions) in v.words() {
            self.0.extend_from_slice(word.as_bytes());
            self.0.push(0);
            self.0
                .extend_from_slice(&(positions.len() as u16).to_be_bytes());
            for p in positions {
                self.0.extend_from_slice(&p.to_be_bytes());
            }
        }
        let len = (self.0.len() - at - 4) as i32;
        self.0[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// A `text[]` of the lines of `lines` (none when it is empty).
    fn text_array(&mut self, lines: &str) {
        const TEXT_OID: i32 = 25;
        let items: Vec<&str> = if lines.is_empty() {
            Vec::new()
        } else {
            lines.split('\n').collect()
        };
        let mut a = Vec::with_capacity(20 + lines.len() + 4 * items.len());
        let dims: i32 = if items.is_empty() { 0 } else { 1 };
        for n in [dims, 0, TEXT_OID] {
            a.extend_from_slice(&n.to_be_bytes());
        }
        if dims == 1 {
            a.extend_from_slice(&(items.len() as i32).to_be_bytes());
            a.extend_from_slice(&1i32.to_be_bytes());
        }
        for item in items {
            a.extend_from_slice(&(item.len() as i32).to_be_bytes());
            a.extend_from_slice(item.as_bytes());
        }
        self.bytes(Some(&a));
    }
}

/// A message to index for search: its subject, its author's name and the raw message
/// (its own text is read from it), with what its search row keeps beside its vector.
#[derive(Debug)]
pub struct UnindexedMessage {
    pub id: i64,
    pub list_id: Uuid,
    pub date: OffsetDateTime,
    pub subject: String,
    pub from_name: String,
    pub raw: Vec<u8>,
}

/// Those of these messages that are neither removed nor indexed yet.
pub async fn find_unindexed_messages(
    db: impl PgExecutor<'_>,
    ids: &[i64],
) -> Result<Vec<UnindexedMessage>, sqlx::Error> {
    sqlx::query_as!(
        UnindexedMessage,
        r#"
        select m.id, m.list_id, m.date, m.subject, m.from_name, r.raw
        from archive_message m join archive_raw r on r.id = m.id
        where m.id = any($1) and m.removed_at is null
          and not exists (select 1 from archive_search s where s.id = m.id)
        "#,
        ids
    )
    .fetch_all(db)
    .await
}

/// A message's search row: its vector, with its list and date (a search reads the
/// newest matches first), and its own text (searched, and shown in snippets and the
/// feed).
#[derive(Debug, Clone)]
pub struct SearchRow {
    pub id: i64,
    pub list_id: Uuid,
    pub date: OffsetDateTime,
    pub search: Vector,
    pub body: String,
}

/// Stores search rows with binary `COPY` (the vectors sent in `tsvector`'s binary
/// form: for PostgreSQL, about half the time of the same rows sent as text through a
/// join). Messages another indexer has indexed meanwhile are left as they are: the
/// rows are copied again without theirs (in a savepoint, so the caller's transaction
/// goes on). The rows of messages taken down or deleted since the caller read them
/// (an import hands its vectors over a moment after storing their messages) are
/// deleted again before the savepoint ends. Returns how many rows were stored.
pub async fn insert_search(
    db: &mut sqlx::PgConnection,
    rows: &[SearchRow],
) -> Result<u64, sqlx::Error> {
    use sqlx::Connection;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut indexed: HashSet<i64> = HashSet::new();
    let mut tries = 0;
    loop {
        let mut tx = db.begin().await?;
        match copy_search(&mut tx, rows, &indexed).await {
            Ok(n) => {
                let gone = delete_unsearchable(&mut *tx, &ids).await?;
                tx.commit().await?;
                return Ok(n.saturating_sub(gone));
            }
            Err(e) if tries < 3 && super::unique_violation(&e).is_some() => {
                tx.rollback().await?;
                tries += 1;
                indexed = find_indexed(&mut *db, &ids).await?.into_iter().collect();
            }
            Err(e) => return Err(e),
        }
    }
}

/// Deletes the search rows of those of these messages that are taken down or gone;
/// returns how many.
async fn delete_unsearchable(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        r#"
        delete from archive_search s
        where s.id = any($1)
          and not exists (
              select 1 from archive_message m where m.id = s.id and m.removed_at is null
          )
        "#,
        ids
    )
    .execute(db)
    .await?
    .rows_affected())
}

/// Copies the rows but those of `skip`, in the order of their ids.
async fn copy_search(
    db: &mut sqlx::PgConnection,
    rows: &[SearchRow],
    skip: &HashSet<i64>,
) -> Result<u64, sqlx::Error> {
    let mut copy = db
        .copy_in_raw(
            "copy archive_search (id, list_id, date, search, body) from stdin (format binary)",
        )
        .await?;
    // in the order of their ids, as every indexer sends them: two indexers of the same
    // messages wait for each other's rows in one order, never in a circle
    let mut rows: Vec<&SearchRow> = rows.iter().filter(|r| !skip.contains(&r.id)).collect();
    rows.sort_unstable_by_key(|r| r.id);
    let mut out = CopyRows::new();
    for row in rows {
        out.row(5);
        out.int8(Some(row.id));
        out.bytes(Some(row.list_id.as_bytes()));
        out.timestamptz(row.date);
        out.tsvector(&row.search);
        out.bytes(Some(row.body.as_bytes()));
        out.send_full(&mut copy).await?;
    }
    out.finish(copy).await
}

/// Which of these messages are indexed.
async fn find_indexed(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!("select id from archive_search where id = any($1)", ids)
        .fetch_all(db)
        .await
}

/// The lists whose archive is to be indexed for search again (their vectors were
/// dropped by an upgrade that changed how they are made).
pub async fn list_reindexed_lists(db: impl PgExecutor<'_>) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!("select list_id from archive_reindex order by list_id")
        .fetch_all(db)
        .await
}

/// Names a list whose archive is to be indexed (again) when the server starts.
pub async fn insert_reindex(db: impl PgExecutor<'_>, list_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into archive_reindex (list_id) values ($1) on conflict do nothing",
        list_id
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Marks a list's archive as indexed again.
pub async fn delete_reindex(db: impl PgExecutor<'_>, list_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("delete from archive_reindex where list_id = $1", list_id)
        .execute(db)
        .await
        .map(|_| ())
}

/// Up to `limit` of the list's messages that are not removed and have no search vector
/// yet, after the id `after`, by id.
pub async fn find_unindexed(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        select m.id from archive_message m
            -- (the vectors' side bounded too: both are read from `after` on, in id order)
            left join archive_search s on s.id = m.id and s.id > $2
        where m.list_id = $1 and m.id > $2 and m.removed_at is null and s.id is null
        order by m.id
        limit $3
        "#,
        list_id,
        after,
        limit
    )
    .fetch_all(db)
    .await
}

/// Moves messages in their threads.
pub async fn update_tree(
    db: impl PgExecutor<'_>,
    ids: &[i64],
    parent_ids: &[Option<i64>],
    thread_ids: &[i64],
    waiting: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        update archive_message a
        set parent_id = u.parent_id, thread_id = u.thread_id,
            waiting = string_to_array(u.waiting, E'\n')
        from unnest($1::int8[], $2::int8[], $3::int8[], $4::text[]) as u(id, parent_id, thread_id, waiting)
        where a.id = u.id
        "#,
        ids,
        parent_ids as &[Option<i64>],
        thread_ids,
        waiting
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Writes the rows of these threads (root id, start, last message, count).
pub async fn upsert_threads(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    ids: &[i64],
    started: &[OffsetDateTime],
    last_date: &[OffsetDateTime],
    messages: &[i32],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        insert into archive_thread (id, list_id, started, last_date, messages)
        select u.id, $1, u.started, u.last_date, u.messages
        from unnest($2::int8[], $3::timestamptz[], $4::timestamptz[], $5::int4[])
             as u(id, started, last_date, messages)
        on conflict (id) do update
            set started = excluded.started, last_date = excluded.last_date, messages = excluded.messages
        "#,
        list_id,
        ids,
        started,
        last_date,
        messages
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Drops the rows of threads that joined another.
pub async fn delete_threads(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query!("delete from archive_thread where id = any($1)", ids)
        .execute(db)
        .await
        .map(|_| ())
}

/// A thread in a listing: its root and its counts.
#[derive(Debug, Clone)]
pub struct ThreadRow {
    pub id: i64,
    pub message_id: String,
    pub subject: String,
    pub from_name: String,
    pub removed: bool,
    pub started: OffsetDateTime,
    pub last_date: OffsetDateTime,
    pub messages: i32,
}

/// Threads by most recent activity, after the keyset `before` (exclusive).
pub async fn list_recent_threads(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    before: Option<(OffsetDateTime, i64)>,
    limit: i64,
) -> Result<Vec<ThreadRow>, sqlx::Error> {
    // two statements: with the keyset written as a row comparison, it bounds the index scan
    match before {
        None => {
            sqlx::query_as!(
                ThreadRow,
                r#"
                select t.id, m.message_id, m.subject, m.from_name, m.removed_at is not null as "removed!",
                       t.started, t.last_date, t.messages
                from archive_thread t join archive_message m on m.id = t.id
                where t.list_id = $1
                order by t.last_date desc, t.id desc
                limit $2
                "#,
                list_id,
                limit
            )
            .fetch_all(db)
            .await
        }
        Some((date, id)) => {
            sqlx::query_as!(
                ThreadRow,
                r#"
                select t.id, m.message_id, m.subject, m.from_name, m.removed_at is not null as "removed!",
                       t.started, t.last_date, t.messages
                from archive_thread t join archive_message m on m.id = t.id
                where t.list_id = $1 and (t.last_date, t.id) < ($2, $3)
                order by t.last_date desc, t.id desc
                limit $4
                "#,
                list_id,
                date,
                id,
                limit
            )
            .fetch_all(db)
            .await
        }
    }
}

/// Threads started in `[from, to)`, oldest first, after the keyset `after`.
pub async fn list_threads_started(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    from: OffsetDateTime,
    to: OffsetDateTime,
    after: Option<(OffsetDateTime, i64)>,
    limit: i64,
) -> Result<Vec<ThreadRow>, sqlx::Error> {
    // the first page starts at the month's first instant, with no thread before it
    let (date, id) = after.unwrap_or((from, i64::MIN));
    sqlx::query_as!(
        ThreadRow,
        r#"
        select t.id, m.message_id, m.subject, m.from_name, m.removed_at is not null as "removed!",
               t.started, t.last_date, t.messages
        from archive_thread t join archive_message m on m.id = t.id
        where t.list_id = $1 and (t.started, t.id) > ($2, $3) and t.started < $4
        order by t.started, t.id
        limit $5
        "#,
        list_id,
        date,
        id,
        to,
        limit
    )
    .fetch_all(db)
    .await
}

/// The first instant (UTC) of every month in which a thread started, newest first:
/// one index probe per month.
pub async fn list_months(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
) -> Result<Vec<OffsetDateTime>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        with recursive m(month) as (
            (select date_trunc('month', started, 'UTC') from archive_thread
             where list_id = $1 order by started limit 1)
            union all
            select (select date_trunc('month', t.started, 'UTC') from archive_thread t
                    where t.list_id = $1 and t.started >= m.month + interval '1 month'
                    order by t.started limit 1)
            from m where m.month is not null
        )
        select month as "month!" from m where month is not null order by month desc
        "#,
        list_id
    )
    .fetch_all(db)
    .await
}

/// One archived message.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: i64,
    pub message_id: String,
    pub thread_id: i64,
    pub parent_id: Option<i64>,
    pub date: OffsetDateTime,
    pub subject: String,
    pub from_name: String,
    pub envelope_from: Option<String>,
    pub raw: Option<Vec<u8>>,
    pub body: String,
    pub removed: bool,
}

pub async fn find_message(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    message_id: &str,
) -> Result<Option<MessageRow>, sqlx::Error> {
    sqlx::query_as!(
        MessageRow,
        r#"
        select m.id, m.message_id, m.thread_id, m.parent_id, m.date, m.subject, m.from_name,
               m.envelope_from, r.raw as "raw?", coalesce(s.body, '') as "body!",
               m.removed_at is not null as "removed!"
        from archive_message m left join archive_search s on s.id = m.id
        left join archive_raw r on r.id = m.id
        where m.list_id = $1 and m.message_id = $2
        "#,
        list_id,
        message_id
    )
    .fetch_optional(db)
    .await
}

/// A message of a thread, as the thread's outline shows it.
#[derive(Debug, Clone)]
pub struct EntryRow {
    pub id: i64,
    pub message_id: String,
    pub parent_id: Option<i64>,
    pub date: OffsetDateTime,
    pub subject: String,
    pub from_name: String,
    pub removed: bool,
}

pub async fn list_thread(
    db: impl PgExecutor<'_>,
    thread_id: i64,
) -> Result<Vec<EntryRow>, sqlx::Error> {
    sqlx::query_as!(
        EntryRow,
        r#"
        select id, message_id, parent_id, date, subject, from_name, removed_at is not null as "removed!"
        from archive_message where thread_id = $1
        "#,
        thread_id
    )
    .fetch_all(db)
    .await
}

/// A search result.
#[derive(Debug, Clone)]
pub struct HitRow {
    pub message_id: String,
    pub subject: String,
    pub from_name: String,
    pub date: OffsetDateTime,
    pub snippet: String,
}

/// How many of the newest messages tested first match a search.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// Matches of the search itself.
    pub matches: i64,
    /// Messages holding all its words (a phrase's words anywhere): more than
    /// `matches` only for a phrase.
    pub word_matches: i64,
}

/// How many of the `window` newest messages of a list match a search, and how many hold
/// its words (a walk of the date index, however common or rare the words). `query` is
/// `tsquery` text, as `domain::search` writes it.
pub async fn count_recent_matches(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    query: &str,
    window: i64,
) -> Result<Probe, sqlx::Error> {
    let row = sqlx::query!(
        r#"
        with q as (
            -- (a phrase's words anywhere: its distances made "and")
            select $2::text::tsquery as q,
                   regexp_replace($2::text, '<[0-9-]+>', '&', 'g')::tsquery as words
        )
        select count(*) filter (where r.search @@ q.q) as "matches!",
               count(*) filter (where r.search @@ q.words) as "word_matches!"
        from (
            select s.search from archive_search s
            where s.list_id = $1
            order by s.date desc, s.id desc
            limit $3
        ) r, q
        "#,
        list_id,
        query,
        window
    )
    .fetch_one(db)
    .await?;
    Ok(Probe {
        matches: row.matches,
        word_matches: row.word_matches,
    })
}

/// The date of the list's `n`th newest searchable message (from 0), if it has that many.
pub async fn find_nth_newest_date(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    n: i64,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        select s.date from archive_search s
        where s.list_id = $1
        order by s.date desc, s.id desc
        offset $2 limit 1
        "#,
        list_id,
        n
    )
    .fetch_optional(db)
    .await
}

/// Has the rest of the transaction find a search's matches by walking the date index
/// newest first (`newest_first`), or through the search index, each statement planned
/// for the values it is given.
pub async fn set_search_plan(
    db: impl PgExecutor<'_>,
    newest_first: bool,
) -> Result<(), sqlx::Error> {
    let (walk, index) = if newest_first {
        ("on", "off")
    } else {
        ("off", "on")
    };
    sqlx::query!(
        r#"select set_config('plan_cache_mode', 'force_custom_plan', true) as "plans!",
                  set_config('enable_indexscan', $1, true) as "index_scans!",
                  set_config('enable_seqscan', $1, true) as "table_scans!",
                  set_config('enable_bitmapscan', $2, true) as "bitmap_scans!""#,
        walk,
        index
    )
    .fetch_one(db)
    .await
    .map(|_| ())
}

/// Full-text search of subject, author name and text: the `candidates` newest matches
/// are ranked and the best `limit` of them come first, each with a highlighted snippet
/// (`<<`, `>>` around matched words). `query` is `tsquery` text, as `domain::search`
/// writes it.
///
/// Ranking reads each ranked match's vector, so it is bounded: for words that a large
/// share of a big archive holds, the newest matches are found by walking the date index
/// and testing each row (a few thousand rows), not by reading every match; for rarer
/// ones the GIN index finds them all and the newest are sorted out. The caller chooses
/// the way ([`set_search_plan`], from [`count_recent_matches`]): PostgreSQL's estimate
/// of a phrase's matches is that of its words, often thousands of times too many.
/// `since` leaves out older messages (a phrase of common words is looked for among the
/// newest messages only, walked newest first: through the GIN index, every message
/// holding its words would be read to check their positions). Snippets are made for the
/// page's rows only.
pub async fn search(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    query: &str,
    since: Option<OffsetDateTime>,
    candidates: i64,
    limit: i64,
) -> Result<Vec<HitRow>, sqlx::Error> {
    sqlx::query_as!(
        HitRow,
        r#"
        with hits as (
            select c.id, c.date, ts_rank(c.search, $2::text::tsquery) as rank
            from (
                select s.id, s.date, s.search from archive_search s
                where s.list_id = $1 and s.search @@ $2::text::tsquery
                  and ($5::timestamptz is null or s.date >= $5)
                order by s.date desc, s.id desc
                limit $3
            ) c
            order by rank desc, c.date desc, c.id desc
            limit $4
        )
        select m.message_id, m.subject, m.from_name, m.date,
               ts_headline('english', archive_searched_text(t.body), $2::text::tsquery,
                           'StartSel=<<, StopSel=>>, MaxWords=30, MinWords=12, MaxFragments=2, FragmentDelimiter=" … "')
                   as "snippet!"
        from hits h join archive_message m on m.id = h.id join archive_search t on t.id = h.id
        where m.removed_at is null
        order by h.rank desc, h.date desc, h.id desc
        "#,
        list_id,
        query,
        candidates,
        limit,
        since
    )
    .fetch_all(db)
    .await
}

/// The newest messages that are not removed, newest first.
pub async fn list_newest(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    limit: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    sqlx::query_as!(
        MessageRow,
        r#"
        select m.id, m.message_id, m.thread_id, m.parent_id, m.date, m.subject, m.from_name,
               m.envelope_from, null::bytea as raw, left(coalesce(s.body, ''), 4000) as "body!",
               false as "removed!"
        from archive_message m left join archive_search s on s.id = m.id
        where m.list_id = $1 and m.removed_at is null
        order by m.date desc, m.id desc
        limit $2
        "#,
        list_id,
        limit
    )
    .fetch_all(db)
    .await
}

/// A message to export.
#[derive(Debug, Clone)]
pub struct ExportRow {
    pub id: i64,
    pub date: OffsetDateTime,
    pub envelope_from: Option<String>,
    pub raw: Vec<u8>,
}

/// Messages dated in `[from, to)` in date order, after the keyset `after`; removed
/// messages are left out.
pub async fn list_export(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    from: OffsetDateTime,
    to: OffsetDateTime,
    after: Option<(OffsetDateTime, i64)>,
    limit: i64,
) -> Result<Vec<ExportRow>, sqlx::Error> {
    let (date, id) = after.unwrap_or((from, i64::MIN));
    sqlx::query_as!(
        ExportRow,
        r#"
        select m.id, m.date, m.envelope_from, r.raw
        from archive_message m join archive_raw r on r.id = m.id
        where m.list_id = $1 and (m.date, m.id) > ($2, $3) and m.date < $4
        order by m.date, m.id
        limit $5
        "#,
        list_id,
        date,
        id,
        to,
        limit
    )
    .fetch_all(db)
    .await
}

/// Takes a message down: its bytes, text, subject and author go; its place in the
/// thread and its Message-ID stay. `None` when the list has no such message.
pub async fn update_message_removed(
    db: impl PgExecutor<'_>,
    list_id: Uuid,
    message_id: &str,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        with target as (
            select id, removed_at is not null as was_removed from archive_message
            where list_id = $1 and message_id = $2 for update
        ), done as (
            update archive_message a
            set subject = '', from_name = '', envelope_from = null,
                removed_at = coalesce(a.removed_at, now())
            from target where a.id = target.id
        ), unsearched as (
            delete from archive_search s using target where s.id = target.id
        ), unraw as (
            delete from archive_raw r using target where r.id = target.id
        )
        select was_removed as "was_removed!" from target
        "#,
        list_id,
        message_id
    )
    .fetch_optional(db)
    .await
}

/// The membership a personal feed token names: its list, status and start.
#[derive(Debug, Clone)]
pub struct FeedMember {
    pub list_id: Uuid,
    pub status: String,
    pub subscribed_at: Option<OffsetDateTime>,
}

pub async fn find_feed_member(
    db: impl PgExecutor<'_>,
    member_id: Uuid,
) -> Result<Option<FeedMember>, sqlx::Error> {
    sqlx::query_as!(
        FeedMember,
        "select list_id, status, subscribed_at from member where id = $1",
        member_id
    )
    .fetch_optional(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_are_in_postgresql_binary_format() {
        let mut rows = CopyRows::new();
        assert_eq!(
            rows.take().len(),
            19,
            "signature, flags and extension length"
        );
        rows.timestamptz(time::macros::datetime!(2000-01-01 00:00:01 UTC));
        assert_eq!(
            rows.take(),
            [&8i32.to_be_bytes()[..], &1_000_000i64.to_be_bytes()].concat()
        );
        rows.int8(None);
        assert_eq!(rows.take(), (-1i32).to_be_bytes());
        rows.text_array("");
        let empty: Vec<u8> = [12i32, 0, 0, 25]
            .iter()
            .flat_map(|n| n.to_be_bytes())
            .collect();
        assert_eq!(rows.take(), empty);
        rows.text_array("a\nbc");
        let two: Vec<u8> = [
            [31i32, 1, 0, 25, 2, 1, 1]
                .iter()
                .flat_map(|n| n.to_be_bytes())
                .collect::<Vec<u8>>(),
            b"a".to_vec(),
            2i32.to_be_bytes().to_vec(),
            b"bc".to_vec(),
        ]
        .concat();
        assert_eq!(rows.take(), two);
    }
}
