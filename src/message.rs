//! Composing the message: addresses, headers, body parts, attachments.
//!
//! Owns turning what the user gave into the bytes of an RFC 5322 + MIME
//! message: the top-level header block is written here (`encode`), the
//! MIME parts by lettre; addresses are read by `address`. It validates
//! every value that ends up in a header, so nothing after this point can
//! inject a header. It reads no files itself except attachments (in
//! `attach`), and never touches the network. A message is composed into
//! a spool (`spool`): memory while small, a temporary file beyond.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use lettre::message::header::{self, Header, Headers};
use lettre::message::header::{ContentType, HeaderName, HeaderValue, MIME_VERSION_1_0};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};

use crate::exit::Failure;

pub(crate) mod address;
mod attach;
mod encode;
mod spool;

pub use attach::Attachment;
pub use spool::Composed;
pub use spool::Spool;

/// Headers that mailsend writes itself, with the flag to use instead;
/// `--header` may not set them.
const OWN_HEADERS: &[(&str, &str)] = &[
    ("from", "--from"),
    ("to", "--to"),
    ("cc", "--cc"),
    ("bcc", "--bcc"),
    ("reply-to", "--reply-to"),
    ("subject", "--subject"),
    ("date", ""),
    ("message-id", ""),
    ("mime-version", ""),
    ("content-type", "--html or --attach"),
];

/// Why `--header` refuses a name, or `None` to accept it.
fn refused_header(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if let Some((_, flag)) = OWN_HEADERS.iter().find(|(n, _)| *n == lower) {
        return Some(match flag.is_empty() {
            true => "mailsend always writes it itself".to_owned(),
            false => format!("use {flag}"),
        });
    }
    if lower.starts_with("content-") {
        return Some("mailsend writes the MIME headers itself".to_owned());
    }
    if lower == "resent-bcc" {
        return Some("it would show the hidden addresses to every recipient; use --bcc".to_owned());
    }
    if lower.starts_with("resent-") {
        // RFC 5322 3.6.6: Resent-* fields belong to a message being resent,
        // in blocks led by Resent-Date and Resent-From; mailsend sends new
        // messages, and they would add no recipient to the envelope.
        return Some(
            "Resent-* fields are for resending a message, which mailsend does not do; use --to, --cc or --bcc"
                .to_owned(),
        );
    }
    if lower == "return-path" {
        return Some(
            "the receiving server writes it from the envelope sender; use --from".to_owned(),
        );
    }
    // Trace fields are the servers' own: a forged Delivered-To makes
    // Postfix bounce the message as a mail loop, and forged Received or
    // Authentication-Results lines mislead the receiver's filters.
    if matches!(
        lower.as_str(),
        "delivered-to" | "received" | "authentication-results" | "arc-authentication-results"
    ) || lower.starts_with("x-original-")
    {
        return Some("servers write trace fields themselves".to_owned());
    }
    None
}

/// Everything that makes up one message, validated.
#[derive(Debug)]
pub struct Draft {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub subject: Option<String>,
    /// The text part; `None` for an HTML-only message.
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Images the HTML shows (`--inline`, see [`Attachment::open_inline`]):
    /// a multipart/related with the HTML part.
    pub inline: Vec<Attachment>,
    /// Extra headers, already checked by [`parse_header`].
    pub headers: Vec<(HeaderName, String)>,
    pub date: SystemTime,
    pub message_id: String,
    /// A fixed MIME boundary stem, so tests can compare whole messages;
    /// `None` lets lettre pick random ones.
    pub boundary: Option<String>,
}

