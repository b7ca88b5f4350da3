//! Reading the addresses a user typed: RFC 5322 mailbox lists
//! (`Name <a@b>, c@d`), into mailboxes ready for both the headers and the
//! SMTP envelope.
//!
//! lettre's own parser drops the quotes of a quoted local part and then
//! refuses the result (`"a b"@example.com`), and keeps internationalised
//! domains as U-labels. This one keeps a quoted local part in its quoted
//! form (RFC 5321 4.1.2 `Quoted-string`), unquotes one that needs no
//! quotes, and turns every domain into its A-label (`xn--...`, RFC 5890),
//! so headers, Message-ID and envelope carry only ASCII domains and
//! SMTPUTF8 is needed only for a non-ASCII local part. It runs in time
//! linear in the length of the list.

use lettre::Address;
use lettre::message::Mailbox;

/// Parses one value of an address flag: a comma-separated list of
/// mailboxes. Empty items (`a@x, , b@y`, a trailing comma) are skipped.
/// The error is the reason, for a message that names the value.
pub fn parse_list(value: &str) -> Result<Vec<Mailbox>, String> {
    let mut cursor = Cursor { s: value, pos: 0 };
    let mut out = Vec::new();
    loop {
        cursor.skip_cfws()?;
        match cursor.peek() {
            None => break,
            Some(',') => {
                cursor.bump();
                continue;
            }
            Some(_) => {}
        }
        out.push(cursor.mailbox()?);
        cursor.skip_cfws()?;
        match cursor.bump() {
            None => break,
            Some(',') => {}
            Some(c) => {
                return Err(format!(
                    "unexpected '{}' after an address",
                    c.escape_debug()
                ));
            }
        }
    }
    Ok(out)
}

/// One word of a phrase or a local part, and whether white space or a
/// comment came before it.
enum Word {
    Atom(String, bool),
    Quoted(String, bool),
    Dot(bool),
}

impl Word {
    fn spaced(&self) -> bool {
        match self {
            Word::Atom(_, s) | Word::Quoted(_, s) | Word::Dot(s) => *s,
        }
    }
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Skips white space and (nested) comments; returns whether it
    /// skipped anything.
    fn skip_cfws(&mut self) -> Result<bool, String> {
        let start = self.pos;
        loop {
            match self.peek() {
                // RFC 5322 WSP only: other Unicode white space is text,
                // refused in a local part.
                Some(' ' | '\t') => {
                    self.bump();
                }
                Some('(') => self.comment()?,
                _ => return Ok(self.pos != start),
            }
        }
    }

