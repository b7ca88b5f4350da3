//! Values of the command line that need more than a number: `--rate`
//! (how many messages a campaign may send per second, minute or hour, all
//! connections together; the pacing itself belongs to delivery) and
//! `--shard K/N`. Parsed here, where clap reads them, so that their users
//! (`bulk/`) depend on the command line and not the other way round.

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

/// `--shard K/N`: this run takes the rows whose number modulo N is K-1,
/// so that N runs (each with its own `K`) take every row exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub k: u64,
    pub n: u64,
}

impl Shard {
    /// Whether row `number` (from 1) belongs to this shard.
    pub fn takes(&self, number: u64) -> bool {
        number % self.n == self.k - 1
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let usage = || format!("'{s}' is not K/N with 1 <= K <= N, e.g. 2/3");
        let (k, n) = s.split_once('/').ok_or_else(usage)?;
        let number = |t: &str| {
            t.trim()
                .parse::<u64>()
                .ok()
                .filter(|_| t.trim().bytes().all(|b| b.is_ascii_digit()))
        };
        match (number(k), number(n)) {
            (Some(k), Some(n)) if k >= 1 && n >= 1 && k <= n => Ok(Shard { k, n }),
            _ => Err(usage()),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
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

    #[test]
    fn shards_split_rows_exactly_once() {
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert!("1/0".parse::<Shard>().is_err());
        assert!("+1/2".parse::<Shard>().is_err());
        assert!("1-2".parse::<Shard>().is_err());
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { k: 2, n: 3 }));
        let shards: Vec<Shard> = (1..=3).map(|k| Shard { k, n: 3 }).collect();
        for row in 1..=30 {
            assert_eq!(shards.iter().filter(|s| s.takes(row)).count(), 1);
        }
        // Row number modulo N is K-1, as PRODUCT.md says.
        assert!(shards[0].takes(3) && shards[1].takes(1) && shards[2].takes(2));
        assert!(Shard { k: 1, n: 1 }.takes(7));
    }
}
