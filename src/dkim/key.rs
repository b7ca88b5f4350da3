//! The signing key: a PEM file (PKCS#8 or PKCS#1, RSA of 2048 bits or
//! more, or Ed25519), readable by its owner only.

use std::io;
use std::path::Path;

use anyhow::Result;
use openssl::pkey::{PKey, Private};

use super::MAX_KEY_FILE;
use crate::accounts;
use crate::exit::Failure;

/// Reads and parses the key file: it must be the owner's alone.
pub(super) fn read_key(path: &Path) -> Result<PKey<Private>> {
    use std::io::Read;
    let cannot = |e: io::Error| {
        Failure::config(format!(
            "cannot read DKIM key {}: {}",
            path.display(),
            e.kind()
        ))
    };
    // Non-blocking: a FIFO (or a device) is refused below instead of
    // waiting forever for a writer.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(cannot)?
    };
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(
            Failure::config(format!("DKIM key {} is not a regular file", path.display())).into(),
        );
    }
    accounts::refuse_if_shared(path, &meta, "holds a DKIM private key")?;
    let mut pem = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut pem)
        .map_err(cannot)?;
    let not_a_key = || {
        Failure::config(format!(
            "DKIM key {} is not a PEM private key (PKCS#8 or PKCS#1, RSA or Ed25519)",
            path.display()
        ))
    };
    if pem.len() as u64 > MAX_KEY_FILE {
        return Err(not_a_key().into());
    }
    if pem.windows(9).any(|w| w == b"ENCRYPTED") {
        return Err(Failure::config(format!(
            "DKIM key {} is encrypted; mailsend needs it unencrypted (and readable by you only)",
            path.display()
        ))
        .with_hint("decrypt it: openssl pkey -in KEY -out dkim.pem")
        .into());
    }
    // An empty passphrase: an encrypted key fails here, never prompts.
    PKey::private_key_from_pem_passphrase(&pem, b"").map_err(|_| not_a_key().into())
}
