//! listd, a mailing list manager.
//!
//! ```text
//!  HTTP form / API ─┐
//!  SMTP / LMTP ─────┼─► app (one function per use case) ─► store (sqlx) ─► PostgreSQL
//!  admin CLI ───────┘        │ enqueues, in the same transaction        ▲
//!                            ▼                                          │
//!                      outbound queue ◄──── delivery workers (lettre) ──┘
//! ```
//!
//! Front ends (`http`, `cli`) call use cases in `app`; `app` reads and writes through
//! `store`; both work with the pure types of `domain`. `pg` runs the self-managed
//! PostgreSQL cluster used when no database URL is configured.

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
pub mod store;
pub mod templates;