    fn comment(&mut self) -> Result<(), String> {
        let mut depth = 0u32;
        while let Some(c) = self.bump() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                '\\' => {
                    self.bump();
                }
                _ => {}
            }
        }
        Err("unbalanced parenthesis".into())
    }

    /// A quoted string, the cursor on its opening quote; returns its
    /// content with quoted pairs undone.
    fn quoted(&mut self) -> Result<String, String> {
        self.bump();
        let mut text = String::new();
        while let Some(c) = self.bump() {
            match c {
                '"' => return Ok(text),
                '\\' => match self.bump() {
                    Some(escaped) => text.push(escaped),
                    None => break,
                },
                _ => text.push(c),
            }
        }
        Err("unbalanced quote".into())
    }

    fn atom(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(is_atext) {
            self.bump();
        }
        self.s[start..self.pos].to_owned()
    }

    /// Atoms, quoted strings and dots, up to anything else.
    fn words(&mut self) -> Result<Vec<Word>, String> {
        let mut words = Vec::new();
        let mut spaced = false;
        loop {
            let word = match self.peek() {
                Some('"') => Word::Quoted(self.quoted()?, spaced),
                Some('.') => {
                    self.bump();
                    Word::Dot(spaced)
                }
                Some(c) if is_atext(c) => Word::Atom(self.atom(), spaced),
                _ => return Ok(words),
            };
            words.push(word);
            spaced = self.skip_cfws()?;
        }
    }

    /// `Name <local@domain>` or `local@domain`.
    fn mailbox(&mut self) -> Result<Mailbox, String> {
        let words = self.words()?;
        match self.peek() {
            Some('<') => {
                self.bump();
                self.skip_cfws()?;
                let local = self.words()?;
                let address = self.addr_spec(local)?;
                self.skip_cfws()?;
                if self.bump() != Some('>') {
                    return Err("unbalanced angle bracket".into());
                }
                Ok(Mailbox::new(phrase(&words), address))
            }
            Some('@') => Ok(Mailbox::new(None, self.addr_spec(words)?)),
            _ if words.is_empty() => Err(match self.peek() {
                Some(c) => format!("unexpected '{}'", c.escape_debug()),
                None => "no address".into(),
            }),
            _ => Err("not an address: no @".into()),
        }
    }

    /// The rest of an addr-spec whose local part was read as `local`,
    /// the cursor on the `@`.
    fn addr_spec(&mut self, local: Vec<Word>) -> Result<Address, String> {
        let local = local_part(&local)?;
        if self.bump() != Some('@') {
            return Err("not an address: no @".into());
        }
        let domain = self.domain()?;
        // RFC 5321 4.5.3.1.3: a path is at most 256 octets with its `<>`.
        if local.len() + 1 + domain.len() > 254 {
            return Err(format!(
                "the address is {} octets long; at most 254 fit in an SMTP path (RFC 5321)",
                local.len() + 1 + domain.len()
            ));
        }
        Address::new(&local, &domain).map_err(|e| match e {
            lettre::address::AddressError::InvalidUser => format!(
                "invalid local part {} (at most 64 characters of RFC 5321 syntax)",
                printable(&local)
            ),
            _ => format!("invalid domain {}", printable(&domain)),
        })
    }

    /// A domain name, as its A-label form.
    fn domain(&mut self) -> Result<String, String> {
        let start = self.pos;
        if self.peek() == Some('[') {
            return Err("address literals ([...]) are not supported".into());
        }
        while self.peek().is_some_and(|c| is_atext(c) || c == '.') {
            self.bump();
        }
        let domain = &self.s[start..self.pos];
        if domain.is_empty() {
            return Err("no domain after @".into());
        }
        to_a_label(domain)
    }
}

/// The display name: words joined by single spaces where the user had
/// space, quoted strings as they read. `None` when empty.
fn phrase(words: &[Word]) -> Option<String> {
    let mut name = String::new();
    for word in words {
        if word.spaced() && !name.is_empty() {
            name.push(' ');
        }
        match word {
            Word::Atom(text, _) | Word::Quoted(text, _) => name.push_str(text),
            Word::Dot(_) => name.push('.'),
        }
    }
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The local part as it goes into headers and the envelope: a dot-atom
/// as typed, or a quoted string (RFC 5321 `Quoted-string`) with only `"`
/// and `\` escaped; quotes that are not needed are dropped
/// (`"ab"@x` is `ab@x`, RFC 5321 4.1.2).
fn local_part(words: &[Word]) -> Result<String, String> {
    if words.is_empty() {
        return Err("empty local part".into());
    }
    for word in words {
        if let Word::Atom(text, _) | Word::Quoted(text, _) = word
            && let Some(c) = text.chars().find(|&c| refused_in_local_part(c))
        {
            return Err(format!(
                "the local part holds '{}', {}",
                c.escape_unicode(),
                match c {
                    '\u{FF20}' | '\u{FE6B}' => "a look-alike of @",
                    c if c.is_whitespace() => "Unicode white space or a line separator",
                    _ => "an invisible or control character",
                }
            ));
        }
    }
    if words.iter().skip(1).any(Word::spaced) {
        return Err("space in the local part (quote it: \"a b\"@example.com)".into());
    }
    match words {
        [Word::Quoted(text, _)] => {
            if text.is_empty() {
                return Err("empty local part".into());
            }
            if is_dot_atom(text) {
                return Ok(text.clone());
            }
            Ok(super::encode::quote(text))
        }
        _ => {
            let mut text = String::new();
            for word in words {
                match word {
                    Word::Atom(a, _) => text.push_str(a),
                    Word::Dot(_) => text.push('.'),
                    Word::Quoted(..) => {
                        return Err(
                            "a quoted string must be the whole local part (\"a b\"@example.com)"
                                .into(),
                        );
                    }
                }
            }
            if !is_dot_atom(&text) {
                return Err(format!(
                    "invalid local part {} (dots misplaced)",
                    printable(&text)
                ));
            }
            Ok(text)
        }
    }
}

/// Characters refused in a local part even though RFC 6531 allows
/// non-ASCII there: they make an address that looks like another, or
/// that line-oriented tools split (U+2028): Unicode white space and
/// separators (Zs, Zl, Zp, NEL), format characters (Cf: zero-width
/// spaces and joiners, bidi controls, BOM), other invisible fillers and
/// variation selectors, controls, and the fullwidth and small `@`.
pub fn refused_in_local_part(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    c.is_whitespace()
        || c.is_control()
        || matches!(c,
            '\u{AD}' | '\u{34F}' | '\u{600}'..='\u{605}' | '\u{61C}' | '\u{6DD}' | '\u{70F}'
            | '\u{890}'..='\u{891}' | '\u{8E2}' | '\u{115F}'..='\u{1160}' | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{2800}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
            | '\u{FE6B}' | '\u{FEFF}' | '\u{FF20}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}'
            | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// `text` safe to put in a one-line error message: Rust escapes for
/// controls, quotes and backslashes, and `\u{...}` for any white space
/// other than the space and for invisible characters.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != ' ' && (c.is_whitespace() || refused_in_local_part(c)) {
            out.extend(c.escape_unicode());
        } else {
            out.extend(c.escape_debug());
        }
    }
    out
}

