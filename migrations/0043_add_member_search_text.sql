-- Member search that reads the index, not the table.
--
-- `search_text` is what a search matches (address and name, lower-case), computed once
-- when a row is written rather than for every row a search reads (lower() costs more
-- than the match itself). The list's unique key now carries it, with status and
-- delivery (what the console filters on), so a search that walks a list in address
-- order reads the index alone; the rows of a page are read only for the page.

alter table member
    add column search_text text generated always as (lower(address || ' ' || coalesce(name, ''))) stored;

alter table member
    drop constraint member_list_address_role_key,
    add constraint member_list_address_role_key unique (list_id, address_key, role)
        include (search_text, status, delivery);

-- The trigram index (0042, when pg_trgm is there) moves to the same text.
do $$
begin
    if exists (select 1 from pg_extension where extname = 'pg_trgm') then
        drop index if exists member_search_idx;
        execute $i$
            create index member_search_idx on member using gin (search_text gin_trgm_ops)
        $i$;
    end if;
end
$$;
