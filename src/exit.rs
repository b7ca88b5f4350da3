//! Exit codes (sysexits.h) and the one place where an error becomes one.
//!
//! Code below `main` returns `anyhow::Error`s that wrap typed causes:
//! [`Failure`] for everything decided locally (usage, data, config, input
//! files) and [`crate::smtp::SmtpError`] for what the network or the server
//! did. [`code_for`] walks the error chain and picks the code; nothing else
//! in the program chooses an exit status.

use std::process::ExitCode;

use crate::smtp::{Class, SmtpError};

/// The sysexits.h codes mailsend uses (see docs/REFERENCE.md "Exit codes").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    Ok = 0,
    Usage = 64,
    DataErr = 65,
    NoInput = 66,
    NoHost = 68,
    Unavailable = 69,
    TempFail = 75,
    Protocol = 76,
    NoPerm = 77,
    Config = 78,
}

impl From<Exit> for ExitCode {
    fn from(code: Exit) -> Self {
        ExitCode::from(code as u8)
    }
}

/// A locally detected problem with what the user asked for.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    /// An optional second line telling the user how to fix it.
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    pub fn data(message: impl Into<String>) -> Self {
        Self::new(Exit::DataErr, message)
    }

    pub fn no_input(message: impl Into<String>) -> Self {
        Self::new(Exit::NoInput, message)
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(Exit::Config, message)
    }
}

/// The exit code for an error: the first typed cause found in its chain
/// decides; an error nobody typed is a temporary failure, so that a script
/// or an outbox retries rather than drops the message.
pub fn code_for(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return failure.exit;
        }
        if let Some(smtp) = cause.downcast_ref::<SmtpError>() {
            return for_class(smtp.class());
        }
    }
    Exit::TempFail
}

/// The exit code of a class of SMTP failure (docs/REFERENCE.md "Exit codes").
pub fn for_class(class: Class) -> Exit {
    match class {
        Class::Temporary => Exit::TempFail,
        Class::Permanent => Exit::Unavailable,
        Class::Auth | Class::Trust => Exit::NoPerm,
        Class::Protocol => Exit::Protocol,
        Class::NoSuchHost => Exit::NoHost,
        Class::Config => Exit::Config,
    }
}

/// The hint line to print under the error, if any cause carries one.
pub fn hint_for(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(|cause| {
        cause
            .downcast_ref::<Failure>()
            .and_then(|f| f.hint.clone())
            .or_else(|| cause.downcast_ref::<SmtpError>().and_then(SmtpError::hint))
    })
}

/// The code for a message some recipients may have refused: 0 when all
/// were accepted; 65 when it went to some and others were refused for good;
/// 75 while a temporary refusal remains (a retry may still reach them);
/// 69 when every recipient was refused for good; 76 when the server
/// answered a recipient with a reply RCPT never allows (3xx).
pub fn for_recipients(accepted: usize, refused_codes: &[u16]) -> Exit {
    // A recipient "refused" with a code below 400 was answered with a
    // reply RCPT never allows (3xx): the server broke the protocol.
    if refused_codes.iter().any(|c| *c < 400) {
        return Exit::Protocol;
    }
    let temporary = refused_codes.iter().any(|c| (400..500).contains(c));
    match (accepted, refused_codes.is_empty(), temporary) {
        (_, true, _) => Exit::Ok,
        (_, false, true) => Exit::TempFail,
        (0, false, false) => Exit::Unavailable,
        (_, false, false) => Exit::DataErr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn recipient_merge_rule() {
        assert_eq!(for_recipients(3, &[]), Exit::Ok);
        assert_eq!(for_recipients(2, &[550]), Exit::DataErr);
        assert_eq!(for_recipients(2, &[550, 451]), Exit::TempFail);
        assert_eq!(for_recipients(0, &[550, 553]), Exit::Unavailable);
        assert_eq!(for_recipients(0, &[550, 452]), Exit::TempFail);
        assert_eq!(for_recipients(1, &[354]), Exit::Protocol);
    }

    #[test]
    fn server_refusals_follow_the_reply_class() {
        use crate::smtp::{Reply, Stage};
        let refused = |stage, code| {
            let reply = Reply {
                code,
                lines: vec![],
            };
            for_class(SmtpError::Refused { stage, reply }.class())
        };
        assert_eq!(refused(Stage::Auth, 535), Exit::NoPerm);
        assert_eq!(refused(Stage::Auth, 454), Exit::TempFail);
        assert_eq!(refused(Stage::Auth, 504), Exit::Protocol);
        assert_eq!(refused(Stage::Auth, 250), Exit::Protocol);
        assert_eq!(refused(Stage::EndOfData, 554), Exit::Unavailable);
        assert_eq!(refused(Stage::MailFrom, 354), Exit::Protocol);
        assert_eq!(refused(Stage::Greeting, 421), Exit::TempFail);
        assert_eq!(refused(Stage::StartTls, 502), Exit::Protocol);
        assert_eq!(refused(Stage::Ehlo, 502), Exit::Protocol);
        assert_eq!(refused(Stage::Ehlo, 554), Exit::Unavailable);
    }

    #[test]
    fn typed_cause_decides_even_under_context() {
        let err = Err::<(), _>(Failure::no_input("no such file"))
            .context("reading attachment")
            .unwrap_err();
        assert_eq!(code_for(&err), Exit::NoInput);
    }

    #[test]
    fn untyped_error_is_temporary() {
        assert_eq!(code_for(&anyhow::anyhow!("something odd")), Exit::TempFail);
    }

    #[test]
    fn hint_is_found_through_context() {
        let err = Err::<(), _>(Failure::config("bad").with_hint("do this"))
            .context("outer")
            .unwrap_err();
        assert_eq!(hint_for(&err).as_deref(), Some("do this"));
    }
}
