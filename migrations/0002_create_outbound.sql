-- The outbound queue: every message listd sends, written in the transaction of the
-- change that caused it, claimed by delivery workers with a lease.

create table outbound (
    id bigint generated always as identity primary key,
    list_id uuid constraint outbound_list_fkey references list (id) on delete set null,
    -- what the message is, for operators and metrics: confirm, welcome, goodbye, notice, post
    purpose text not null,
    envelope_from text not null,
    recipient text not null,
    -- lower-case recipient, for the per-address limit on automatic mail (STANDARDS 27)
    recipient_key text not null,
    -- the complete message, CRLF line ends
    message bytea not null,
    status text not null default 'queued'
        constraint outbound_status_check check (status in ('queued', 'sent', 'failed')),
    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    -- a worker holds the row until then; an expired lease means the worker died
    locked_until timestamptz,
    last_error text,
    created_at timestamptz not null default now(),
    sent_at timestamptz
);

create index outbound_due_idx on outbound (next_attempt_at) where status = 'queued';
create index outbound_recipient_idx on outbound (recipient_key, created_at);

