//! Every effective setting of one invocation, worked out once: a flag over the config's
//! value over the default (as ripgrep turns its low-level arguments into high-level ones).
//! Nothing past this module looks at clap's types, the raw config values or the defaults
//! for these again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, PeerConfig, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_ENTRIES};
use crate::peer::{PeerOptions, Verify};
use crate::rate::{Limiter, Pace, Rate};

/// The global flags as given on the command line, before any config is read.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub dry_run: bool,
    pub quiet: bool,
    pub timeout: Option<u64>,
    /// 0 turns the idle timeout off.
    pub idle_timeout: Option<u64>,
    pub max_entries: Option<u64>,
    pub bwlimit: Option<Rate>,
    pub no_multiplex: bool,
    pub verify: Option<Verify>,
    /// --lock-dir or PEERSTAGE_LOCK_DIR.
    pub lock_dir: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
}

/// What is in effect.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dry_run: bool,
    pub quiet: bool,
    /// How long one peer may take.
    pub timeout: Option<Duration>,
    /// How long a step of staging may go without moving a byte (None: no limit).
    pub idle: Option<Duration>,
    /// The most entries a collect dir may list.
    pub max_entries: u64,
    /// The limit of the whole invocation (a `stage`'s peer, or all of a `run`'s peers
    /// together), one limiter shared by every copy under it.
    pub bwlimit: Option<Arc<Limiter>>,
    /// One ssh connection per remote peer.
    pub multiplex: bool,
    pub verify: Verify,
    pub lock_dir: PathBuf,
    /// Where log lines are appended, besides stderr.
    pub log_file: Option<PathBuf>,
}

impl Settings {
    /// The flags over `config` (when the work comes from one) over the defaults.
    pub fn resolve(flags: &Flags, config: Option<&Config>) -> Settings {
        let idle = match flags
            .idle_timeout
            .or(config.and_then(|config| config.idle_timeout))
            .unwrap_or(DEFAULT_IDLE_TIMEOUT)
        {
            0 => None,
            seconds => Some(Duration::from_secs(seconds)),
        };
        Settings {
            dry_run: flags.dry_run,
            quiet: flags.quiet,
            timeout: flags
                .timeout
                .or(config.and_then(|config| config.timeout))
                .map(Duration::from_secs),
            idle,
            max_entries: flags
                .max_entries
                .or(config.and_then(|config| config.max_entries))
                .unwrap_or(DEFAULT_MAX_ENTRIES),
            bwlimit: flags
                .bwlimit
                .or(config.and_then(|config| config.bwlimit))
                .map(|rate| Arc::new(Limiter::new(rate))),
            multiplex: !flags.no_multiplex && config.is_none_or(|config| config.multiplex),
            verify: flags
                .verify
                .or(config.and_then(|config| config.verify))
                .unwrap_or_default(),
            lock_dir: flags
                .lock_dir
                .clone()
                .or_else(|| config.and_then(|config| config.lock_dir.clone()))
                .unwrap_or_else(crate::lock::default_lock_dir),
            log_file: flags
                .log_file
                .clone()
                .or_else(|| config.and_then(|config| config.log_file.clone())),
        }
    }

    /// The options of `peer`, whose work starts at `started` (its deadline runs from there).
    /// Its copy is held to the invocation's limit, shared with every other peer, and to the
    /// peer's own `bwlimit`, a limiter of its own.
    pub fn peer_options(&self, started: Instant, peer: &PeerConfig) -> PeerOptions {
        let own = peer.bwlimit.map(|rate| Arc::new(Limiter::new(rate)));
        PeerOptions {
            dry_run: self.dry_run,
            deadline: self.timeout.map(|timeout| started + timeout),
            idle: self.idle,
            max_entries: self.max_entries,
            meter: None,
            multiplex: self.multiplex,
            verify: self.verify,
            pace: Pace::new(self.bwlimit.iter().cloned().chain(own)),
            day: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap()
    }

    #[test]
    fn a_flag_wins_over_the_config_which_wins_over_the_default() {
        let pool = config(
            "staging_dir = '/s'\ntimeout = 60\nidle_timeout = 20\nmax_entries = 5\nmultiplex = false\nverify = 'sha256'\nlock_dir = '/l'\n[[peer]]\nname = 'a'\ntype = 'local'\ncollect_dir = '/c'\n",
        );
        let from_config = Settings::resolve(&Flags::default(), Some(&pool));
        assert_eq!(from_config.timeout, Some(Duration::from_secs(60)));
        assert_eq!(from_config.idle, Some(Duration::from_secs(20)));
        assert_eq!(from_config.max_entries, 5);
        assert!(!from_config.multiplex);
        assert_eq!(from_config.verify, Verify::Sha256);
        assert_eq!(from_config.lock_dir, PathBuf::from("/l"));
        let flags = Flags {
            timeout: Some(5),
            idle_timeout: Some(0),
            max_entries: Some(9),
            verify: Some(Verify::None),
            lock_dir: Some("/f".into()),
            ..Flags::default()
        };
        let from_flags = Settings::resolve(&flags, Some(&pool));
        assert_eq!(from_flags.timeout, Some(Duration::from_secs(5)));
        assert_eq!(from_flags.idle, None);
        assert_eq!(from_flags.max_entries, 9);
        assert_eq!(from_flags.verify, Verify::None);
        assert_eq!(from_flags.lock_dir, PathBuf::from("/f"));
        let defaults = Settings::resolve(&Flags::default(), None);
        assert_eq!(defaults.timeout, None);
        assert_eq!(
            defaults.idle,
            Some(Duration::from_secs(DEFAULT_IDLE_TIMEOUT))
        );
        assert_eq!(defaults.max_entries, DEFAULT_MAX_ENTRIES);
        assert!(defaults.multiplex);
        assert_eq!(defaults.verify, Verify::Size);
        let no_mux = Flags {
            no_multiplex: true,
            ..Flags::default()
        };
        assert!(!Settings::resolve(&no_mux, None).multiplex);
    }

    #[test]
    fn a_peer_is_held_to_the_run_limit_and_to_its_own() {
        let pool = config(
            "staging_dir = '/s'\nbwlimit = '10MiB/s'\n[[peer]]\nname = 'a'\ntype = 'local'\ncollect_dir = '/c'\nbwlimit = '1MiB/s'\n[[peer]]\nname = 'b'\ntype = 'local'\ncollect_dir = '/d'\n",
        );
        let rate = |text: &str| text.parse::<Rate>().ok();
        let settings = Settings::resolve(&Flags::default(), Some(&pool));
        let now = Instant::now();
        let a = settings.peer_options(now, &pool.peers[0]);
        let b = settings.peer_options(now, &pool.peers[1]);
        assert_eq!(a.pace.rate(), rate("1MiB/s"));
        assert_eq!(b.pace.rate(), rate("10MiB/s"));
        // The run's limiter is one, shared: what a books, b waits for.
        a.pace.reserve(10 << 20);
        assert!(b.pace.reserve(1) >= Duration::from_millis(900));
        // The flag replaces the config's run-wide limit, not the peer's own.
        let flags = Flags {
            bwlimit: rate("512KiB/s"),
            ..Flags::default()
        };
        let settings = Settings::resolve(&flags, Some(&pool));
        assert_eq!(
            settings.peer_options(now, &pool.peers[1]).pace.rate(),
            rate("512KiB/s")
        );
        let unlimited = Settings::resolve(&Flags::default(), None);
        assert!(!unlimited
            .peer_options(now, &pool.peers[1])
            .pace
            .is_limited());
    }
}
