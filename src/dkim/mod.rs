//! DKIM signing (RFC 6376, RFC 8463): RSA-SHA256 and Ed25519-SHA256,
//! relaxed/relaxed, over the final bytes of a composed message.
//!
//! The message is hashed a piece at a time: the header block is kept (it
//! is small), the body goes through the relaxed body canonicalization
//! straight into SHA-256, so a message of any size costs the same memory.
//! The signature is then made over the selected header fields and the
//! `DKIM-Signature` field itself, and that field is put in front of the
//! message: in memory for a small message; a message spooled to a file is
//! copied once more into a new temporary file behind the field (so
//! `TMPDIR` briefly holds it twice). Signing happens once, before the
//! first attempt: every retry and a later `outbox flush` send the same
//! signed bytes (in a campaign, for up to 64 rows waiting for a retry at
//! once; a row beyond those is composed and signed again).
//!
//! Why OpenSSL and not a DKIM crate: OpenSSL is already linked and signs
//! RSA and Ed25519 in constant time; Stalwart's `mail-auth` (0.15) cannot
//! be built without a DNS backend (hickory-resolver and tokio, or reqwest)
//! and its lean RSA backend is the `rsa` crate (RUSTSEC-2023-0071); lettre
//! signs only its own in-memory `Message`. What is left to write here is
//! the relaxed canonicalization (a few dozen lines, checked against the
//! RFC 8463 example below and against dkimpy in the interop suite).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use base64::prelude::*;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private};

use crate::config::DkimSettings;
use crate::deliver::Outgoing;
use crate::exit::{Exit, Failure};
use crate::message::Composed;
use crate::term::errln;

mod canon;
mod key;

use canon::*;
use key::read_key;

/// The smallest RSA key accepted (RFC 8301 says 1024 at least; receivers
/// such as Gmail want 2048 and up).
const MIN_RSA_BITS: u32 = 2048;

