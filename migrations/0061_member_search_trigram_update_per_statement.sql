-- The trigrams of renamed or moved members, added once per statement and in key order.
--
-- 0060 added them row by row, so an update of many members (an import that renames
-- pending members) took the new keys in row order while the insert trigger takes them
-- sorted: two such statements at once, both adding a key never seen before, could wait
-- on each other until PostgreSQL cancelled one. Now both take them sorted.

create or replace function member_search_trigram_update() returns trigger
language plpgsql as $$
begin
    insert into member_search_trigram (list_id, block, trigram)
    select distinct n.list_id, left(n.address_key, 2), substr(n.search_text, i, 3)
    from updated_member n
    join replaced_member o on o.id = n.id
    cross join lateral generate_series(1, length(n.search_text) - 2) as i
    where o.search_text is distinct from n.search_text
       or o.address_key is distinct from n.address_key
    order by 1, 3, 2
    on conflict on constraint member_search_trigram_pkey do nothing;
    return null;
end
$$;

drop trigger member_search_trigram_update on member;

create trigger member_search_trigram_update after update on member
    referencing old table as replaced_member new table as updated_member
    for each statement execute function member_search_trigram_update();
