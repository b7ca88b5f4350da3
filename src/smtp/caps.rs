//! What the server says it supports in its EHLO reply (RFC 5321 4.1.1.1).

use super::reply::Reply;

/// The extensions of one EHLO reply. A new EHLO (after STARTTLS) gives a
/// new set: what a server offers in clear and under TLS may differ.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub starttls: bool,
    pub pipelining: bool,
    pub smtputf8: bool,
    pub eightbitmime: bool,
    /// SIZE with a limit (a SIZE of 0 or none means no stated limit).
    pub size: Option<u64>,
    /// AUTH mechanisms, upper case.
    pub auth: Vec<String>,
    /// Every extension line as the server sent it (escaped), for display.
    pub extensions: Vec<String>,
}

impl Capabilities {
    /// From a 250 reply to EHLO: its first line is the greeting, each
    /// further line one extension.
    pub fn parse(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            caps.extensions.push(line.clone());
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
            match keyword.as_str() {
                "STARTTLS" => caps.starttls = true,
                "PIPELINING" => caps.pipelining = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "8BITMIME" => caps.eightbitmime = true,
                "SIZE" => caps.size = words.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0),
                "AUTH" => caps.auth.extend(words.map(str::to_ascii_uppercase)),
                // The pre-RFC 4954 form some old servers still send.
                k if k.starts_with("AUTH=") => caps.auth.extend(
                    std::iter::once(&k[5..])
                        .chain(words)
                        .map(str::to_ascii_uppercase),
                ),
                _ => {}
            }
        }
        caps.auth.dedup();
        caps
    }

    /// The server offers the SASL mechanism `name`.
    pub fn offers_auth(&self, name: &str) -> bool {
        self.auth.iter().any(|m| m.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_ehlo() {
        let reply = Reply {
            code: 250,
            lines: [
                "mx.example.com",
                "PIPELINING",
                "SIZE 1000",
                "STARTTLS",
                "AUTH PLAIN login",
                "SMTPUTF8",
            ]
            .map(String::from)
            .to_vec(),
        };
        let caps = Capabilities::parse(&reply);
        assert!(caps.pipelining && caps.starttls && caps.smtputf8);
        assert!(!caps.eightbitmime);
        assert_eq!(caps.size, Some(1000));
        assert_eq!(caps.auth, ["PLAIN", "LOGIN"]);
        assert!(caps.offers_auth("login"));
        assert_eq!(caps.extensions.len(), 5);
    }

    #[test]
    fn old_auth_form_and_empty_size() {
        let reply = Reply {
            code: 250,
            lines: ["mx", "AUTH=LOGIN PLAIN", "SIZE 0", "SIZE"]
                .map(String::from)
                .to_vec(),
        };
        let caps = Capabilities::parse(&reply);
        assert_eq!(caps.auth, ["LOGIN", "PLAIN"]);
        assert_eq!(caps.size, None);
    }
}
