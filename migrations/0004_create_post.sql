-- Posts to lists. A post is held for moderation, or accepted: then its raw message is
-- kept (the archive) with the rewritten copy every member is sent, and the fan-out is
-- one outbound row per member that points here instead of holding the message.

create table post (
    id bigint generated always as identity primary key,
    list_id uuid not null constraint post_list_fkey references list (id) on delete cascade,
    -- the received message this post came from (null once that record is purged)
    inbound_id bigint constraint post_inbound_fkey references inbound (id) on delete set null,
    -- the poster's Message-ID with its angle brackets: a repeat within 7 days is not relayed
    message_id text,
    -- the envelope sender (null for MAIL FROM:<>) and the From address
    mail_from text,
    author text,
    subject text not null default '',
    raw bytea not null,
    status text not null
        constraint post_status_check check (status in ('held', 'accepted', 'rejected', 'discarded')),
    -- why it was held, or the reason given when it was rejected
    reason text,
    -- sent by a program: a rejection is never answered to it
    automatic boolean not null default false,
    received_at timestamptz not null default now(),
    decided_at timestamptz,
    -- 'policy' when the list's settings decided, else who moderated it (e.g. 'cli')
    decided_by text,
    -- for accepted posts: the header block and body shared by every copy; each copy is
    -- the member's List-Unsubscribe lines followed by these bytes
    relayed bytea,
    copies integer not null default 0
);

create index post_list_message_id_idx on post (list_id, message_id, received_at);
-- a received message is one post per list, even when its processing is repeated
create unique index post_list_inbound_key on post (list_id, inbound_id);
create index post_held_idx on post (received_at) where status = 'held';
create index post_list_status_idx on post (list_id, status);

-- A post copy names its post and member; VERP sender and unsubscribe token are made
-- when it is sent. Other messages keep carrying their complete bytes. Post copies
-- leave list_id empty (the post names the list): its foreign-key check, once per
-- member, would double the cost of a fan-out.
alter table outbound
    add column post_id bigint,
    add column member_id uuid,
    alter column message drop not null,
    alter column envelope_from drop not null,
    drop constraint outbound_status_check,
    -- cancelled: a post copy not sent because its member left before its turn came
    add constraint outbound_status_check check (status in ('queued', 'sent', 'failed', 'cancelled')),
    add constraint outbound_content_check check (
        (message is not null and envelope_from is not null)
        or (post_id is not null and member_id is not null)
    );

-- claims take the oldest due rows in (next_attempt_at, id) order: with id in the index
-- a claim reads its batch from the index instead of sorting every queued row (a
-- fan-out queues one row per member at once, all due at the same instant)
drop index outbound_due_idx;
create index outbound_due_idx on outbound (next_attempt_at, id) where status = 'queued';

-- the per-address limit on automatic mail never looks at post copies: keep them out
-- of this index so a fan-out writes one index less per member (queries that count
-- automatic mail say `post_id is null` so that they can use it)
drop index outbound_recipient_idx;
create index outbound_recipient_idx on outbound (recipient_key, created_at) where post_id is null;

-- members receive their own posts unless they turn it off (as in Mailman)
alter table member add column own_posts boolean not null default true;

-- claiming a row changes only its lease and attempt count: with room left on each
-- page that update stays on the page and touches no index (a HOT update)
alter table outbound set (fillfactor = 50);

-- Member look-ups name the list and the address (and often the role). With the role
-- second in the unique index, a look-up without the role read every member of the
-- list; and with a second index leading with the list, the planner (on a table whose
-- statistics were stale) could answer a look-up by reading the whole list through it.
-- One index now serves both the look-ups and the listings: the address comes second,
-- and the status index is gone (a listing or a fan-out reads the whole list anyway).
alter table member drop constraint member_list_role_address_key;
alter table member add constraint member_list_address_role_key unique (list_id, address_key, role);
drop index member_list_status_idx;
