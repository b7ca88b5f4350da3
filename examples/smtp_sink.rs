//! Local SMTP sink for benchmarks (`scripts/bench.sh`): the integration
//! tests' server (`tests/support/`) run as a standalone process.
//!
//! Listens on 127.0.0.1:<random> with STARTTLS and required AUTH (PLAIN or
//! LOGIN) for `bench@example.com`, password `$SINK_PASSWORD` or
//! [`DEFAULT_PASSWORD`]. The certificate names 127.0.0.1 and localhost and is
//! signed by a throw-away CA written under `$SINK_DIR` (default: the system
//! temp dir). PIPELINING is offered unless `SINK_PIPELINING=0`. Prints `PORT=<port>` and `CA=<path>` on stdout, one line per
//! finished session on stderr, and runs until killed. Messages are kept in
//! memory only (a few hundred bytes per session).
//!
//! Build: `cargo build --release --example smtp_sink`

use std::time::Duration;

// server.rs imports `super::pki`: as siblings at the crate root, that
// resolves to the `pki` module here, so no shim module is needed.
#[allow(dead_code)]
#[path = "../tests/support/pki.rs"]
mod pki;
#[allow(dead_code)]
#[path = "../tests/support/server.rs"]
mod server;

use server::{Behaviour, Security, TestServer};

pub const USER: &str = "bench@example.com";
pub const DEFAULT_PASSWORD: &str = "bench-password";

fn main() {
    if let Some(dir) = std::env::var_os("SINK_DIR")
        && let Err(e) = std::fs::create_dir_all(&dir)
    {
        eprintln!("smtp_sink: cannot create {}: {e}", dir.to_string_lossy());
        std::process::exit(1);
    }
    let password = std::env::var("SINK_PASSWORD").unwrap_or_else(|_| DEFAULT_PASSWORD.into());
    // PIPELINING is offered unless SINK_PIPELINING=0, as real submission
    // servers do.
    let pipelining = std::env::var("SINK_PIPELINING").map_or(true, |v| v != "0");
    let server = TestServer::start(Behaviour {
        security: Security::StartTls,
        auth: Some((USER.into(), password)),
        pipelining,
        ..Behaviour::default()
    });
    // Rust's stdout is line-buffered: each line reaches a pipe or file at once.
    println!("PORT={}", server.port());
    println!("CA={}", pki::Pki::shared().ca_file.display());

    // One line per finished session, so the benchmark can check that a
    // client really delivered (TLS + AUTH + accepted message), not merely
    // exited 0. `wait_sessions` panics on timeout (and release builds abort
    // on panic): wait in slices far longer than any benchmark.
    let forever = Duration::from_secs(10 * 365 * 86400);
    let mut reported: Vec<bool> = Vec::new();
    loop {
        let done = reported.iter().filter(|&&r| r).count();
        let sessions = server.wait_sessions(done + 1, forever);
        reported.resize(sessions.len(), false);
        for (id, s) in sessions.iter().enumerate() {
            if !s.ended || std::mem::replace(&mut reported[id], true) {
                continue;
            }
            let delivered = s
                .transactions
                .iter()
                .filter(|t| t.reply.starts_with("250"))
                .count();
            let bytes: usize = s.transactions.iter().map(|t| t.data.len()).sum();
            eprintln!(
                "session={id} tls={} auth={} delivered={delivered} bytes={bytes} error={}",
                s.tls,
                s.authenticated,
                s.error.as_deref().unwrap_or("-").replace(' ', "_"),
            );
        }
    }
}
