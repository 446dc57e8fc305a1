//! Test support, by concern: databases (`db`), the capturing SMTP sink (`sink`), a
//! running server (`server`), the `listd` binary (`cli`), and clients (`client`).

mod cli;
mod client;
mod db;
mod server;
mod sink;

pub use cli::*;
pub use client::*;
pub use db::*;
pub use server::*;
pub use sink::*;