/// Parses the values of one address flag (each may be a comma-separated
/// list). An invalid address is `DATAERR` (65), naming the flag and value
/// and saying what is wrong. Domains come back as A-labels
/// (`me@xn--bcher-kva.example`); a quoted local part keeps its quotes
/// (`"a b"@example.com`).
pub fn parse_mailboxes(flag: &str, values: &[String]) -> Result<Vec<Mailbox>> {
    let mut out = Vec::new();
    for value in values {
        let invalid = |why: &str| {
            Failure::data(format!(
                "invalid address in {flag}: '{}': {why}",
                address::printable(value)
            ))
        };
        if value.chars().any(char::is_control) {
            return Err(invalid("line break or control character").into());
        }
        if value.trim_matches([' ', '\t']).is_empty() {
            continue;
        }
        let parsed = address::parse_list(value).map_err(|why| invalid(&why))?;
        if parsed.is_empty() {
            return Err(invalid("no address").into());
        }
        for name in parsed.iter().filter_map(|m| m.name.as_deref()) {
            check_foldable(&format!("a display name in {flag}"), name)?;
        }
        out.extend(parsed);
    }
    Ok(out)
}

/// Splits an address list at its top-level commas: commas inside quotes,
/// angle brackets or comments do not separate. Empty items are dropped.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut start, mut quoted, mut angle, mut comment, mut escaped) =
        (0, false, false, 0u32, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted || comment > 0 => escaped = true,
            '"' if comment == 0 => quoted = !quoted,
            '(' if !quoted => comment += 1,
            ')' if !quoted && comment > 0 => comment -= 1,
            '<' if !quoted && comment == 0 => angle = true,
            '>' if !quoted && comment == 0 => angle = false,
            ',' if !quoted && !angle && comment == 0 => {
                items.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    items
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parses one address that must be a single mailbox (the sender).
pub fn parse_mailbox(what: &str, value: &str) -> Result<Mailbox> {
    let list = parse_mailboxes(what, &[value.to_owned()])?;
    match <[Mailbox; 1]>::try_from(list) {
        Ok([mailbox]) => Ok(mailbox),
        Err(_) => Err(Failure::data(format!(
            "{what} must be one address: '{}'",
            address::printable(value)
        ))
        .into()),
    }
}

/// An address as compared when removing duplicates: the local part as it
/// is (RFC 5321 2.4 lets the receiving server tell `Ops@` from `ops@`),
/// the domain in lower case.
pub fn address_key(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => address.to_owned(),
    }
}

/// Splits `--header "Name: value"` at its first colon: the trimmed name
/// and the value as given (64 without a colon).
pub fn split_header(text: &str) -> Result<(&str, &str)> {
    match text.split_once(':') {
        Some((name, value)) => Ok((name.trim(), value)),
        None => Err(Failure::usage(format!(
            "--header needs 'Name: value', got '{}'",
            text.escape_debug()
        ))
        .into()),
    }
}

/// Parses `--header "Name: value"`. Names must be RFC 5322 field names and
/// not one mailsend writes itself; values may not hold line breaks.
pub fn parse_header(text: &str) -> Result<(HeaderName, String)> {
    let (name, value) = split_header(text)?;
    let valid_name = !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
    if !valid_name {
        return Err(Failure::data(format!(
            "invalid header name '{}'",
            address::printable(name)
        ))
        .into());
    }
    if name.len() > MAX_HEADER_NAME {
        return Err(Failure::data(format!(
            "header name longer than {MAX_HEADER_NAME} characters: '{name}'"
        ))
        .into());
    }
    if let Some(why) = refused_header(name) {
        return Err(Failure::usage(format!("--header cannot set {name}: {why}")).into());
    }
    let value = value.trim_matches([' ', '\t']);
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Failure::data(format!(
            "header {name} contains a line break or control character: '{}'",
            address::printable(value)
        ))
        .into());
    }
    check_foldable(&format!("header {name}"), value)?;
    match header_kind(name) {
        HeaderKind::Addresses { one } => {
            let list = parse_mailboxes(&format!("header {name}"), &[value.to_owned()])?;
            if list.is_empty() || (one && list.len() > 1) {
                return Err(Failure::data(format!(
                    "header {name} must hold {}: '{}'",
                    if one { "one address" } else { "addresses" },
                    address::printable(value)
                ))
                .into());
            }
        }
        HeaderKind::Ascii if !value.is_ascii() => {
            return Err(Failure::data(format!(
                "header {name} is a structured field that must be ASCII (write domains as A-labels, xn--..., and percent-encode URLs): '{}'",
                address::printable(value)
            ))
            .into());
        }
        HeaderKind::Ascii | HeaderKind::Text => {}
    }
    let name = HeaderName::new_from_ascii(name.to_owned())
        .map_err(|_| Failure::data(format!("invalid header name '{name}'")))?;
    Ok((name, value.to_owned()))
}

