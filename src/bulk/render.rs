//! A row → a validated `message::Draft`: the campaign's templates
//! rendered with the row's values, then checked exactly as a single
//! send checks its flags (addresses, header values, attachment files),
//! plus the list headers of RFC 2369 / RFC 8058 / RFC 2919.
//!
//! [`Campaign::new`] checks what does not depend on a row (template
//! syntax, header names, an http unsubscribe URL) and fails the run;
//! [`Campaign::render`] fails only its row, with a [`Problem`] that says
//! which flag (and which columns) made it bad.

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Result;
use lettre::message::Mailbox;

use super::data::{Columns, Row};
use super::template::{Context, Escape, Templates};
use crate::exit::{self, Exit, Failure};
use crate::message::{self, Attachment, Draft};

/// What the campaign is made of, as the user gave it: template sources.
#[derive(Debug, Default, Clone)]
pub struct Spec {
    pub subject: Option<String>,
    /// The text template and the flag it came from (`--body` or `--body-file`).
    pub text: Option<(String, &'static str)>,
    pub html: Option<String>,
    pub to: String,
    pub attach: Vec<String>,
    /// `--inline` path templates.
    pub inline: Vec<String>,
    /// `Name: value template`, as given to `--header`.
    pub headers: Vec<String>,
    pub unsubscribe_url: Option<String>,
    pub unsubscribe_mailto: Option<String>,
    pub list_id: Option<String>,
}

impl Spec {
    /// A fingerprint of every template, for the journal: a row settled
    /// with other templates is noticed on the next run.
    pub fn fingerprint(&self) -> String {
        let text = self.text.as_ref().map(|(t, _)| t.as_str());
        let parts = [
            self.subject.as_deref(),
            text,
            self.html.as_deref(),
            Some(self.to.as_str()),
            self.unsubscribe_url.as_deref(),
            self.unsubscribe_mailto.as_deref(),
            self.list_id.as_deref(),
        ];
        let all = parts
            .iter()
            .map(|p| p.unwrap_or("\u{0}none"))
            .chain(["--attach"])
            .chain(self.attach.iter().map(String::as_str))
            .chain(["--header"])
            .chain(self.headers.iter().map(String::as_str))
            // Only when used: journals of campaigns without it keep their
            // fingerprint.
            .chain((!self.inline.is_empty()).then_some("--inline"))
            .chain(self.inline.iter().map(String::as_str));
        format!("{:016x}", super::journal::fingerprint(all))
    }
}

/// Why a row cannot be sent: the code it would exit with on its own
/// (65, or 66 for a missing attachment) and one line naming the flag and
/// the columns behind the bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub exit: Exit,
    pub message: String,
}

impl Problem {
    fn data(message: String) -> Problem {
        Problem {
            exit: Exit::DataErr,
            message,
        }
    }

    fn from_error(err: anyhow::Error) -> Problem {
        Problem {
            exit: exit::code_for(&err),
            message: format!("{err:#}"),
        }
    }
}

/// The campaign's templates, compiled once, and the fixed parts of every
/// message.
pub struct Campaign {
    /// How many recipients `--to` makes of values without address syntax
    /// (`None`: a lone variable, whose column may hold a list; `Err`: the
    /// template fails on such values), worked out once for every row.
    to_room: Result<Option<usize>, String>,
    templates: Templates,
    from: Mailbox,
    text: Option<&'static str>,
    has_subject: bool,
    has_html: bool,
    attach: Vec<String>,
    /// `--inline` templates' names.
    inline: Vec<String>,
    /// Header name and its template's name.
    headers: Vec<(String, String)>,
    has_url: bool,
    has_mailto: bool,
    has_list_id: bool,
    /// DKIM: every row's message is signed with it.
    pub signer: Option<crate::dkim::Signer>,
    /// The campaign's name (its journal's): each row's Message-ID is made
    /// from it, the row's number and values, so a row sent again is the
    /// same message. None: a fresh Message-ID each time (dry run).
    message_ids: Option<String>,
}

const SUBJECT: &str = "--subject";
const HTML: &str = "--html";
const TO: &str = "--to";
const URL: &str = "--unsubscribe-url";
const MAILTO: &str = "--unsubscribe-mailto";
const LIST_ID: &str = "--list-id";

