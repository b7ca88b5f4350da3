//! What the TLS handshake told us about the server: protocol version,
//! cipher and the certificate chain it presented, copied out of OpenSSL
//! into plain owned values once the handshake is done, for the `-v`
//! transcript and for diagnostics (`mailsend check`) and campaigns.
//!
//! Everything here comes from the peer: nothing is unwrapped, a field
//! OpenSSL cannot read is left empty (or `None`), and the text is kept as
//! the certificate holds it; [`TlsInfo::summary`] escapes it for display.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKeyRef, Public};
use openssl::ssl::SslRef;
use openssl::x509::{X509NameRef, X509Ref};

const DAY: i64 = 24 * 3600;

/// The negotiated TLS session, as seen by the client after the handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The protocol, as OpenSSL names it: `TLSv1.2`, `TLSv1.3`.
    pub version: String,
    /// The cipher suite, OpenSSL's name (`ECDHE-RSA-AES256-GCM-SHA384`;
    /// for TLS 1.3 the same as the IANA one); empty if unknown.
    pub cipher: String,
    /// The cipher suite's IANA name (`TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384`),
    /// when OpenSSL knows it.
    pub cipher_iana: Option<String>,
    /// The certificates the server sent, its own (the leaf) first, in the
    /// order it sent them. Empty if it sent none (a resumed session).
    pub chain: Vec<CertSummary>,
}

/// What a certificate says, in owned form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject as one line, `C=US, O=Example, CN=mx.example.com`
    /// (attributes in certificate order, values escaped as in RFC 4514).
    pub subject: String,
    /// The subject's (last) common name, if any.
    pub subject_cn: Option<String>,
    /// The issuer as one line, like `subject`.
    pub issuer: String,
    /// The issuer's (last) common name, if any.
    pub issuer_cn: Option<String>,
    /// The subjectAltName DNS names.
    pub dns_names: Vec<String>,
    /// The subjectAltName IP addresses.
    pub ip_addresses: Vec<IpAddr>,
    /// notBefore, in seconds since the Unix epoch (negative before 1970);
    /// `None` if OpenSSL cannot read the field.
    pub not_before: Option<i64>,
    /// notAfter, like `not_before`.
    pub not_after: Option<i64>,
    /// SHA-256 of the DER certificate, lowercase hex without separators
    /// (what `openssl x509 -fingerprint -sha256` shows, less the colons).
    pub sha256: String,
    /// The public key's algorithm: `RSA`, `RSA-PSS`, `EC prime256v1`
    /// (with its curve), `Ed25519`, ...; empty if unreadable.
    pub key_type: String,
    /// The public key's size in bits (0 if unreadable).
    pub key_bits: u32,
    /// The signature algorithm, e.g. `ecdsa-with-SHA256`,
    /// `sha256WithRSAEncryption`.
    pub signature_algorithm: String,
}

impl TlsInfo {
    /// Reads version, cipher and the peer's chain off a client `ssl`
    /// whose handshake is done.
    pub fn of(ssl: &SslRef) -> TlsInfo {
        let cipher = ssl.current_cipher();
        let chain = match ssl.peer_cert_chain() {
            // On the client side the chain includes the leaf.
            Some(chain) if !chain.is_empty() => chain.iter().map(CertSummary::of).collect(),
            _ => ssl
                .peer_certificate()
                .map(|leaf| vec![CertSummary::of(&leaf)])
                .unwrap_or_default(),
        };
        TlsInfo {
            version: ssl.version_str().to_owned(),
            cipher: cipher.map(|c| c.name().to_owned()).unwrap_or_default(),
            cipher_iana: cipher.and_then(|c| c.standard_name()).map(str::to_owned),
            chain,
        }
    }

    /// The server's own certificate.
    pub fn leaf(&self) -> Option<&CertSummary> {
        self.chain.first()
    }

    /// One line for the `-v` transcript, escaped for a terminal:
    /// `TLSv1.3 TLS_AES_256_GCM_SHA384; certificate CN=localhost, issued by
    /// CN=mailsend test CA, expires 2027-01-01 (in 31 days)`.
    pub fn summary(&self, now: SystemTime) -> String {
        let mut line = format!("{} {}", self.version, or_unknown(&self.cipher));
        match self.leaf() {
            None => line.push_str("; no certificate"),
            Some(leaf) => {
                let _ = write!(
                    line,
                    "; certificate {}, issued by {}, {}",
                    leaf.subject_label(),
                    leaf.issuer_label(),
                    leaf.expiry(unix_seconds(now)),
                );
            }
        }
        crate::term::printable(&line)
    }
}

