//! The one checked configuration type, loaded from a native TOML file or from Cedar Backup's
//! `cback3.conf`. Everything past this module sees plain, validated values: absolute paths,
//! known ignore-failure modes, peer names that are safe as directory names.

mod cedar;
mod model;
mod native;
mod render;
mod rules;

pub use model::*;
pub(crate) use rules::{check_action, check_peer_name, validate_peer};

use std::path::Path;

use crate::error::{Error, Result};

/// Run as root, a config names commands that root will run (hooks, rcp and rsh commands), so
/// only root may be able to change it: like cron and sudo, refuse a file that another user
/// owns or that group or others can write.
fn check_trusted(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // reading it reports the problem
    };
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 {
        return Err(Error::usage(format!(
            "config {}: owned by uid {}, not root; running as root, peerstage only reads a config that root owns",
            path.display(),
            meta.uid()
        )));
    }
    if mode & 0o022 != 0 {
        return Err(Error::usage(format!(
            "config {}: mode {mode:04o} lets group or others change it; running as root, peerstage refuses it (chmod go-w {})",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

impl Config {
    /// Loads a config file: Cedar's XML when it starts with `<`, the native TOML otherwise.
    pub fn load(path: &Path) -> Result<Config> {
        if crate::ownership::running_as_root() {
            check_trusted(path)?;
        }
        let text = std::fs::read_to_string(path).map_err(|err| {
            Error::usage(format!(
                "config {}: cannot read: {}",
                path.display(),
                crate::error::io_cause(&err)
            ))
        })?;
        let mut config = if text.trim_start().starts_with('<') {
            let mut config = cedar::parse(path, &text)?;
            // Cedar runs the copies for remote peers as backup_user when started as root.
            if crate::ownership::running_as_root() {
                for peer in &mut config.peers {
                    if peer.kind == PeerKind::Remote && peer.local_user.is_none() {
                        peer.local_user.clone_from(&config.backup_user);
                    }
                }
            }
            config
        } else {
            native::parse(path, &text)?
        };
        // A nightly run that stages nothing must not look like a good backup (Cedar refuses
        // such a config too).
        if config.peers.is_empty() {
            return Err(Error::usage(format!(
                "config {}: no peers: a pool needs at least one ([[peer]] in TOML, <peer> under <stage> or <peers> in cback3.conf)",
                path.display()
            )));
        }
        // Reports and hooks name the config wherever the run was started from.
        config.source = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(config)
    }

    /// The config as native TOML, which `load` accepts and which stages the same way.
    pub fn to_toml(&self) -> String {
        render::render(self)
    }

    pub fn peer(&self, name: &str) -> Option<&PeerConfig> {
        self.peers.iter().find(|peer| peer.name == name)
    }

    /// The peers named with `--only` (all when none is), in config order; a name the config
    /// does not have is an error, not a silently empty run.
    pub fn select(&self, only: &[String]) -> Result<Vec<&PeerConfig>> {
        if let Some(name) = only.iter().find(|name| self.peer(name).is_none()) {
            return Err(Error::usage(format!(
                "config {}: no peer named {name:?} (--only)",
                self.source.display()
            )));
        }
        Ok(self
            .peers
            .iter()
            .filter(|peer| only.is_empty() || only.contains(&peer.name))
            .collect())
    }
}