/// Headers `--header` may not set in a campaign: their flags write them.
const LIST_HEADERS: &[(&str, &str)] = &[
    (
        "list-unsubscribe",
        "--unsubscribe-url or --unsubscribe-mailto",
    ),
    ("list-unsubscribe-post", "--unsubscribe-url"),
    ("list-id", "--list-id"),
];

impl Campaign {
    /// Compiles the templates and checks everything that does not depend
    /// on a row: a syntax error is 65, a header name `--header` may not
    /// use or a plain-http unsubscribe URL is 64.
    pub fn new(spec: &Spec, from: Mailbox, columns: &Arc<Columns>) -> Result<Campaign> {
        let mut templates = Templates::new(columns);
        if spec.text.is_none() && spec.html.is_none() {
            return Err(Failure::usage("a campaign needs --body, --body-file or --html").into());
        }
        if let Some(subject) = &spec.subject {
            templates.add(SUBJECT, subject, Escape::None)?;
        }
        if let Some((text, flag)) = &spec.text {
            templates.add(flag, text, Escape::None)?;
        }
        if let Some(html) = &spec.html {
            templates.add(HTML, html, Escape::Html)?;
        }
        templates.add(TO, &spec.to, Escape::None)?;
        let attach: Vec<String> = match spec.attach.len() {
            1 => vec!["--attach".to_owned()],
            _ => (1..=spec.attach.len())
                .map(|i| format!("--attach #{i}"))
                .collect(),
        };
        for (name, source) in attach.iter().zip(&spec.attach) {
            templates.add(name, source, Escape::None)?;
        }
        if !spec.inline.is_empty() && spec.html.is_none() {
            return Err(Failure::usage(
                "--inline needs --html: inline images are shown by the HTML part",
            )
            .into());
        }
        let inline: Vec<String> = match spec.inline.len() {
            1 => vec!["--inline".to_owned()],
            _ => (1..=spec.inline.len())
                .map(|i| format!("--inline #{i}"))
                .collect(),
        };
        for (name, source) in inline.iter().zip(&spec.inline) {
            templates.add(name, source, Escape::None)?;
        }
        let mut headers = Vec::new();
        for text in &spec.headers {
            let (name, value) = header_template(text)?;
            let template = format!("--header {name}");
            templates.add(&template, value, Escape::None)?;
            headers.push((name.to_owned(), template));
        }
        if let Some(url) = &spec.unsubscribe_url {
            if starts_with_ignore_case(url.trim_start(), "http:") {
                return Err(Failure::usage(format!(
                    "{URL} must be an https URL: one-click unsubscribe (RFC 8058) needs https: '{}'",
                    url.escape_debug()
                ))
                .into());
            }
            templates.add(URL, url, Escape::None)?;
        }
        if let Some(mailto) = &spec.unsubscribe_mailto {
            templates.add(MAILTO, mailto, Escape::None)?;
        }
        if let Some(id) = &spec.list_id {
            templates.add(LIST_ID, id, Escape::None)?;
        }
        // The recipients `--to` makes of values without address syntax:
        // the same for every row (templates see only the values).
        const NEUTRAL: &str = "v";
        let to_room = templates
            .render(
                TO,
                Escape::None,
                &Context::new(&Row::neutral(columns, NEUTRAL)),
            )
            .map(|shape| match shape.trim() == NEUTRAL {
                true => None,
                false => Some(message::split_list(&shape).len()),
            });
        Ok(Campaign {
            to_room,
            templates,
            from,
            text: spec.text.as_ref().map(|(_, flag)| *flag),
            has_subject: spec.subject.is_some(),
            has_html: spec.html.is_some(),
            attach,
            inline,
            headers,
            has_url: spec.unsubscribe_url.is_some(),
            has_mailto: spec.unsubscribe_mailto.is_some(),
            has_list_id: spec.list_id.is_some(),
            signer: None,
            message_ids: None,
        })
    }

    /// From now on a row's Message-ID is the same at every attempt, made
    /// from `campaign` (the journal's name of the campaign).
    pub fn keep_message_ids(&mut self, campaign: &str) {
        self.message_ids = Some(campaign.to_owned());
    }

