-- The SHA-256 of a held post's moderation token: its notices carry the reply address
-- `L+moderate+TOKEN@D`, and a staff member's reply to it decides the post once.
alter table post add column moderate_hash bytea constraint post_moderate_hash_key unique;
