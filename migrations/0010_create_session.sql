-- Members choose how posts reach them; people sign in with a link mailed to them.

-- `each`: every post as it is relayed; `digest` (MIME) and `digest-plain` (RFC 1153):
-- the posts gathered into digests instead of single copies.
alter table member add column mode text not null default 'each'
    constraint member_mode_check check (mode in ('each', 'digest', 'digest-plain'));

-- A sign-in link mailed to an address: single use, 15 minutes. Only the SHA-256 of
-- its token is kept.
create table signin_token (
    token_hash bytea primary key,
    address text not null,
    address_key text not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at timestamptz,
    ip text
);

create index signin_token_address_idx on signin_token (address_key, created_at);

-- A signed-in browser. The cookie holds a random id; only its SHA-256 is kept here,
-- so any process on the database answers any session and a copy of the table signs
-- nobody in. Signing out deletes the row.
create table web_session (
    id_hash bytea primary key,
    address text not null,
    address_key text not null,
    created_at timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    expires_at timestamptz not null
);

create index web_session_address_idx on web_session (address_key);
create index web_session_expires_idx on web_session (expires_at);

-- Sign-in requests from the web form are stored and carried out later, like
-- subscriptions, so the answer takes the same time for every address. They name no list.
alter table web_request alter column list_id drop not null;
alter table web_request drop constraint web_request_kind_check;
alter table web_request add constraint web_request_kind_check
    check (kind in ('subscribe', 'unsubscribe', 'signin'));
