-- Mail received over SMTP/LMTP, stored before the sender is told 250, and processed
-- afterwards by the inbound workers. A message whose processing fails stays here, raw,
-- with its error, for the operator.

create table inbound (
    id bigint generated always as identity primary key,
    received_at timestamptz not null default now(),
    -- null for the null reverse-path MAIL FROM:<>
    mail_from text,
    -- [{"address": "...", "list_id": "...", "action": "subscribe", "token": null}, ...]
    recipients jsonb not null,
    helo text not null default '',
    peer text,
    tls boolean not null default false,
    protocol text not null default 'smtp'
        constraint inbound_protocol_check check (protocol in ('smtp', 'lmtp')),
    raw bytea not null,
    status text not null default 'new'
        constraint inbound_status_check check (status in ('new', 'done', 'failed')),
    attempts integer not null default 0,
    locked_until timestamptz,
    last_error text,
    -- what processing did, for the operator (e.g. "confirmation sent", "ignored: automatic")
    outcome text,
    processed_at timestamptz
);

create index inbound_new_idx on inbound (id) where status = 'new';

