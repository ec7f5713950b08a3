//! Checks of what a peer is given (its settings, an indicator's name, a target dir) before
//! anything is done with them, and the one way a dry run prints what it would do.

use std::path::Path;

use crate::config::{PeerConfig, PeerKind};
use crate::error::{Error, Result};
use crate::ownership::running_as_root;

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

/// Where dry-run lines go: stdout, unless stdout carries one JSON document (`--json`).
static DRY_RUN_TO_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, dry-run lines go to stderr: stdout is for `--json`'s document alone.
pub fn dry_run_lines_to_stderr() {
    DRY_RUN_TO_STDERR.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// `--dry-run` output: one line per command or file operation, ready to paste. Words are
/// quoted with `quote_os`, which writes control characters as escapes; what is left (a
/// comment naming a peer's path) is escaped here, so a name never breaks the line.
pub(crate) fn print_dry_run(line: impl std::fmt::Display) {
    let line = format!("{}\n", crate::escape::Escaped(line));
    if DRY_RUN_TO_STDERR.load(std::sync::atomic::Ordering::Relaxed) {
        crate::progress::print_above(&line);
    } else {
        print!("{line}");
    }
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
