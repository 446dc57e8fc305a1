-- Bounces: every delivery failure reported for a member (a delivery status report
-- received at L+bounces…@D, or a 5xx from the relay), and the member's bounce state.
-- A bounce is recorded first and judged afterwards (score, disable, alert), so the
-- rules run with one clock and in one place.

create table bounce (
    id bigint generated always as identity primary key,
    list_id uuid not null constraint bounce_list_fkey references list (id) on delete cascade,
    -- null when neither the VERP address nor the report named a member
    member_id uuid constraint bounce_member_fkey references member (id) on delete cascade,
    -- the address the report names (or the copy's recipient)
    address text,
    class text not null
        constraint bounce_class_check check (class in ('hard', 'soft', 'policy', 'complaint', 'unknown')),
    -- RFC 3463 status (e.g. 5.1.1) and the diagnostic text, as reported
    status text,
    diagnostic text,
    source text not null
        constraint bounce_source_check check (source in ('report', 'relay')),
    inbound_id bigint constraint bounce_inbound_fkey references inbound (id) on delete set null,
    received_at timestamptz not null default now(),
    -- when the bounce rules looked at it, and what they did
    judged_at timestamptz,
    outcome text
);

create index bounce_member_idx on bounce (member_id, received_at);
create index bounce_unjudged_idx on bounce (id) where judged_at is null;

alter table member
    -- the last hard bounce that counted (at most one a day)
    add column bounce_scored_at timestamptz,
    -- delivery was turned off by bounces then; warnings follow, then removal
    add column bounce_disabled_at timestamptz,
    add column bounce_warnings_sent integer not null default 0,
    add column bounce_warned_at timestamptz;

-- owners hear of policy bounces (DMARC, spam filters) once a day per receiving domain
create table policy_alert (
    list_id uuid not null constraint policy_alert_list_fkey references list (id) on delete cascade,
    domain text not null,
    day date not null,
    constraint policy_alert_pkey primary key (list_id, domain, day)
);
