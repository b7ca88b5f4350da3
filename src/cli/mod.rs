//! Command-line flags, as clap sees them. Nothing here reads the
//! environment or files: `config.rs` turns these raw values into `Settings`.

use std::path::PathBuf;

use clap::{ArgMatches, Args, FromArgMatches, Parser, Subcommand};

mod values;
pub use values::{Rate, Shard};

/// Send an email from the shell, a pipe or cron, over verified TLS.
///
/// The body comes from --body, --body-file, or standard input (typed at a
/// terminal, piped, or empty under cron). Server settings come from flags,
/// MAILSEND_* environment variables, a .env file or a config file account.
#[derive(Debug, Parser)]
#[command(
    name = "mailsend",
    version,
    about,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub send: SendArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Act as sendmail: read a whole RFC 5322 message on stdin (same as
    /// running mailsend under the name `sendmail`)
    #[command(disable_help_flag = true)]
    Sendmail {
        /// sendmail options and recipients, e.g. `-t -i` or `-f ADDR RCPT...`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Inspect the configuration
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Messages kept for a later retry (see --queue)
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// Print a shell completion script, e.g.
    /// `mailsend completions bash > /etc/bash_completion.d/mailsend`
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `mailsend man | man -l -`
    Man,
    /// Send one personalised message per row of a CSV list (a campaign)
    Bulk(Box<BulkArgs>),
    /// OAuth2 sign-in for sending: login, status, logout, refresh
    Auth {
        #[command(subcommand)]
        action: AuthAction,
    },
    /// Connect as a send would and report what the server offers, its
    /// certificate and whether the login works; sends no mail
    Check(Box<CheckArgs>),
}

/// `mailsend auth`: the account's OAuth2 sign-in (oauth_* keys).
#[derive(Debug, Subcommand)]
pub enum AuthAction {
    /// Sign in once with the provider (browser, or --device) and store the
    /// refresh token privately; later sends renew the access token
    Login {
        /// Use the device-code flow: enter a code on another device
        /// (Microsoft; Google refuses it for mail)
        #[arg(long)]
        device: bool,
        /// Only print the sign-in address, never open a browser
        #[arg(long)]
        no_browser: bool,
        #[command(flatten)]
        location: Location,
    },
    /// Print the provider, scopes and token expiry (never a token); exit
    /// 78 when not signed in
    Status {
        #[command(flatten)]
        location: Location,
    },
    /// Delete the stored tokens, revoking the refresh token where the
    /// provider can
    Logout {
        #[command(flatten)]
        location: Location,
    },
    /// Get a new access token now (checks the stored sign-in still
    /// works), then print the status
    Refresh {
        /// Only when the stored access token is about to run out
        #[arg(long)]
        if_needed: bool,
        #[command(flatten)]
        location: Location,
    },
}

impl AuthAction {
    pub fn location(&self) -> &Location {
        match self {
            AuthAction::Login { location, .. }
            | AuthAction::Status { location }
            | AuthAction::Logout { location }
            | AuthAction::Refresh { location, .. } => location,
        }
    }
}

/// `mailsend check`: the server settings of a send, and how to report.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print one JSON object on stdout
    #[arg(long)]
    pub json: bool,

    /// Print the SMTP transcript on stderr (AUTH exchanges redacted)
    #[arg(short, long)]
    pub verbose: bool,

    #[command(flatten)]
    pub connection: Connection,

    #[command(flatten)]
    pub location: Location,
}

/// Each subcommand takes only the flags that mean something to it: the
/// outbox commands that only look or move files take what locates the
/// outbox (`Location`), flush also what opens a session (`Connection`).
/// Anything else is a usage error (64), not a flag silently ignored.
#[derive(Debug, Subcommand)]
pub enum OutboxAction {
    /// List queued messages
    List {
        #[command(flatten)]
        location: Location,
    },
    /// Print one queued message: its envelope and state, then the message
    Show {
        id: String,
        #[command(flatten)]
        location: Location,
    },
    /// Send what is due; safe to run from cron and concurrently with itself
    Flush {
        /// Try every message now, not only those whose retry time has come
        #[arg(long)]
        all: bool,
        /// Print the SMTP transcript on stderr
        #[arg(short, long)]
        verbose: bool,
        /// Print one JSON object per message on stdout (id, message_id,
        /// status: sent, deferred, failed or error; reply or error), then a
        /// summary object
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: Box<Connection>,
        #[command(flatten)]
        location: Location,
    },
    /// Put a failed message back in the queue, due now
    Retry {
        id: String,
        #[command(flatten)]
        location: Location,
    },
    /// Delete a queued or failed message without sending it
    Drop {
        id: String,
        #[command(flatten)]
        location: Location,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the resolved settings and where each came from (secrets redacted)
    Show {
        #[command(flatten)]
        server: Box<ServerArgs>,
    },
}

/// Flags for sending one composed message.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Recipient; repeatable, comma-separated lists and `Name <addr>` allowed
    #[arg(long, value_name = "ADDRS")]
    pub to: Vec<String>,

