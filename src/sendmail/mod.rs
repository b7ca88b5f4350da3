//! The sendmail personality: a complete message on stdin, as cron, git,
//! mutt, mdadm and PHP's mail() hand it over.
//!
//! Owns sendmail's options (the ones real callers pass are accepted and
//! the meaningless ones ignored), reading the message (LF or CRLF, the
//! lone-dot rule unless `-i`), recipients from arguments or headers (`-t`),
//! local-name aliases, and the header edits a submission server needs:
//! Bcc removed, From qualified, Date and Message-ID added when missing.
//! Delivery itself is `send::submit`, as for every other mode.
//!
//! `compose` is the whole path from the bytes on stdin to the message and
//! envelope; `input.rs` spools stdin and reads it back in lines and
//! pieces, `draft.rs` reads the message and repairs it for the wire
//! (where the header block ends, NUL, bare CR), `lines.rs` keeps lines
//! within 998 octets, `address.rs` resolves recipients and aliases, and
//! `props.rs` holds the property tests of `compose`. The message is never
//! held whole: stdin goes to a spool (memory up to 1 MiB, then an unnamed
//! temporary file), and the message composed from it to another.

mod address;
mod draft;
mod input;
mod lines;

use std::collections::{BTreeMap, HashSet};
use std::ops::DerefMut;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Result;
use clap::Parser;
use lettre::message::{Mailbox, header};

use self::address::{dedup, resolve_recipient};
use self::draft::{Draft, Head, format_header};
use self::input::Raw;
use crate::cli::ServerArgs;
use crate::config::{FromPolicy, Settings};
use crate::deliver::Outgoing;
use crate::exit::{Exit, Failure};
use crate::message;
use crate::message::{Composed, address_key};
use crate::send;

/// sendmail's command line, as far as callers use it.
#[derive(Debug, Parser)]
#[command(
    name = "sendmail",
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true,
    about = "mailsend's sendmail personality"
)]
struct SendmailArgs {
    /// Read recipients from To, Cc and Bcc (minus those given as arguments)
    #[arg(short = 't')]
    read_recipients: bool,
    /// A line with a single dot does not end the message
    #[arg(short = 'i')]
    ignore_dots: bool,
    /// Envelope sender
    #[arg(short = 'f', visible_short_alias = 'r', value_name = "ADDR")]
    sender: Option<String>,
    /// Full name for a From header that mailsend has to add
    #[arg(short = 'F', value_name = "NAME")]
    full_name: Option<String>,
    /// sendmail -oX options: -oi (and any -oi..., as in Postfix) is -i; the others (-oem, -odi, ...) are ignored
    #[arg(short = 'o', value_name = "OPTION")]
    options: Vec<String>,
    /// -O option=value: IgnoreDots[=true] is -i; the others are ignored
    #[arg(short = 'O', value_name = "OPTION")]
    long_options: Vec<String>,
    /// Body type (7BIT, 8BITMIME): ignored, 8-bit bodies are announced when the server allows
    #[arg(short = 'B', value_name = "TYPE")]
    body_type: Option<String>,
    /// Mode: only -bm (deliver mail, the default) is supported
    #[arg(short = 'b', value_name = "MODE")]
    mode: Option<String>,
    /// DSN options: ignored
    #[arg(short = 'N', value_name = "DSN")]
    dsn: Option<String>,
    /// DSN return: ignored
    #[arg(short = 'R', value_name = "RET")]
    dsn_return: Option<String>,
    /// DSN envelope id: ignored
    #[arg(short = 'V', value_name = "ENVID")]
    dsn_envid: Option<String>,
    /// Hop count: ignored
    #[arg(short = 'h', value_name = "N")]
    hops: Option<String>,
    /// Initial submission: ignored
    #[arg(short = 'U')]
    initial_submission: bool,
    /// Print the SMTP transcript on stderr
    #[arg(short = 'v')]
    verbose: bool,
    /// mailsend config file
    #[arg(short = 'C', value_name = "PATH")]
    config: Option<PathBuf>,
    /// mailsend config-file account
    #[arg(long, value_name = "NAME")]
    account: Option<String>,
    /// DKIM private key (PEM)
    #[arg(long, value_name = "FILE")]
    dkim_key: Option<PathBuf>,
    /// DKIM selector
    #[arg(long, value_name = "SELECTOR")]
    dkim_selector: Option<String>,
    /// DKIM signing domain
    #[arg(long, value_name = "DOMAIN")]
    dkim_domain: Option<String>,
    /// Recipients
    recipients: Vec<String>,
}

