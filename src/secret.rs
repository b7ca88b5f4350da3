//! Secrets: a string type that never prints, and a redactor that hides
//! secrets in text from elsewhere. Depends on nothing else of mailsend.

use std::fmt;

/// Holds a secret; `Debug` and `Display` print `<redacted>`, so no log line,
/// error message, `--json` output or panic can show what it holds.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Hides secrets in text that came from elsewhere (a server's reply),
/// including fragments and re-encodings of them: a server that quotes
/// most of an AUTH token, splits it over several lines, or echoes the
/// password in upper case, spaced out, as UTF-16, in hex or backwards must
/// not put it on a terminal or in a log. Text is compared ignoring ASCII
/// case, white space and NUL bytes, across line ends; every run that
/// shares [`Redactor::WINDOW`] or more consecutive characters with a secret
/// (twice that with its hex form) becomes `<redacted>`, and a secret
/// shorter than that only when it appears whole. Errs on the side of
/// hiding too much.
#[derive(Default)]
pub struct Redactor {
    /// Windows of the normal forms, by length.
    windows: std::collections::HashSet<Vec<char>>,
    window_lengths: Vec<usize>,
    short: Vec<Vec<char>>,
}

/// Where one character of the normalised text came from: its line and
/// its bytes there.
#[derive(Clone, Copy)]
struct Source {
    line: usize,
    at: usize,
    len: usize,
}

impl Redactor {
    /// The length of a fragment that counts as part of a secret.
    pub const WINDOW: usize = 4;

    /// A longer fragment, for long random secrets (OAuth2 tokens): a few
    /// characters of one give nothing away, and with thousands of them
    /// a 4-character window would hide ordinary words of server text.
    pub const LONG_WINDOW: usize = 8;

    /// Hides `secret` (and any fragment or re-encoding of it) from now on.
    pub fn add(&mut self, secret: &str) {
        self.add_with_window(secret, Self::WINDOW);
    }

    /// Like [`Redactor::add`], counting runs of `window` characters (and
    /// twice that in hex) as fragments.
    pub fn add_with_window(&mut self, secret: &str, window: usize) {
        let plain = normal(secret);
        if plain.is_empty() {
            return;
        }
        if plain.len() < window {
            self.short.push(plain);
            return;
        }
        let hex: Vec<char> = secret
            .bytes()
            .flat_map(|b| format!("{b:02x}").chars().collect::<Vec<_>>())
            .collect();
        let reversed: Vec<char> = plain.iter().rev().copied().collect();
        for (form, len) in [(&plain, window), (&reversed, window), (&hex, 2 * window)] {
            for w in form.windows(len) {
                self.windows.insert(w.to_vec());
            }
            if !self.window_lengths.contains(&len) {
                self.window_lengths.push(len);
            }
        }
    }

    /// `text` with every part of a secret replaced by `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        self.redact_lines(&[text.to_owned()]).remove(0)
    }

    /// The lines of one reply, each with every part of a secret replaced
    /// by `<redacted>`; a secret split over several lines is found too.
    pub fn redact_lines(&self, lines: &[String]) -> Vec<String> {
        if self.windows.is_empty() && self.short.is_empty() {
            return lines.to_vec();
        }
        // The normalised text of all lines, and where each byte came from.
        let mut text = Vec::new();
        let mut from = Vec::new();
        for (line, l) in lines.iter().enumerate() {
            for (at, c) in l.char_indices() {
                if let Some(n) = normal_char(c) {
                    text.push(n);
                    from.push(Source {
                        line,
                        at,
                        len: c.len_utf8(),
                    });
                }
            }
        }
        let mut hidden: Vec<Vec<bool>> = lines.iter().map(|l| vec![false; l.len()]).collect();
        let mut hide = |first: Source, last: Source| {
            for (line, marks) in hidden
                .iter_mut()
                .enumerate()
                .take(last.line + 1)
                .skip(first.line)
            {
                let start = if line == first.line { first.at } else { 0 };
                let end = if line == last.line {
                    last.at + last.len
                } else {
                    marks.len()
                };
                marks[start..end].fill(true);
            }
        };
        for &len in &self.window_lengths {
            for (i, w) in text.windows(len).enumerate() {
                if self.windows.contains(w) {
                    hide(from[i], from[i + len - 1]);
                }
            }
        }
        for s in &self.short {
            for (i, w) in text.windows(s.len()).enumerate() {
                if w == s.as_slice() {
                    hide(from[i], from[i + s.len() - 1]);
                }
            }
        }
        lines
            .iter()
            .zip(hidden)
            .map(|(line, hidden)| {
                let mut out = String::with_capacity(line.len());
                let mut in_secret = false;
                for (i, c) in line.char_indices() {
                    if hidden[i..i + c.len_utf8()].iter().any(|&h| h) {
                        if !in_secret {
                            out.push_str("<redacted>");
                        }
                        in_secret = true;
                    } else {
                        out.push(c);
                        in_secret = false;
                    }
                }
                out
            })
            .collect()
    }
}

