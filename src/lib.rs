//! listd, a mailing list manager.
//!
//! ```text
//!  HTTP (http/) ────────┐
//!  SMTP / LMTP (smtp/) ─┼─► app/ ──────────► store/ ──► PostgreSQL
//!  admin CLI (cli/) ────┘    one use case     all SQL     │    ▲
//!                            per method,                  │    │ claims the outbound
//!                            mail queued in               │    │ queue, records outcomes
//!                            its transaction              ▼    │
//!                            (app/outbox.rs)        delivery/ workers ──► relay (lettre)
//!
//!  domain/: pure types and rules, used by all     mail/: reading and writing messages
//!  startup.rs: database, App and metrics recorder, for `serve` and every command
//! ```
//!
//! Front ends (`http`, `smtp`, `cli`) call use cases in `app`; `app` reads and writes
//! through `store` and queues mail through `app::outbox`; all of them work with the pure
//! types of `domain`. `delivery` sends what is queued. `startup` builds the `App` for
//! `serve` (with `server`) and for every other command. `pg` runs the self-managed
//! PostgreSQL cluster used when no database URL is configured. docs/architecture.md
//! says where each behaviour lives.

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod database;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod log_limit;
pub mod mail;
pub mod pg;
pub mod server;
pub mod smtp;
pub mod startup;
pub mod store;
pub mod templates;
