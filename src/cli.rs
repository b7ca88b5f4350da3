//! Command-line flags, as clap sees them. Nothing here reads the
//! environment or files: `config.rs` turns these raw values into `Settings`.

use std::path::PathBuf;

use clap::Parser;

/// Send an email from the shell, a pipe or cron, over verified TLS.
///
/// The body comes from --body, --body-file, or standard input (typed at a
/// terminal, piped, or empty under cron). Server settings come from flags,
/// MAILSEND_* environment variables or a .env file.
#[derive(Debug, Parser)]
#[command(name = "mailsend", version, about, max_term_width = 100)]
pub struct Cli {
    /// Recipient; repeatable, comma-separated lists and `Name <addr>` allowed
    #[arg(long, value_name = "ADDRS")]
    pub to: Vec<String>,

    /// Carbon-copy recipient; repeatable, like --to
    #[arg(long, value_name = "ADDRS")]
    pub cc: Vec<String>,

    /// Blind-copy recipient: gets the mail, appears in no header; repeatable
    #[arg(long, value_name = "ADDRS")]
    pub bcc: Vec<String>,

    /// Sender, `Name <addr>` allowed [env: MAILSEND_FROM]
    #[arg(long, value_name = "ADDR")]
    pub from: Option<String>,

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

    /// Extra header, `Name: value`; repeatable
    #[arg(long, value_name = "HEADER")]
    pub header: Vec<String>,

    /// Send nothing (and exit 0) when the body is empty
    #[arg(long)]
    pub skip_empty: bool,

    /// Print the message to stdout and the envelope to stderr; connect nowhere
    #[arg(long)]
    pub dry_run: bool,

    /// Print the result as one JSON object on stdout
    #[arg(long)]
    pub json: bool,

    /// Print the SMTP transcript on stderr (AUTH exchanges redacted)
    #[arg(short, long)]
    pub verbose: bool,

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

    /// Extra PEM CA bundle to trust [env: MAILSEND_CA_FILE]
    #[arg(long, value_name = "FILE", help_heading = "Server")]
    pub ca_file: Option<PathBuf>,

    /// Bound on connect, TLS handshake and each SMTP command, e.g. 30s
    /// [env: MAILSEND_TIMEOUT] [default: 30s]
    #[arg(long, value_name = "DURATION", help_heading = "Server")]
    pub timeout: Option<String>,

    /// Read settings from this .env file instead of ./.env
    #[arg(long, value_name = "PATH", help_heading = "Server")]
    pub env_file: Option<PathBuf>,
}
