-- The SHA-256 of a held post's moderation token: its notices carry the reply address
-- `L+moderate+TOKEN@D`, and a staff member's reply to it decides the post once.
alter table post add column moderate_hash bytea constraint post_moderate_hash_key unique;

-- the posts people decided (not the policy), newest first, for the console
create index post_decided_idx on post (list_id, decided_at) where decided_by <> 'policy';
