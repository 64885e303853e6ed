//! `max_drifted`: a count of hosts, or a share of the image's hosts
//! computed in integers (rounded up, at least 1 host).

use std::fmt;

/// `max_drifted`: how many hosts of one image may be drifted (this one
/// included) for a signal to go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A number of hosts; 0 means never release automatically.
    Count(u64),
    /// A share of the image's hosts, in thousandths of a percent
    /// (`10%` is 10 000), rounded up and at least 1 host.
    Share(u64),
}

/// 100% in the units of [`Limit::Share`].
const WHOLE: u64 = 100_000;

impl Limit {
    /// The limit for an image of `hosts` hosts: the count, or
    /// `ceil(share × hosts)` computed in integers and at least 1.
    pub fn of(&self, hosts: u64) -> u64 {
        match *self {
            Limit::Count(n) => n,
            Limit::Share(s) => {
                let n = (u128::from(s) * u128::from(hosts)).div_ceil(u128::from(WHOLE));
                u64::try_from(n).unwrap_or(u64::MAX).max(1)
            }
        }
    }

    /// Parse `"3"`, `"10%"` or `"12.5%"` (at most three decimals).
    pub fn parse(text: &str) -> Result<Limit, String> {
        let t = text.trim();
        let Some(pct) = t.strip_suffix('%') else {
            return t.parse::<u64>().map(Limit::Count).map_err(|_| {
                format!("`{text}` is not a count of hosts (\"3\") or a share (\"10%\")")
            });
        };
        let bad = || format!("`{text}` is not a share like \"10%\" or \"12.5%\"");
        let (int, frac) = pct.trim().split_once('.').unwrap_or((pct.trim(), ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || (!frac.is_empty() && !digits(frac)) || frac.len() > 3 {
            return Err(bad());
        }
        let int: u64 = int.parse().map_err(|_| bad())?;
        let frac: u64 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
        let share = int
            .checked_mul(1000)
            .and_then(|v| v.checked_add(frac))
            .ok_or_else(bad)?;
        if share == 0 {
            return Err(format!(
                "`{text}` would still let one host go (a share rounds up to at least 1); write \"0\" to never release automatically"
            ));
        }
        if share > WHOLE {
            return Err(format!("`{text}` is more than 100%"));
        }
        Ok(Limit::Share(share))
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Share(s) => {
                let (int, frac) = (s / 1000, s % 1000);
                if frac == 0 {
                    write!(f, "{int}%")
                } else {
                    let frac = format!("{frac:03}");
                    write!(f, "{int}.{}%", frac.trim_end_matches('0'))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_up_in_integers_and_let_one_host_go() {
        let ten = Limit::parse("10%").unwrap();
        assert_eq!(ten, Limit::Share(10_000));
        for (hosts, want) in [(0, 1), (1, 1), (9, 1), (10, 1), (11, 2), (20, 2), (21, 3)] {
            assert_eq!(ten.of(hosts), want, "10% of {hosts}");
        }
        let third = Limit::parse("33.333%").unwrap();
        assert_eq!(third.of(3), 1, "33.333% of 3 is 0.99999: one");
        assert_eq!(third.of(3000), 1000);
        assert_eq!(Limit::parse("12.5%").unwrap().of(8), 1);
        assert_eq!(Limit::parse("12.5%").unwrap().of(9), 2);
        assert_eq!(Limit::parse("100%").unwrap().of(7), 7);
        // No float rounding at any size.
        assert_eq!(
            Limit::parse("0.001%").unwrap().of(u64::MAX),
            184_467_440_737_096
        );
        assert_eq!(Limit::parse("100%").unwrap().of(u64::MAX), u64::MAX);
        assert_eq!(Limit::parse("3").unwrap(), Limit::Count(3));
        assert_eq!(Limit::parse("3").unwrap().of(1000), 3);
        assert_eq!(Limit::parse("0").unwrap().of(1000), 0, "0: never");
        for (text, shown) in [
            ("10%", "10%"),
            ("12.5%", "12.5%"),
            ("0.125%", "0.125%"),
            ("7", "7"),
        ] {
            assert_eq!(Limit::parse(text).unwrap().to_string(), shown);
        }
    }

    #[test]
    fn bad_limits_are_refused() {
        for (text, needle) in [
            ("0%", "write \"0\""),
            ("0.000%", "write \"0\""),
            ("101%", "more than 100%"),
            ("10.0001%", "not a share"),
            ("-1", "not a count"),
            ("ten", "not a count"),
            ("%", "not a share"),
            (".5%", "not a share"),
            ("1e3%", "not a share"),
            ("99999999999999999999%", "not a share"),
        ] {
            let e = Limit::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
