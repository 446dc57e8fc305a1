-- Bearer tokens of the admin API (`listd api-tokens create NAME`). The token is shown
-- once; only its SHA-256 is kept.

create table api_token (
    id uuid primary key default gen_random_uuid(),
    name text not null constraint api_token_name_key unique,
    token_hash bytea not null constraint api_token_hash_key unique,
    created_at timestamptz not null default now(),
    last_used_at timestamptz
);