    /// Carbon-copy recipient; repeatable, like --to
    #[arg(long, value_name = "ADDRS")]
    pub cc: Vec<String>,

    /// Blind-copy recipient: gets the mail, appears in no header; repeatable
    #[arg(long, value_name = "ADDRS")]
    pub bcc: Vec<String>,

    /// Where replies should go; repeatable
    #[arg(long, value_name = "ADDRS")]
    pub reply_to: Vec<String>,

    /// Subject line (UTF-8 allowed)
    #[arg(short, long)]
    pub subject: Option<String>,

    /// Message text; standard input is then not read
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,

    /// Read the message text from FILE (`-` = standard input)
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,

    /// Add an HTML version from FILE (text + HTML become multipart/alternative)
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Attach a file; repeatable. The content type is guessed from the name
    #[arg(short, long, value_name = "PATH")]
    pub attach: Vec<PathBuf>,

    /// Add an image the HTML shows as <img src="cid:NAME">, NAME being the
    /// file's name (e.g. --inline logo.png, cid:logo.png); repeatable; needs --html
    #[arg(long, value_name = "FILE")]
    pub inline: Vec<PathBuf>,

    /// Attach standard input as a file named NAME (`tar c dir | mailsend
    /// --attach-stdin dir.tar ...`); the text then comes from --body or
    /// --body-file, or is empty
    #[arg(long, value_name = "NAME")]
    pub attach_stdin: Option<String>,

    /// Extra header, `Name: value`; repeatable
    #[arg(long, value_name = "HEADER")]
    pub header: Vec<String>,

    /// Send only if the server accepts every recipient; otherwise nobody gets
    /// it (exit 69 for a permanent refusal, 75 for a temporary one)
    #[arg(long)]
    pub all_or_nothing: bool,

    /// Print the message to stdout and the envelope to stderr; connect nowhere
    #[arg(long)]
    pub dry_run: bool,

    /// Print the result as one JSON object on stdout
    #[arg(long)]
    pub json: bool,

    /// Print the SMTP transcript on stderr (AUTH exchanges redacted)
    #[arg(short, long)]
    pub verbose: bool,

    #[command(flatten)]
    pub server: ServerArgs,
}

/// `mailsend bulk`: a campaign, one message per row of a CSV list. Every
/// text flag but --data, --body-file, --html and --out is a template
/// (`{{ column }}`); --body-file and --html name files holding templates.
#[derive(Debug, Args)]
pub struct BulkArgs {
    /// The list: CSV with a header row naming the columns (the variables)
    #[arg(long, value_name = "FILE", help_heading = "Campaign")]
    pub data: PathBuf,

    /// Subject template, e.g. "Hello {{ name }}"
    #[arg(short, long, value_name = "TEMPLATE", help_heading = "Campaign")]
    pub subject: Option<String>,

