//! Throw-away test PKI generated at test time with the `openssl` crate.
//!
//! One trusted root CA (written to [`Pki::ca_file`]) and four EC P-256 server
//! identities, see [`Cert`]. Use [`Pki::shared`] to generate it once per test
//! binary; the files then live under cargo's `CARGO_TARGET_TMPDIR`.

use std::net::IpAddr;

/// Where [`Pki::shared`] writes: cargo's `CARGO_TARGET_TMPDIR` in tests;
/// `$SINK_DIR` or the system temp dir elsewhere (the benchmark's sink).
fn scratch_dir() -> PathBuf {
    match option_env!("CARGO_TARGET_TMPDIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("SINK_DIR").map_or_else(std::env::temp_dir, PathBuf::from),
    }
}
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use native_tls::{Certificate, Identity};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509NameBuilder};

/// Which server certificate a test server presents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cert {
    /// `localhost`, 127.0.0.1 and ::1, signed by the trusted CA.
    #[default]
    Good,
    /// Only `wrong-host.example.net`, signed by the trusted CA.
    WrongHost,
    /// `localhost`/127.0.0.1/::1, trusted CA, but notAfter is in the past.
    Expired,
    /// `localhost`/127.0.0.1/::1, signed by a CA that is *not* in `ca_file`.
    Untrusted,
    /// Trusted CA, `localhost` only as the subject's CN, no subjectAltName
    /// (RFC 9525: must not match).
    CnOnly,
    /// Like `Good`, but notAfter is 5 days and an hour from now.
    ExpiringSoon,
}

/// A certificate chain (leaf only) and its PKCS#8 key, both PEM.
pub struct KeyPair {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub identity: Identity,
}

pub struct Pki {
    /// Holds the PEM files below; removed on drop (never for [`Pki::shared`]).
    pub dir: tempfile::TempDir,
    /// PEM of the trusted test root CA.
    pub ca_file: PathBuf,
    pub ca_pem: Vec<u8>,
    /// PEM of the other CA (the one that signed [`Cert::Untrusted`]).
    pub untrusted_ca_file: PathBuf,
    pub good: KeyPair,
    pub wrong_host: KeyPair,
    pub expired: KeyPair,
    pub untrusted: KeyPair,
    pub cn_only: KeyPair,
    pub expiring_soon: KeyPair,
}

type Signer<'a> = (&'a X509, &'a PKey<Private>);

const DAY: i64 = 24 * 3600;

impl Pki {
    /// Generates a fresh PKI in a new temporary directory.
    pub fn new() -> Pki {
        Self::generate(tempfile::tempdir().expect("create PKI temp dir"))
    }

