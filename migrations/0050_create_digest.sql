-- Digests (docs/contract.md#digests): what each digest member is owed, the posts
-- waiting for a list's next issue, the issues sent and the bytes their copies share.

alter table list
    add column digest boolean not null default true,
    add column digest_size_kb integer not null default 30
        constraint list_digest_size_kb_check check (digest_size_kb between 1 and 10000),
    add column digest_frequency text not null default 'daily'
        constraint list_digest_frequency_check check (digest_frequency in ('daily', 'weekly', 'monthly'));

-- One row per accepted post and member who takes digests, written by the fan-out in the
-- same statement that queues the single copies (one snapshot of the members decides,
-- for each member, a copy or a row here: never both, never neither), and consumed by
-- the issue that carries the post to the member (deleted in the transaction that queues
-- that issue's copies). The key leads with the list: an issue takes all of a list's rows.
-- No foreign keys: a check per row would double the fan-out's cost; rows of a deleted
-- list are removed by the maintenance.
create table digest_owed (
    list_id uuid not null,
    post_id bigint not null,
    member_id uuid not null,
    constraint digest_owed_pkey primary key (list_id, post_id, member_id)
);

-- Posts waiting for a list's next issue, with their size (the bytes as relayed): the
-- size trigger sums them, the schedule looks at the oldest.
create table digest_post (
    list_id uuid not null constraint digest_post_list_fkey references list (id) on delete cascade,
    post_id bigint not null,
    size integer not null,
    accepted_at timestamptz not null default now(),
    constraint digest_post_pkey primary key (list_id, post_id)
);

-- A list's issues: Vol = the UTC year, numbered from 1 within it.
create table digest_issue (
    id bigint generated always as identity primary key,
    list_id uuid not null constraint digest_issue_list_fkey references list (id) on delete cascade,
    volume integer not null,
    number integer not null,
    posts integer not null,
    created_at timestamptz not null default now(),
    constraint digest_issue_list_volume_number_key unique (list_id, volume, number)
);

-- The bytes shared by the copies of one issue in one format for members owed the same
-- posts (nearly always every member: one edition per format). Each copy is the member's
-- own header lines followed by these bytes.
create table digest_edition (
    id bigint generated always as identity primary key,
    issue_id bigint not null constraint digest_edition_issue_fkey references digest_issue (id) on delete cascade,
    list_id uuid not null constraint digest_edition_list_fkey references list (id) on delete cascade,
    plain boolean not null,
    post_ids bigint[] not null,
    message bytea not null,
    created_at timestamptz not null default now()
);

create index digest_edition_issue_idx on digest_edition (issue_id);

-- A digest copy names its edition and member, like a post copy.
alter table outbound
    add column digest_id bigint,
    drop constraint outbound_content_check,
    add constraint outbound_content_check check (
        (message is not null and envelope_from is not null)
        or (post_id is not null and member_id is not null)
        or (digest_id is not null and member_id is not null)
    );
create index outbound_digest_idx on outbound (digest_id) where digest_id is not null;
