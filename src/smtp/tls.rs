//! TLS for the SMTP client: trust store, handshake, certificate checks.
//!
//! Uses OpenSSL directly (the library native-tls wraps on Linux) because we
//! need three things native-tls hides: the negotiated session (version for
//! `--json`, cipher and peer chain for `-v`, see `peer.rs`), the exact reason a certificate was refused (expired, wrong
//! host, unknown issuer), and control over how the system trust store is
//! loaded. OpenSSL's default loads and parses the whole CA bundle on every
//! start (~85 ms of CPU measured here); we look roots up lazily in the
//! hashed certificate directory instead, which trusts the same roots.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::pkey::{PKey, Private};
use openssl::ssl::{
    HandshakeError, Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslStream,
    SslVerifyMode, SslVersion,
};
use openssl::x509::store::X509Lookup;
use openssl::x509::verify::X509CheckFlags;
use openssl::x509::{X509, X509StoreContext, X509VerifyResult};

use super::error::{SmtpError, Stage};
use super::peer::CertSummary;

/// Directories where distributions keep hashed (`c_rehash`) CA links.
const CERT_DIRS: &[&str] = &["/etc/ssl/certs", "/etc/pki/tls/certs", "/etc/openssl/certs"];

/// Bundles that distributions generate from those directories.
const DISTRIBUTION_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// A client TLS configuration: verification always on, TLS 1.2 or newer.
pub struct TlsConfig {
    context: SslContext,
    /// The certificate presented when the server asks for one.
    client: Option<ClientIdentity>,
}

/// A TLS client certificate (with the chain to present after it) and its
/// key, checked to belong together. Reading the files (and the rules for
/// a secret file) is the caller's job; this only parses PEM.
pub struct ClientIdentity {
    cert: X509,
    chain: Vec<X509>,
    key: PKey<Private>,
}

/// Why a client certificate and key cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum IdentityError {
    NoCertificate,
    NoKey,
    /// The key is encrypted (mailsend asks for no passphrase).
    EncryptedKey,
    Mismatch,
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdentityError::NoCertificate => "it holds no PEM certificate",
            IdentityError::NoKey => "it holds no PEM private key",
            IdentityError::EncryptedKey => {
                "the private key is encrypted (mailsend asks for no passphrase)"
            }
            IdentityError::Mismatch => "the private key does not belong to the certificate",
        })
    }
}

impl ClientIdentity {
    /// From PEM: `cert_pem` holds the certificate first, then any
    /// intermediates; `key_pem` the private key (PKCS#8 or traditional).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<ClientIdentity, IdentityError> {
        let mut certs = X509::stack_from_pem(cert_pem)
            .map_err(|_| IdentityError::NoCertificate)?
            .into_iter();
        let cert = certs.next().ok_or(IdentityError::NoCertificate)?;
        if !has_private_key(key_pem) {
            return Err(IdentityError::NoKey);
        }
        if key_pem
            .windows(b"ENCRYPTED".len())
            .any(|w| w == b"ENCRYPTED")
        {
            return Err(IdentityError::EncryptedKey);
        }
        let key = PKey::private_key_from_pem(key_pem).map_err(|_| IdentityError::NoKey)?;
        let public = cert
            .public_key()
            .map_err(|_| IdentityError::NoCertificate)?;
        if !public.public_eq(&key) {
            return Err(IdentityError::Mismatch);
        }
        Ok(ClientIdentity {
            cert,
            chain: certs.collect(),
            key,
        })
    }

    /// What the certificate says about itself.
    pub fn summary(&self) -> CertSummary {
        CertSummary::of(&self.cert)
    }
}

/// Whether `pem` holds a private key block (of any kind).
pub fn has_private_key(pem: &[u8]) -> bool {
    pem.split(|&b| b == b'\n').any(|line| {
        let line = line.trim_ascii();
        line.starts_with(b"-----BEGIN ") && line.ends_with(b"PRIVATE KEY-----")
    })
}

/// The chain a server presented, as verification saw it (leaf first),
/// kept even when verification fails: `mailsend check` describes it.
pub type Seen = Arc<Mutex<Vec<CertSummary>>>;

