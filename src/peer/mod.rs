//! Backup peers: the machines whose collect dirs the master stages.
//!
//! One interface, two implementations, mirroring Cedar Backup's `LocalPeer` and `RemotePeer`:
//! a local peer is copied with the file system, a remote one is pulled with an rcp-compatible
//! command and driven with an rsh-compatible one.

mod local;
mod remote;
mod sftp;
mod staging;

use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) use local::write_cause;
pub use local::LocalPeer;
pub use remote::RemotePeer;

use crate::config::{PeerConfig, PeerKind};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::ownership::{running_as_root, Perms};

/// How peer operations are carried out, the same for every peer of a run.
#[derive(Debug, Clone, Copy)]
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
    /// Share one ssh connection between all operations on a remote peer (OpenSSH only).
    pub multiplex: bool,
    /// How staged files are checked against the peer's.
    pub verify: Verify,
}

impl Default for PeerOptions {
    fn default() -> PeerOptions {
        PeerOptions {
            dry_run: false,
            deadline: None,
            idle: Some(Duration::from_secs(crate::config::DEFAULT_IDLE_TIMEOUT)),
            max_entries: crate::config::DEFAULT_MAX_ENTRIES,
            multiplex: true,
            verify: Verify::default(),
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

/// How a stage checks that what arrived is what the peer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
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

impl Verify {
    pub fn parse(text: &str) -> Option<Verify> {
        match text {
            "none" => Some(Verify::None),
            "size" => Some(Verify::Size),
            "sha256" => Some(Verify::Sha256),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Verify::None => "none",
            Verify::Size => "size",
            Verify::Sha256 => "sha256",
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
}

pub trait Peer: Send + Sync {
    fn config(&self) -> &PeerConfig;

    fn name(&self) -> &str {
        &self.config().name
    }

    /// Copies every regular file at the top of the collect dir into `target_dir`, which must
    /// exist and be absolute, applying `perms` to each. An empty collect dir is an error.
    fn stage(&self, target_dir: &Path, perms: &Perms) -> Result<StageReport>;

    /// Whether the indicator `name` (`cback.collect`, `cback.stage`) is in the collect dir. A
    /// missing collect dir means "not there"; a peer that cannot be reached is an
    /// `Unreachable` error.
    fn has_indicator(&self, name: &str) -> Result<bool>;

    /// Writes the (empty) stage indicator into the peer's collect dir.
    fn write_stage_indicator(&self, indicator: &str, perms: &Perms) -> Result<()>;

    /// What only a remote peer does; None for a local one.
    fn remote(&self) -> Option<&dyn RemoteCommands> {
        None
    }
}

/// Commands run on a remote peer through its rsh command.
pub trait RemoteCommands {
    /// Runs a command on the peer, each word arriving as one argument; its output passes through.
    fn execute_remote_command(&self, command: &[String]) -> Result<()>;

    /// Runs `<cback command> [--full] <action>` on the peer.
    fn execute_managed_action(&self, action: &str, full: bool) -> Result<()>;
}

/// Builds the peer a config describes, after checking every value that could otherwise turn
/// into a wrong path or a command.
pub fn build(config: &PeerConfig, options: PeerOptions) -> Result<Box<dyn Peer>> {
    let named = |err: Error| err.for_peer(&config.name);
    validate(config).map_err(named)?;
    let peer: Box<dyn Peer> = match config.kind {
        PeerKind::Local => Box::new(LocalPeer::new(config.clone(), options)),
        PeerKind::Remote => Box::new(RemotePeer::new(config.clone(), options).map_err(named)?),
    };
    Ok(Box::new(Named(peer)))
}

/// A peer whose every error names it: the name is attached here, once, so that the code
/// of a peer says only what went wrong and where.
struct Named(Box<dyn Peer>);

impl Named {
    fn named<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|err| err.for_peer(self.0.name()))
    }
}

impl Peer for Named {
    fn config(&self) -> &PeerConfig {
        self.0.config()
    }
    fn stage(&self, target_dir: &Path, perms: &Perms) -> Result<StageReport> {
        self.named(self.0.stage(target_dir, perms))
    }
    fn has_indicator(&self, name: &str) -> Result<bool> {
        self.named(self.0.has_indicator(name))
    }
    fn write_stage_indicator(&self, indicator: &str, perms: &Perms) -> Result<()> {
        self.named(self.0.write_stage_indicator(indicator, perms))
    }
    fn remote(&self) -> Option<&dyn RemoteCommands> {
        self.0.remote().map(|_| self as &dyn RemoteCommands)
    }
}

impl RemoteCommands for Named {
    fn execute_remote_command(&self, command: &[String]) -> Result<()> {
        match self.0.remote() {
            Some(remote) => self.named(remote.execute_remote_command(command)),
            None => self.named(Err(not_remote("remote commands need"))),
        }
    }
    fn execute_managed_action(&self, action: &str, full: bool) -> Result<()> {
        match self.0.remote() {
            Some(remote) => self.named(remote.execute_managed_action(action, full)),
            None => self.named(Err(not_remote(&format!("managed action {action} needs")))),
        }
    }
}

/// What asking a local peer for a remote command is.
pub fn not_remote(what: &str) -> Error {
    Error::usage(format!("is a local peer; {what} a remote peer (--host)"))
}

/// Checks a peer's settings with the config loaders' rules (one set of rules, whether the
/// peer came from a file or from flags), plus what depends on who runs it.
pub fn validate(config: &PeerConfig) -> Result<()> {
    crate::config::validate_peer(config)
        .map_err(|(field, problem)| Error::usage(format!("{field} {problem}")))?;
    if let (PeerKind::Remote, Some(user)) = (config.kind, &config.local_user) {
        if !running_as_root() {
            return Err(Error::usage(format!(
                "local user {user}: only root can run commands as another user (su)"
            )));
        }
    }
    Ok(())
}

/// An indicator name is one plain file name inside the collect dir.
pub fn check_indicator_name(name: &str) -> Result<()> {
    if crate::fsutil::is_plain_file_name(std::ffi::OsStr::new(name)) && !name.contains('\n') {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "indicator {name:?}: must be a plain file name (no '/', not '.' or '..')"
        )))
    }
}