/// A key file larger than this is not a PEM private key.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The header fields signed, when present, in this order; From is signed
/// once more at the end (over-signed), so that no From can be added.
const SIGNED: &[&str] = &[
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "reply-to",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl Algorithm {
    fn tag(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }
}

/// A loaded private key, its selector and domain: ready to sign any
/// number of messages.
pub struct Signer {
    key: PKey<Private>,
    algorithm: Algorithm,
    selector: String,
    domain: Option<String>,
    /// The DMARC alignment warning is said once per run.
    warned: AtomicBool,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm)
            .field("selector", &self.selector)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The signer the settings ask for, if any: the key file is read and
    /// checked now (78 when it is missing, shared with others, not a PEM
    /// RSA or Ed25519 private key, or RSA under 2048 bits).
    pub fn from_settings(settings: Option<&DkimSettings>) -> Result<Option<Signer>> {
        let Some(s) = settings else {
            return Ok(None);
        };
        let key = read_key(&s.key)?;
        Ok(Some(Signer::new(
            key,
            &s.key,
            s.selector.clone(),
            s.domain.clone(),
        )?))
    }

    fn new(
        key: PKey<Private>,
        path: &Path,
        selector: String,
        domain: Option<String>,
    ) -> Result<Signer> {
        let algorithm = match key.id() {
            Id::RSA => {
                let bits = key.bits();
                if bits < MIN_RSA_BITS {
                    return Err(Failure::config(format!(
                        "DKIM key {} is a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits are required",
                        path.display()
                    ))
                    .with_hint("make a new one: openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dkim.pem")
                    .into());
                }
                Algorithm::RsaSha256
            }
            Id::ED25519 => Algorithm::Ed25519Sha256,
            _ => {
                return Err(Failure::config(format!(
                    "DKIM key {} is neither an RSA nor an Ed25519 private key",
                    path.display()
                ))
                .into());
            }
        };
        Ok(Signer {
            key,
            algorithm,
            selector,
            domain,
            warned: AtomicBool::new(false),
        })
    }

    /// Signs `outgoing`'s message: its DKIM-Signature field is put in
    /// front of it.
    pub fn sign_outgoing(&self, outgoing: &mut Outgoing) -> Result<()> {
        let message = std::mem::replace(&mut outgoing.message, Composed::Memory(Vec::new()));
        outgoing.message = self.sign(message)?;
        Ok(())
    }

    /// The message with a DKIM-Signature field in front.
    pub fn sign(&self, message: Composed) -> Result<Composed> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let field = self.signature_field(&message, now)?;
        message.prepend(field.as_bytes())
    }

    fn signature_field(&self, message: &Composed, now: u64) -> Result<String> {
        let mut reader = Reader::new();
        message.write_to(&mut reader).map_err(|e| {
            Failure::new(
                Exit::TempFail,
                format!("cannot read the message to sign it: {e}"),
            )
        })?;
        let (head, body_hash) = reader.finish()?;
        let fields = parse_fields(&head);
        let from_domain = fields
            .iter()
            .rev()
            .find(|f| f.name.eq_ignore_ascii_case("from"))
            .and_then(|f| address_domain(f.raw));
        let domain = match (&self.domain, &from_domain) {
            (Some(domain), _) => domain.clone(),
            (None, Some(from)) => from.clone(),
            (None, None) => {
                return Err(Failure::data(
                    "cannot sign with DKIM: the message has no From address with a domain name",
                )
                .with_hint("name the signing domain: --dkim-domain DOMAIN")
                .into());
            }
        };
        let aligns = from_domain.as_deref().is_some_and(|f| aligned(f, &domain));
        if !aligns && !self.warned.swap(true, Ordering::Relaxed) {
            let from = from_domain.as_deref().unwrap_or("(none)");
            errln!(
                "mailsend: warning: the From domain {from} is not the DKIM signing domain {domain} nor under it: DMARC will not align"
            );
        }
        let names = signed_names(&fields);
        let unsigned = format!(
            "DKIM-Signature: v=1; a={}; c=relaxed/relaxed; d={domain}; s={};\r\n\tt={now}; h={};\r\n\tbh={};\r\n\tb=",
            self.algorithm.tag(),
            self.selector,
            fold_names(&names, "\tt={now}; h=".len()),
            BASE64_STANDARD.encode(body_hash),
        );
        let input = header_hash_input(&fields, &names, &unsigned);
        let signature = self.sign_bytes(&input)?;
        Ok(format!(
            "{unsigned}{}\r\n",
            fold_b64(&BASE64_STANDARD.encode(signature))
        ))
    }

    fn sign_bytes(&self, data: &[u8]) -> Result<Vec<u8>> {
        let failed = |e: openssl::error::ErrorStack| {
            Failure::new(Exit::Config, format!("DKIM signing failed: {e}"))
        };
        match self.algorithm {
            Algorithm::RsaSha256 => {
                let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &self.key)
                    .map_err(failed)?;
                signer.update(data).map_err(failed)?;
                Ok(signer.sign_to_vec().map_err(failed)?)
            }
            // RFC 8463: PureEdDSA over the SHA-256 hash of the data.
            Algorithm::Ed25519Sha256 => {
                let digest = openssl::sha::sha256(data);
                let mut signer =
                    openssl::sign::Signer::new_without_digest(&self.key).map_err(failed)?;
                Ok(signer.sign_oneshot_to_vec(&digest).map_err(failed)?)
            }
        }
    }
}

/// Whether a From domain aligns with the signing domain (relaxed DMARC
/// alignment: the same domain or a subdomain of it).
fn aligned(from: &str, signing: &str) -> bool {
    let (from, signing) = (from.to_ascii_lowercase(), signing.to_ascii_lowercase());
    from == signing || from.ends_with(&format!(".{signing}"))
}

