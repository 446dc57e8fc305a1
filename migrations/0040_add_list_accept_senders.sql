-- A list's sender allow-list: addresses whose posts are accepted as a member's would
-- be (an owner's "accept this sender from now on"), kept as written, compared without
-- regard to case.
alter table list add column accept_senders text[] not null default '{}';