    /// Text template
    #[arg(
        long,
        value_name = "TEMPLATE",
        conflicts_with = "body_file",
        help_heading = "Campaign"
    )]
    pub body: Option<String>,

    /// Read the text template from FILE
    #[arg(long, value_name = "FILE", help_heading = "Campaign")]
    pub body_file: Option<PathBuf>,

    /// Read an HTML template from FILE (values are HTML-escaped in it)
    #[arg(long, value_name = "FILE", help_heading = "Campaign")]
    pub html: Option<PathBuf>,

    /// Attachment path template, e.g. "invoices/{{ id }}.pdf"; repeatable.
    /// A path that renders empty attaches nothing to that row
    #[arg(short, long, value_name = "TEMPLATE", help_heading = "Campaign")]
    pub attach: Vec<String>,

    /// Inline image path template (the HTML shows it as cid:FILENAME);
    /// repeatable; needs --html. A path that renders empty adds nothing
    #[arg(long, value_name = "TEMPLATE", help_heading = "Campaign")]
    pub inline: Vec<String>,

    /// Extra header, `Name: value template`; repeatable
    #[arg(long, value_name = "HEADER", help_heading = "Campaign")]
    pub header: Vec<String>,

    /// Recipient template
    #[arg(
        long,
        value_name = "TEMPLATE",
        default_value = "{{ email }}",
        help_heading = "Campaign"
    )]
    pub to: String,

    /// One-click unsubscribe URL template (https), e.g.
    /// "https://example.com/u?id={{ id | urlencode }}"
    #[arg(long, value_name = "URL", help_heading = "Campaign")]
    pub unsubscribe_url: Option<String>,

    /// Address that unsubscribes by mail (a List-Unsubscribe mailto: entry)
    #[arg(long, value_name = "ADDR", help_heading = "Campaign")]
    pub unsubscribe_mailto: Option<String>,

    /// List-Id header, e.g. "News <news.example.com>"
    #[arg(long, value_name = "ID", help_heading = "Campaign")]
    pub list_id: Option<String>,

    /// Connections to use at once
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=100), help_heading = "Campaign")]
    pub concurrency: u32,

    /// Cap on the whole run, all connections together: 10/s, 600/min, 5000/h
    #[arg(long, value_name = "RATE", help_heading = "Campaign")]
    pub rate: Option<Rate>,

    /// Where each row's outcome is recorded [default: the list's path + .journal, e.g. list.csv.journal]
    #[arg(long, value_name = "FILE", help_heading = "Campaign")]
    pub journal: Option<PathBuf>,

    /// Send only the next N rows not sent yet
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Campaign")]
    pub limit: Option<u64>,

    /// Take only the rows whose number modulo N is K-1 (split a list over N hosts)
    #[arg(long, value_name = "K/N", help_heading = "Campaign")]
    pub shard: Option<Shard>,

    /// Check every row and print the first message (or, with --out, write
    /// them all); connect nowhere
    #[arg(long, help_heading = "Campaign")]
    pub dry_run: bool,

    /// With --dry-run: write one .eml file per row into DIR (00001.eml, ...)
    #[arg(
        long,
        value_name = "DIR",
        requires = "dry_run",
        help_heading = "Campaign"
    )]
    pub out: Option<PathBuf>,

    /// Do not ask for confirmation at a terminal
    #[arg(long, short = 'y', help_heading = "Campaign")]
    pub yes: bool,

    /// Print one JSON object per row on stdout (JSON Lines), then a summary
    #[arg(long, help_heading = "Campaign")]
    pub json: bool,

    /// Print the SMTP transcript on stderr (AUTH exchanges redacted)
    #[arg(short, long)]
    pub verbose: bool,

    #[command(flatten)]
    pub server: ServerArgs,
}

/// What a message does beyond the server: sender, empty bodies, log,
/// retries, queueing. Each also has a MAILSEND_* variable or config key.
#[derive(Debug, Args, Default, Clone)]
pub struct Delivery {
    /// Sender, `Name <addr>` allowed [env: MAILSEND_FROM]
    #[arg(long, value_name = "ADDR")]
    pub from: Option<String>,

    /// Send nothing (and exit 0) when the body is empty
    #[arg(long)]
    pub skip_empty: bool,

    /// Append one line per message to FILE (`syslog` for the system log)
    /// [env: MAILSEND_LOG]
    #[arg(long, value_name = "FILE")]
    pub log: Option<String>,

    /// Retry temporary failures with backoff for up to DURATION, e.g. 10m
    /// [env: MAILSEND_RETRY_FOR] [default: 0s; 10m for a campaign]
    #[arg(long, value_name = "DURATION")]
    pub retry_for: Option<String>,

    /// Keep a message that cannot be sent yet in the outbox (exit 0, "queued as ID")
    #[arg(long)]
    pub queue: bool,

    #[command(flatten)]
    pub dkim: DkimArgs,
}

/// DKIM signing: each also a MAILSEND_* variable and an account key.
#[derive(Debug, Args, Default, Clone)]
pub struct DkimArgs {
    /// Sign with DKIM using this PEM private key (RSA 2048+ or Ed25519,
    /// readable by you only) [env: MAILSEND_DKIM_KEY]
    #[arg(long, value_name = "FILE", help_heading = "DKIM")]
    pub dkim_key: Option<PathBuf>,

