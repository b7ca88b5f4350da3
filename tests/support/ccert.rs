//! TLS client certificates for tests: a client CA, client certificates it
//! signed (and one it did not), and an SMTP server that requires a client
//! certificate signed by that CA (STARTTLS or implicit TLS), recording the
//! subject of the certificate it was shown and every command.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
use openssl::x509::{X509, X509NameBuilder};

use super::pki::{Cert, Pki};
use super::script::Stream;

const DAY: i64 = 24 * 3600;

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("PKey")
}

/// A certificate for `cn`: a CA when `signer` is None, else a TLS client
/// certificate signed by it.
fn cert(cn: &str, key: &PKey<Private>, signer: Option<(&X509, &PKey<Private>)>) -> X509 {
    cert_until(cn, key, signer, 30 * DAY)
}

/// Like [`cert`], valid for `left` seconds from now.
fn cert_until(
    cn: &str,
    key: &PKey<Private>,
    signer: Option<(&X509, &PKey<Private>)>,
    left: i64,
) -> X509 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("CN");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    let serial = BigNum::from_u32(rand_serial()).expect("serial");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial"))
        .expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(signer.map_or(&*name, |(c, _)| c.subject_name()))
        .expect("issuer");
    b.set_pubkey(key).expect("pubkey");
    b.set_not_before(&Asn1Time::from_unix(now - DAY).expect("time"))
        .expect("notBefore");
    b.set_not_after(&Asn1Time::from_unix(now + left).expect("time"))
        .expect("notAfter");
    if signer.is_none() {
        let bc = BasicConstraints::new().critical().ca().build().expect("bc");
        b.append_extension(bc).expect("bc");
        let ku = KeyUsage::new().critical().key_cert_sign().build();
        b.append_extension(ku.expect("ku")).expect("ku");
    } else {
        let ku = KeyUsage::new().critical().digital_signature().build();
        b.append_extension(ku.expect("ku")).expect("ku");
        let eku = ExtendedKeyUsage::new().client_auth().build();
        b.append_extension(eku.expect("eku")).expect("eku");
    }
    b.sign(signer.map_or(key, |(_, k)| k), MessageDigest::sha256())
        .expect("sign");
    b.build()
}

fn rand_serial() -> u32 {
    let mut bytes = [0u8; 4];
    openssl::rand::rand_bytes(&mut bytes).expect("random");
    u32::from_be_bytes(bytes) >> 1
}

/// PEM files of client identities, in a temporary directory.
pub struct ClientPki {
    pub dir: tempfile::TempDir,
    ca: X509,
    /// Signed by the CA the server trusts: subject `CN=mailsend test client`.
    pub cert: PathBuf,
    /// Its key (PKCS#8), mode 600.
    pub key: PathBuf,
    /// Certificate and key in one file, mode 600.
    pub combined: PathBuf,
    /// A key that belongs to no certificate here, mode 600.
    pub other_key: PathBuf,
    /// A client certificate (and key, mode 600) from a CA the server does
    /// not trust.
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
    /// Signed by the trusted CA (`CN=mailsend expiring client`), but
    /// notAfter is 3 days and an hour from now; key in `expiring_key`.
    pub expiring_cert: PathBuf,
    pub expiring_key: PathBuf,
}

impl ClientPki {
    pub fn new() -> ClientPki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = key();
        let ca = cert("mailsend test client CA", &ca_key, None);
        let client_key = key();
        let client = cert("mailsend test client", &client_key, Some((&ca, &ca_key)));
        let rogue_ca_key = key();
        let rogue_ca = cert("rogue client CA", &rogue_ca_key, None);
        let rogue_key = key();
        let rogue = cert("rogue client", &rogue_key, Some((&rogue_ca, &rogue_ca_key)));
        let expiring_key = key();
        let expiring = cert_until(
            "mailsend expiring client",
            &expiring_key,
            Some((&ca, &ca_key)),
            3 * DAY + 3600,
        );
        let pem = |k: &PKey<Private>| k.private_key_to_pem_pkcs8().expect("PEM key");
        let write = |name: &str, bytes: &[u8], private: bool| {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).expect("write PEM");
            let mode = if private { 0o600 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            path
        };
        let client_pem = client.to_pem().expect("PEM");
        let mut combined = client_pem.clone();
        combined.extend(pem(&client_key));
        ClientPki {
            cert: write("client.pem", &client_pem, false),
            key: write("client.key", &pem(&client_key), true),
            combined: write("combined.pem", &combined, true),
            other_key: write("other.key", &pem(&key()), true),
            rogue_cert: write("rogue.pem", &rogue.to_pem().expect("PEM"), false),
            rogue_key: write("rogue.key", &pem(&rogue_key), true),
            expiring_cert: write("expiring.pem", &expiring.to_pem().expect("PEM"), false),
            expiring_key: write("expiring.key", &pem(&expiring_key), true),
            ca,
            dir,
        }
    }
}