/// Checks that the target dir of a stage is usable before anything is copied.
/// A dry run accepts a target dir that the run would have created by then.
pub(crate) fn check_target_dir(target_dir: &Path, dry_run: bool) -> Result<()> {
    if !target_dir.is_absolute() {
        return Err(Error::usage(format!(
            "target dir {}: must be an absolute path",
            target_dir.display()
        )));
    }
    if dry_run && !target_dir.exists() {
        return Ok(());
    }
    match std::fs::metadata(target_dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::usage(format!(
            "target dir {}: not a directory",
            target_dir.display()
        ))),
        Err(err) => Err(Error::usage(format!(
            "target dir {}: {}",
            target_dir.display(),
            crate::error::io_cause(&err)
        ))),
    }
}

/// A directory in the target under a staged file's name would make the final rename fail
/// half-way through a commit; it is refused before anything is committed.
pub(crate) fn check_not_dir(target: &Path) -> Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => Err(Error::failed(format!(
            "{}: a directory is in the way of a staged file of that name",
            target.display()
        ))),
        _ => Ok(()),
    }
}

/// Moves every file of a complete incoming dir to its final name in the target dir.
/// rename(2) replaces whatever is there (an older copy, a planted symlink) without following
/// it, and each final name only ever shows a whole file. One pass, streamed.
pub(crate) fn commit_incoming(incoming: &Path, target_dir: &Path) -> Result<()> {
    let fail = |path: &Path, err: std::io::Error| {
        Error::failed(format!(
            "{}: {}",
            path.display(),
            crate::error::io_cause(&err)
        ))
    };
    let from = crate::fsutil::DirFd::open_nofollow(incoming).map_err(|err| fail(incoming, err))?;
    let to = crate::fsutil::DirFd::open(target_dir).map_err(|err| fail(target_dir, err))?;
    from.entries().map_err(|err| fail(incoming, err))?.for_each(
        |err| fail(incoming, err),
        |name, _| {
            from.rename_to(name, &to)
                .map_err(|err| fail(&target_dir.join(name), err))
        },
    )
}

/// `--dry-run` output: one line on stdout per command or file operation, ready to paste.
/// Words are quoted with `quote_os`, which writes control characters as escapes; what is
/// left (a comment naming a peer's path) is escaped here, so a name never breaks the line.
pub(crate) fn print_dry_run(line: impl std::fmt::Display) {
    println!("{}", crate::escape::Escaped(line));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_refuses_names_that_could_become_paths_options_or_shell() {
        let local = |name: &str| PeerConfig::new(name, PeerKind::Local, "/c");
        validate(&local("db1.example.com")).unwrap();
        for bad in ["", ".", "..", "-x", "a/b", "a b", "a\nb"] {
            assert!(validate(&local(bad)).is_err(), "{bad:?}");
        }
        let remote = |name: &str| PeerConfig::new(name, PeerKind::Remote, "/c");
        validate(&remote("db-1.example.com")).unwrap();
        validate(&remote("::1")).unwrap();
        for bad in ["-oProxyCommand=x", "a;b", "a b", "a$(x)"] {
            assert!(validate(&remote(bad)).is_err(), "{bad:?}");
        }
        let mut peer = remote("db1");
        peer.remote_user = Some("backup_user-1".into());
        validate(&peer).unwrap();
        peer.remote_user = Some("-l".into());
        assert!(validate(&peer).is_err());
        peer.remote_user = None;
        peer.managed_actions = vec!["collect".into()];
        validate(&peer).unwrap();
        peer.managed_actions = vec!["--full".into()];
        assert!(validate(&peer).is_err());
    }

    #[test]
    fn validate_rejects_relative_dirs_and_bad_remote_names() {
        let mut peer = PeerConfig::new("db1", PeerKind::Local, "var/collect");
        assert!(validate(&peer)
            .unwrap_err()
            .message()
            .contains("collect_dir must be absolute"));
        peer.collect_dir = "/var/collect".into();
        validate(&peer).unwrap();
        let remote = PeerConfig {
            name: "a;b".into(),
            kind: PeerKind::Remote,
            ..peer.clone()
        };
        assert!(validate(&remote).is_err());
        let remote = PeerConfig {
            kind: PeerKind::Remote,
            remote_user: Some("-oProxyCommand".into()),
            ..peer
        };
        assert!(validate(&remote).is_err());
    }
}
