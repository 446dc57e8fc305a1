//! The integration tests: one binary, one module per area.

mod abuse;
mod addresses;
mod api;
mod archive;
mod bounces;
mod browser;
mod compose;
mod console;
mod digests;
mod dkim;
mod dns;
mod footer;
mod harness;
mod lists;
mod moderation;
mod pg;
mod posts;
mod processes;
mod router;
mod signin;
mod smtp;
mod subscribe;
