-- The footer on every copy of a post (docs/standards.md#19): on by default, with the
-- list's own template (empty: the built-in one). A post keeps the layout of its
-- copies with the footer, built once when it is accepted; without a footer the
-- copies are `relayed` as it is.

alter table list
    add column footer text not null default 'on'
        constraint list_footer_check check (footer in ('on', 'off')),
    add column footer_text text not null default '';

alter table post add column copy_layout bytea;
