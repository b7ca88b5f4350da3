//! Shared helpers for integration tests: `mod support;` in a test file.
#![allow(dead_code)]

pub mod ccert;
pub mod cmd;
pub mod oauth_server;
pub mod pki;
pub mod script;
pub mod server;