    /// The Message-ID of `row`: see `keep_message_ids`.
    fn message_id(&self, row: &Row) -> String {
        let fresh = message::new_message_id(&self.from);
        let Some(campaign) = &self.message_ids else {
            return fresh;
        };
        // The domain as a fresh one writes it (A-labels).
        let domain = fresh
            .rsplit_once('@')
            .map_or("localhost.invalid", |(_, d)| d.trim_end_matches('>'));
        let number = row.number.to_string();
        let parts = [campaign.as_str(), number.as_str()];
        let id = super::journal::fingerprint(parts.into_iter().chain(row.values()));
        format!("<{id:016x}.{number}@{domain}>")
    }

    /// Whether recipients get a way to unsubscribe.
    pub fn has_unsubscribe(&self) -> bool {
        self.has_url || self.has_mailto
    }

    /// The message for `row`, validated, with its own Date and Message-ID;
    /// its attachment files are open. Anything wrong is the row's
    /// [`Problem`].
    pub fn render(&self, row: &Row) -> Result<Draft, Problem> {
        let context = Context::new(row);
        let render = |name: &str, escape| {
            self.templates
                .render(name, escape, &context)
                .map_err(Problem::data)
        };
        let to_text = render(TO, Escape::None)?;
        let to = message::parse_mailboxes(&self.label(TO), std::slice::from_ref(&to_text))
            .map_err(Problem::from_error)?;
        if to.is_empty() {
            return Err(Problem::data(format!(
                "{}: no recipient (the value is empty)",
                self.label(TO)
            )));
        }
        self.no_recipient_added(&to_text, to.len())?;
        let subject = match self.has_subject {
            true => {
                let subject = render(SUBJECT, Escape::None)?;
                message::check_header_text(&self.label(SUBJECT), &subject)
                    .map_err(Problem::from_error)?;
                Some(subject)
            }
            false => None,
        };
        let mut headers = Vec::new();
        for (name, template) in &self.headers {
            let value = render(template, Escape::None)?;
            headers.push(self.header(template, name, &value)?);
        }
        if self.has_list_id {
            let value = list_id(&render(LIST_ID, Escape::None)?)
                .map_err(|why| Problem::data(format!("{}: {why}", self.label(LIST_ID))))?;
            headers.push(self.header(LIST_ID, "List-Id", &value)?);
        }
        let mut entries = Vec::new();
        if self.has_url {
            let rendered = render(URL, Escape::None)?;
            let url = https_url(&rendered)
                .map_err(|why| Problem::data(format!("{}: {why}", self.label(URL))))?;
            entries.push(format!("<{url}>"));
        }
        if self.has_mailto {
            entries.push(self.mailto(&render(MAILTO, Escape::None)?)?);
        }
        if !entries.is_empty() {
            let label = match (self.has_url, self.has_mailto) {
                (true, true) => format!("{URL} and {MAILTO}"),
                (true, false) => URL.to_owned(),
                _ => MAILTO.to_owned(),
            };
            headers.push(self.header(&label, "List-Unsubscribe", &entries.join(", "))?);
        }
        if self.has_url {
            headers.push(self.header(
                URL,
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click",
            )?);
        }
        let html = match self.has_html {
            true => Some(render(HTML, Escape::Html)?),
            false => None,
        };
        let text = match self.text {
            Some(flag) => render(flag, Escape::None)?,
            None => String::new(),
        };
        let text = match (text.is_empty(), &html) {
            (true, Some(_)) => None,
            _ => Some(message::normalize_text(text)),
        };
        // A file path template: rendered, checked, opened with `open`. One
        // that renders empty adds nothing to this row (`--attach "{{ file
        // }}"` with an empty field).
        let files = |names: &[String], open: fn(&std::path::Path) -> Result<Attachment>| {
            let mut files: Vec<Attachment> = Vec::new();
            for name in names {
                let path = render(name, Escape::None)?;
                if path.is_empty() {
                    continue;
                }
                if path.chars().any(char::is_control) {
                    return Err(Problem::data(format!(
                        "{}: the path has a line break or control character: '{}'",
                        self.label(name),
                        path.escape_debug()
                    )));
                }
                let file = open(std::path::Path::new(&path)).map_err(|e| {
                    let mut problem = Problem::from_error(e);
                    // A name unfit for a Content-ID comes from the row's data.
                    if problem.exit == Exit::Usage {
                        problem.exit = Exit::DataErr;
                    }
                    problem.message = format!("{}: {}", self.label(name), problem.message);
                    problem
                })?;
                files.push(file);
            }
            Ok(files)
        };
        let attachments = files(&self.attach, Attachment::open)?;
        let inline = files(&self.inline, Attachment::open_inline)?;
        for (k, image) in inline.iter().enumerate() {
            if inline[..k]
                .iter()
                .any(|other| other.filename == image.filename)
            {
                return Err(Problem::data(format!(
                    "--inline: two inline files named {}: their Content-IDs would be the same",
                    image.filename
                )));
            }
        }
        let message_id = self.message_id(row);
        Ok(Draft {
            from: self.from.clone(),
            to,
            cc: Vec::new(),
            bcc: Vec::new(),
            reply_to: Vec::new(),
            subject,
            text,
            html,
            attachments,
            inline,
            headers,
            date: SystemTime::now(),
            message_id,
            boundary: None,
        })
    }

