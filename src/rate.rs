//! Bandwidth limits: a rate as an admin writes it (`10MiB/s`), and the pacing that holds a
//! copy to it. A limit may be one peer's or the whole run's (shared by the peers staged in
//! parallel); a copy asks every limit that applies to it before it asks the peer for bytes.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes per second, never zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(u64);

impl Rate {
    pub fn bytes_per_second(self) -> u64 {
        self.0
    }

    /// scp's `-l`, in Kbit/s (at least 1).
    pub fn kbits(self) -> u64 {
        (self.0.saturating_mul(8) / 1000).max(1)
    }

    /// The rate as a config file writes it, in the largest unit that holds it exactly
    /// (`10MiB/s`, `2MB/s`, `1500/s`), so that it reads back as the same rate.
    pub fn exact(self) -> String {
        const UNITS: [(u64, &str); 6] = [
            (1 << 30, "GiB"),
            (1000 * 1000 * 1000, "GB"),
            (1 << 20, "MiB"),
            (1000 * 1000, "MB"),
            (1 << 10, "KiB"),
            (1000, "kB"),
        ];
        UNITS
            .iter()
            .find(|(scale, _)| self.0 % scale == 0)
            .map_or_else(
                || format!("{}/s", self.0),
                |(scale, unit)| format!("{}{unit}/s", self.0 / scale),
            )
    }
}

impl FromStr for Rate {
    type Err = String;

    /// `10MiB/s`, `500 KiB/s`, `1.5M`, `2000000` (bytes per second); SI (`kB`, `MB`, `GB`)
    /// and IEC (`KiB`, `MiB`, `GiB`) units, and a bare `K`, `M`, `G` as rsync reads them
    /// (powers of 1024).
    fn from_str(text: &str) -> Result<Rate, String> {
        let wrong = || {
            format!(
                "{text:?} is not a rate: write bytes per second, like 10MiB/s, 500KiB/s or 2MB/s"
            )
        };
        let trimmed = text.trim();
        let trimmed = trimmed.strip_suffix("/s").unwrap_or(trimmed).trim_end();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let number: f64 = number.parse().map_err(|_| wrong())?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "k" | "kB" | "KB" => 1000,
            "MB" => 1000 * 1000,
            "GB" => 1000 * 1000 * 1000,
            "K" | "KiB" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            _ => return Err(wrong()),
        };
        let bytes = number * scale as f64;
        if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 / 2.0 {
            return Err(format!(
                "{text:?} is not a rate of at least one byte per second"
            ));
        }
        Ok(Rate(bytes as u64))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/s", crate::units::size(self.0))
    }
}

/// One limit, shared by whoever copies under it. Each copy books the bytes it is about to
/// ask for and learns how long to hold off: the bytes booked so far end at `free_at`, and
/// what was not used stays unused (a quiet second earns at most `BURST` of credit).
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    free_at: Mutex<Option<Instant>>,
}

/// The most a limiter lets go at once after a pause: enough for a window of reads without
/// going measurably over the rate.
const BURST: Duration = Duration::from_millis(50);

