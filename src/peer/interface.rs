//! What a peer is to the rest of peerstage: the `Peer` trait, the remote commands only a
//! remote peer runs, how its operations are carried out, and what a stage did.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{PeerConfig, Verify};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::ownership::Perms;

/// How peer operations are carried out, the same for every peer of a run.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Print every command line and file operation instead of carrying it out.
    pub dry_run: bool,
    /// When the peer's children are killed and the peer given up.
    pub deadline: Option<Instant>,
    /// How long a step of staging may go without moving a byte (not managed actions and
    /// `exec`, which may rightly be silent for long).
    pub idle: Option<Duration>,
    /// The most entries the collect dir may list.
    pub max_entries: u64,
    /// Where the peer's progress is counted, for a progress line.
    pub meter: Option<std::sync::Arc<crate::progress::Meter>>,
    /// Share one ssh connection between all operations on a remote peer (OpenSSH only).
    pub multiplex: bool,
    /// How staged files are checked against the peer's.
    pub verify: Verify,
    /// The bandwidth limits the peer's copy is held to (its own and the run's).
    pub pace: crate::rate::Pace,
    /// The backup day a cut copy is kept for: a run's date (`--date` included), so that a
    /// re-run of that day resumes it whenever it runs; today when none is given (`stage`).
    pub day: Option<crate::date::Date>,
}

impl Default for PeerOptions {
    fn default() -> PeerOptions {
        PeerOptions {
            dry_run: false,
            deadline: None,
            idle: Some(Duration::from_secs(crate::config::DEFAULT_IDLE_TIMEOUT)),
            max_entries: crate::config::DEFAULT_MAX_ENTRIES,
            meter: None,
            multiplex: true,
            verify: Verify::default(),
            pace: crate::rate::Pace::default(),
            day: None,
        }
    }
}

impl PeerOptions {
    /// The limits of a step that moves files.
    pub fn limits(&self) -> Limits {
        Limits {
            deadline: self.deadline,
            idle: self.idle,
        }
    }
}

/// What one stage did. Counts only, so memory stays flat however many files a peer has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageReport {
    pub files: u64,
    pub bytes: u64,
    /// Entries of the collect dir that were not staged, with why (subdirectory, symlink...).
    pub skipped: Vec<String>,
    /// How the staged files were checked: "size", "sha256", "none", or why it was skipped.
    pub verified: String,
    /// The collect indicator was among the files staged (a peer that had finished).
    pub collect_indicator: bool,
}

pub trait Peer: Send + Sync {
    fn config(&self) -> &PeerConfig;

    fn name(&self) -> &str {
        &self.config().name
    }

    /// Copies every regular file at the top of the collect dir into `target_dir`, which must
    /// exist and be absolute, applying `perms` to each. An empty collect dir is an error.
    fn stage(&self, target_dir: &Path, perms: &Perms) -> Result<StageReport>;

    /// Whether the indicator `name` (`cback.collect`, `cback.stage`) is in the collect dir,
    /// and if not, whether the collect dir itself is there. A peer that cannot be reached is
    /// an `Unreachable` error.
    fn indicator(&self, name: &str) -> Result<Presence>;

    /// Whether the indicator `name` is in the collect dir.
    fn has_indicator(&self, name: &str) -> Result<bool> {
        Ok(self.indicator(name)? == Presence::Present)
    }

    /// Writes the (empty) stage indicator into the peer's collect dir.
    fn write_stage_indicator(&self, indicator: &str, perms: &Perms) -> Result<()>;

    /// What only a remote peer does; None for a local one.
    fn remote(&self) -> Option<&dyn RemoteCommands> {
        None
    }
}

/// What a look for an indicator found. A collect dir that is not there is told apart from
/// one without the indicator: a mistyped path or an unmounted disk is not a peer that has
/// not finished collecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Present,
    Absent,
    /// The collect dir is not there at all.
    NoCollectDir,
}

impl Presence {
    pub fn words(self) -> &'static str {
        match self {
            Presence::Present => "present",
            Presence::Absent => "absent",
            Presence::NoCollectDir => "collect dir missing",
        }
    }
}

/// Commands run on a remote peer through its rsh command.
pub trait RemoteCommands {
    /// Runs a command on the peer, each word arriving as one argument; its output passes through.
    fn execute_remote_command(&self, command: &[String]) -> Result<()>;

    /// Runs `<cback command> [--full] <action>` on the peer.
    fn execute_managed_action(&self, action: &str, full: bool) -> Result<()>;
}

/// What asking a local peer for a remote command is.
pub fn not_remote(what: &str) -> Error {
    Error::usage(format!("is a local peer; {what} a remote peer (--host)"))
}
