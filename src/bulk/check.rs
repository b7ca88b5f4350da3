//! Check first, then send: every row of the list is rendered and checked
//! (variables, addresses, header values, attachment files) before the
//! first message leaves. Every bad row gets one error line naming its
//! CSV line; nothing is kept of a good row, so memory does not grow with
//! the list.

use std::path::Path;

use anyhow::Result;

use super::data::{List, Row};
use super::render::{Campaign, Problem};
use crate::exit::{Exit, Failure};
use crate::term::errln;

/// Error lines printed at most; the rest are counted.
pub const LISTED: u64 = 100;

/// What the check found in a list with no bad row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// Data rows in the list.
    pub rows: u64,
}

/// Checks every row of `list`. With a bad row anywhere, prints one
/// `mailsend: error: line N: ...` line per bad row (the first
/// [`LISTED`]) and fails: 66 when every problem is a missing or
/// unreadable file, else 65.
/// Rows `skip` says yes to (settled by an earlier run) are counted, not
/// checked.
pub fn check(
    campaign: &Campaign,
    list: List,
    mut skip: impl FnMut(&Row) -> bool,
) -> Result<Checked> {
    let path = list.path().to_owned();
    let mut tally = Tally::default();
    for item in list.rows() {
        tally.rows += 1;
        match item {
            Ok(row) if skip(&row) => {}
            Ok(row) => {
                if let Err(problem) = campaign.render(&row) {
                    tally.bad(row.line, &problem);
                }
            }
            Err(bad) if bad.fatal => {
                return Err(Failure::no_input(format!(
                    "{}: line {}: {}",
                    path.display(),
                    bad.line,
                    bad.message
                ))
                .into());
            }
            Err(bad) => tally.bad(
                bad.line,
                &Problem {
                    exit: Exit::DataErr,
                    message: bad.message,
                },
            ),
        }
    }
    tally.verdict(&path)
}

#[derive(Default)]
struct Tally {
    rows: u64,
    bad: u64,
    /// Whether some problem is not a missing or unreadable file.
    data: bool,
}

impl Tally {
    fn bad(&mut self, line: u64, problem: &Problem) {
        self.bad += 1;
        self.data |= problem.exit != Exit::NoInput;
        if self.bad <= LISTED {
            errln!("mailsend: error: line {line}: {}", problem.message);
        }
    }

    fn verdict(self, path: &Path) -> Result<Checked> {
        if self.rows == 0 {
            return Err(Failure::data(format!(
                "{} has no rows below its header: nothing to send",
                path.display()
            ))
            .into());
        }
        if self.bad == 0 {
            return Ok(Checked { rows: self.rows });
        }
        let exit = match self.data {
            true => Exit::DataErr,
            false => Exit::NoInput,
        };
        let listed = match self.bad > LISTED {
            true => format!(" (the first {LISTED} are listed above)"),
            false => String::new(),
        };
        let (rows, bad) = (self.rows, self.bad);
        let verb = if bad == 1 { "is" } else { "are" };
        Err(Failure::new(
            exit,
            format!(
                "{bad} of {rows} rows {verb} bad in {}{listed}; nothing was sent",
                path.display()
            ),
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let path = Path::new("list.csv");
        let tally = |rows, bad, data| Tally { rows, bad, data };
        assert_eq!(
            tally(3, 0, false).verdict(path).unwrap(),
            Checked { rows: 3 }
        );
        let code = |t: Tally| crate::exit::code_for(&t.verdict(path).unwrap_err());
        assert_eq!(code(tally(0, 0, false)), Exit::DataErr);
        assert_eq!(code(tally(3, 2, false)), Exit::NoInput);
        assert_eq!(code(tally(3, 2, true)), Exit::DataErr);
        let err = tally(500, 200, true).verdict(path).unwrap_err();
        assert_eq!(
            err.to_string(),
            "200 of 500 rows are bad in list.csv (the first 100 are listed above); nothing was sent"
        );
    }
}