impl Limiter {
    pub fn new(rate: Rate) -> Limiter {
        Limiter {
            rate,
            free_at: Mutex::new(None),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Books `bytes` and says how long from now the copy should wait before asking for more.
    pub fn reserve(&self, bytes: u64) -> Duration {
        self.reserve_at(bytes, Instant::now())
    }

    fn reserve_at(&self, bytes: u64, now: Instant) -> Duration {
        let cost = Duration::from_secs_f64(bytes as f64 / self.rate.0 as f64);
        let mut free_at = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
        let start = match *free_at {
            Some(at) if at + BURST > now => at,
            _ => now.checked_sub(BURST).unwrap_or(now),
        };
        let end = start + cost;
        *free_at = Some(end);
        end.saturating_duration_since(now)
    }
}

/// Every limit a copy is held to: its peer's and the run's, as set.
#[derive(Clone, Debug, Default)]
pub struct Pace {
    limiters: Vec<Arc<Limiter>>,
}

impl Pace {
    pub fn new(limiters: impl IntoIterator<Item = Arc<Limiter>>) -> Pace {
        Pace {
            limiters: limiters.into_iter().collect(),
        }
    }

    /// Books `bytes` under every limit; the wait is the longest.
    pub fn reserve(&self, bytes: u64) -> Duration {
        self.limiters
            .iter()
            .map(|limiter| limiter.reserve(bytes))
            .max()
            .unwrap_or_default()
    }

    /// The tightest limit, if any: what one copy can go at, at best.
    pub fn rate(&self) -> Option<Rate> {
        self.limiters.iter().map(|limiter| limiter.rate()).min()
    }

    pub fn is_limited(&self) -> bool {
        !self.limiters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_admins_write_them() {
        let bytes = |text: &str| text.parse::<Rate>().map(Rate::bytes_per_second);
        assert_eq!(bytes("10MiB/s"), Ok(10 << 20));
        assert_eq!(bytes("500 KiB/s"), Ok(500 << 10));
        assert_eq!(bytes("2MB/s"), Ok(2_000_000));
        assert_eq!(bytes("1.5M"), Ok(3 << 19));
        assert_eq!(bytes("2000"), Ok(2000));
        assert_eq!(bytes("1G"), Ok(1 << 30));
        for wrong in ["", "fast", "10 MiB/h", "-1M", "0", "0.1", "1e400"] {
            assert!(bytes(wrong).is_err(), "{wrong}");
        }
        assert_eq!("10MiB/s".parse::<Rate>().unwrap().to_string(), "10.0 MiB/s");
        assert_eq!("1MB/s".parse::<Rate>().unwrap().kbits(), 8000);
        assert_eq!("1".parse::<Rate>().unwrap().kbits(), 1);
    }

    #[test]
    fn a_rate_is_written_back_exactly() {
        for (text, exact) in [
            ("10MiB/s", "10MiB/s"),
            ("2MB/s", "2MB/s"),
            ("1.5M", "1536KiB/s"),
            ("1G", "1GiB/s"),
            ("1500", "1500/s"),
            ("3 kB/s", "3kB/s"),
        ] {
            let rate: Rate = text.parse().unwrap();
            assert_eq!(rate.exact(), exact);
            assert_eq!(exact.parse::<Rate>(), Ok(rate));
        }
    }

    #[test]
    fn a_limiter_spaces_bookings_by_their_size_over_the_rate() {
        let limiter = Limiter::new(Rate(1000));
        let now = Instant::now() + Duration::from_secs(1);
        // The first booking may use the burst credit of a quiet limiter.
        let first = limiter.reserve_at(100, now);
        assert_eq!(first, Duration::from_millis(50));
        // Booked back to back, each 100 bytes costs 100 ms more.
        assert_eq!(limiter.reserve_at(100, now), Duration::from_millis(150));
        assert_eq!(limiter.reserve_at(100, now), Duration::from_millis(250));
        // A long pause earns no more than the burst.
        let later = now + Duration::from_secs(10);
        assert_eq!(limiter.reserve_at(100, later), Duration::from_millis(50));
    }

    #[test]
    fn a_pace_waits_for_its_tightest_limit_and_shares_a_limiter() {
        let run = Arc::new(Limiter::new(Rate(1000)));
        let peer = Arc::new(Limiter::new(Rate(10_000)));
        let one = Pace::new([peer, run.clone()]);
        let other = Pace::new([run]);
        assert_eq!(one.rate(), Some(Rate(1000)));
        assert!(one.reserve(1000) >= Duration::from_millis(900));
        // The run's limiter already holds the first second: the other copy waits for it.
        assert!(other.reserve(1000) >= Duration::from_millis(1900));
        assert!(!Pace::default().is_limited());
        assert_eq!(Pace::default().reserve(1 << 30), Duration::ZERO);
    }
}