impl TlsConfig {
    /// System roots plus, if given, every certificate in `ca_file`.
    pub fn new(ca_file: Option<&Path>) -> anyhow::Result<TlsConfig> {
        let mut builder = SslContextBuilder::new(SslMethod::tls_client())?;
        builder.set_min_proto_version(Some(SslVersion::TLS1_2))?;
        builder.set_verify(SslVerifyMode::PEER);
        load_system_roots(&mut builder)?;
        if let Some(path) = ca_file {
            let cannot = |reason: String| SmtpError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| cannot(e.kind().to_string()))?;
            let certs =
                X509::stack_from_pem(&pem).map_err(|_| cannot("not PEM certificates".into()))?;
            if certs.is_empty() {
                return Err(cannot("it holds no certificate".into()).into());
            }
            for cert in certs {
                // A root that is also in the system store is not an error.
                let _ = builder.cert_store_mut().add_cert(cert);
            }
        }
        Ok(TlsConfig {
            context: builder.build(),
            client: None,
        })
    }

    /// The same, presenting `client` to a server that asks for a
    /// certificate (STARTTLS and implicit TLS alike).
    pub fn with_client(mut self, client: Option<ClientIdentity>) -> TlsConfig {
        self.client = client;
        self
    }

    /// The client certificate, if one is configured.
    pub fn client(&self) -> Option<&ClientIdentity> {
        self.client.as_ref()
    }

    /// Performs the handshake over `tcp` (whose timeouts bound it) and
    /// checks the certificate chain and that it names `host`.
    pub fn connect<S: Read + Write>(
        &self,
        host: &str,
        tcp: S,
        timeout: Duration,
    ) -> Result<SslStream<S>, SmtpError> {
        self.connect_seeing(host, tcp, timeout, None)
    }

    /// Like [`TlsConfig::connect`]; `seen` gets the server's chain as the
    /// verification saw it, also when it refuses it.
    pub fn connect_seeing<S: Read + Write>(
        &self,
        host: &str,
        tcp: S,
        timeout: Duration,
        seen: Option<Seen>,
    ) -> Result<SslStream<S>, SmtpError> {
        let setup = |e: openssl::error::ErrorStack| SmtpError::Tls {
            host: host.to_owned(),
            reason: e.to_string(),
        };
        let mut ssl = Ssl::new(&self.context).map_err(setup)?;
        let name = super::connect::bare_host(host);
        match name.parse::<IpAddr>() {
            Ok(ip) => ssl.param_mut().set_ip(ip).map_err(setup)?,
            Err(_) => {
                ssl.set_hostname(name).map_err(setup)?;
                let param = ssl.param_mut();
                // RFC 9525 6.3: the name must be in subjectAltName; a
                // certificate that names the host only in its CN is refused.
                param.set_hostflags(
                    X509CheckFlags::NO_PARTIAL_WILDCARDS | X509CheckFlags::NEVER_CHECK_SUBJECT,
                );
                param.set_host(name).map_err(setup)?;
            }
        }
        if let Some(id) = &self.client {
            ssl.set_certificate(&id.cert).map_err(setup)?;
            ssl.set_private_key(&id.key).map_err(setup)?;
            for extra in &id.chain {
                ssl.add_chain_cert(extra.clone()).map_err(setup)?;
            }
        }
        if let Some(seen) = seen {
            // Verification is unchanged (the callback returns OpenSSL's
            // own verdict); it only keeps the chain the server presented
            // (not the one verification built, which ends with a local
            // trust anchor the server never sent), or failing that the
            // longest chain it was shown.
            ssl.set_verify_callback(SslVerifyMode::PEER, move |verified, ctx| {
                let presented = X509StoreContext::ssl_idx()
                    .ok()
                    .and_then(|idx| ctx.ex_data(idx))
                    .and_then(|ssl| ssl.peer_cert_chain())
                    .map(|chain| chain.iter().map(CertSummary::of).collect::<Vec<_>>())
                    .filter(|chain| !chain.is_empty());
                let chain: Vec<CertSummary> = match (presented, ctx.chain()) {
                    (Some(presented), _) => presented,
                    (None, Some(chain)) => chain.iter().map(CertSummary::of).collect(),
                    (None, None) => ctx
                        .current_cert()
                        .map(CertSummary::of)
                        .into_iter()
                        .collect(),
                };
                if let Ok(mut kept) = seen.lock()
                    && chain.len() > kept.len()
                {
                    *kept = chain;
                }
                verified
            });
        }
        match ssl.connect(tcp) {
            Ok(stream) => Ok(stream),
            Err(HandshakeError::WouldBlock(_)) => Err(SmtpError::Timeout {
                stage: Stage::TlsHandshake,
                after: timeout,
            }),
            Err(HandshakeError::SetupFailure(e)) => Err(setup(e)),
            Err(HandshakeError::Failure(mid)) => {
                let verify = mid.ssl().verify_result();
                if verify != X509VerifyResult::OK {
                    return Err(SmtpError::Untrusted {
                        host: host.to_owned(),
                        reason: verify.error_string().to_owned(),
                    });
                }
                let error = mid.error();
                if let Some(io) = error.io_error() {
                    return Err(SmtpError::from_io(Stage::TlsHandshake, io, timeout));
                }
                Err(SmtpError::Tls {
                    host: host.to_owned(),
                    reason: error
                        .ssl_error()
                        .and_then(|s| {
                            s.errors()
                                .first()
                                .and_then(|e| e.reason().map(str::to_owned))
                        })
                        .unwrap_or_else(|| error.to_string()),
                })
            }
        }
    }
}

