-- What the console asks of the member table, at a million members a list.

-- "Which lists does this address run?": the owner and moderator rows of an address,
-- found without reading any list's members.
create index member_staff_idx on member (address_key) where role <> 'member';

-- Subscriptions waiting for an owner (confirmed by the mailbox, `confirm-then-moderate`):
-- counted on every console page, listed on the requests page.
create index member_waiting_idx on member (list_id, address_key)
    where role = 'member' and status = 'pending' and confirmed_at is not null;

-- Search by any part of an address or a name: a trigram index (pg_trgm) answers
-- `ilike '%part%'` without reading the list. pg_trgm ships with PostgreSQL and is a
-- trusted extension (a database owner may create it), but a server may lack it or
-- refuse it: then the search reads the list in address order, stopping at a page of
-- matches, and still works.
do $$
begin
    begin
        create extension if not exists pg_trgm;
    exception when others then
        raise notice 'pg_trgm is not available (%): member search reads the list instead', sqlerrm;
    end;
    if exists (select 1 from pg_extension where extname = 'pg_trgm') then
        execute $i$
            create index member_search_idx on member
                using gin ((address || ' ' || coalesce(name, '')) gin_trgm_ops)
        $i$;
    end if;
end
$$;