/// The longest `--header` name: with a 900-octet word after it, the line
/// stays within 998 octets.
const MAX_HEADER_NAME: usize = 76;

/// How a `--header` field is written.
enum HeaderKind {
    /// An address list (`one`: a single mailbox), read and written like
    /// `--to`: domains as A-labels, names encoded.
    Addresses { one: bool },
    /// A structured field where encoded words are not decoded (message
    /// ids, URLs): ASCII only, written as typed.
    Ascii,
    /// Anything else: unstructured text, encoded where needed.
    Text,
}

fn header_kind(name: &str) -> HeaderKind {
    match name.to_ascii_lowercase().as_str() {
        "sender" => HeaderKind::Addresses { one: true },
        "disposition-notification-to"
        | "mail-followup-to"
        | "mail-reply-to"
        | "errors-to"
        | "return-receipt-to"
        | "x-confirm-reading-to" => HeaderKind::Addresses { one: false },
        "in-reply-to"
        | "references"
        | "list-id"
        | "list-help"
        | "list-unsubscribe"
        | "list-unsubscribe-post"
        | "list-subscribe"
        | "list-post"
        | "list-owner"
        | "list-archive"
        | "archived-at" => HeaderKind::Ascii,
        _ => HeaderKind::Text,
    }
}

/// Header lines are folded at spaces and tabs only: a longer run without
/// them would make a line over RFC 5322's 998 octets.
fn check_foldable(what: &str, value: &str) -> Result<()> {
    if value.split([' ', '\t']).any(|word| word.len() > 900) {
        return Err(Failure::data(format!(
            "{what} has a run of more than 900 characters without a space or tab"
        ))
        .into());
    }
    Ok(())
}

/// Checks a free-text header value (the subject) for line breaks and
/// runs too long to fold.
pub fn check_header_text(what: &str, value: &str) -> Result<()> {
    check_foldable(what, value)?;
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Failure::data(format!(
            "{what} contains a line break or control character: '{}'",
            address::printable(value)
        ))
        .into());
    }
    Ok(())
}

/// A new Message-ID whose right-hand side is the sender's domain, as an
/// A-label: a Message-ID is ASCII (RFC 5322 msg-id), never encoded.
pub fn new_message_id(from: &Mailbox) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let domain = from.email.domain();
    // Addresses from `parse_mailboxes` already have A-labels; one built
    // elsewhere might not.
    let domain = match domain.is_ascii() {
        true => domain.to_owned(),
        false => address::to_a_label(domain).unwrap_or_else(|_| "localhost.invalid".into()),
    };
    format!(
        "<{millis:x}.{:016x}{:08x}@{domain}>",
        fastrand::u64(..),
        std::process::id(),
    )
}

