//! The TLS client certificate (`--client-cert`, `--client-key`): reading
//! the PEM files under the rules for secret files, and checking that the
//! key belongs to the certificate before anything connects. Every problem
//! is one configuration error (78) naming the file.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::accounts;
use crate::config::Settings;
use crate::exit::Failure;
use crate::smtp::{ClientIdentity, IdentityError, has_private_key};

const HINT: &str = "--client-cert (MAILSEND_CLIENT_CERT) names a PEM certificate, \
                    --client-key (MAILSEND_CLIENT_KEY) its unencrypted PEM private key";

/// The configured client identity, if any. A certificate file that holds
/// the key too needs no `client_key`; whichever file holds the key must
/// be readable by its owner only.
pub fn load(settings: &Settings) -> Result<Option<ClientIdentity>> {
    let Some(cert_path) = settings.client_cert.as_deref() else {
        return Ok(None);
    };
    let cert_pem = read(cert_path, "client certificate", settings.timeout)?;
    let (key_path, key_pem) = match settings.client_key.as_deref() {
        Some(key_path) => (key_path, read(key_path, "client key", settings.timeout)?),
        None if has_private_key(&cert_pem) => (cert_path, cert_pem.clone()),
        None => {
            return Err(Failure::config(format!(
                "client certificate {} holds no private key and no client key is configured",
                cert_path.display()
            ))
            .with_hint("set --client-key (MAILSEND_CLIENT_KEY, account client_key)")
            .into());
        }
    };
    let identity = ClientIdentity::from_pem(&cert_pem, &key_pem).map_err(|e| {
        let (what, path) = match e {
            IdentityError::NoCertificate => ("client certificate", cert_path),
            _ if key_path == cert_path => ("client certificate", cert_path),
            _ => ("client key", key_path),
        };
        Failure::config(format!("cannot use {what} {}: {e}", path.display())).with_hint(HINT)
    })?;
    Ok(Some(identity))
}

/// Reads one PEM file; a file that holds a private key must be private.
fn read(path: &Path, what: &str, wait: Duration) -> Result<Vec<u8>> {
    let cannot = |e: std::io::Error| {
        Failure::config(format!(
            "cannot read {what} {}: {}",
            path.display(),
            e.kind()
        ))
        .with_hint(HINT)
    };
    let file = accounts::open_settings_file(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    let pem = accounts::read_settings_file(&file, wait, accounts::MAX_SETTINGS_FILE).map_err(
        |e| match e {
            accounts::ReadError::Io(e) => cannot(e),
            accounts::ReadError::TimedOut(_) => Failure::config(format!(
                "cannot read {what} {}: no end of data (a FIFO nobody writes to?)",
                path.display()
            )),
            accounts::ReadError::TooLarge => Failure::config(format!(
                "cannot read {what} {}: larger than {} KiB",
                path.display(),
                accounts::MAX_SETTINGS_FILE / 1024
            )),
        },
    )?;
    if has_private_key(&pem) {
        accounts::refuse_if_shared(path, &meta, "holds a private key")?;
    }
    Ok(pem)
}