impl CertSummary {
    /// Summarises one certificate.
    pub fn of(cert: &X509Ref) -> CertSummary {
        let (mut dns_names, mut ip_addresses) = (Vec::new(), Vec::new());
        for name in cert.subject_alt_names().iter().flatten() {
            if let Some(dns) = name.dnsname() {
                dns_names.push(dns.to_owned());
            } else if let Some(ip) = name.ipaddress().and_then(ip_from_bytes) {
                ip_addresses.push(ip);
            }
        }
        let (key_type, key_bits) = match cert.public_key() {
            Ok(key) => (key_type(&key), key.bits()),
            Err(_) => (String::new(), 0),
        };
        CertSummary {
            subject: one_line(cert.subject_name()),
            subject_cn: common_name(cert.subject_name()),
            issuer: one_line(cert.issuer_name()),
            issuer_cn: common_name(cert.issuer_name()),
            dns_names,
            ip_addresses,
            not_before: unix_time(cert.not_before()),
            not_after: unix_time(cert.not_after()),
            sha256: cert
                .digest(MessageDigest::sha256())
                .map(|d| hex(&d))
                .unwrap_or_default(),
            key_type,
            key_bits,
            signature_algorithm: object_name(cert.signature_algorithm().object().nid())
                .unwrap_or_else(|| cert.signature_algorithm().object().to_string()),
        }
    }

    /// `CN=...` when the subject has a common name, else the whole subject.
    fn subject_label(&self) -> String {
        label(self.subject_cn.as_deref(), &self.subject)
    }

    fn issuer_label(&self) -> String {
        label(self.issuer_cn.as_deref(), &self.issuer)
    }

    /// `expires 2027-01-01 (in 31 days)`, or `expired 2026-01-01 (3 days
    /// ago)`, counted from `now` (Unix seconds).
    fn expiry(&self, now: i64) -> String {
        let Some(not_after) = self.not_after else {
            return "expiry unknown".into();
        };
        let date = date(not_after);
        let days = (not_after - now).div_euclid(DAY);
        let plural = |n: i64| if n == 1 { "" } else { "s" };
        if not_after >= now {
            format!("expires {date} (in {days} day{})", plural(days))
        } else {
            let ago = (now - not_after).div_euclid(DAY);
            format!("expired {date} ({ago} day{} ago)", plural(ago))
        }
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "(unknown cipher)" } else { s }
}

fn label(cn: Option<&str>, dn: &str) -> String {
    match cn {
        Some(cn) => format!("CN={}", escape_value(cn)),
        None if dn.is_empty() => "(empty name)".into(),
        None => dn.to_owned(),
    }
}

