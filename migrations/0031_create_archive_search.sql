-- The archive's search vectors move to a table of their own (docs/contract.md#archive):
-- narrow rows of (message, list, date, vector) that a search reads newest first
-- without touching the messages, and that an import fills on a second connection while
-- the first one threads and stores the messages.

create table archive_search (
    id bigint primary key
        constraint archive_search_message_fkey references archive_message (id) on delete cascade,
    list_id uuid not null,
    -- the message's date, for reading the matches newest first
    date timestamptz not null,
    search tsvector not null
);

insert into archive_search (id, list_id, date, search)
select id, list_id, date, search from archive_message where removed_at is null;

drop index archive_message_search_idx;
alter table archive_message drop column search;

-- a larger list of pending entries than the default (4 MB) halves the cost of keeping
-- the index during an import, which flushes it when it ends
create index archive_search_idx on archive_search using gin (search)
    with (gin_pending_list_limit = 65536);
-- the newest matches of a common word: walked newest first, each row tested
create index archive_search_list_date_idx on archive_search (list_id, date desc, id desc);
