-- A message's own text (as searched, and shown in snippets) moves from its message row
-- to its search row: an import writes it there with the vector, on its indexing
-- connection, beside the storing of the messages (whose insert it made about a third
-- longer, under the lock that orders the threading). A message without a search row has
-- its text read again from its raw message when it is indexed.
alter table archive_search add column body text compression lz4 not null default '';

update archive_search s set body = m.body
from archive_message m
where m.id = s.id and m.body <> '';

alter table archive_message drop column body;