/// The domain of the (first) address in a raw From field, lower case:
/// read with the address parser, so a comment or a display name cannot
/// supply it; a field it cannot read falls back to the text after the
/// last `<` (or the whole value).
fn address_domain(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let value = text.split_once(':')?.1;
    let unfolded: String = value
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n'))
        .collect();
    if let Ok(list) = crate::message::address::parse_list(&unfolded)
        && let Some(first) = list.first()
    {
        return dns_name(first.email.domain());
    }
    // What the parser cannot read (a group, a stray `;`): the first
    // address's domain as far as it is made of domain characters.
    let addr = match unfolded.rfind('<') {
        Some(at) => &unfolded[at + 1..],
        None => unfolded.as_str(),
    };
    let domain: String = addr
        .split_once('@')?
        .1
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .collect();
    dns_name(&domain)
}

/// `domain` as a DNS name in A-labels and lower case (one trailing dot
/// dropped), or `None` when it is not one: only such a name may go into
/// d=, where a `;` or a space would add or break tags.
fn dns_name(domain: &str) -> Option<String> {
    let ascii = idna::domain_to_ascii(domain.trim().trim_end_matches('.')).ok()?;
    let fits = !ascii.is_empty()
        && ascii.len() <= 253
        && ascii.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    fits.then(|| ascii.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn relaxed_body(body: &[u8]) -> Vec<u8> {
        let mut h = BodyHasher::new();
        h.update(body).unwrap();
        if h.cr {
            h.cr = false;
            h.byte(b'\r').unwrap();
        }
        if h.content {
            h.out.extend_from_slice(b"\r\n");
        }
        h.out
    }

    #[test]
    fn relaxed_body_canonicalization() {
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
        assert_eq!(relaxed_body(b"a  b \t\r\n\r\n\r\n"), b"a b\r\n");
        assert_eq!(relaxed_body(b" a\r\n \r\nb"), b" a\r\n\r\nb\r\n");
        assert_eq!(relaxed_body(b"x\ry\r\n"), b"x\ry\r\n");
        // RFC 6376 3.4.6's example.
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
    }

    #[test]
    fn the_body_hash_does_not_depend_on_how_the_body_is_cut() {
        let body = b"line  one \r\n\r\n  two\t\r\n\r\n\r\n";
        let whole = body_hash(body);
        for cut in 0..body.len() {
            let mut h = BodyHasher::new();
            h.update(&body[..cut]).unwrap();
            h.update(&body[cut..]).unwrap();
            assert_eq!(h.finish().unwrap(), whole, "cut at {cut}");
        }
    }

    /// RFC 6376 3.4.4 as written, on the whole body at once.
    fn reference(body: &[u8]) -> Vec<u8> {
        let mut pieces: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
        let last = pieces.pop().unwrap_or_default();
        let mut lines: Vec<Vec<u8>> = pieces
            .into_iter()
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
            .collect();
        if !last.is_empty() {
            lines.push(last.to_vec());
        }
        let mut lines: Vec<Vec<u8>> = lines
            .into_iter()
            .map(|l| {
                // Runs of white space: one space, none at the end.
                let mut collapsed = Vec::new();
                let mut space = false;
                for &b in &l {
                    if b == b' ' || b == b'\t' {
                        space = true;
                    } else {
                        if space {
                            collapsed.push(b' ');
                        }
                        space = false;
                        collapsed.push(b);
                    }
                }
                collapsed
            })
            .collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
            .into_iter()
            .flat_map(|mut l| {
                l.extend_from_slice(b"\r\n");
                l
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn streaming_body_canonicalization_matches_the_rfc(
            body in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b'.', b' ', b'\t', b'\r', b'\n']), 0..80),
            cut in 0usize..80,
        ) {
            let cut = cut.min(body.len());
            let mut h = BodyHasher::new();
            h.update(&body[..cut]).unwrap();
            h.update(&body[cut..]).unwrap();
            if h.cr {
                h.cr = false;
                h.byte(b'\r').unwrap();
            }
            if h.content {
                h.out.extend_from_slice(b"\r\n");
            }
            proptest::prop_assert_eq!(h.out, reference(&body));
        }
    }

    /// A long run of empty lines before more text is hashed as it goes,
    /// not gathered in memory (two bytes per line).
    #[test]
    fn a_run_of_empty_lines_costs_no_memory() {
        let mut h = BodyHasher::new();
        let mut body = vec![b'\n'; 1_000_000];
        body.push(b'x');
        h.update(&body).unwrap();
        assert!(h.out.capacity() <= 128 * 1024, "{}", h.out.capacity());
        let mut expected = b"\r\n".repeat(1_000_000);
        expected.extend_from_slice(b"x\r\n");
        assert_eq!(h.finish().unwrap(), openssl::sha::sha256(&expected));
    }

    /// The reader sees the lines the wire will carry: a bare CR or LF is a
    /// line break, wherever the pieces are cut.
    #[test]
    fn the_reader_hashes_the_line_endings_of_the_wire() {
        let hash = |pieces: &[&[u8]]| {
            let mut r = Reader::new();
            for p in pieces {
                r.write_all(p).unwrap();
            }
            r.finish().unwrap()
        };
        let wire = b"A: 1\r\nB:  2\r\n\r\nx\r\ny  \r\nz\r\n\r\n\r\n".as_slice();
        let composed = b"A: 1\rB:  2\n\rx\ry  \r\nz\r\r\n\r".as_slice();
        let whole = hash(&[wire]);
        assert_eq!(hash(&[composed]), whole);
        for cut in 0..composed.len() {
            assert_eq!(
                hash(&[&composed[..cut], &composed[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn relaxed_header_canonicalization() {
        // RFC 6376 3.4.6's example.
        assert_eq!(relaxed_header(b"A: X\r\n"), b"a:X");
        assert_eq!(relaxed_header(b"B : Y\t\r\n\tZ  \r\n"), b"b:Y Z");
    }

    const RFC8463_MESSAGE: &[u8] = b"From: Joe SixPack <joe@football.example.com>\r\n\
To: Suzie Q <suzie@shopping.example.net>\r\n\
Subject: Is dinner ready?\r\n\
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n\
Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n\
\r\n\
Hi.\r\n\
\r\n\
We lost the game.  Are you hungry yet?\r\n\
\r\n\
Joe.\r\n";

    /// RFC 8463 appendix A: the Ed25519 key, message and signature, as an
    /// independent check of the canonicalization, the header selection
    /// (including names with no instance left) and the signing.
    #[test]
    fn reproduces_the_rfc_8463_ed25519_signature() {
        let seed = BASE64_STANDARD
            .decode("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
            .unwrap();
        let key = PKey::private_key_from_raw_bytes(&seed, Id::ED25519).unwrap();
        let signer = Signer::new(key, Path::new("k"), "brisbane".into(), None).unwrap();

        let mut reader = Reader::new();
        reader.write_all(RFC8463_MESSAGE).unwrap();
        let (head, bh) = reader.finish().unwrap();
        assert_eq!(
            BASE64_STANDARD.encode(bh),
            "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
        );
        let fields = parse_fields(&head);
        let names: Vec<String> = "from : to : subject : date : message-id : from : subject : date"
            .split(':')
            .map(|n| n.trim().to_owned())
            .collect();
        let unsigned = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n \
d=football.example.com; i=@football.example.com;\r\n \
q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n \
subject : date : message-id : from : subject : date;\r\n \
bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n \
b=";
        let input = header_hash_input(&fields, &names, unsigned);
        let b = BASE64_STANDARD.encode(signer.sign_bytes(&input).unwrap());
        assert_eq!(
            b,
            "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw=="
        );
    }

    #[test]
    fn list_fields_whose_names_cannot_be_in_h_are_not_signed() {
        let head =
            "From: a@example.com\r\nList-X;y: 1\r\nList-\u{e4}: 2\r\nList-Id: <x.example.com>\r\n";
        let fields = parse_fields(head.as_bytes());
        assert_eq!(signed_names(&fields), ["from", "list-id", "from"]);
    }

    #[test]
    fn the_signed_list_holds_what_is_present_and_from_twice() {
        let head = b"From: a@example.com\r\nTo: b@example.net\r\nX-Other: 1\r\nList-Id: <x.example.com>\r\nList-Unsubscribe: <https://example.com/u>\r\nMIME-Version: 1.0\r\n";
        let fields = parse_fields(head);
        assert_eq!(
            signed_names(&fields),
            [
                "from",
                "to",
                "mime-version",
                "list-id",
                "list-unsubscribe",
                "from"
            ]
        );
    }

    #[test]
    fn an_rsa_signature_verifies_with_openssl() {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let key = PKey::from_rsa(rsa).unwrap();
        let public = key.public_key_to_der().unwrap();
        let signer = Signer::new(key, Path::new("k"), "sel".into(), None).unwrap();
        let signed = signer
            .sign(Composed::Memory(RFC8463_MESSAGE.to_vec()))
            .unwrap()
            .into_bytes();
        let text = String::from_utf8(signed.clone()).unwrap();
        assert!(text.starts_with(
            "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=football.example.com; s=sel;"
        ));
        assert!(
            text.contains("h=from:to:subject:date:message-id:from;"),
            "{text}"
        );
        assert!(text.ends_with(std::str::from_utf8(RFC8463_MESSAGE).unwrap()));
        // Verify: rebuild the input with b= emptied from the emitted field.
        let end = text.find("\r\nFrom:").unwrap() + 2;
        let field = &text[..end];
        let b_at = field
            .find("b=")
            .map(|_| field.rfind("\tb=").unwrap() + 3)
            .unwrap();
        let b: String = field[b_at..]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let unsigned = &field[..b_at];
        let mut reader = Reader::new();
        reader.write_all(RFC8463_MESSAGE).unwrap();
        let (head, _) = reader.finish().unwrap();
        let fields = parse_fields(&head);
        let names: Vec<String> = ["from", "to", "subject", "date", "message-id", "from"]
            .map(String::from)
            .to_vec();
        let input = header_hash_input(&fields, &names, unsigned);
        let public = PKey::public_key_from_der(&public).unwrap();
        let mut verifier = openssl::sign::Verifier::new(MessageDigest::sha256(), &public).unwrap();
        verifier.update(&input).unwrap();
        assert!(
            verifier
                .verify(&BASE64_STANDARD.decode(b).unwrap())
                .unwrap()
        );
    }

    #[test]
    fn short_rsa_keys_are_refused() {
        let key = PKey::from_rsa(openssl::rsa::Rsa::generate(1024).unwrap()).unwrap();
        let err = Signer::new(key, Path::new("k.pem"), "s".into(), None).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), Exit::Config);
        assert!(err.to_string().contains("1024-bit"), "{err}");
    }

    #[test]
    fn alignment_and_from_domains() {
        assert!(aligned("example.com", "example.com"));
        assert!(aligned("news.Example.com", "example.com"));
        assert!(!aligned("badexample.com", "example.com"));
        assert!(!aligned("example.com", "news.example.com"));
        assert_eq!(
            address_domain(b"From: \"A, B\" <a@Example.COM>\r\n").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            address_domain(b"From: a@example.org\r\n").as_deref(),
            Some("example.org")
        );
        assert_eq!(address_domain(b"From: nobody\r\n"), None);
        assert_eq!(
            address_domain(b"From: a@example.com; x=y\r\n").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            address_domain(b"From: T: a@Example.com., b@example.org;\r\n").as_deref(),
            Some("example.com")
        );
        assert_eq!(address_domain(b"From: a@[192.0.2.1]\r\n"), None);
        assert_eq!(
            address_domain(b"From: a@example.com (Joe <j@evil.test>)\r\n").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            address_domain(b"From: a@example.com,\r\n b@evil.test\r\n").as_deref(),
            Some("example.com")
        );
    }
}
