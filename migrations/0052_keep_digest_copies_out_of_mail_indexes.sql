-- A digest copy is written like a post copy: into as few indexes as a post copy, since
-- each index entry is written again when the copy is marked sent (a change of status
-- is never a HOT update).
--
-- The per-address count of automatic mail never looks at copies of digests either
-- (queries that count it say `post_id is null and digest_id is null`).
drop index outbound_recipient_idx;
create index outbound_recipient_idx on outbound (recipient_key, created_at)
    where post_id is null and digest_id is null;

-- Only the maintenance asks which editions still have copies waiting.
drop index outbound_digest_idx;
create index outbound_digest_idx on outbound (digest_id)
    where digest_id is not null and status = 'queued';