    /// DKIM selector: the key is published at SELECTOR._domainkey.DOMAIN
    /// [env: MAILSEND_DKIM_SELECTOR]
    #[arg(long, value_name = "SELECTOR", help_heading = "DKIM")]
    pub dkim_selector: Option<String>,

    /// DKIM signing domain (d=) [env: MAILSEND_DKIM_DOMAIN] [default: the
    /// From address's domain]
    #[arg(long, value_name = "DOMAIN", help_heading = "DKIM")]
    pub dkim_domain: Option<String>,
}

/// The server and how to reach it.
#[derive(Debug, Args, Default, Clone)]
pub struct Connection {
    /// SMTP server host name [env: MAILSEND_HOST]
    #[arg(long, help_heading = "Server")]
    pub host: Option<String>,

    /// Port [env: MAILSEND_PORT] [default: 587, 465 for tls, 25 for none]
    #[arg(long, help_heading = "Server")]
    pub port: Option<String>,

    /// starttls (required), tls (implicit, port 465) or none (plain, no AUTH)
    /// [env: MAILSEND_TLS] [default: starttls]
    #[arg(long, value_name = "MODE", help_heading = "Server")]
    pub tls: Option<String>,

    /// Login name [env: MAILSEND_USER]
    #[arg(long, help_heading = "Server")]
    pub user: Option<String>,

    /// Command whose output is the password [env: MAILSEND_PASSWORD_COMMAND]
    #[arg(long, value_name = "CMD", help_heading = "Server")]
    pub password_command: Option<String>,

    /// auto, plain, login, xoauth2 or oauthbearer [env: MAILSEND_AUTH]
    /// [default: auto]
    #[arg(long, value_name = "MECHANISM", help_heading = "Server")]
    pub auth: Option<String>,

    /// Command whose output is an OAuth2 access token
    /// [env: MAILSEND_OAUTH_TOKEN_COMMAND]
    #[arg(long, value_name = "CMD", help_heading = "Server")]
    pub oauth_token_command: Option<String>,

    /// Extra PEM CA bundle to trust [env: MAILSEND_CA_FILE]
    #[arg(long, value_name = "FILE", help_heading = "Server")]
    pub ca_file: Option<PathBuf>,

    /// Bound on connect, TLS handshake and each SMTP command, e.g. 30s
    /// [env: MAILSEND_TIMEOUT] [default: 30s]
    #[arg(long, value_name = "DURATION", help_heading = "Server")]
    pub timeout: Option<String>,

    /// TLS client certificate to present, PEM (may hold the key too)
    /// [env: MAILSEND_CLIENT_CERT]
    #[arg(long, value_name = "FILE", help_heading = "Server")]
    pub client_cert: Option<PathBuf>,

    /// Private key of --client-cert, PEM, readable by its owner only
    /// [env: MAILSEND_CLIENT_KEY]
    #[arg(long, value_name = "FILE", help_heading = "Server")]
    pub client_key: Option<PathBuf>,
}

/// Where the settings are: the account, the config file, the .env file.
#[derive(Debug, Args, Default, Clone)]
pub struct Location {
    /// Account from the config file [env: MAILSEND_ACCOUNT] [default: the one
    /// marked `default = true`]
    #[arg(long, value_name = "NAME", help_heading = "Configuration")]
    pub account: Option<String>,

    /// Config file [env: MAILSEND_CONFIG] [default:
    /// $XDG_CONFIG_HOME/mailsend/config.toml, ~/.config/mailsend/config.toml,
    /// /etc/mailsend/config.toml]
    #[arg(long, value_name = "PATH", help_heading = "Configuration")]
    pub config: Option<PathBuf>,

    /// Read settings from this .env file instead of ./.env
    #[arg(long, value_name = "PATH", help_heading = "Configuration")]
    pub env_file: Option<PathBuf>,
}

/// Every setting a flag can give, as `config.rs` reads them: the three
/// groups above, flat. Sending and `config show` take them all; other
/// subcommands take only their groups and convert (see `from_parts`).
/// Paths stay `PathBuf` from the command line on: they need not be UTF-8.
#[derive(Debug, Default, Clone)]
pub struct ServerArgs {
    pub from: Option<String>,
    pub skip_empty: bool,
    pub log: Option<String>,
    pub retry_for: Option<String>,
    pub queue: bool,
    pub dkim: DkimArgs,
    pub host: Option<String>,
    pub port: Option<String>,
    pub tls: Option<String>,
    pub user: Option<String>,
    pub password_command: Option<String>,
    pub auth: Option<String>,
    pub oauth_token_command: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub account: Option<String>,
    pub config: Option<PathBuf>,
    pub env_file: Option<PathBuf>,
    /// Ignore ./.env: sendmail mode runs in whatever directory its caller
    /// (git, PHP, cron) happens to be in.
    pub ignore_cwd_dotenv: bool,
}

