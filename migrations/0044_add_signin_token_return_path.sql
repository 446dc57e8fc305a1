-- Where a person was going when they were asked to sign in (a local path, such as a
-- held post's console page): the sign-in link returns them there instead of /me.
alter table signin_token add column return_path text;
