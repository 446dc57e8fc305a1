-- Shorter tokens for the addresses listd writes, so that a local part stays within
-- RFC 5321's 64 octets for list names of up to 32 octets (docs/standards.md#addresses).

-- A member's compact number, named by the VERP envelope sender of its copies.
alter table member add column short_id bigint generated always as identity;
alter table member add constraint member_short_id_key unique (short_id);

-- A membership's unsubscribe key: 98 random bits (13 bytes, the first byte's top six
-- bits zero), named by the `L+unsubscribe+TOKEN@D` address of its copies. Renewed when
-- a new membership begins, so an old address does not end a later membership.
-- gen_random_uuid() draws from the server's strong random source; bytes 9-15 of a
-- version-4 UUID carry no version or variant bits.
create function listd_new_unsubscribe_key() returns bytea
language sql volatile parallel safe as $$
    select set_byte(k, 0, get_byte(k, 0) & 3)
    from (select substring(uuid_send(gen_random_uuid()) from 10 for 7)
              || substring(uuid_send(gen_random_uuid()) from 10 for 6) as k) as r
$$;

alter table member add column unsubscribe_key bytea not null default listd_new_unsubscribe_key();
alter table member add constraint member_unsubscribe_key_key unique (unsubscribe_key);

-- The SHA-256 of the short token a confirmation mail's Reply-To address carries (the
-- link keeps its longer token in token_hash). Null for requests made before.
alter table pending_request add column reply_hash bytea
    constraint pending_request_reply_hash_key unique;

-- A queued message that listd itself could not hand to the relay (an address it
-- cannot write into SMTP, a copy it cannot build) is kept queued and retried, never
-- counted as a bounce; `fault_at` marks it so that the list's owners are told.
alter table outbound add column fault_at timestamptz;

-- owners hear of such faults once a day per list
create table delivery_fault_alert (
    list_id uuid not null constraint delivery_fault_alert_list_fkey references list (id) on delete cascade,
    day date not null,
    constraint delivery_fault_alert_pkey primary key (list_id, day)
);
create index outbound_fault_idx on outbound (fault_at) where fault_at is not null;
