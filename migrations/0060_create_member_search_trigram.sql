-- Where in a list's address order a search text can match, without reading the list.
--
-- A list's members fall into blocks by the first two characters of their address key.
-- `member_search_trigram` holds, per list and block, every three-character piece
-- (trigram) of the `search_text` of the block's members. A member whose text contains
-- a search text contains each of its trigrams, so a block that lacks one of them holds
-- no match: a search that finds nothing near its cursor skips to the first member of
-- the first block that has them all, and reads the list in order from there.
--
-- The table only ever grows: a member who leaves or is renamed leaves its trigrams
-- behind, which can make a search look at a block in vain but never makes it miss a
-- member. Triggers add the trigrams of every member written, whatever writes it.

create table member_search_trigram (
    list_id uuid not null constraint member_search_trigram_list_fkey references list (id) on delete cascade,
    block text not null,
    trigram text not null,
    constraint member_search_trigram_pkey primary key (list_id, trigram, block)
);

-- The first member of a block after a key: one step down this index.
create index member_search_block_idx on member (list_id, left(address_key, 2), address_key, role);

-- Rows that a statement inserted, in one pass (an import of a million members is one
-- statement); sorted, so that concurrent writers take the keys in the same order.
create function member_search_trigram_insert() returns trigger
language plpgsql as $$
begin
    insert into member_search_trigram (list_id, block, trigram)
    select distinct m.list_id, left(m.address_key, 2), substr(m.search_text, i, 3)
    from inserted_member m, generate_series(1, length(m.search_text) - 2) as i
    order by 1, 3, 2
    on conflict on constraint member_search_trigram_pkey do nothing;
    return null;
end
$$;

-- A member whose address or name changed (rare: most updates touch neither).
create function member_search_trigram_update() returns trigger
language plpgsql as $$
begin
    insert into member_search_trigram (list_id, block, trigram)
    select distinct new.list_id, left(new.address_key, 2), substr(new.search_text, i, 3)
    from generate_series(1, length(new.search_text) - 2) as i
    order by 1, 3, 2
    on conflict on constraint member_search_trigram_pkey do nothing;
    return null;
end
$$;

create trigger member_search_trigram_insert after insert on member
    referencing new table as inserted_member
    for each statement execute function member_search_trigram_insert();

create trigger member_search_trigram_update after update on member
    for each row
    when (old.search_text is distinct from new.search_text or old.address_key is distinct from new.address_key)
    execute function member_search_trigram_update();

-- The members already there.
set local work_mem = '64MB';
insert into member_search_trigram (list_id, block, trigram)
select distinct m.list_id, left(m.address_key, 2), substr(m.search_text, i, 3)
from member m, generate_series(1, length(m.search_text) - 2) as i;