/// Makes a text body end with exactly the line ending it had, or one.
pub fn normalize_text(mut text: String) -> String {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

impl Draft {
    /// The envelope recipients: To, Cc and Bcc, each address once: the
    /// first spelling of addresses whose domains differ only in ASCII
    /// case. The local part is compared as it is: RFC 5321 2.4 leaves its
    /// case to the receiving server (`Ops@` and `ops@` may differ).
    pub fn recipients(&self) -> Vec<String> {
        let all = self.to.iter().chain(&self.cc).chain(&self.bcc);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for mailbox in all {
            let address = mailbox.email.to_string();
            if seen.insert(address_key(&address)) {
                out.push(address);
            }
        }
        out
    }

    /// The RFC 5322 message, CRLF line endings, before dot-stuffing. Bcc
    /// never appears in it. The top-level header block is written here
    /// (lettre's builder re-parses every address list it holds, which
    /// refuses quoted local parts and costs quadratic time, and writes
    /// lookalike encoded words raw); lettre writes the MIME parts.
    /// Consumes the draft: attachments are read as they are encoded,
    /// into a spool that moves to a temporary file once it grows, so a
    /// message of any size costs the same memory.
    pub fn compose(mut self) -> Result<Composed> {
        let mut head = String::new();
        head.push_str(&encode::address_list(
            "From",
            std::slice::from_ref(&self.from),
        ));
        let mut fixed = Headers::new();
        fixed.set(header::Date::new(self.date));
        head.push_str(&fixed.to_string());
        head.push_str(&line(HeaderValue::new(
            HeaderName::new_from_ascii_str("Message-ID"),
            self.message_id.clone(),
        )));
        for (name, list) in [
            ("Reply-To", &self.reply_to),
            ("To", &self.to),
            ("Cc", &self.cc),
        ] {
            if !list.is_empty() {
                head.push_str(&encode::address_list(name, list));
            }
        }
        if let Some(subject) = &self.subject {
            head.push_str(&encode::unstructured("Subject", subject));
        }
        for (name, value) in &self.headers {
            head.push_str(&match header_kind(name) {
                HeaderKind::Addresses { .. } => {
                    let list = address::parse_list(value).map_err(|why| {
                        Failure::data(format!("invalid address in header {name}: {why}"))
                    })?;
                    encode::address_list(name, &list)
                }
                HeaderKind::Ascii => encode::structured(name, value),
                HeaderKind::Text => encode::unstructured(name, value),
            });
        }
        head.push_str(&line(MIME_VERSION_1_0.display()));

        let mut out = Spool::new();
        out.put(head.as_bytes())?;
        drop(head);
        let inline = std::mem::take(&mut self.inline);
        if self.attachments.is_empty() {
            self.write_content(inline, &mut out, true)?;
            return out.finish();
        }
        // multipart/mixed, written part by part as lettre's `MultiPart`
        // would write it: the attachments are streamed, never held whole.
        let mixed = MultiPart::mixed();
        let mixed = match &self.boundary {
            Some(b) => mixed.boundary(format!("{b}-mixed")),
            None => mixed,
        }
        .build();
        let boundary = mixed.boundary();
        out.put(mixed.headers().to_string().as_bytes())?;
        out.put(b"\r\n")?;
        let delimiter = format!("--{boundary}\r\n");
        out.put(delimiter.as_bytes())?;
        self.write_content(inline, &mut out, false)?;
        for attachment in std::mem::take(&mut self.attachments) {
            out.put(delimiter.as_bytes())?;
            attachment.write_part(&mut out)?;
        }
        out.put(format!("--{boundary}--\r\n").as_bytes())?;
        out.finish()
    }

    /// The text and/or HTML content as one MIME entity (its headers, a
    /// blank line, its body); `top`: the message's own body, whose
    /// headers join the message's. With inline images the HTML goes into
    /// a multipart/related with them, streamed like attachments.
    fn write_content(&self, inline: Vec<Attachment>, out: &mut Spool, top: bool) -> Result<()> {
        if inline.is_empty() {
            return match self.content() {
                // A raw body: a top-level single part would add a blank
                // line after the text.
                Content::Text(kind, body) if top => {
                    let mut part = Headers::new();
                    part.set(kind);
                    part.set(body.encoding());
                    out.put(part.to_string().as_bytes())?;
                    out.put(b"\r\n")?;
                    out.put(&body.into_vec())
                }
                Content::Text(kind, body) => {
                    out.put(&SinglePart::builder().header(kind).body(body).formatted())
                }
                Content::Alternative(alt) => out.put(&alt.formatted()),
            };
        }
        let html = self.html.as_deref().unwrap_or_default();
        let Some(text) = &self.text else {
            return self.write_related(html, inline, out);
        };
        let alt = MultiPart::alternative();
        let alt = match &self.boundary {
            Some(b) => alt.boundary(format!("{b}-alt")),
            None => alt,
        }
        .build();
        let delimiter = format!("--{}\r\n", alt.boundary());
        out.put(alt.headers().to_string().as_bytes())?;
        out.put(b"\r\n")?;
        out.put(delimiter.as_bytes())?;
        out.put(&SinglePart::plain(text_body(text)).formatted())?;
        out.put(delimiter.as_bytes())?;
        self.write_related(html, inline, out)?;
        out.put(format!("--{}--\r\n", alt.boundary()).as_bytes())
    }

    /// multipart/related (RFC 2387): the HTML, then the images it shows.
    fn write_related(&self, html: &str, inline: Vec<Attachment>, out: &mut Spool) -> Result<()> {
        let related = MultiPart::related();
        let related = match &self.boundary {
            Some(b) => related.boundary(format!("{b}-related")),
            None => related,
        }
        .build();
        let boundary = related.boundary();
        out.put(
            format!("Content-Type: multipart/related; type=\"text/html\";\r\n boundary=\"{boundary}\"\r\n\r\n")
                .as_bytes(),
        )?;
        let delimiter = format!("--{boundary}\r\n");
        out.put(delimiter.as_bytes())?;
        out.put(&SinglePart::html(text_body(html)).formatted())?;
        for image in inline {
            out.put(delimiter.as_bytes())?;
            image.write_part(out)?;
        }
        out.put(format!("--{boundary}--\r\n").as_bytes())
    }

    /// The text and/or HTML content, before attachments.
    fn content(&self) -> Content {
        match (&self.text, &self.html) {
            (Some(t), Some(h)) => {
                let alt = MultiPart::alternative();
                let alt = match &self.boundary {
                    Some(b) => alt.boundary(format!("{b}-alt")),
                    None => alt,
                };
                Content::Alternative(
                    alt.singlepart(SinglePart::plain(text_body(t)))
                        .singlepart(SinglePart::html(text_body(h))),
                )
            }
            (None, Some(h)) => Content::Text(ContentType::TEXT_HTML, text_body(h)),
            (Some(t), None) => Content::Text(ContentType::TEXT_PLAIN, text_body(t)),
            (None, None) => Content::Text(ContentType::TEXT_PLAIN, text_body("")),
        }
    }
}

/// `text` with every line ending made CRLF, in one pass: a bare LF, and a
/// bare CR too, as the wire carries it (`smtp::dotstuff`) and DKIM signs
/// it, so that a dry run, a `.eml` and the outbox hold the bytes sent (a
/// bare CR is no part of 7bit or 8bit MIME data, RFC 2045 2.7). lettre
/// converts LF too, but by inserting each CR into the string, which is
/// quadratic: a 41 MB log with LF endings took minutes.
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                out.push_str("\r\n");
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    out
}

