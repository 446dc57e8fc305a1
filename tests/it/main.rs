//! The integration tests: one binary, one module per area.

mod abuse;
mod addresses;
mod api;
mod bounces;
mod browser;
mod compose;
mod digests;
mod dns;
mod harness;
mod lists;
mod pg;
mod posts;
mod processes;
mod signin;
mod smtp;
mod subscribe;
