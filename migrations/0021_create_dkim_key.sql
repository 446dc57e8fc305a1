-- DKIM signing keys (docs/standards.md#60 to #62), shared by every listd process. The
-- private key (PKCS#8 DER) is read only to sign; nothing prints, logs or serves it.

create table dkim_key (
    id bigint generated always as identity primary key,
    -- an A-label domain in lower case: mail from an address at exactly this domain is signed
    domain text not null,
    selector text not null,
    algorithm text not null
        constraint dkim_key_algorithm_check check (algorithm in ('rsa-sha256', 'ed25519-sha256')),
    private_key bytea not null,
    -- the p= value of the DNS record
    public_key text not null,
    created_at timestamptz not null default now(),
    constraint dkim_key_domain_selector_key unique (domain, selector)
);
