//! How long a peer's work may take: a deadline for all of it (`--timeout`), and an idle
//! timeout (`--idle-timeout`, on by default): a step that moves no byte for so long has
//! stalled (a hung link, a peer that answers keepalives and nothing else) and is given up.
//! Each wait (an SFTP answer, a child process, a local copy) watches both.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// When the peer's children are killed and the peer given up, whatever moves.
    pub deadline: Option<Instant>,
    /// How long a step may go without moving a byte.
    pub idle: Option<Duration>,
}

/// Which limit ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    Deadline,
    Idle(Duration),
}

impl std::fmt::Display for Expired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expired::Deadline => f.write_str("timed out"),
            Expired::Idle(idle) => write!(
                f,
                "stalled: no byte moved for {} s (idle timeout)",
                idle.as_secs()
            ),
        }
    }
}

impl Limits {
    /// For work that may rightly be silent for long (a managed action, a command run with
    /// `exec`): the deadline only.
    pub fn deadline_only(self) -> Limits {
        Limits { idle: None, ..self }
    }

    /// When a wait whose last progress was at `moved` must end, if nothing moves before.
    pub fn until(&self, moved: Instant) -> Option<Instant> {
        let idle_end = self.idle.map(|idle| moved + idle);
        match (self.deadline, idle_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Which limit has passed at `now` for a wait whose last progress was at `moved`.
    pub fn expired(&self, moved: Instant, now: Instant) -> Option<Expired> {
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            return Some(Expired::Deadline);
        }
        match self.idle {
            Some(idle) if now >= moved + idle => Some(Expired::Idle(idle)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearer_limit_ends_a_wait() {
        let now = Instant::now();
        let limits = Limits {
            deadline: Some(now + Duration::from_secs(10)),
            idle: Some(Duration::from_secs(3)),
        };
        assert_eq!(limits.until(now), Some(now + Duration::from_secs(3)));
        assert_eq!(limits.expired(now, now + Duration::from_secs(2)), None);
        assert_eq!(
            limits.expired(now, now + Duration::from_secs(3)),
            Some(Expired::Idle(Duration::from_secs(3)))
        );
        // Progress moves the idle end, never the deadline.
        let later = now + Duration::from_secs(9);
        assert_eq!(limits.until(later), Some(now + Duration::from_secs(10)));
        assert_eq!(
            limits.expired(later, now + Duration::from_secs(10)),
            Some(Expired::Deadline)
        );
        assert_eq!(limits.deadline_only().until(now), limits.deadline);
        assert_eq!(Limits::default().until(now), None);
    }
}