    /// A value may not add recipients to `--to`: with the template
    /// `{{ name }} <{{ email }}>`, a name `Bob <bob@example.net>, Eve`
    /// (a signup form's) would send the row's message to bob too, who
    /// would see the subscriber's address. The recipients may be no more
    /// than the template makes of values without address syntax. A lone
    /// variable (`{{ email }}`) is the list the user put in that column.
    fn no_recipient_added(&self, rendered: &str, count: usize) -> Result<(), Problem> {
        let room = match &self.to_room {
            Ok(None) => return Ok(()),
            Ok(Some(room)) => *room,
            Err(why) => return Err(Problem::data(why.clone())),
        };
        if count <= room {
            return Ok(());
        }
        Err(Problem::data(format!(
            "{}: a value adds recipients: '{}' is {count} addresses where the template makes {room}; \
a value with address syntax (a comma, quote or angle bracket) cannot add a recipient",
            self.label(TO),
            rendered.escape_debug()
        )))
    }

    /// The template's flag and the columns it reads, for error lines:
    /// `--to (column email)`.
    fn label(&self, name: &str) -> String {
        match self.templates.variables(name) {
            [] => name.to_owned(),
            [one] => format!("{name} (column {one})"),
            many => format!("{name} (columns {})", many.join(", ")),
        }
    }

    /// A header line checked as `--header` checks it: no line breaks or
    /// control characters, structured List-* fields ASCII.
    fn header(
        &self,
        template: &str,
        name: &str,
        value: &str,
    ) -> Result<(lettre::message::header::HeaderName, String), Problem> {
        message::parse_header(&format!("{name}: {value}")).map_err(|e| {
            let mut problem = Problem::from_error(e);
            problem.message = format!("{}: {}", self.label(template), problem.message);
            problem
        })
    }

    /// `<mailto:ADDR>` (with a `?subject=...` part if one was given) from
    /// `ADDR`, `mailto:ADDR` or `ADDR?query`.
    fn mailto(&self, value: &str) -> Result<String, Problem> {
        let label = self.label(MAILTO);
        let bad = |why: &str| Problem::data(format!("{label}: {why}: '{}'", value.escape_debug()));
        let value = value.trim();
        let rest = match starts_with_ignore_case(value, "mailto:") {
            true => &value["mailto:".len()..],
            false => value,
        };
        let (address, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let mailbox = message::parse_mailbox(&label, address).map_err(Problem::from_error)?;
        if mailbox.name.is_some() {
            return Err(bad("must be a bare address, without a name"));
        }
        let email = mailbox.email.to_string();
        if !email.is_ascii() {
            return Err(bad("the address must be ASCII"));
        }
        if let Some(query) = query
            && !uri_text(query)
        {
            return Err(bad(
                "the part after '?' must be ASCII without spaces or <>\" (percent-encode it)",
            ));
        }
        Ok(match query {
            Some(q) => format!("<mailto:{email}?{q}>"),
            None => format!("<mailto:{email}>"),
        })
    }
}

/// Splits `--header "Name: value"` into its name (checked now: a name
/// `--header` may not set is 64) and its value template.
fn header_template(text: &str) -> Result<(&str, &str)> {
    let (name, value) = message::split_header(text)?;
    if name.contains("{{") || name.contains("{%") {
        return Err(Failure::usage(format!(
            "--header {name}: only the value of a header is a template, not its name"
        ))
        .into());
    }
    if let Some((_, flag)) = LIST_HEADERS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        return Err(Failure::usage(format!("--header cannot set {name}: use {flag}")).into());
    }
    // The name is checked now, with a stand-in value that any kind of
    // header takes (an address for Sender and the like); the value is
    // checked per row.
    message::parse_header(&format!("{name}: x@example.com"))?;
    Ok((name, value))
}