/// What the server saw of one connection.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// The subject CN of the client certificate the handshake verified.
    pub client_subject: Option<String>,
    /// Command lines, in order (outside DATA content).
    pub commands: Vec<String>,
    /// The handshake failed (no or an untrusted client certificate).
    pub handshake_error: Option<String>,
    /// Bytes of the message content, if DATA got that far.
    pub data: Vec<u8>,
}

/// An SMTP server on 127.0.0.1 that requires a client certificate signed
/// by the [`ClientPki`]'s CA; it presents the trusted `localhost` server
/// certificate and needs no AUTH. Serves connections until dropped.
pub struct CertServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _thread: JoinHandle<()>,
}

impl CertServer {
    pub fn start(pki: &ClientPki, implicit: bool) -> CertServer {
        Self::start_with(pki, implicit, false)
    }

    /// Like [`CertServer::start`], advertising `AUTH PLAIN` in clear (before
    /// STARTTLS) and never under TLS, as a server misconfigured that way does.
    pub fn start_with_auth_in_clear(pki: &ClientPki) -> CertServer {
        Self::start_with(pki, false, true)
    }

    fn start_with(pki: &ClientPki, implicit: bool, auth_in_clear: bool) -> CertServer {
        let pair = Pki::shared().pair(Cert::Good);
        let mut acceptor =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
        acceptor
            .set_certificate(&X509::from_pem(&pair.cert_pem).expect("cert"))
            .expect("cert");
        acceptor
            .set_private_key(&PKey::private_key_from_pem(&pair.key_pem).expect("key"))
            .expect("key");
        acceptor
            .cert_store_mut()
            .add_cert(pki.ca.clone())
            .expect("client CA");
        acceptor.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        let acceptor = Arc::new(acceptor.build());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let all = seen.clone();
        let thread = std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(20)));
                let mut record = Seen::default();
                serve(tcp, &acceptor, implicit, auth_in_clear, &mut record);
                all.lock().expect("lock").push(record);
            }
        });
        CertServer {
            addr,
            seen,
            _thread: thread,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The connections served so far (waits up to 10 s for `n`).
    pub fn seen(&self, n: usize) -> Vec<Seen> {
        for _ in 0..200 {
            let seen = self.seen.lock().expect("lock").clone();
            if seen.len() >= n {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.seen.lock().expect("lock").clone()
    }
}

fn handshake(
    reader: &mut BufReader<Stream>,
    acceptor: &SslAcceptor,
    record: &mut Seen,
) -> Option<()> {
    let Stream::Plain(tcp) = std::mem::replace(reader.get_mut(), Stream::Gone) else {
        return None;
    };
    match acceptor.accept(tcp) {
        Ok(tls) => {
            record.client_subject = tls.ssl().peer_certificate().and_then(|c| {
                c.subject_name()
                    .entries_by_nid(Nid::COMMONNAME)
                    .next()
                    .and_then(|e| e.data().to_string().ok())
                    .map(|s| s.to_string())
            });
            *reader.get_mut() = Stream::Tls(Box::new(tls));
            Some(())
        }
        Err(e) => {
            record.handshake_error = Some(e.to_string());
            None
        }
    }
}

fn serve(
    tcp: TcpStream,
    acceptor: &SslAcceptor,
    implicit: bool,
    auth_in_clear: bool,
    record: &mut Seen,
) {
    let mut reader = BufReader::new(Stream::Plain(tcp));
    if implicit && handshake(&mut reader, acceptor, record).is_none() {
        return;
    }
    let send = |reader: &mut BufReader<Stream>, text: &str| {
        let _ = reader.get_mut().write_all(text.as_bytes());
        let _ = reader.get_mut().flush();
    };
    send(&mut reader, "220 localhost ESMTP client-cert test\r\n");
    let mut tls = implicit;
    loop {
        let mut raw = Vec::new();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&raw).trim_end().to_owned();
        record.commands.push(line.clone());
        let verb = line
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" if tls => send(&mut reader, "250-localhost\r\n250 8BITMIME\r\n"),
            "EHLO" if auth_in_clear => send(
                &mut reader,
                "250-localhost\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n",
            ),
            "EHLO" => send(&mut reader, "250-localhost\r\n250 STARTTLS\r\n"),
            "STARTTLS" => {
                send(&mut reader, "220 2.0.0 Ready to start TLS\r\n");
                if handshake(&mut reader, acceptor, record).is_none() {
                    return;
                }
                tls = true;
            }
            "MAIL" | "RCPT" | "RSET" | "NOOP" => send(&mut reader, "250 2.0.0 Ok\r\n"),
            "DATA" => {
                send(&mut reader, "354 go ahead\r\n");
                loop {
                    let mut raw = Vec::new();
                    match reader.read_until(b'\n', &mut raw) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if raw == b".\r\n" => break,
                        Ok(_) => record.data.extend_from_slice(&raw),
                    }
                }
                send(&mut reader, "250 2.0.0 Ok: queued as CCERT1\r\n");
            }
            "QUIT" => {
                send(&mut reader, "221 2.0.0 Bye\r\n");
                return;
            }
            _ => send(&mut reader, "502 5.5.2 Error: command not recognized\r\n"),
        }
    }
}
