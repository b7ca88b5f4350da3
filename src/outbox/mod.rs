//! The outbox: messages kept for a later retry.
//!
//! - `store.rs`: the entries on disk, their crash-safe writes and the
//!   checks that keep another user's files out.
//! - `commands.rs`: `mailsend outbox list|show|flush|retry|drop`, and the
//!   flush that sends an account's due entries over one session.

pub mod commands;
mod store;

pub use store::*;
