//! The checked configuration types: a pool, its peers, their hooks, and the values every
//! loader turns its own text into.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub const DEFAULT_RCP_COMMAND: &str = "/usr/bin/scp -B -q -C";
pub const DEFAULT_RSH_COMMAND: &str = "/usr/bin/ssh";
pub const DEFAULT_CBACK_COMMAND: &str = "/usr/bin/cback3";
pub const DEFAULT_COLLECT_INDICATOR: &str = "cback.collect";
pub const DEFAULT_STAGE_INDICATOR: &str = "cback.stage";
/// Seconds a peer may go without moving a byte: on by default, so that a peer that stalls
/// (a hung link, a hostile server that answers keepalives and nothing else) never holds a
/// nightly run, yet long enough for a slow disk or a busy peer.
pub const DEFAULT_IDLE_TIMEOUT: u64 = 300;
/// The most entries a collect dir may list: a listing is held in memory while a remote peer
/// is staged, so a peer that lists without end must be stopped. Collect dirs hold tens of
/// archives; this is generous by orders of magnitude.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

/// `as_str`, `FromStr` and `Display` for an enum of named values, from one table: the
/// words a config, a flag or a report uses for each value.
macro_rules! named_values {
    ($type:ident { $($value:ident => $word:literal),+ $(,)? }) => {
        impl $type {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($type::$value => $word,)+
                }
            }
        }

        impl std::str::FromStr for $type {
            type Err = String;
            fn from_str(text: &str) -> Result<$type, String> {
                match text {
                    $($word => Ok($type::$value),)+
                    _ => Err(format!(
                        "must be {}, got {text:?}",
                        [$($word),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_values!(IgnoreFailure { None => "none", All => "all", Daily => "daily", Weekly => "weekly" });
named_values!(PeerKind { Local => "local", Remote => "remote" });
named_values!(Verify { None => "none", Size => "size", Sha256 => "sha256" });
named_values!(Weekday {
    Monday => "monday",
    Tuesday => "tuesday",
    Wednesday => "wednesday",
    Thursday => "thursday",
    Friday => "friday",
    Saturday => "saturday",
    Sunday => "sunday",
});

/// How a stage checks that what arrived is what the peer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// Trust the copy.
    None,
    /// Names and sizes (remote peers: listed over SFTP, or through the rsh command).
    #[default]
    Size,
    /// Names, sizes and SHA-256 of the contents.
    Sha256,
}

/// A command line as the administrator wrote it (`/usr/bin/scp -B -q -C`), split once, as
/// a POSIX shell would split it (but never run through one), when the config is read. Which
/// program its first word is depends on the machine, so that is looked up when a peer is
/// built (`process::Cmd::from_words`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    text: String,
    words: Vec<String>,
}

impl CommandLine {
    /// A built-in default, which splits.
    fn default_of(text: &str) -> CommandLine {
        text.parse().unwrap_or_else(|_| CommandLine {
            text: text.to_string(),
            words: vec![text.to_string()],
        })
    }

    pub fn words(&self) -> &[String] {
        &self.words
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::str::FromStr for CommandLine {
    type Err = String;
    /// Split as a POSIX shell would split it; a line that does not split (an unclosed quote)
    /// or splits into nothing is refused.
    fn from_str(text: &str) -> Result<CommandLine, String> {
        match shell_words::split(text) {
            Ok(words) if !words.is_empty() && !text.contains('\0') => Ok(CommandLine {
                text: text.to_string(),
                words,
            }),
            Ok(_) => Err(format!("must be a command line, got {text:?}")),
            Err(err) => Err(format!("cannot be split into words ({err}), got {text:?}")),
        }
    }
}

impl std::fmt::Display for CommandLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq<&str> for CommandLine {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

/// When a peer that is not ready or that failed is not an error (Cedar's `ignore_failures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IgnoreFailure {
    /// Never ignore: a failing peer fails the run.
    #[default]
    None,
    /// Always ignore.
    All,
    /// Ignore on daily (non-full, not the starting day) runs only.
    Daily,
    /// Ignore on weekly (full, or the starting day) runs only.
    Weekly,
}

impl IgnoreFailure {
    /// Whether a failure is ignored on a run that is (or is not) a weekly one: a run is weekly
    /// when `--full` was given or today is the configured starting day, as in Cedar Backup.
    pub fn ignores(self, weekly_run: bool) -> bool {
        match self {
            IgnoreFailure::None => false,
            IgnoreFailure::All => true,
            IgnoreFailure::Daily => !weekly_run,
            IgnoreFailure::Weekly => weekly_run,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    Local,
    Remote,
}

/// Everything needed to build one peer, from a config file or from command-line flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's name; for a remote peer, the host name to connect to. Also the name of its
    /// directory under the daily staging dir, so it never holds `/` and is never `.` or `..`.
    pub name: String,
    pub kind: PeerKind,
    /// Absolute path of the collect dir, on the peer.
    pub collect_dir: PathBuf,
    /// Local scratch directory (absolute) for remote peers; a private temp dir when unset.
    pub working_dir: Option<PathBuf>,
    /// User to log in as on a remote peer; ssh's default when unset.
    pub remote_user: Option<String>,
    /// Local user to run the rcp/rsh commands as (`su USER -c ...`); root only.
    pub local_user: Option<String>,
    pub rcp_command: CommandLine,
    pub rsh_command: CommandLine,
    pub cback_command: CommandLine,
    pub ignore_failure: IgnoreFailure,
    /// Whether `run` executes managed actions on this peer before staging it.
    pub managed: bool,
    pub managed_actions: Vec<String>,
    /// The rate this peer's copy is held to on its own (the run's limit applies as well).
    pub bwlimit: Option<crate::rate::Rate>,
}

impl PeerConfig {
    /// A peer with Cedar's default commands and nothing optional set.
    pub fn new(name: impl Into<String>, kind: PeerKind, collect_dir: impl Into<PathBuf>) -> Self {
        PeerConfig {
            name: name.into(),
            kind,
            collect_dir: collect_dir.into(),
            working_dir: None,
            remote_user: None,
            local_user: None,
            rcp_command: CommandLine::default_of(DEFAULT_RCP_COMMAND),
            rsh_command: CommandLine::default_of(DEFAULT_RSH_COMMAND),
            cback_command: CommandLine::default_of(DEFAULT_CBACK_COMMAND),
            ignore_failure: IgnoreFailure::None,
            managed: false,
            managed_actions: Vec::new(),
            bwlimit: None,
        }
    }
}

/// Commands run at the job events of a pool run (see the `hooks` module).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookConfig {
    pub run_start: Vec<String>,
    pub pre_peer: Vec<String>,
    pub post_peer: Vec<String>,
    pub run_end: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// A whole pool: where to stage, who owns staged files, the peers and the hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file this was loaded from, for error messages and lock names.
    pub source: PathBuf,
    /// Absolute; the daily dirs `YYYY/MM/DD` are created below it.
    pub staging_dir: PathBuf,
    /// Default local scratch dir for remote peers.
    pub working_dir: Option<PathBuf>,
    /// Owner of staged files and created dirs when running as root.
    pub backup_user: Option<String>,
    pub backup_group: Option<String>,
    /// Day the weekly cycle starts (Cedar's `starting_day`), for `daily`/`weekly` ignore modes.
    pub starting_day: Weekday,
    /// Where lock files go; a private default when unset.
    pub lock_dir: Option<PathBuf>,
    /// How many peers to stage at once; a default from the number of peers when unset.
    pub jobs: Option<usize>,
    /// Seconds one peer may take before it is abandoned.
    pub timeout: Option<u64>,
    /// Seconds a peer may go without moving a byte before it is abandoned; 0 turns the
    /// check off; `DEFAULT_IDLE_TIMEOUT` when unset.
    pub idle_timeout: Option<u64>,
    /// The most entries a collect dir may list; `DEFAULT_MAX_ENTRIES` when unset.
    pub max_entries: Option<u64>,
    /// The rate all peers of a run are held to together; none when unset.
    pub bwlimit: Option<crate::rate::Rate>,
    /// Where timestamped log lines of every run are appended.
    pub log_file: Option<PathBuf>,
    /// Where the last run's outcome is written as Prometheus metrics.
    pub metrics_file: Option<PathBuf>,
    /// Reuse one ssh connection for every operation on a remote peer (OpenSSH only).
    pub multiplex: bool,
    /// How staged files are checked against the peer's; size when unset.
    pub verify: Option<Verify>,
    pub hooks: HookConfig,
    pub peers: Vec<PeerConfig>,
}