/// The URL of `--unsubscribe-url`: https, ASCII, nothing that would end
/// the `<...>` around it.
fn https_url(value: &str) -> Result<&str, String> {
    let url = value.trim();
    if starts_with_ignore_case(url, "http:") {
        return Err(format!(
            "must be an https URL: one-click unsubscribe (RFC 8058) needs https: '{}'",
            url.escape_debug()
        ));
    }
    if !starts_with_ignore_case(url, "https://") || url.len() == "https://".len() {
        return Err(format!("must be an https URL: '{}'", url.escape_debug()));
    }
    if !uri_text(url) {
        return Err(format!(
            "must be ASCII without spaces, control characters or <>\" (percent-encode values, e.g. {{{{ id | urlencode }}}}): '{}'",
            url.escape_debug()
        ));
    }
    Ok(url)
}

/// The value of `List-Id` (RFC 2919): `<list-id>` or `phrase <list-id>`;
/// a bare list id gets its angle brackets.
fn list_id(value: &str) -> Result<String, String> {
    let value = value.trim();
    let (phrase, id) = match value.rfind('<') {
        Some(open) if value.ends_with('>') => {
            (value[..open].trim(), &value[open + 1..value.len() - 1])
        }
        Some(_) => {
            return Err(format!(
                "'{}' has a '<' but does not end with '>'",
                value.escape_debug()
            ));
        }
        None => ("", value),
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let valid = id.contains('.')
        && id
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(atext));
    if !valid {
        return Err(format!(
            "the list id must be a dotted name like news.example.com: '{}'",
            id.escape_debug()
        ));
    }
    Ok(match phrase.is_empty() {
        true => format!("<{id}>"),
        false => format!("{phrase} <{id}>"),
    })
}

