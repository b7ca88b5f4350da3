//! Writing to the terminal: lines to stdout and stderr that never panic
//! on a closed pipe, and text from elsewhere made safe to show.
//!
//! Every line to stdout or stderr goes through [`outln!`] and [`errln!`]:
//! a closed or full pipe (`mailsend -v ... | head -2`) must not stop a
//! delivery halfway, as `println!`'s panic would.

use std::fmt;
use std::io::Write;

/// `println!` that never panics: a stdout that cannot be written is
/// ignored (the exit code still tells the outcome).
macro_rules! outln {
    ($($arg:tt)*) => {
        {
            let _ = $crate::term::write_line(&mut std::io::stdout().lock(), format_args!($($arg)*));
        }
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        {
            let _ = $crate::term::write_line(&mut std::io::stderr().lock(), format_args!($($arg)*));
        }
    };
}

pub(crate) use {errln, outln};

/// Writes one line, for callers that want to know it failed.
pub fn write_line(out: &mut impl Write, args: fmt::Arguments) -> std::io::Result<()> {
    out.write_fmt(args).and_then(|()| out.write_all(b"\n"))
}

/// Text from the server made safe for a terminal and a log: control
/// characters (escape sequences, bare CR, backspace, C1 controls), the
/// bidirectional marks and overrides that can reorder what is displayed,
/// line and paragraph separators, and invisible format characters become
/// visible escapes such as `\u{1b}`; tab stays.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if (c.is_control() && c != '\t') || invisible(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Unicode format (Cf) characters and separators (Zl, Zp) that change
/// how text displays without showing themselves.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{61c}' | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{e0000}'..='\u{e007f}')
}
