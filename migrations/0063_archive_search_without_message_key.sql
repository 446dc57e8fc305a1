-- A message's search row is written by the import's indexing connection right after
-- the message's row is stored by another: the foreign key's check of each row (a
-- lookup and a row lock on archive_message) cost as much as storing the row itself.
-- The rows go when their messages go (with their list) by statement triggers instead.
alter table archive_search drop constraint archive_search_message_fkey;

create function archive_search_forget() returns trigger
    language plpgsql as $$
begin
    delete from archive_search s using gone g where s.id = g.id;
    return null;
end
$$;

create trigger archive_message_forget_search
    after delete on archive_message
    referencing old table as gone
    for each statement execute function archive_search_forget();

create function archive_search_forget_all() returns trigger
    language plpgsql as $$
begin
    truncate archive_search;
    return null;
end
$$;

create trigger archive_message_forget_all_search
    after truncate on archive_message
    for each statement execute function archive_search_forget_all();