/// A text or HTML part's body, as lettre's `Body::new` makes it (same
/// Content-Transfer-Encoding, same bytes) but in linear time: the encoding
/// is chosen on the text as given, as lettre chooses it before its own
/// CRLF conversion (a line ending in LF is one byte shorter than with
/// CRLF, which decides 7bit or quoted-printable for a 74-character line),
/// then the text is converted by `crlf`, so lettre finds no LF to fix.
fn text_body(text: &str) -> Body {
    use email_encoding::body::Encoding;
    use lettre::message::header::ContentTransferEncoding as Cte;
    let encoding = match Encoding::choose(text, false) {
        Encoding::SevenBit => Cte::SevenBit,
        Encoding::EightBit => Cte::EightBit,
        Encoding::QuotedPrintable => Cte::QuotedPrintable,
        Encoding::Base64 => Cte::Base64,
    };
    let text = crlf(text);
    match encoding {
        // What Body::new keeps as it is; new_with_encoding would check the
        // converted text again and could refuse 7bit.
        Cte::SevenBit | Cte::EightBit => Body::dangerous_pre_encoded(text.into_bytes(), encoding),
        // Never refused for these two; the fallback is base64 all the same.
        _ => Body::new_with_encoding(text, encoding).unwrap_or_else(Body::new),
    }
}