/// ASCII with no space, control character, or `<`, `>`, `"`.
fn uri_text(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"'))
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            subject: Some("Hello {{ name }}".into()),
            text: Some(("Dear {{ name }},\nyour id is {{ id }}.\n".into(), "--body")),
            to: "{{ email }}".into(),
            ..Spec::default()
        }
    }

    fn campaign(spec: &Spec) -> Result<Campaign> {
        let columns = Columns::of(&["email", "name", "id"]);
        Campaign::new(spec, "Shop <shop@example.com>".parse().unwrap(), &columns)
    }

    fn row(values: &[&str]) -> Row {
        Row::of(&Columns::of(&["email", "name", "id"]), 1, values)
    }

    fn text(draft: Draft) -> String {
        let mut out = Vec::new();
        draft.compose().unwrap().write_to(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_row_becomes_its_own_message() {
        let c = campaign(&spec()).unwrap();
        let a = c
            .render(&row(&["Zoë <z@example.com>", "Zoë", "7"]))
            .unwrap();
        let b = c.render(&row(&["b@example.org", "Bo", "8"])).unwrap();
        assert_ne!(a.message_id, b.message_id);
        assert_eq!(a.recipients(), ["z@example.com"]);
        assert_eq!(b.recipients(), ["b@example.org"]);
        assert_eq!(a.subject.as_deref(), Some("Hello Zoë"));
        assert_eq!(a.text.as_deref(), Some("Dear Zoë,\nyour id is 7.\n"));
        assert!(a.headers.is_empty());
    }

    #[test]
    fn list_headers_exactly() {
        let mut s = spec();
        s.unsubscribe_url = Some("https://example.com/u?id={{ id | urlencode }}".into());
        s.unsubscribe_mailto =
            Some("unsub@example.com?subject=unsubscribe%20{{ id | urlencode }}".into());
        s.list_id = Some("News <news.example.com>".into());
        s.headers = vec!["X-Customer: {{ id }}".into()];
        let c = campaign(&s).unwrap();
        assert!(c.has_unsubscribe());
        let message = text(c.render(&row(&["a@example.com", "A", "7 &8"])).unwrap());
        assert!(
            message.contains(
                "X-Customer: 7 &8\r\n\
List-Id: News <news.example.com>\r\n\
List-Unsubscribe: <https://example.com/u?id=7%20%268>,\r\n <mailto:unsub@example.com?subject=unsubscribe%207%20%268>\r\n\
List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            ) || message.contains(
                "X-Customer: 7 &8\r\n\
List-Id: News <news.example.com>\r\n\
List-Unsubscribe: <https://example.com/u?id=7%20%268>, <mailto:unsub@example.com?subject=unsubscribe%207%20%268>\r\n\
List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            ),
            "{message}"
        );
    }

    #[test]
    fn mailto_alone_has_no_one_click_post() {
        let mut s = spec();
        s.unsubscribe_mailto = Some("mailto:unsub@example.com".into());
        s.list_id = Some("news.example.com".into());
        let c = campaign(&s).unwrap();
        let d = c.render(&row(&["a@example.com", "A", "7"])).unwrap();
        let headers: Vec<(String, String)> = d
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        assert_eq!(
            headers,
            [
                ("List-Id".to_owned(), "<news.example.com>".to_owned()),
                (
                    "List-Unsubscribe".to_owned(),
                    "<mailto:unsub@example.com>".to_owned()
                )
            ]
        );
    }

    #[test]
    fn http_is_refused() {
        let mut s = spec();
        s.unsubscribe_url = Some("http://example.com/u".into());
        let err = campaign(&s).err().unwrap();
        assert_eq!(exit::code_for(&err), Exit::Usage);
        s.unsubscribe_url = Some("{{ id }}".into());
        let c = campaign(&s).unwrap();
        let p = c
            .render(&row(&["a@example.com", "A", "http://x.example/u"]))
            .unwrap_err();
        assert_eq!(p.exit, Exit::DataErr);
        assert!(
            p.message
                .starts_with("--unsubscribe-url (column id): must be an https URL: one-click"),
            "{}",
            p.message
        );
        let p = c
            .render(&row(&["a@example.com", "A", "https://x.example/a b"]))
            .unwrap_err();
        assert!(p.message.contains("without spaces"), "{}", p.message);
    }

    #[test]
    fn bad_values_make_the_row_bad_and_name_the_column() {
        let mut s = spec();
        s.headers = vec!["X-Customer: {{ id }}".into()];
        s.attach = vec!["{{ id }}".into()];
        let c = campaign(&s).unwrap();
        let p = c.render(&row(&["not an address", "A", ""])).unwrap_err();
        assert_eq!(p.exit, Exit::DataErr);
        assert!(
            p.message
                .starts_with("invalid address in --to (column email): 'not an address'"),
            "{}",
            p.message
        );
        let p = c
            .render(&row(&["a@example.com\r\nBcc: x@example.com", "A", ""]))
            .unwrap_err();
        assert!(p.message.contains("--to (column email)"), "{}", p.message);
        let p = c
            .render(&row(&["a@example.com", "A\r\nBcc: x@example.com", ""]))
            .unwrap_err();
        assert!(
            p.message
                .starts_with("--subject (column name) contains a line break"),
            "{}",
            p.message
        );
        let p = c
            .render(&row(&["a@example.com", "A", "1\nBcc: x@example.com"]))
            .unwrap_err();
        assert!(
            p.message.starts_with(
                "--header X-Customer (column id): header X-Customer contains a line break"
            ),
            "{}",
            p.message
        );
        let p = c
            .render(&row(&["a@example.com", "A", "/nonexistent/7.pdf"]))
            .unwrap_err();
        assert_eq!(p.exit, Exit::NoInput);
        assert!(
            p.message
                .starts_with("--attach (column id): cannot read attachment /nonexistent/7.pdf"),
            "{}",
            p.message
        );
        let p = c.render(&row(&["", "A", ""])).unwrap_err();
        assert!(p.message.contains("no recipient"), "{}", p.message);
        // An empty attachment path attaches nothing.
        let d = c.render(&row(&["a@example.com", "A", ""])).unwrap();
        assert!(d.attachments.is_empty());
    }

    #[test]
    fn campaign_wide_mistakes_fail_the_run() {
        let mut s = spec();
        s.headers = vec!["Bcc: {{ email }}".into()];
        assert_eq!(exit::code_for(&campaign(&s).err().unwrap()), Exit::Usage);
        s.headers = vec!["List-Unsubscribe: <https://x.example>".into()];
        let err = campaign(&s).err().unwrap();
        assert!(err.to_string().contains("use --unsubscribe-url"), "{err}");
        s.headers = vec!["X-{{ id }}: 1".into()];
        assert_eq!(exit::code_for(&campaign(&s).err().unwrap()), Exit::Usage);
        s.headers = vec![];
        s.text = None;
        assert_eq!(exit::code_for(&campaign(&s).err().unwrap()), Exit::Usage);
        s.html = Some("<p>{{ name }</p>".into());
        assert_eq!(exit::code_for(&campaign(&s).err().unwrap()), Exit::DataErr);
    }

    #[test]
    fn list_id_forms() {
        assert_eq!(list_id("news.example.com").unwrap(), "<news.example.com>");
        assert_eq!(
            list_id(" News <news.example.com> ").unwrap(),
            "News <news.example.com>"
        );
        assert!(list_id("News <news>").is_err());
        assert!(list_id("<news..example.com>").is_err());
        assert!(list_id("News <news.example.com").is_err());
    }

    #[test]
    fn a_value_cannot_add_recipients_to_the_to_template() {
        // A name from a signup form: `{{ name }} <{{ email }}>` must not
        // send this row's message to a second address (which would see
        // the subscriber's).
        let named = Spec {
            to: "{{ name }} <{{ email }}>".into(),
            ..spec()
        };
        let c = campaign(&named).unwrap();
        for name in [
            "Bob <bob@example.net>, Eve",
            "bob@example.net, Eve",
            "bob@example.net,",
        ] {
            let problem = c
                .render(&row(&["a@example.com", name, "1"]))
                .err()
                .unwrap_or_else(|| panic!("{name:?} was taken"));
            assert!(problem.message.contains("adds recipients"), "{problem:?}");
        }
        let quoted = Spec {
            to: "\"{{ name }}\" <{{ email }}>".into(),
            ..spec()
        };
        let c = campaign(&quoted).unwrap();
        assert!(
            c.render(&row(&["a@example.com", "x\" <c@example.org>, \"y", "1"]))
                .is_err()
        );
        // A name with a comma, quoted by the template: one recipient.
        let draft = c
            .render(&row(&["a@example.com", "Smith, Ann", "1"]))
            .unwrap();
        assert_eq!(draft.recipients(), ["a@example.com"]);
        // Two columns, two recipients; and a lone variable is the list
        // the user put in that column.
        let two = Spec {
            to: "{{ email }}, {{ id }}".into(),
            ..spec()
        };
        let draft = campaign(&two)
            .unwrap()
            .render(&row(&["a@example.com", "A", "b@example.org"]))
            .unwrap();
        assert_eq!(draft.recipients().len(), 2);
        let draft = campaign(&spec())
            .unwrap()
            .render(&row(&["a@example.com, b@example.org", "A", "1"]))
            .unwrap();
        assert_eq!(draft.recipients().len(), 2);
    }

    #[test]
    fn an_address_header_can_be_a_template() {
        // The header's name is checked once with a stand-in value: an
        // address header (Sender) must not be refused for the stand-in.
        let with_sender = Spec {
            headers: vec!["Sender: {{ name }} <{{ email }}>".into()],
            ..spec()
        };
        let c = campaign(&with_sender).unwrap();
        let message = text(c.render(&row(&["a@example.com", "Ann", "1"])).unwrap());
        assert!(
            message.contains("Sender: Ann <a@example.com>\r\n"),
            "{message}"
        );
        // Its value is checked per row.
        assert!(c.render(&row(&["not an address", "Ann", "1"])).is_err());
    }
}
