-- A message's raw bytes move from its message row to a table of their own. An import
-- writes them on a connection of its own while the storing connection threads the same
-- batch under the list's lock (they were two thirds of the rows it sent there), and
-- commits them first: a message that is visible always has its raw message.
--
-- Raw rows whose messages never came (an import stopped between the two commits) are
-- found again through archive_raw_pending, which names each batch's ids until its
-- messages commit, and deleted when no import's batch is in flight
-- (docs/contract.md#archive). The old column's bytes stay on disk, in the rows that are
-- never written again, until `vacuum full archive_message` rewrites the table.
create table archive_raw (
    -- the message's id (archive_message.id); no foreign key: the row comes before its
    -- message
    id bigint primary key,
    -- lz4: several times faster than the default compression, for a little more room
    raw bytea compression lz4 not null
);

insert into archive_raw (id, raw)
select id, raw from archive_message where raw is not null;

alter table archive_message drop column raw;

create table archive_raw_pending (
    id bigint generated always as identity primary key,
    -- the ids of the batch's raw rows are in [first_id, last_id]
    first_id bigint not null,
    last_id bigint not null
);

-- the raw rows go with their messages (with their list), as the search rows do: one
-- pair of triggers (those of migration 0063 made general) deletes both
drop trigger archive_message_forget_search on archive_message;
drop trigger archive_message_forget_all_search on archive_message;
drop function archive_search_forget();
drop function archive_search_forget_all();

create function archive_message_forget() returns trigger
    language plpgsql as $$
begin
    delete from archive_search s using gone g where s.id = g.id;
    delete from archive_raw r using gone g where r.id = g.id;
    return null;
end
$$;

create trigger archive_message_forget
    after delete on archive_message
    referencing old table as gone
    for each statement execute function archive_message_forget();

create function archive_message_forget_all() returns trigger
    language plpgsql as $$
begin
    truncate archive_search, archive_raw, archive_raw_pending;
    return null;
end
$$;

create trigger archive_message_forget_all
    after truncate on archive_message
    for each statement execute function archive_message_forget_all();