/// Runs sendmail mode with `args` (everything after the program name).
pub fn run(args: &[String]) -> Result<Exit> {
    let opts = SendmailArgs::try_parse_from(args).map_err(|e| {
        let text = e.to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or("invalid arguments")
            .trim_start_matches("error: ");
        Failure::usage(format!("sendmail mode: {first}"))
    })?;
    if let Some(mode) = opts.mode.as_deref().filter(|m| *m != "m") {
        return Err(Failure::usage(format!(
            "sendmail mode: -b{mode} is not supported (only -bm)"
        ))
        .into());
    }
    let sender = opts
        .sender
        .as_deref()
        .filter(|s| !s.is_empty() && *s != "<>");
    let qualified_sender = sender.filter(|s| s.contains('@'));

    let server = ServerArgs {
        config: opts.config.clone(),
        account: opts.account.clone(),
        ignore_cwd_dotenv: true,
        dkim: crate::cli::DkimArgs {
            dkim_key: opts.dkim_key.clone(),
            dkim_selector: opts.dkim_selector.clone(),
            dkim_domain: opts.dkim_domain.clone(),
        },
        ..ServerArgs::default()
    };
    let settings = Settings::resolve(&server, qualified_sender)?;
    let signer = crate::dkim::Signer::from_settings(settings.dkim()?)?;

    let input = Raw::read(&mut std::io::stdin().lock())?;
    let job = Job {
        ignore_dots: opts.ignore_dots
            || opts.options.iter().any(|o| o.starts_with('i'))
            || opts.long_options.iter().any(|o| ignore_dots_option(o)),
        read_recipients: opts.read_recipients,
        arguments: &opts.recipients,
        aliases: &settings.aliases,
        skip_empty: settings.skip_empty,
        account_from: settings.from.as_deref(),
        sender: qualified_sender,
        from_policy: settings.set_from_header,
        full_name: opts.full_name.as_deref(),
    };
    match compose(&input, &job)? {
        Some(mut outgoing) => {
            if let Some(signer) = &signer {
                signer.sign_outgoing(&mut outgoing)?;
            }
            send::submit(&settings, &outgoing, false, opts.verbose)
        }
        None => Ok(Exit::Ok),
    }
}

/// Whether `-O option` is sendmail's long form of `-i`: `IgnoreDots`
/// (any case) alone or with a true value (sendmail reads a value starting
/// with `t` or `y` as true, in any case).
fn ignore_dots_option(option: &str) -> bool {
    let (name, value) = option.split_once('=').unwrap_or((option, ""));
    name.trim().eq_ignore_ascii_case("ignoredots")
        && (value.is_empty() || value.trim_start().starts_with(['t', 'T', 'y', 'Y']))
}

/// Everything but the message that decides what sendmail mode sends.
struct Job<'a> {
    /// `-i`: a lone `.` line does not end the message.
    ignore_dots: bool,
    /// `-t`: recipients come from the header.
    read_recipients: bool,
    /// Recipient arguments, each possibly a comma-separated list.
    arguments: &'a [String],
    aliases: &'a BTreeMap<String, String>,
    /// Send nothing when the body is only white space.
    skip_empty: bool,
    /// The account's `from`, unparsed.
    account_from: Option<&'a str>,
    /// `-f` when it has a domain.
    sender: Option<&'a str>,
    from_policy: FromPolicy,
    /// `-F`.
    full_name: Option<&'a str>,
}

/// A message read from stdin: its header fields, and a body that goes out
/// after them.
trait Message: DerefMut<Target = Head> {
    /// Whether the body is only white space.
    fn body_is_empty(&self) -> bool;
    /// The message for the wire (see `draft::Draft::finish`).
    fn finish(self) -> Result<Composed>;
}