/// A character as compared: ASCII lower case; white space and NUL
/// dropped.
fn normal_char(c: char) -> Option<char> {
    match c {
        '\0' => None,
        c if c.is_whitespace() => None,
        c => Some(c.to_ascii_lowercase()),
    }
}

fn normal(text: &str) -> Vec<char> {
    text.chars().filter_map(normal_char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_its_value() {
        let s = Secret::new("hunter2".into());
        assert_eq!(
            format!("{s} {s:?} {:?}", Some(&s)),
            "<redacted> <redacted> Some(<redacted>)"
        );
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redacts_whole_and_partial_echoes() {
        let mut r = Redactor::default();
        r.add("AHNlbmRlcgBzM2NyM3Q="); // base64 of "\0sender\0s3cr3t"
        r.add("s3cr3t");
        r.add("ab");
        let token = "AHNlbmRlcgBzM2NyM3Q=";
        for echo in [token, &token[..token.len() - 4], &token[2..], &token[5..9]] {
            let out = r.redact(&format!("501 5.5.2 syntax error in AUTH PLAIN {echo} end"));
            assert_eq!(
                out, "501 5.5.2 syntax error in AUTH PLAIN <redacted> end",
                "{echo}"
            );
        }
        assert_eq!(
            r.redact("535 bad s3cr3 ab"),
            "535 bad <redacted> <redacted>"
        );
        assert_eq!(r.redact("535 5.7.8 failed"), "535 5.7.8 failed");
        // Multi-byte characters next to a secret stay whole.
        r.add("pässwörd");
        assert_eq!(r.redact("é pässw é"), "é <redacted> é");
    }

    #[test]
    fn a_long_window_hides_tokens_but_not_the_words_around_them() {
        let mut r = Redactor::default();
        let token = "ya29.a0AfH6SMBx-token_invalidStatus401";
        r.add_with_window(token, Redactor::LONG_WINDOW);
        assert_eq!(
            r.redact("535 invalid_token status=401"),
            "535 invalid_token status=401"
        );
        assert_eq!(r.redact(&format!("bad {token} x")), "bad <redacted> x");
        assert_eq!(r.redact("bad a0AfH6SMBx x"), "bad <redacted> x");
        // The 4-character window would have hidden "oken" and "atus".
        let mut short = Redactor::default();
        short.add(token);
        assert_ne!(short.redact("535 invalid_token"), "535 invalid_token");
    }

    #[test]
    fn redacts_re_encoded_and_split_echoes() {
        let mut r = Redactor::default();
        r.add("Hunter2Secret!xyz");
        r.add("AG1lQGV4YW1wbGUuY29tAEh1bnRlcjJTZWNyZXQheHl6");
        for echo in [
            "HUNTER2SECRET!XYZ",
            "H u n t e r 2 S e c",
            "H\0u\0n\0t\0e\0r\0",
            "48756e74657232",
            "zyx!terceS2retnuH",
        ] {
            let out = r.redact(&format!("535 5.7.8 bad: {echo} end"));
            assert!(
                out.starts_with("535 5.7.8 bad: <redacted>"),
                "{echo:?} -> {out:?}"
            );
            assert!(out.ends_with(" end"), "{echo:?} -> {out:?}");
        }
        // The token split into 3-character continuation lines.
        let token = "AG1lQGV4YW1wbGUuY29tAEh1bnRlcjJTZWNyZXQheHl6";
        let lines: Vec<String> = token
            .as_bytes()
            .chunks(3)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let out = r.redact_lines(&lines);
        assert!(out.iter().all(|l| l == "<redacted>"), "{out:?}");
        // Ordinary server text stays.
        assert_eq!(
            r.redact("535 5.7.8 Error: authentication failed"),
            "535 5.7.8 Error: authentication failed"
        );
    }
}
