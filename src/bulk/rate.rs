//! `--rate`: how many messages the whole run may send per second, minute
//! or hour, all connections together. Parsed here; the pacing itself
//! belongs to delivery.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// At most `count` messages per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// The time between two messages at this rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        let usage = || format!("'{s}' is not a rate like 10/s, 600/min or 5000/h");
        let (count, unit) = s.split_once('/').ok_or_else(usage)?;
        let count = count.trim();
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(usage());
        }
        let count: u32 = count.parse().map_err(|_| usage())?;
        if count == 0 {
            return Err(format!("'{s}': a rate of 0 would send nothing"));
        }
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(usage()),
        };
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let r: Rate = "600/min".parse().unwrap();
        assert_eq!(r.interval(), Duration::from_millis(100));
        assert_eq!(r.to_string(), "600/min");
        assert_eq!(
            "10/s".parse::<Rate>().unwrap().interval(),
            Duration::from_millis(100)
        );
        assert_eq!("5000/h".parse::<Rate>().unwrap().count, 5000);
        for bad in [
            "",
            "10",
            "10/m",
            "0/s",
            "-1/s",
            "+1/s",
            "1.5/s",
            "10/sec",
            "/s",
            "99999999999/s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }
}