/// RFC 5322 atext, plus non-ASCII (RFC 6531/6532).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn is_dot_atom(text: &str) -> bool {
    text.split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// The A-label form of a domain (RFC 5890): an internationalised domain
/// goes through IDNA (UTS 46, strict: STD3 rules and DNS lengths); an
/// ASCII one stays as typed, but any `xn--` label in it must be valid.
pub fn to_a_label(domain: &str) -> Result<String, String> {
    if domain.is_ascii() {
        // The same STD3 rules as for an IDN: letters, digits and hyphens,
        // no hyphen first or last, labels of 1 to 63 octets, valid
        // `xn--` labels; and a top-level label that is not all digits
        // (`1.2.3.4.5`, `123` are no host names).
        let tld_numeric = domain
            .rsplit('.')
            .next()
            .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
        let ldh = domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        let has_a_label = domain
            .split('.')
            .any(|l| l.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--")));
        if tld_numeric || !ldh || domain.len() > 253 {
            return Err(format!(
                "{} is not a valid domain name (letters, digits and hyphens in labels of 1 to 63 characters, not all digits at the end)",
                printable(domain)
            ));
        }
        if has_a_label && idna::domain_to_ascii_strict(domain).is_err() {
            return Err(format!(
                "{} is not a valid internationalised domain name (IDNA)",
                printable(domain)
            ));
        }
        // Valid: keep the user's spelling.
        return Ok(domain.to_owned());
    }
    // IDNA maps invisible characters to nothing (`a@\u{FEFF}example.com`
    // would be a@example.com): refuse them, like white space.
    if let Some(c) = domain.chars().find(|&c| refused_in_local_part(c)) {
        return Err(format!(
            "the domain holds '{}', an invisible character or white space",
            c.escape_unicode()
        ));
    }
    match idna::domain_to_ascii_strict(domain) {
        Ok(ascii) => Ok(ascii),
        Err(_) => Err(format!(
            "{} is not a valid internationalised domain name (IDNA)",
            printable(domain)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: &str) -> Result<(Option<String>, String), String> {
        let list = parse_list(value)?;
        assert_eq!(list.len(), 1, "{value}");
        let m = &list[0];
        Ok((m.name.clone(), m.email.to_string()))
    }

    #[test]
    fn plain_and_named() {
        assert_eq!(
            one("a@example.com").unwrap(),
            (None, "a@example.com".into())
        );
        assert_eq!(
            one("  Zoë Müller <z@example.com> ").unwrap(),
            (Some("Zoë Müller".into()), "z@example.com".into())
        );
        assert_eq!(
            one("\"Doe, J.\" <j@example.com>").unwrap(),
            (Some("Doe, J.".into()), "j@example.com".into())
        );
        assert_eq!(
            one("J. R. Doe <j@example.com>").unwrap().0.as_deref(),
            Some("J. R. Doe")
        );
        assert_eq!(
            one("<a@example.com>").unwrap(),
            (None, "a@example.com".into())
        );
        assert_eq!(
            one("a@example.com (Alice)").unwrap(),
            (None, "a@example.com".into())
        );
        assert_eq!(
            one("first.last+tag@sub.example.com").unwrap().1,
            "first.last+tag@sub.example.com"
        );
    }

    #[test]
    fn lists() {
        let list = parse_list("\"Müller, Zoë\" <z@example.com>, b@example.org,").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name.as_deref(), Some("Müller, Zoë"));
        assert!(parse_list("a@example.com, not an address").is_err());
        assert!(parse_list("a@example.com b@example.com").is_err());
        assert!(parse_list("@@").is_err());
        assert!(parse_list("a@").is_err());
        assert!(parse_list("@example.com").is_err());
        assert!(parse_list("a@example.com>").is_err());
        assert!(parse_list("A <a@example.com").is_err());
        assert!(parse_list("a@exa mple.com").is_err());
        assert!(parse_list("a..b@example.com").is_err());
        assert!(parse_list(".a@example.com").is_err());
        assert!(parse_list("a@[127.0.0.1]").is_err());
    }

    #[test]
    fn quoted_local_parts() {
        assert_eq!(one("\"a b\"@example.com").unwrap().1, "\"a b\"@example.com");
        assert_eq!(
            one("Name <\"a b\"@example.com>").unwrap(),
            (Some("Name".into()), "\"a b\"@example.com".into())
        );
        assert_eq!(
            one(r#""a\"b\\c"@example.com"#).unwrap().1,
            r#""a\"b\\c"@example.com"#
        );
        assert_eq!(one("\"a,b\"@example.com").unwrap().1, "\"a,b\"@example.com");
        assert_eq!(one("\"a@b\"@example.com").unwrap().1, "\"a@b\"@example.com");
        // Quotes that are not needed go.
        assert_eq!(one("\"ab.c\"@example.com").unwrap().1, "ab.c@example.com");
        assert!(parse_list("\"a b@example.com").is_err(), "unbalanced");
        assert!(parse_list("\"\"@example.com").is_err(), "empty");
        assert!(parse_list("\"a\".b@example.com").is_err(), "mixed");
        assert!(parse_list("a b@example.com").is_err());
        assert!(parse_list(&format!("\"{}\"@example.com", "x y".repeat(30))).is_err());
    }

    #[test]
    fn never_panics_on_odd_input() {
        let pieces = [
            "a",
            "b.c",
            "\"",
            "\\",
            "<",
            ">",
            "(",
            ")",
            "@",
            "@",
            ".",
            ",",
            " ",
            "ü",
            "=?",
            "xn--",
            "-",
            "example.com",
            "bücher.test",
            "\"a b\"",
            "Name ",
            "@example.org",
            "\u{2028}",
            "\u{2029}",
            "\u{3000}",
            "\u{205f}",
            "\u{a0}",
            "\u{200b}",
            "\u{feff}",
            "\u{ff20}",
            "\t",
            "\\\"",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        let mut ok = 0;
        for _ in 0..50_000 {
            let len = rng.usize(0..8);
            let text: String = (0..len)
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect();
            if let Ok(list) = parse_list(&text) {
                ok += list.len();
                for m in list {
                    let addr = m.email.to_string();
                    assert!(addr.contains('@'), "{text:?} -> {addr}");
                    assert!(m.email.domain().is_ascii(), "{text:?} -> {addr}");
                    // No Unicode white space, invisible character or
                    // look-alike at sign gets into a local part.
                    assert!(
                        !m.email.user().chars().any(|c| !c.is_ascii()
                            && (c.is_whitespace() || "\u{200b}\u{feff}\u{ff20}".contains(c))),
                        "{text:?} -> {addr}"
                    );
                    // An independent check of the syntax (RFC 5321 Mailbox,
                    // RFC 6531 UTF8-non-ascii): a dot-string of atext, or
                    // a quoted string of printable characters and pairs.
                    assert!(rfc5321_mailbox(&addr), "{text:?} -> {addr}");
                    for item in ["<", ">", "(", ")", ","] {
                        assert!(
                            !addr.contains(item) || m.email.user().starts_with('"'),
                            "{text:?} -> {addr}"
                        );
                    }
                    // What goes out reads back as the same address.
                    let again = parse_list(&addr).expect("canonical form parses");
                    assert_eq!(again.len(), 1, "{text:?} -> {addr}");
                    assert_eq!(again[0].email, m.email, "{text:?}");
                }
            }
        }
        assert!(ok > 100, "the input reaches valid addresses too: {ok}");
    }

    /// RFC 5321 4.1.2 Mailbox, with RFC 6531 non-ASCII, written from the
    /// grammar rather than from the parser above.
    fn rfc5321_mailbox(addr: &str) -> bool {
        let Some((local, domain)) = addr.rsplit_once('@') else {
            return false;
        };
        let atext = |c: char| {
            c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
        };
        let local_ok = match local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
            Some(inner) => {
                let mut chars = inner.chars();
                let mut ok = true;
                while let Some(c) = chars.next() {
                    ok &= match c {
                        '\\' => chars.next().is_some_and(|n| (' '..='~').contains(&n)),
                        '"' => false,
                        c => (' '..='~').contains(&c) || !c.is_ascii(),
                    };
                }
                ok
            }
            None => local
                .split('.')
                .all(|a| !a.is_empty() && a.chars().all(atext)),
        };
        let domain_ok = domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        local_ok && domain_ok && local.len() <= 64 && addr.len() <= 254
    }

    #[test]
    fn unicode_separators_and_invisibles_are_refused_in_local_parts() {
        for c in [
            '\u{2028}', '\u{2029}', '\u{3000}', '\u{205f}', '\u{a0}', '\u{200b}', '\u{feff}',
            '\u{ff20}', '\u{fe6b}', '\u{2060}', '\u{85}',
        ] {
            for text in [
                format!("a{c}b@example.com"),
                format!("{c}a@example.com"),
                format!("a{c}@example.com"),
                format!("\"a{c}b\"@example.com"),
                format!("N <{c}a@example.com>"),
            ] {
                let err = parse_list(&text).unwrap_err();
                assert!(!err.contains(c), "{text:?}: {err}");
                assert!(
                    err.contains(&format!("\\u{{{:x}}}", c as u32)),
                    "{text:?}: {err}"
                );
            }
            // In a display name it is text like any other.
            assert!(parse_list(&format!("\"a{c}b\" <a@example.com>")).is_ok());
        }
    }

    #[test]
    fn errors_escape_what_they_quote() {
        for text in [
            "a@exam\u{2028}ple.com",
            "a@\u{feff}example.com",
            "a@x\u{3000}.com",
            "a@xn--bcher-kv\u{200b}.example",
        ] {
            let err = parse_list(text).unwrap_err();
            assert!(
                err.chars().all(|c| !c.is_control()
                    && (c == ' ' || !c.is_whitespace())
                    && !"\u{feff}\u{200b}".contains(c)),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn paths_over_254_octets_and_non_ldh_domains_are_refused() {
        let domain = format!("{}.", "d".repeat(60)).repeat(4) + "example";
        let domain = &domain[..189];
        assert!(parse_list(&format!("{}@{domain}", "l".repeat(64))).is_ok());
        assert!(parse_list(&format!("{}@x{domain}", "l".repeat(64))).is_err());
        for bad in [
            "a@ex_ample.com",
            "a@1.2.3.4.5",
            "a@123",
            "a@-x.example",
            "a@x-.example",
        ] {
            assert!(parse_list(bad).is_err(), "{bad}");
        }
        for good in [
            "a@localhost",
            "a@192.example",
            "a@mail-1.example.com",
            "a@Example.COM",
        ] {
            assert!(parse_list(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn domains_become_a_labels() {
        assert_eq!(
            one("me@bücher.example").unwrap().1,
            "me@xn--bcher-kva.example"
        );
        assert_eq!(
            one("Zoë <zoë@Bücher.Example>").unwrap().1,
            "zoë@xn--bcher-kva.example"
        );
        assert_eq!(
            one("me@xn--bcher-kva.example").unwrap().1,
            "me@xn--bcher-kva.example"
        );
        assert_eq!(one("Me@Example.COM").unwrap().1, "Me@Example.COM");
        let err = parse_list("me@xn--bcher-kv.example").unwrap_err();
        assert!(err.contains("internationalised"), "{err}");
        assert!(parse_list("me@bü_cher.example").is_err());
        assert!(parse_list("me@-bücher.example").is_err());
        assert!(parse_list(&format!("me@{}ü.example", "a".repeat(70))).is_err());
    }
}
