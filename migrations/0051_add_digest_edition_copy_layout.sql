-- The list's footer in digests (docs/standards.md#19): how each copy of an edition is
-- written with the member's own unsubscribe link, as for posts (`post.copy_layout`);
-- null when the list's footer is off.
alter table digest_edition add column copy_layout bytea;
