-- Lists, their members, and pending (not yet confirmed) requests.

create table list (
    id uuid primary key default gen_random_uuid(),
    -- the posting address local@domain; local part lower-case, domain an A-label
    local_part text not null,
    domain text not null,
    list_id text generated always as (local_part || '.' || domain) stored,
    name text not null,
    description text not null default '',
    subscription text not null default 'confirm'
        constraint list_subscription_check check (subscription in ('confirm', 'confirm-then-moderate')),
    posting text not null default 'members'
        constraint list_posting_check check (posting in ('open', 'members', 'moderated', 'announce')),
    nonmember_action text not null default 'hold'
        constraint list_nonmember_action_check check (nonmember_action in ('hold', 'reject', 'discard')),
    subject_prefix text not null,
    reply_to text not null default 'poster'
        constraint list_reply_to_check check (reply_to in ('poster', 'list')),
    dmarc text not null default 'when-needed'
        constraint list_dmarc_check check (dmarc in ('when-needed', 'always', 'never', 'wrap')),
    advertised boolean not null default true,
    bounce_score_threshold integer not null default 5
        constraint list_bounce_score_threshold_check check (bounce_score_threshold > 0),
    bounce_stale_days integer not null default 7
        constraint list_bounce_stale_days_check check (bounce_stale_days > 0),
    bounce_warnings integer not null default 3
        constraint list_bounce_warnings_check check (bounce_warnings >= 0),
    bounce_warning_interval_days integer not null default 7
        constraint list_bounce_warning_interval_days_check check (bounce_warning_interval_days > 0),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint list_address_key unique (local_part, domain),
    constraint list_list_id_key unique (list_id)
);

create table member (
    id uuid primary key default gen_random_uuid(),
    list_id uuid not null constraint member_list_fkey references list (id) on delete cascade,
    -- the address as the person wrote it, and its comparison key (lower-case)
    address text not null,
    address_key text not null,
    name text,
    role text not null default 'member'
        constraint member_role_check check (role in ('member', 'owner', 'moderator')),
    status text not null
        constraint member_status_check
        check (status in ('pending', 'subscribed', 'unsubscribed', 'removed', 'bounced', 'complained')),
    bounce_score integer not null default 0,
    delivery text not null default 'enabled'
        constraint member_delivery_check check (delivery in ('enabled', 'disabled')),
    -- when the current membership began; part of the unsubscribe token's signature,
    -- so a token from an earlier membership does not work for a later one
    subscribed_at timestamptz,
    -- consent evidence (GDPR Art. 7): the request ...
    requested_at timestamptz,
    request_source text
        constraint member_request_source_check check (request_source in ('web', 'mail', 'admin', 'import')),
    request_ip text,
    request_user_agent text,
    request_message_id text,
    request_form_text text,
    -- ... its confirmation ...
    confirmed_at timestamptz,
    confirm_method text,
    confirm_ip text,
    confirm_message_id text,
    -- ... and its withdrawal
    unsubscribed_at timestamptz,
    unsubscribe_method text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint member_list_role_address_key unique (list_id, role, address_key)
);

create index member_list_status_idx on member (list_id, role, status);

create table pending_request (
    id uuid primary key default gen_random_uuid(),
    list_id uuid not null constraint pending_request_list_fkey references list (id) on delete cascade,
    kind text not null
        constraint pending_request_kind_check check (kind in ('subscribe', 'unsubscribe')),
    address text not null,
    address_key text not null,
    name text,
    -- SHA-256 of the token; the token itself exists only in the mail sent to the address
    token_hash bytea not null constraint pending_request_token_hash_key unique,
    requested_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at timestamptz,
    source text not null
        constraint pending_request_source_check check (source in ('web', 'mail', 'admin', 'import')),
    ip text,
    user_agent text,
    message_id text,
    form_text text
);

create index pending_request_list_address_idx on pending_request (list_id, address_key, requested_at);
create index pending_request_expires_idx on pending_request (expires_at) where used_at is null;