enum Content {
    Text(ContentType, Body),
    Alternative(MultiPart),
}

/// One header line, `Name: value\r\n`, as lettre encodes and folds it.
fn line(value: HeaderValue) -> String {
    let mut one = Headers::new();
    one.insert_raw(value);
    one.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn draft() -> Draft {
        Draft {
            from: "Zoë Müller <zoe@example.com>".parse().unwrap(),
            to: parse_mailboxes("--to", &["ops@example.net".into()]).unwrap(),
            cc: vec![],
            bcc: parse_mailboxes("--bcc", &["hidden@example.org".into()]).unwrap(),
            reply_to: vec![],
            subject: Some("Grüße".into()),
            text: Some(normalize_text("line one\nline two".into())),
            html: None,
            attachments: vec![],
            inline: vec![],
            headers: vec![],
            date: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            message_id: "<fixed.1@example.com>".into(),
            boundary: Some("BOUNDARY".into()),
        }
    }

    /// The header lines every test message starts with.
    const HEAD: &str = "From: =?utf-8?b?Wm/DqyBNw7xsbGVy?= <zoe@example.com>\r\n\
Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
Message-ID: <fixed.1@example.com>\r\n\
To: ops@example.net\r\n\
Subject: =?utf-8?b?R3LDvMOfZQ==?=\r\n\
MIME-Version: 1.0\r\n";

    fn text(d: Draft) -> String {
        String::from_utf8(d.compose().unwrap().into_bytes()).unwrap()
    }

    #[test]
    fn plain_text_message_is_exact() {
        let expected = HEAD.to_owned()
            + "\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
line one\r\n\
line two\r\n";
        assert_eq!(text(draft()), expected);
    }

    #[test]
    fn text_and_html_are_alternative_parts() {
        let mut d = draft();
        d.html = Some("<p>hi</p>".into());
        let expected = HEAD.to_owned()
            + "\
Content-Type: multipart/alternative; boundary=\"BOUNDARY-alt\"\r\n\
\r\n\
--BOUNDARY-alt\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
line one\r\n\
line two\r\n\
\r\n\
--BOUNDARY-alt\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
<p>hi</p>\r\n\
--BOUNDARY-alt--\r\n";
        assert_eq!(text(d), expected);
    }

    #[test]
    fn attachment_with_non_ascii_name_uses_rfc2231() {
        let mut d = draft();
        d.attachments.push(Attachment::named(
            "Bericht März.pdf",
            vec![0, 159, 146, 150],
        ));
        let expected = HEAD.to_owned()
            + "\
Content-Type: multipart/mixed; boundary=\"BOUNDARY-mixed\"\r\n\
\r\n\
--BOUNDARY-mixed\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
line one\r\n\
line two\r\n\
\r\n\
--BOUNDARY-mixed\r\n\
Content-Disposition: attachment;\r\n filename*0*=utf-8''Bericht%20M%C3%A4rz.pdf\r\n\
Content-Type: application/pdf\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AJ+Slg==\r\n\
--BOUNDARY-mixed--\r\n";
        assert_eq!(text(d), expected);
    }

    #[test]
    fn inline_images_go_into_a_related_part_after_the_html() {
        let mut d = draft();
        d.html = Some("<img src=\"cid:logo.png\">".into());
        d.inline
            .push(Attachment::named_inline("logo.png", vec![1, 2, 3]));
        let expected = HEAD.to_owned()
            + "\
Content-Type: multipart/alternative; boundary=\"BOUNDARY-alt\"\r\n\
\r\n\
--BOUNDARY-alt\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
line one\r\n\
line two\r\n\
\r\n\
--BOUNDARY-alt\r\n\
Content-Type: multipart/related; type=\"text/html\";\r\n boundary=\"BOUNDARY-related\"\r\n\
\r\n\
--BOUNDARY-related\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
<img src=\"cid:logo.png\">\r\n\
--BOUNDARY-related\r\n\
Content-Disposition: inline; filename=\"logo.png\"\r\n\
Content-ID: <logo.png>\r\n\
Content-Type: image/png\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AQID\r\n\
--BOUNDARY-related--\r\n\
--BOUNDARY-alt--\r\n";
        assert_eq!(text(d), expected);
    }

    #[test]
    fn line_feeds_become_crlf_in_one_pass() {
        assert_eq!(crlf("a\nb\r\nc\n\n"), "a\r\nb\r\nc\r\n\r\n");
        assert_eq!(crlf("\nx\r"), "\r\nx\r\n");
        assert_eq!(crlf("a\rb\r\r\nc"), "a\r\nb\r\n\r\nc");
        assert_eq!(crlf("é\n"), "é\r\n");
        let mut d = draft();
        d.text = Some("make: entering directory\n".repeat(1000));
        let message = text(d);
        let body = message.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(body, "make: entering directory\r\n".repeat(1000));
    }

    /// The encoding is the one lettre's `Body::new` chooses for the text as
    /// given (before CRLF): a 74-character line ending in LF is 76 bytes
    /// with its CRLF, but it was, and stays, 7bit.
    #[test]
    fn converting_to_crlf_first_keeps_lettres_encoding_and_bytes() {
        let line = "a".repeat(74);
        for (plain, rich) in [(true, false), (false, true), (true, true)] {
            let mut d = draft();
            d.text = plain.then(|| format!("{line}\n{line}\n"));
            d.html = rich.then(|| format!("{line}\n{line}\n"));
            let message = text(d);
            assert!(
                !message.contains("quoted-printable"),
                "{plain} {rich}: {message}"
            );
        }
        let long = "b".repeat(2000);
        let inputs = [
            String::new(),
            "\n".into(),
            "\r".into(),
            "\r\n".into(),
            "\nx\r".into(),
            "x\r\r\n\n".into(),
            format!("{}\n", "a".repeat(75)),
            format!("{}\n", "a".repeat(76)),
            format!("x\n{line}\n"),
            format!("x\r\n{line}\r\n"),
            format!("é{}\n", "é".repeat(36)),
            format!("{long}\n"),
            "=\x01\n".repeat(40),
            "Grüße\naus\rKöln\r\n".into(),
        ];
        for input in inputs {
            // lettre keeps a bare CR; here it is a line break, as on the wire.
            let lines = input
                .replace("\r\n", "\0")
                .replace('\r', "\n")
                .replace('\0', "\r\n");
            let reference = Body::new(lines);
            let ours = text_body(&input);
            assert_eq!(ours.encoding(), reference.encoding(), "{input:?}");
            assert_eq!(ours.into_vec(), reference.into_vec(), "{input:?}");
        }
    }

    #[test]
    fn bcc_is_in_the_envelope_but_not_the_message() {
        let mut d = draft();
        d.to.extend(parse_mailboxes("--to", &["Team <team@example.net>".into()]).unwrap());
        d.cc = parse_mailboxes("--cc", &["c@example.net".into()]).unwrap();
        let mut only_to = draft();
        only_to.to.truncate(1);
        assert_eq!(
            only_to.recipients(),
            ["ops@example.net", "hidden@example.org"]
        );
        let message = text(d);
        assert!(!message.to_ascii_lowercase().contains("bcc"));
        assert!(!message.contains("hidden"), "{message}");
    }

    #[test]
    fn address_lists_and_names() {
        let list = parse_mailboxes(
            "--to",
            &["\"Müller, Zoë\" <z@example.com>, b@example.org".into()],
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name.as_deref(), Some("Müller, Zoë"));
        assert!(parse_mailboxes("--to", &["a@example.com, not an address".into()]).is_err());
        assert!(parse_mailboxes("--to", &["a@example.com\r\nBcc: x@example.com".into()]).is_err());
        assert!(parse_mailboxes("--to", &["@@".into()]).is_err());
        assert!(parse_mailbox("--from", "a@example.com, b@example.com").is_err());
    }

    #[test]
    fn headers_are_validated() {
        assert!(parse_header("X-Ticket: 42").is_ok());
        assert!(parse_header("X-Evil: a\r\nBcc: x@example.com").is_err());
        assert!(parse_header("Bcc: x@example.com").is_err());
        for refused in [
            "Resent-Bcc",
            "resent-BCC ",
            "Resent-To",
            "Return-Path",
            "Content-ID",
            "Delivered-To",
            "received",
            "Authentication-Results",
        ] {
            let err = parse_header(&format!("{refused}: x")).unwrap_err();
            assert_eq!(
                crate::exit::code_for(&err),
                crate::exit::Exit::Usage,
                "{refused}"
            );
        }
        assert!(parse_header("Sender: x@example.com").is_ok());
        assert!(parse_header("List-Id: News <news.example.com>").is_ok());
        assert!(parse_header("No colon").is_err());
        assert!(parse_header("Bad Name: v").is_err());
        assert!(parse_header(&format!("X-Long: {}", "a".repeat(1200))).is_err());
        assert!(parse_header(&format!("X-Long: {}", "word ".repeat(300))).is_ok());
        assert!(check_header_text("subject", "a\nb").is_err());
        assert!(check_header_text("subject", &"a".repeat(2000)).is_err());
        // A run is what the writers fold at: spaces and tabs only.
        assert!(parse_header(&format!("X-Tsv: {}\t{}", "a".repeat(800), "b".repeat(800))).is_ok());
        assert!(
            parse_header(&format!(
                "X-Long: {}\u{3000}{}",
                "a".repeat(500),
                "b".repeat(500)
            ))
            .is_err()
        );
        assert!(
            check_header_text(
                "subject",
                &format!("{}\u{a0}{}", "a".repeat(500), "b".repeat(500))
            )
            .is_err()
        );
        assert!(parse_header(&format!("{}: v", "X".repeat(200))).is_err());
        let long_name = format!("{} <a@example.com>", "n".repeat(1200));
        assert!(parse_mailboxes("--to", &[long_name]).is_err());
    }

    #[test]
    fn no_header_line_over_998_octets() {
        let mut d = draft();
        let tsv = (0..200)
            .map(|i| format!("f{i}"))
            .collect::<Vec<_>>()
            .join("\t");
        d.subject = Some(format!("{tsv} {}\t{}", "a".repeat(800), "b".repeat(800)));
        for name in [
            "\\".repeat(850),
            "\"".repeat(850),
            format!("{} x", "\\\"".repeat(400)),
        ] {
            let quoted = format!(
                "\"{}\" <a@example.com>",
                name.replace('\\', "\\\\").replace('"', "\\\"")
            );
            d.to.extend(parse_mailboxes("--to", std::slice::from_ref(&quoted)).unwrap());
            d.reply_to
                .extend(parse_mailboxes("--reply-to", &[quoted]).unwrap());
        }
        d.headers
            .push(parse_header(&format!("X-Tsv: {tsv}")).unwrap());
        d.headers
            .push(parse_header(&format!("X-Ws: a{}b", " ".repeat(1500))).unwrap());
        let message = text(d);
        let head = message.split("\r\n\r\n").next().unwrap();
        for line in head.split("\r\n") {
            assert!(line.len() <= 998, "{} octets: {line}", line.len());
        }
    }

    #[test]
    fn duplicates_compare_the_domain_without_case_only() {
        let mut d = draft();
        d.to = parse_mailboxes(
            "--to",
            &["A@example.com, a@example.com, a@EXAMPLE.com".into()],
        )
        .unwrap();
        d.bcc = parse_mailboxes(
            "--bcc",
            &["\"A B\"@x.example, \"a b\"@X.example, A@Example.Com".into()],
        )
        .unwrap();
        assert_eq!(
            d.recipients(),
            [
                "A@example.com",
                "a@example.com",
                "\"A B\"@x.example",
                "\"a b\"@X.example"
            ]
        );
    }

    #[test]
    fn message_id_uses_sender_domain() {
        let id = new_message_id(&"a@mail.example.org".parse().unwrap());
        assert!(
            id.starts_with('<') && id.ends_with("@mail.example.org>"),
            "{id}"
        );
    }
}
