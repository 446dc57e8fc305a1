-- Search vectors are made by listd now, which cuts a message's text and a search's text
-- into words by the same rules (src/domain/search.rs); the vectors PostgreSQL's
-- to_tsvector made before do not match its searches for compounds such as addresses,
-- host names and hyphenated words. They are dropped, and the server indexes each list
-- named in archive_reindex again when it starts, removing the list once it is done.
truncate archive_search;

create table archive_reindex (
    list_id uuid primary key references list (id) on delete cascade
);

insert into archive_reindex (list_id)
select l.id from list l where exists (select 1 from archive_message m where m.list_id = l.id);
