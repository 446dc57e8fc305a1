-- Subscribe and unsubscribe requests from the web form: stored before the form is
-- answered, and carried out afterwards by the inbound workers. The answer then costs
-- one insert whatever the address is (member, pending, stranger), so its timing tells
-- nobody which it was (no enumeration by stopwatch). A carried-out request is deleted:
-- the pending request and the consent record keep its evidence.

create table web_request (
    id bigint generated always as identity primary key,
    list_id uuid not null constraint web_request_list_fkey references list (id) on delete cascade,
    kind text not null
        constraint web_request_kind_check check (kind in ('subscribe', 'unsubscribe')),
    address text not null,
    name text,
    -- {"ip": …, "user_agent": …, "form_text": …}
    evidence jsonb not null,
    received_at timestamptz not null default now(),
    status text not null default 'new'
        constraint web_request_status_check check (status in ('new', 'failed')),
    attempts integer not null default 0,
    locked_until timestamptz,
    last_error text
);

create index web_request_new_idx on web_request (id) where status = 'new';