/// A distinguished name as `CN=a, O=b` (attributes in the order the
/// certificate holds them); an attribute without a short name shows as
/// its OID.
fn one_line(name: &X509NameRef) -> String {
    name.entries()
        .map(|entry| {
            let key = object_name_short(entry.object().nid())
                .unwrap_or_else(|| entry.object().to_string());
            format!("{key}={}", escape_value(&entry_text(entry.data())))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn common_name(name: &X509NameRef) -> Option<String> {
    name.entries_by_nid(Nid::COMMONNAME)
        .last()
        .map(|e| entry_text(e.data()))
}

/// An attribute's value as text: any ASN.1 string type OpenSSL can turn
/// into UTF-8, else its bytes read as UTF-8 with replacement characters.
fn entry_text(data: &openssl::asn1::Asn1StringRef) -> String {
    data.to_string()
        .unwrap_or_else(|_| String::from_utf8_lossy(data.as_slice()).into_owned())
}

/// An attribute value escaped as RFC 4514 2.4 does, so that a value
/// holding `, ` cannot pass for a second attribute.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn object_name_short(nid: Nid) -> Option<String> {
    (nid != Nid::UNDEF)
        .then(|| nid.short_name().ok().map(str::to_owned))
        .flatten()
}

fn object_name(nid: Nid) -> Option<String> {
    (nid != Nid::UNDEF)
        .then(|| nid.long_name().ok().map(str::to_owned))
        .flatten()
}

fn key_type(key: &PKeyRef<Public>) -> String {
    match key.id() {
        Id::RSA => "RSA".to_owned(),
        Id::RSA_PSS => "RSA-PSS".to_owned(),
        Id::DSA => "DSA".to_owned(),
        Id::ED25519 => "Ed25519".to_owned(),
        Id::ED448 => "Ed448".to_owned(),
        Id::EC => {
            let curve = key
                .ec_key()
                .ok()
                .and_then(|ec| ec.group().curve_name())
                .and_then(object_name_short);
            match curve {
                Some(curve) => format!("EC {curve}"),
                None => "EC".to_owned(),
            }
        }
        other => object_name_short(Nid::from_raw(other.as_raw())).unwrap_or_default(),
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// An ASN.1 time in seconds since the Unix epoch.
fn unix_time(time: &Asn1TimeRef) -> Option<i64> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(time).ok()?;
    Some(i64::from(diff.days) * DAY + i64::from(diff.secs))
}

/// `2027-01-01T00:00:00Z` (UTC) of a Unix time.
pub fn rfc3339(unix: i64) -> String {
    let secs = unix.rem_euclid(DAY);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date(unix),
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix time; the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn date(unix: i64) -> String {
    let z = unix.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::pkey::{PKey, Private};
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509, X509NameBuilder};

    /// A certificate for `names` (a CA if there are none), signed by
    /// `signer` (self-signed if none), valid between the two Unix times.
    pub(in crate::smtp) fn certificate(
        subject: &[(&str, &str)],
        names: &[&str],
        signer: Option<(&X509, &PKey<Private>)>,
        validity: (i64, i64),
    ) -> (X509, PKey<Private>) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        for (field, value) in subject {
            name.append_entry_by_text(field, value).unwrap();
        }
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(signer.map_or(&*name, |(c, _)| c.subject_name()))
            .unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(validity.0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(validity.1).unwrap())
            .unwrap();
        if names.is_empty() {
            // A CA (test roots and intermediates name no host).
            let ca = BasicConstraints::new().critical().ca().build().unwrap();
            b.append_extension(ca).unwrap();
        } else {
            let mut san = SubjectAlternativeName::new();
            for n in names {
                match n.parse::<IpAddr>() {
                    Ok(_) => san.ip(n),
                    Err(_) => san.dns(n),
                };
            }
            let ext = san
                .build(&b.x509v3_context(signer.map(|(c, _)| &**c), None))
                .unwrap();
            b.append_extension(ext).unwrap();
        }
        b.sign(signer.map_or(&key, |(_, k)| k), MessageDigest::sha256())
            .unwrap();
        (b.build(), key)
    }

    #[test]
    fn a_certificate_summarised() {
        let (ca, ca_key) = certificate(
            &[("O", "Test, Inc."), ("CN", "Test CA")],
            &[],
            None,
            (0, 2_000_000_000),
        );
        let (leaf, _) = certificate(
            &[("C", "DE"), ("CN", "mx.example.com")],
            &["mx.example.com", "mail.example.com", "192.0.2.1", "::1"],
            Some((&ca, &ca_key)),
            (1_700_000_000, 1_800_000_000),
        );
        let s = CertSummary::of(&leaf);
        assert_eq!(s.subject, "C=DE, CN=mx.example.com");
        assert_eq!(s.subject_cn.as_deref(), Some("mx.example.com"));
        assert_eq!(s.issuer, r"O=Test\, Inc., CN=Test CA");
        assert_eq!(s.issuer_cn.as_deref(), Some("Test CA"));
        assert_eq!(s.dns_names, ["mx.example.com", "mail.example.com"]);
        assert_eq!(
            s.ip_addresses,
            [
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(s.not_before, Some(1_700_000_000));
        assert_eq!(s.not_after, Some(1_800_000_000));
        let der = leaf.to_der().unwrap();
        let digest = openssl::hash::hash(MessageDigest::sha256(), &der).unwrap();
        assert_eq!(s.sha256, hex(&digest));
        assert_eq!(s.sha256.len(), 64);
        assert_eq!(s.key_type, "EC prime256v1");
        assert_eq!(s.key_bits, 256);
        assert_eq!(s.signature_algorithm, "ecdsa-with-SHA256");
    }

    #[test]
    fn an_rsa_key_and_a_name_without_cn() {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let key = PKey::from_rsa(rsa).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("O", "No CN").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(-86_400).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(253_402_300_799).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let s = CertSummary::of(&b.build());
        assert_eq!((s.key_type.as_str(), s.key_bits), ("RSA", 2048));
        assert_eq!(s.signature_algorithm, "sha256WithRSAEncryption");
        assert_eq!(s.subject_cn, None);
        assert_eq!(s.subject_label(), "O=No CN");
        assert_eq!(s.not_before, Some(-86_400));
        assert_eq!(s.not_after.map(date).as_deref(), Some("9999-12-31"));
    }

    #[test]
    fn dates_from_unix_times() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(-1), "1969-12-31");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_798_761_599), "2026-12-31");
        assert_eq!(date(1_798_761_600), "2027-01-01");
        assert_eq!(date(253_402_300_799), "9999-12-31");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    fn info(not_after: Option<i64>, cn: &str) -> TlsInfo {
        TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            cipher_iana: Some("TLS_AES_256_GCM_SHA384".into()),
            chain: vec![CertSummary {
                subject: format!("CN={cn}"),
                subject_cn: Some(cn.into()),
                issuer: "CN=mailsend test CA".into(),
                issuer_cn: Some("mailsend test CA".into()),
                not_after,
                ..CertSummary::default()
            }],
        }
    }

    fn at(unix: i64) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(unix as u64)
    }

    #[test]
    fn the_transcript_line() {
        let expires = 1_798_761_600; // 2027-01-01
        let now = at(expires - 31 * DAY - 3600);
        assert_eq!(
            info(Some(expires), "localhost").summary(now),
            "TLSv1.3 TLS_AES_256_GCM_SHA384; certificate CN=localhost, \
             issued by CN=mailsend test CA, expires 2027-01-01 (in 31 days)"
        );
        let one = info(Some(expires), "a").summary(at(expires - DAY));
        assert!(one.ends_with("expires 2027-01-01 (in 1 day)"), "{one}");
        let past = info(Some(expires), "a").summary(at(expires + 3 * DAY + 5));
        assert!(past.ends_with("expired 2027-01-01 (3 days ago)"), "{past}");
        let unknown = info(None, "a").summary(at(0));
        assert!(unknown.ends_with("expiry unknown"), "{unknown}");
        let none = TlsInfo {
            chain: Vec::new(),
            ..info(None, "a")
        };
        assert_eq!(
            none.summary(at(0)),
            "TLSv1.3 TLS_AES_256_GCM_SHA384; no certificate"
        );
    }

    #[test]
    fn certificate_text_cannot_forge_the_line_or_the_terminal() {
        let line = info(Some(0), "evil, issued by CN=Trusted Root\u{1b}[2J\u{202e}").summary(at(0));
        assert!(
            line.contains(r"CN=evil\, issued by CN\=Trusted Root\u{1b}[2J\u{202e}, issued by"),
            "{line}"
        );
        assert!(!line.contains('\u{1b}') && !line.contains('\u{202e}'));
    }

    /// The summary is of the certificates the server presented, read off
    /// a real handshake: a server sends its leaf and an intermediate, the
    /// client trusts only the root.
    #[test]
    fn the_chain_is_the_one_the_server_presented() {
        use openssl::ssl::{SslAcceptor, SslMethod};
        use std::io::{Read, Write};
        let now = unix_seconds(SystemTime::now());
        let valid = (now - DAY, now + 90 * DAY);
        let (root, root_key) = certificate(&[("CN", "Root")], &[], None, valid);
        let (inter, inter_key) = certificate(
            &[("CN", "Intermediate")],
            &[],
            Some((&root, &root_key)),
            valid,
        );
        let (leaf, leaf_key) = certificate(
            &[("CN", "localhost")],
            &["localhost"],
            Some((&inter, &inter_key)),
            valid,
        );
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        acceptor.set_private_key(&leaf_key).unwrap();
        acceptor.set_certificate(&leaf).unwrap();
        acceptor.add_extra_chain_cert(inter.clone()).unwrap();
        let acceptor = acceptor.build();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let mut tls = acceptor.accept(tcp).unwrap();
            let mut byte = [0u8; 1];
            let _ = tls.read(&mut byte);
        });
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("root.pem");
        std::fs::write(&ca_file, root.to_pem().unwrap()).unwrap();
        let config = super::super::TlsConfig::new(Some(&ca_file)).unwrap();
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let timeout = std::time::Duration::from_secs(10);
        let mut tls = config.connect("localhost", tcp, timeout).unwrap();
        let info = TlsInfo::of(tls.ssl());
        tls.write_all(b"x").unwrap();
        server.join().unwrap();

        assert!(info.version.starts_with("TLSv1."), "{info:?}");
        assert!(!info.cipher.is_empty(), "{info:?}");
        assert!(
            info.cipher_iana
                .as_deref()
                .is_some_and(|c| c.starts_with("TLS_"))
        );
        let fingerprints: Vec<&str> = info.chain.iter().map(|c| c.sha256.as_str()).collect();
        let expected = [&leaf, &inter].map(|c| hex(&c.digest(MessageDigest::sha256()).unwrap()));
        assert_eq!(fingerprints, expected);
        let leaf_summary = info.leaf().unwrap();
        assert_eq!(leaf_summary.subject, "CN=localhost");
        assert_eq!(leaf_summary.issuer, "CN=Intermediate");
        assert_eq!(leaf_summary.dns_names, ["localhost"]);
        assert_eq!(leaf_summary.not_after, Some(now + 90 * DAY));
        assert_eq!(info.chain[1].issuer, "CN=Root");
        assert!(
            info.summary(SystemTime::now())
                .contains("certificate CN=localhost, issued by CN=Intermediate, expires "),
            "{}",
            info.summary(SystemTime::now())
        );
    }
}
