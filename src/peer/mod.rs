//! Backup peers: the machines whose collect dirs the master stages.
//!
//! One interface, two implementations, mirroring Cedar Backup's `LocalPeer` and `RemotePeer`:
//! a local peer is copied with the file system, a remote one is pulled with an rcp-compatible
//! command and driven with an rsh-compatible one.

mod checks;
mod interface;
mod local;
mod remote;
mod resume;
mod sftp;
mod staging;

use std::path::Path;

pub use local::LocalPeer;
pub use remote::RemotePeer;

pub use crate::config::Verify;
pub(crate) use checks::print_dry_run;
pub use checks::{dry_run_lines_to_stderr, validate};
pub use interface::{not_remote, Peer, PeerOptions, Presence, RemoteCommands, StageReport};
pub use resume::{holds_only_kept, remove_earlier as remove_earlier_kept};

use crate::config::{PeerConfig, PeerKind};
use crate::error::{Error, Result};
use crate::ownership::Perms;

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
    fn indicator(&self, name: &str) -> Result<Presence> {
        self.named(self.0.indicator(name))
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
