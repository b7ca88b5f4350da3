//! Recipients as sendmail's callers write them: addresses with or without
//! a display name, comments, group syntax, and local names (`root`) that
//! the `[aliases]` table maps to real addresses.

use std::collections::{BTreeMap, HashSet};

use anyhow::Result;

use crate::exit::Failure;
use crate::message;

/// One recipient item: an address (`Name <a@b>` allowed), or a local name
/// (`root`, `Root <root>`, `root (Cron Daemon)`) that the aliases table
/// maps, falling back to its `default`. Alias names match in any case, as
/// in sendmail's and Postfix's alias tables; an exact match wins.
pub fn resolve_recipient(item: &str, aliases: &BTreeMap<String, String>) -> Result<Vec<String>> {
    let (bare, _) = strip_comments(item);
    let bare = without_group_syntax(&bare);
    if bare.is_empty() {
        return Ok(vec![]); // e.g. the empty group `undisclosed-recipients:;`
    }
    let local = addr_spec(bare);
    if local.contains('@') {
        let mailbox = message::parse_mailbox("recipient", bare)?;
        return Ok(vec![mailbox.email.to_string()]);
    }
    let local = unquote(local);
    if local.is_empty() {
        return Err(Failure::data(format!("invalid recipient '{}'", item.escape_debug())).into());
    }
    let target = aliases
        .get(&local)
        .or_else(|| {
            aliases
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&local))
                .map(|(_, target)| target)
        })
        .or_else(|| aliases.get("default"))
        .ok_or_else(|| {
            let shown = crate::term::printable(&local);
            Failure::data(format!("recipient '{shown}' has no domain and no alias"))
                .with_hint(format!("add `{shown} = \"you@example.com\"` (or `default = ...`) under [aliases] in the config file"))
        })?;
    let mut out = Vec::new();
    for item in message::split_list(target) {
        if !item.contains('@') {
            return Err(Failure::config(format!(
                "alias {} = '{}' must map to addresses with a domain",
                crate::term::printable(&local),
                crate::term::printable(target)
            ))
            .into());
        }
        out.push(message::parse_mailbox("alias", item)?.email.to_string());
    }
    Ok(out)
}

/// The address part of a mailbox without comments: what is inside the
/// last `<...>` outside quotes (`Root <root>` gives `root`), else all of it.
fn addr_spec(mailbox: &str) -> &str {
    match rfind_unquoted(mailbox, '<') {
        Some(open) => {
            let inside = &mailbox[open + 1..];
            inside.split('>').next().unwrap_or(inside).trim()
        }
        None => mailbox.trim(),
    }
}

/// A local part written as a quoted string (`"root"`) without its quotes.
fn unquote(local: &str) -> String {
    match local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::new();
            let mut escaped = false;
            for c in inner.chars() {
                if escaped || c != '\\' {
                    out.push(c);
                    escaped = false;
                } else {
                    escaped = true;
                }
            }
            out
        }
        None => local.to_owned(),
    }
}

/// One item of a list, without RFC 5322 group syntax around it: the
/// `team:` label before a group's first member and the `;` after its last.
fn without_group_syntax(item: &str) -> &str {
    let item = item.trim().trim_end_matches(';').trim_end();
    match find_unquoted(item, ':') {
        Some(colon) if !item[..colon].contains(['<', '@']) => item[colon + 1..].trim(),
        _ => item,
    }
}

/// The byte index of the first `wanted` outside a quoted string.
fn find_unquoted(text: &str, wanted: char) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ if c == wanted && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// The byte index of the last `wanted` outside a quoted string.
pub fn rfind_unquoted(text: &str, wanted: char) -> Option<usize> {
    let mut found = None;
    let mut rest = 0;
    while let Some(i) = find_unquoted(&text[rest..], wanted) {
        found = Some(rest + i);
        rest += i + wanted.len_utf8();
    }
    found
}

