//! The checks every config passes, whatever file it came from, and that every peer passes,
//! whether from a file or from command-line flags: one set of rules.

use std::path::Path;

use super::model::{Config, PeerConfig, PeerKind};

/// Which value of a `Config` is wrong; each loader maps it back to a line of its own file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// A top-level field: `staging_dir`, `working_dir`, `backup_user`, `backup_group`, `lock_dir`.
    Top(&'static str),
    /// The command at this index of a hook event's list: `run_start`, `pre_peer`, ...
    Hook(&'static str, usize),
    /// A field of the peer at this index; field names are those of `PeerConfig`.
    Peer(usize, &'static str),
}

/// A validation failure: `problem` reads after the field name ("must be absolute, got ...").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub place: Place,
    pub problem: String,
}

/// The checks every config passes, whatever file it came from.
pub(crate) fn validate(config: &Config) -> std::result::Result<(), Invalid> {
    let top = |field, problem| Invalid {
        place: Place::Top(field),
        problem,
    };
    check_absolute(&config.staging_dir).map_err(|problem| top("staging_dir", problem))?;
    for (field, dir) in [
        ("working_dir", &config.working_dir),
        ("lock_dir", &config.lock_dir),
        ("log_file", &config.log_file),
        ("metrics_file", &config.metrics_file),
    ] {
        if let Some(dir) = dir {
            check_absolute(dir).map_err(|problem| top(field, problem))?;
        }
    }
    for (field, name) in [
        ("backup_user", &config.backup_user),
        ("backup_group", &config.backup_group),
    ] {
        if let Some(name) = name {
            check_user(name).map_err(|problem| top(field, problem))?;
        }
    }
    // `jobs` and `timeout` are checked by the loaders, which see the signed number as written;
    // these catch a config built in code.
    if config.jobs == Some(0) {
        return Err(top("jobs", "must be at least 1, got 0".to_string()));
    }
    if config.timeout == Some(0) {
        return Err(top("timeout", "must be at least 1, got 0".to_string()));
    }
    if config.max_entries == Some(0) {
        return Err(top("max_entries", "must be at least 1, got 0".to_string()));
    }
    let hooks = &config.hooks;
    for (event, list) in [
        ("run_start", &hooks.run_start),
        ("pre_peer", &hooks.pre_peer),
        ("post_peer", &hooks.post_peer),
        ("run_end", &hooks.run_end),
    ] {
        for (index, command) in list.iter().enumerate() {
            check_command(command).map_err(|problem| Invalid {
                place: Place::Hook(event, index),
                problem,
            })?;
        }
    }
    for (index, peer) in config.peers.iter().enumerate() {
        validate_peer(peer).map_err(|(field, problem)| Invalid {
            place: Place::Peer(index, field),
            problem,
        })?;
        if config.peers[..index]
            .iter()
            .any(|other| other.name == peer.name)
        {
            return Err(Invalid {
                place: Place::Peer(index, "name"),
                problem: "is used by an earlier peer too (peer names must be unique)".to_string(),
            });
        }
    }
    Ok(())
}

/// Checks one peer, from a config file or built from command-line flags. The error names the
/// `PeerConfig` field and the problem, which reads after it.
pub(crate) fn validate_peer(peer: &PeerConfig) -> std::result::Result<(), (&'static str, String)> {
    check_peer_name(&peer.name, peer.kind).map_err(|problem| ("name", problem))?;
    check_absolute(&peer.collect_dir).map_err(|problem| ("collect_dir", problem))?;
    if let Some(dir) = &peer.working_dir {
        check_absolute(dir).map_err(|problem| ("working_dir", problem))?;
    }
    for (field, user) in [
        ("remote_user", &peer.remote_user),
        ("local_user", &peer.local_user),
    ] {
        if let Some(user) = user {
            check_user(user).map_err(|problem| (field, problem))?;
        }
    }
    for action in &peer.managed_actions {
        check_action(action).map_err(|problem| ("managed_actions", problem))?;
    }
    Ok(())
}

/// The peer's name becomes a directory under the daily staging dir, an argument of the rcp and
/// rsh commands and a lock name, so it must be safe as all three.
pub(crate) fn check_peer_name(name: &str, kind: PeerKind) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!("must not be {name:?}"));
    }
    if name.starts_with('-') {
        return Err(format!("must not start with '-', got {name:?}"));
    }
    if name.contains('/') {
        return Err(format!("must not contain '/', got {name:?}"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "must not contain white space or control characters, got {name:?}"
        ));
    }
    if kind == PeerKind::Remote
        && !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
    {
        return Err(format!(
            "must be a host name (letters, digits, '.', '_', ':' and '-'), got {name:?}"
        ));
    }
    Ok(())
}

pub(crate) fn check_absolute(path: &Path) -> std::result::Result<(), String> {
    let text = path.to_string_lossy();
    if !path.is_absolute() {
        return Err(format!("must be absolute, got {text:?}"));
    }
    if text.contains('\0') {
        return Err(format!("must not contain NUL, got {text:?}"));
    }
    Ok(())
}

/// User and group names as `useradd` accepts them portably; a leading `-` would read as an
/// option of `su` or `chown`.
pub(crate) fn check_user(name: &str) -> std::result::Result<(), String> {
    let portable = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.starts_with('-') || !name.chars().all(portable) {
        return Err(format!(
            "must be a user name (letters, digits, '.', '_' and '-', not starting with '-'), \
             got {name:?}"
        ));
    }
    Ok(())
}

/// Commands are split with shell-words, never run through a shell, so a command that does
/// not split (an unclosed quote) or splits into nothing is refused here, before any run.
pub(crate) fn check_command(command: &str) -> std::result::Result<(), String> {
    command.parse::<super::model::CommandLine>().map(|_| ())
}

/// Managed action names go on the peer's cback command line, where a leading `-` would
/// read as an option (`--full`).
pub(crate) fn check_action(action: &str) -> std::result::Result<(), String> {
    if action.is_empty()
        || action.starts_with('-')
        || !action
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "must be action names (letters, digits, '_' and '-', not starting with '-'), got {action:?}"
        ));
    }
    Ok(())
}

/// Error messages are one line each, whatever the parser or a file name put in them. (Values
/// from the file are quoted with `{:?}`, which escapes line breaks already.)
pub(crate) fn one_line(message: &str) -> String {
    message.replace(|c: char| c.is_control(), " ")
}