/// Turns the bytes read on stdin into the message and envelope to submit:
/// recipients resolved, Bcc and Resent-Bcc removed, From qualified, Date
/// and Message-ID added, every line fit for the wire. `None` when
/// `skip_empty` applies.
fn compose(input: &Raw, job: &Job) -> Result<Option<Outgoing>> {
    let draft = Draft::parse(input, job.ignore_dots)?;
    compose_draft(draft, job, SystemTime::now(), message::new_message_id)
}

/// `compose` from the message read, with `now` for a missing Date and
/// `new_id` making a missing Message-ID.
fn compose_draft(
    mut draft: impl Message,
    job: &Job,
    now: SystemTime,
    new_id: impl Fn(&Mailbox) -> String,
) -> Result<Option<Outgoing>> {
    if job.skip_empty && draft.body_is_empty() {
        return Ok(None);
    }

    let account_from = match job.account_from {
        Some(f) => Some(message::parse_mailbox("the account's from", f)?),
        None => None,
    };
    let sender_mailbox = match job.sender {
        Some(s) => Some(message::parse_mailbox("-f", s)?),
        None => None,
    };
    // The address a From header is qualified with: the account's, else -f's.
    let Some(from_mailbox) = account_from.or_else(|| sender_mailbox.clone()) else {
        return Err(Failure::config("no sender address for sendmail mode")
            .with_hint("set `from` in the config file account or MAILSEND_FROM, or pass -f ADDR")
            .into());
    };
    let envelope_from = sender_mailbox
        .as_ref()
        .unwrap_or(&from_mailbox)
        .email
        .to_string();

    let recipients = recipients(&draft, job)?;

    draft.remove("bcc");
    draft.remove("resent-bcc");
    draft.fix_from(job.from_policy, &from_mailbox, job.full_name)?;
    if draft.values("date").is_empty() {
        draft.add(&format_header(header::Date::new(now)));
    }
    let message_id = match draft.values("message-id").first() {
        Some(id) => id.trim().to_owned(),
        None => {
            let sender = sender_mailbox.as_ref().unwrap_or(&from_mailbox);
            let id = new_id(sender);
            draft.add(&format!("Message-ID: {id}\r\n"));
            id
        }
    };

    Ok(Some(Outgoing {
        message_id,
        from: envelope_from,
        recipients,
        message: draft.finish()?,
        all_or_nothing: false,
    }))
}

/// The envelope recipients: the arguments; or with `-t` the header's,
/// minus the arguments (sendmail's rule). The header's are those of the
/// newest resent block when one has Resent-To, -Cc or -Bcc (the message
/// is being resent), else To, Cc and Bcc.
fn recipients(draft: &Head, job: &Job) -> Result<Vec<String>> {
    let arguments: Vec<&str> = job
        .arguments
        .iter()
        .flat_map(|r| message::split_list(r))
        .collect();
    let mut recipients = Vec::new();
    if job.read_recipients {
        let mut excluded: HashSet<String> = HashSet::new();
        for item in &arguments {
            for addr in resolve_recipient(item, job.aliases)? {
                excluded.insert(address_key(&addr));
            }
        }
        let values = draft.newest_resent_recipients().unwrap_or_else(|| {
            ["to", "cc", "bcc"]
                .iter()
                .flat_map(|name| draft.values(name))
                .collect()
        });
        for value in &values {
            for item in message::split_list(value) {
                for addr in resolve_recipient(item, job.aliases)? {
                    if !excluded.contains(&address_key(&addr)) {
                        recipients.push(addr);
                    }
                }
            }
        }
    } else {
        for item in arguments {
            recipients.extend(resolve_recipient(item, job.aliases)?);
        }
    }
    dedup(&mut recipients);
    if recipients.is_empty() {
        return Err(Failure::usage(
            "sendmail mode: no recipients (give addresses, or -t with To/Cc/Bcc headers)",
        )
        .into());
    }
    Ok(recipients)
}

#[cfg(test)]
mod props;