    /// One PKI per test binary (generated on first use).
    pub fn shared() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(|| {
            // Statics are never dropped: sweep dirs left by earlier runs.
            let tmp = std::fs::read_dir(scratch_dir()).into_iter().flatten();
            for e in tmp
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("pki-"))
            {
                let age = e.metadata().and_then(|m| m.modified()).map(|t| t.elapsed());
                if matches!(age, Ok(Ok(age)) if age > std::time::Duration::from_secs(3600)) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
            let dir = tempfile::Builder::new()
                .prefix("pki-")
                .tempdir_in(scratch_dir())
                .expect("create PKI dir");
            Self::generate(dir)
        })
    }

    pub fn pair(&self, cert: Cert) -> &KeyPair {
        match cert {
            Cert::Good => &self.good,
            Cert::WrongHost => &self.wrong_host,
            Cert::Expired => &self.expired,
            Cert::Untrusted => &self.untrusted,
            Cert::CnOnly => &self.cn_only,
            Cert::ExpiringSoon => &self.expiring_soon,
        }
    }

    pub fn identity(&self, cert: Cert) -> Identity {
        self.pair(cert).identity.clone()
    }

    /// The trusted root CA, for `TlsConnectorBuilder::add_root_certificate`.
    pub fn ca_certificate(&self) -> Certificate {
        Certificate::from_pem(&self.ca_pem).expect("parse test CA PEM")
    }

    fn generate(dir: tempfile::TempDir) -> Pki {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        let valid = (now - DAY, now + 365 * DAY);
        let local = ["localhost", "127.0.0.1", "::1"];

        let (ca, ca_key) = make_cert("mailsend test CA", &[], None, valid, true);
        let (other_ca, other_key) = make_cert("untrusted test CA", &[], None, valid, true);
        let leaf_named = |cn: &str, names: &[&str], signer: Signer, validity| {
            let (cert, key) = make_cert(cn, names, Some(signer), validity, false);
            let cert_pem = cert.to_pem().expect("cert to PEM");
            let key_pem = key.private_key_to_pem_pkcs8().expect("key to PKCS#8 PEM");
            let identity = Identity::from_pkcs8(&cert_pem, &key_pem).expect("native-tls identity");
            KeyPair {
                cert_pem,
                key_pem,
                identity,
            }
        };
        let leaf = |names: &[&str], signer: Signer, validity| {
            leaf_named(names[0], names, signer, validity)
        };
        let good = leaf(&local, (&ca, &ca_key), valid);
        let cn_only = leaf_named("localhost", &[], (&ca, &ca_key), valid);
        let wrong_host = leaf(&["wrong-host.example.net"], (&ca, &ca_key), valid);
        let expired = leaf(&local, (&ca, &ca_key), (now - 30 * DAY, now - DAY));
        let untrusted = leaf(&local, (&other_ca, &other_key), valid);
        let expiring_soon = leaf(&local, (&ca, &ca_key), (now - DAY, now + 5 * DAY + 3600));

        let ca_pem = ca.to_pem().expect("CA to PEM");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca_pem).expect("write ca.pem");
        let untrusted_ca_file = dir.path().join("untrusted-ca.pem");
        let other_pem = other_ca.to_pem().expect("CA to PEM");
        std::fs::write(&untrusted_ca_file, other_pem).expect("write untrusted-ca.pem");
        Pki {
            dir,
            ca_file,
            ca_pem,
            untrusted_ca_file,
            good,
            wrong_host,
            expired,
            untrusted,
            cn_only,
            expiring_soon,
        }
    }
}

/// Self-signed CA when `signer` is None. `names` become DNS or IP SANs.
fn make_cert(
    cn: &str,
    names: &[&str],
    signer: Option<Signer>,
    (not_before, not_after): (i64, i64),
    is_ca: bool,
) -> (X509, PKey<Private>) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256 group");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("PKey");
    let mut name = X509NameBuilder::new().expect("name builder");
    name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("CN");
    let name = name.build();

    let mut b = X509::builder().expect("x509 builder");
    b.set_version(2).expect("version");
    let mut serial = BigNum::new().expect("bignum");
    serial
        .rand(127, MsbOption::MAYBE_ZERO, false)
        .expect("serial");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial"))
        .expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(signer.map_or(&*name, |(c, _)| c.subject_name()))
        .expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::from_unix(not_before).expect("time"))
        .expect("notBefore");
    b.set_not_after(&Asn1Time::from_unix(not_after).expect("time"))
        .expect("notAfter");

    let ext = if is_ca {
        let bc = BasicConstraints::new().critical().ca().build();
        let ku = KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build();
        vec![bc, ku]
    } else {
        let ku = KeyUsage::new().critical().digital_signature().build();
        let eku = ExtendedKeyUsage::new().server_auth().build();
        vec![BasicConstraints::new().build(), ku, eku]
    };
    for e in ext.into_iter() {
        b.append_extension(e.expect("extension"))
            .expect("append extension");
    }
    let ctx = b.x509v3_context(signer.map(|(c, _)| &**c), None);
    let ski = SubjectKeyIdentifier::new().build(&ctx).expect("SKI");
    let aki = signer.map(|_| {
        AuthorityKeyIdentifier::new()
            .keyid(false)
            .build(&ctx)
            .expect("AKI")
    });
    let mut san = SubjectAlternativeName::new();
    for n in names {
        match n.parse::<IpAddr>() {
            Ok(_) => san.ip(n),
            Err(_) => san.dns(n),
        };
    }
    let san = (!names.is_empty()).then(|| san.build(&ctx).expect("SAN"));
    for e in [Some(ski), aki, san].into_iter().flatten() {
        b.append_extension(e).expect("append extension");
    }

    let sign_key = signer.map_or(&key, |(_, k)| k);
    b.sign(sign_key, MessageDigest::sha256())
        .expect("sign cert");
    (b.build(), key)
}