/// Keeps the first of each address, in linear time (a `-t` message may
/// name tens of thousands). Two addresses are the same when their domains
/// differ only in ASCII case: a local part is case-sensitive (RFC 5321
/// 2.4), as composition treats it too.
pub fn dedup(list: &mut Vec<String>) {
    let mut seen: HashSet<String> = HashSet::with_capacity(list.len());
    list.retain(|a| seen.insert(crate::message::address_key(a)));
}

/// Removes `(comments)` outside quotes; returns the rest and the first
/// comment's text (cron's `root (Cron Daemon)` carries the name there).
pub fn strip_comments(value: &str) -> (String, Option<String>) {
    let (mut out, mut comment, mut first) = (String::new(), String::new(), None);
    let (mut depth, mut quoted, mut escaped) = (0u32, false, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth > 0 {
                comment.push(c)
            } else {
                out.push(c)
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => {
                if depth > 0 {
                    comment.push(c);
                }
                depth += 1;
            }
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    first.get_or_insert_with(|| comment.trim().to_owned());
                    comment.clear();
                } else {
                    comment.push(c);
                }
            }
            _ if depth > 0 => comment.push(c),
            _ => out.push(c),
        }
    }
    (out, first.filter(|c| !c.is_empty()))
}

/// `text` as an RFC 5322 quoted string.
pub fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases() -> BTreeMap<String, String> {
        [(
            "root".to_owned(),
            "admin@example.com, ops@example.com".to_owned(),
        )]
        .into()
    }

    #[test]
    fn recipients_and_aliases() {
        let aliases = aliases();
        assert_eq!(
            resolve_recipient("root", &aliases).unwrap(),
            ["admin@example.com", "ops@example.com"]
        );
        assert_eq!(
            resolve_recipient("Zoë <z@example.com>", &aliases).unwrap(),
            ["z@example.com"]
        );
        assert!(
            resolve_recipient("undisclosed-recipients:;", &aliases)
                .unwrap()
                .is_empty()
        );
        assert!(resolve_recipient("nobody", &aliases).is_err());
        let with_default: BTreeMap<String, String> =
            [("default".to_owned(), "all@example.com".to_owned())].into();
        assert_eq!(
            resolve_recipient("www-data", &with_default).unwrap(),
            ["all@example.com"]
        );
    }

    #[test]
    fn aliases_match_the_address_of_a_named_mailbox() {
        let mut aliases = aliases();
        aliases.insert("default".into(), "fallback@example.org".into());
        for item in [
            "Root <root>",
            "<root>",
            "\"Doe, <J>\" <root>",
            "root (Cron Daemon)",
            "Admin (boss) <root> (x)",
            "ROOT",
            "Root <\"root\">",
            "team: Root <root>;",
        ] {
            assert_eq!(
                resolve_recipient(item, &aliases).unwrap(),
                ["admin@example.com", "ops@example.com"],
                "{item}"
            );
        }
        aliases.insert("Root".into(), "exact@example.com".into());
        assert_eq!(
            resolve_recipient("Root", &aliases).unwrap(),
            ["exact@example.com"],
            "an exact match wins"
        );
        assert!(resolve_recipient("<>", &aliases).is_err());
    }

    #[test]
    fn dedup_keeps_the_first_of_each_in_linear_time() {
        let mut list: Vec<String> = ["a@x.example", "a@X.EXAMPLE", "A@x.example", "a@x.example"]
            .map(String::from)
            .to_vec();
        dedup(&mut list);
        assert_eq!(
            list,
            ["a@x.example", "A@x.example"],
            "the local part keeps its case"
        );
        // Quadratic work on 60,000 addresses takes far longer than this.
        let mut many: Vec<String> = (0..60_000).map(|i| format!("u{i}@example.com")).collect();
        many.push("u7@EXAMPLE.COM".into());
        let started = std::time::Instant::now();
        dedup(&mut many);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(many.len(), 60_000);
    }

    #[test]
    fn comments_are_stripped() {
        assert_eq!(
            strip_comments("root (Cron Daemon)"),
            ("root ".to_owned(), Some("Cron Daemon".to_owned()))
        );
        assert_eq!(strip_comments("\"a (b)\" <x@y>").0, "\"a (b)\" <x@y>");
    }
}