impl ServerArgs {
    /// The flat settings from the groups a subcommand took; a group it
    /// does not take is empty.
    pub fn from_parts(delivery: Delivery, connection: Connection, location: Location) -> Self {
        let Delivery {
            from,
            skip_empty,
            log,
            retry_for,
            queue,
            dkim,
        } = delivery;
        let Connection {
            host,
            port,
            tls,
            user,
            password_command,
            auth,
            oauth_token_command,
            ca_file,
            timeout,
            client_cert,
            client_key,
        } = connection;
        let Location {
            account,
            config,
            env_file,
        } = location;
        ServerArgs {
            from,
            skip_empty,
            log,
            retry_for,
            queue,
            dkim,
            host,
            port,
            tls,
            user,
            password_command,
            auth,
            oauth_token_command,
            ca_file,
            timeout,
            client_cert,
            client_key,
            account,
            config,
            env_file,
            ignore_cwd_dotenv: false,
        }
    }
}

impl ServerArgs {
    fn into_parts(self) -> (Delivery, Connection, Location) {
        (
            Delivery {
                from: self.from,
                skip_empty: self.skip_empty,
                log: self.log,
                retry_for: self.retry_for,
                queue: self.queue,
                dkim: self.dkim,
            },
            Connection {
                host: self.host,
                port: self.port,
                tls: self.tls,
                user: self.user,
                password_command: self.password_command,
                auth: self.auth,
                oauth_token_command: self.oauth_token_command,
                ca_file: self.ca_file,
                timeout: self.timeout,
                client_cert: self.client_cert,
                client_key: self.client_key,
            },
            Location {
                account: self.account,
                config: self.config,
                env_file: self.env_file,
            },
        )
    }
}

impl From<Location> for ServerArgs {
    fn from(location: Location) -> Self {
        ServerArgs::from_parts(Delivery::default(), Connection::default(), location)
    }
}

/// `ServerArgs` as clap sees it: the three groups, in this order.
impl FromArgMatches for ServerArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(ServerArgs::from_parts(
            Delivery::from_arg_matches(matches)?,
            Connection::from_arg_matches(matches)?,
            Location::from_arg_matches(matches)?,
        ))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        let (mut delivery, mut connection, mut location) = self.clone().into_parts();
        delivery.update_from_arg_matches(matches)?;
        connection.update_from_arg_matches(matches)?;
        location.update_from_arg_matches(matches)?;
        *self = ServerArgs {
            ignore_cwd_dotenv: self.ignore_cwd_dotenv,
            ..ServerArgs::from_parts(delivery, connection, location)
        };
        Ok(())
    }
}

impl Args for ServerArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        Location::augment_args(Connection::augment_args(Delivery::augment_args(cmd)))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Location::augment_args_for_update(Connection::augment_args_for_update(
            Delivery::augment_args_for_update(cmd),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn server_args_round_trip_through_clap() {
        let cli = Cli::parse_from([
            "mailsend",
            "--from",
            "f@example.com",
            "--queue",
            "--host",
            "h.example.com",
            "--ca-file",
            "ca.pem",
            "--env-file",
            "e.env",
        ]);
        let s = cli.send.server;
        assert_eq!(s.from.as_deref(), Some("f@example.com"));
        assert!(s.queue && !s.skip_empty);
        assert_eq!(s.host.as_deref(), Some("h.example.com"));
        assert_eq!(s.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(s.env_file, Some(PathBuf::from("e.env")));

        let mut s = ServerArgs {
            ignore_cwd_dotenv: true,
            host: Some("old".into()),
            ..ServerArgs::default()
        };
        let matches = <ServerArgs as Args>::augment_args(clap::Command::new("t"))
            .get_matches_from(["t", "--port", "2525"]);
        s.update_from_arg_matches(&matches).unwrap();
        assert!(s.ignore_cwd_dotenv);
        assert_eq!(s.host.as_deref(), Some("old"));
        assert_eq!(s.port.as_deref(), Some("2525"));
    }
}