/// Trusts the system's roots, looked up on demand in a hashed directory
/// (`SSL_CERT_DIR`'s, else the distribution's), reading only the one or two
/// files a chain needs. `SSL_CERT_FILE` is loaded as well, unless it is the
/// distribution bundle that such a directory already holds (many images
/// export `SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt`). Without any
/// hashed directory this is OpenSSL's own default.
fn load_system_roots(builder: &mut SslContextBuilder) -> anyhow::Result<()> {
    let dirs: Vec<PathBuf> = match std::env::var_os("SSL_CERT_DIR") {
        Some(list) => std::env::split_paths(&list)
            .filter(|d| has_hashed_links(d))
            .collect(),
        None => hashed_cert_dir().into_iter().collect(),
    };
    if dirs.is_empty() {
        builder.set_default_verify_paths()?;
        return Ok(());
    }
    for dir in &dirs {
        let lookup = builder
            .cert_store_mut()
            .add_lookup(X509Lookup::hash_dir())?;
        lookup.add_dir(&dir.to_string_lossy(), SslFiletype::PEM)?;
    }
    if let Some(file) = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from)
        && !is_bundle_of(&file, &dirs)
    {
        // As OpenSSL does, a missing or unreadable SSL_CERT_FILE adds nothing.
        let _ = builder.load_verify_locations(Some(&file), None);
    }
    Ok(())
}

/// Whether `file` is a distribution's bundle generated from one of `dirs`
/// (it lies in that directory): trusting the directory trusts the same roots.
fn is_bundle_of(file: &Path, dirs: &[PathBuf]) -> bool {
    let Ok(file) = std::fs::canonicalize(file) else {
        return false;
    };
    let known = DISTRIBUTION_BUNDLES
        .iter()
        .filter_map(|b| std::fs::canonicalize(b).ok())
        .any(|b| b == file);
    known
        && dirs
            .iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .any(|d| file.parent() == Some(d.as_path()))
}

fn has_hashed_links(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.len() == 10
                && name.ends_with(".0")
                && name[..8].bytes().all(|b| b.is_ascii_hexdigit())
        })
    })
}

/// The first known CA directory that holds hashed links (`1234abcd.0`).
fn hashed_cert_dir() -> Option<PathBuf> {
    CERT_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|dir| has_hashed_links(dir))
}

#[cfg(test)]
mod tests {
    use super::super::peer::tests::certificate;
    use super::*;

    fn pems() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let (cert, key) = certificate(
            &[("CN", "client")],
            &["client.test"],
            None,
            (0, 2_000_000_000),
        );
        let (_, other) = certificate(
            &[("CN", "other")],
            &["other.test"],
            None,
            (0, 2_000_000_000),
        );
        (
            cert.to_pem().unwrap(),
            key.private_key_to_pem_pkcs8().unwrap(),
            other.private_key_to_pem_pkcs8().unwrap(),
        )
    }

    #[test]
    fn a_client_identity_needs_its_own_key() {
        let (cert, key, other) = pems();
        let id = ClientIdentity::from_pem(&cert, &key).unwrap();
        assert_eq!(id.summary().subject, "CN=client");
        let mut both = cert.clone();
        both.extend_from_slice(&key);
        assert!(ClientIdentity::from_pem(&both, &both).is_ok());
        let err = |c: &[u8], k: &[u8]| ClientIdentity::from_pem(c, k).err();
        assert_eq!(err(&cert, &other), Some(IdentityError::Mismatch));
        assert_eq!(err(&cert, &cert), Some(IdentityError::NoKey));
        assert_eq!(err(&key, &key), Some(IdentityError::NoCertificate));
        assert_eq!(err(b"", &key), Some(IdentityError::NoCertificate));
        let encrypted = PKey::private_key_from_pem(&key)
            .unwrap()
            .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_128_cbc(), b"pw")
            .unwrap();
        assert_eq!(err(&cert, &encrypted), Some(IdentityError::EncryptedKey));
    }

    #[test]
    fn private_keys_are_recognised_in_pem() {
        let (cert, key, _) = pems();
        assert!(has_private_key(&key));
        assert!(!has_private_key(&cert));
        assert!(has_private_key(
            b"x\n-----BEGIN EC PRIVATE KEY-----\r\nAAA\n"
        ));
        assert!(has_private_key(b"-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(!has_private_key(b"-----BEGIN PUBLIC KEY-----\n"));
    }
}
