-- Search words are now cut from text in composed form (Unicode NFC). The vectors of
-- messages whose subject, author or text was not composed are dropped, and their lists
-- named for the server to index again when it starts (as 0062 did for all).
-- (`is nfc normalized` needs a UTF8 database; in any other, every vector is made again.)
-- Every message's text is read once: on a large archive this takes a while (about 15
-- seconds for a million messages on a machine of two cores).
do $$
begin
    if getdatabaseencoding() = 'UTF8' then
        delete from archive_search s
        using archive_message m
        where m.id = s.id
          and not ((m.subject || ' ' || m.from_name || ' ' || s.body) is nfc normalized);

        insert into archive_reindex (list_id)
        select distinct m.list_id from archive_message m
        where m.removed_at is null
          and not exists (select 1 from archive_search s where s.id = m.id)
        on conflict do nothing;
    else
        truncate archive_search;
        insert into archive_reindex (list_id)
        select l.id from list l
        where exists (select 1 from archive_message m where m.list_id = l.id)
        on conflict do nothing;
    end if;
end
$$;
