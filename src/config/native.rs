//! The native TOML config format: reading it (`render` writes it; `rules` checks what every
//! loader reads).
//!
//! ```toml
//! staging_dir = "/var/backup/staging"   # required, absolute
//! working_dir = "/var/tmp/peerstage"    # absolute; the working dir of remote peers
//! backup_user = "backup"
//! backup_group = "backup"
//! starting_day = "monday"               # default monday
//! lock_dir = "/run/peerstage"           # absolute
//! jobs = 4                              # >= 1
//! timeout = 3600                        # seconds, >= 1
//! idle_timeout = 300                    # seconds without a byte moved; 0 turns it off
//! max_entries = 100000                  # most entries a collect dir may list, >= 1
//! multiplex = true                      # one ssh connection per remote peer (OpenSSH)
//! verify = "size"                       # none, size or sha256
//!
//! [defaults]                            # for every remote peer that does not set its own
//! rcp_command = "/usr/bin/scp -B -q -C"
//! rsh_command = "/usr/bin/ssh"
//! cback_command = "/usr/bin/cback3"
//! remote_user = "backup"
//! local_user = "backup"
//! managed_actions = ["collect"]         # for managed peers only
//!
//! [hooks]                               # lists of command lines
//! run_start = []
//! pre_peer = []
//! post_peer = []
//! run_end = []
//!
//! [[peer]]
//! name = "db1"                          # required; a host name for remote peers
//! type = "remote"                       # required: local | remote
//! collect_dir = "/var/backup/collect"   # required, absolute
//! working_dir = "/var/tmp/peerstage"    # remote only; and the rest:
//! # remote_user, local_user, rcp_command, rsh_command, cback_command, managed, managed_actions
//! ignore_failures = "none"              # none | all | daily | weekly
//! ```
//!
//! Remote-only settings are refused on local peers rather than ignored: a local peer is copied
//! with the file system, so such a setting would silently do nothing.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::model::{Config, HookConfig, IgnoreFailure, PeerConfig, PeerKind, Weekday};
use super::rules::{check_action, check_command, check_user, one_line, validate, Place};
use crate::error::{Error, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    staging_dir: Spanned<String>,
    working_dir: Option<Spanned<String>>,
    backup_user: Option<Spanned<String>>,
    backup_group: Option<Spanned<String>>,
    starting_day: Option<Spanned<String>>,
    lock_dir: Option<Spanned<String>>,
    jobs: Option<Spanned<i64>>,
    timeout: Option<Spanned<i64>>,
    idle_timeout: Option<Spanned<i64>>,
    max_entries: Option<Spanned<i64>>,
    multiplex: Option<bool>,
    verify: Option<Spanned<String>>,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    hooks: RawHooks,
    #[serde(default)]
    peer: Vec<RawPeer>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    rcp_command: Option<Spanned<String>>,
    rsh_command: Option<Spanned<String>>,
    cback_command: Option<Spanned<String>>,
    remote_user: Option<Spanned<String>>,
    local_user: Option<Spanned<String>>,
    managed_actions: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    #[serde(default)]
    run_start: Vec<Spanned<String>>,
    #[serde(default)]
    pre_peer: Vec<Spanned<String>>,
    #[serde(default)]
    post_peer: Vec<Spanned<String>>,
    #[serde(default)]
    run_end: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    collect_dir: Spanned<String>,
    working_dir: Option<Spanned<String>>,
    remote_user: Option<Spanned<String>>,
    local_user: Option<Spanned<String>>,
    rcp_command: Option<Spanned<String>>,
    rsh_command: Option<Spanned<String>>,
    cback_command: Option<Spanned<String>>,
    ignore_failures: Option<Spanned<String>>,
    managed: Option<Spanned<bool>>,
    managed_actions: Option<Spanned<Vec<Spanned<String>>>>,
}

impl RawPeer {
    /// The settings that only mean something for a remote peer, with where each was given.
    fn remote_only(&self) -> [(&'static str, Option<Range<usize>>); 8] {
        [
            ("working_dir", self.working_dir.as_ref().map(Spanned::span)),
            ("remote_user", self.remote_user.as_ref().map(Spanned::span)),
            ("local_user", self.local_user.as_ref().map(Spanned::span)),
            ("rcp_command", self.rcp_command.as_ref().map(Spanned::span)),
            ("rsh_command", self.rsh_command.as_ref().map(Spanned::span)),
            (
                "cback_command",
                self.cback_command.as_ref().map(Spanned::span),
            ),
            ("managed", self.managed.as_ref().map(Spanned::span)),
            (
                "managed_actions",
                self.managed_actions.as_ref().map(Spanned::span),
            ),
        ]
    }
}

/// Parses the native TOML config. `path` is only used in error messages.
pub fn parse(path: &Path, text: &str) -> Result<Config> {
    let fail = |span: Range<usize>, message: String| {
        Error::usage(format!(
            "config {} line {}: {}",
            path.display(),
            line_of(text, span.start),
            one_line(&message)
        ))
    };
    let raw: RawFile = toml::from_str(text).map_err(|err| {
        let span = err.span().unwrap_or(0..0);
        // An unknown field's message names the key already.
        let name_key = !err.message().starts_with("unknown field");
        let context = error_context(text, span.start, name_key).unwrap_or_default();
        fail(span, format!("{context}{}", err.message()))
    })?;

    let starting_day = match &raw.starting_day {
        None => Weekday::Monday,
        Some(day) => day
            .get_ref()
            .to_ascii_lowercase()
            .parse::<Weekday>()
            .ok()
            .ok_or_else(|| {
                fail(
                    day.span(),
                    format!(
                        "starting_day must be a day of the week, got {:?}",
                        day.get_ref()
                    ),
                )
            })?,
    };
    let jobs =
        positive(&raw.jobs).map_err(|(span, problem)| fail(span, format!("jobs {problem}")))?;
    let timeout = positive(&raw.timeout)
        .map_err(|(span, problem)| fail(span, format!("timeout {problem}")))?;
    let idle_timeout = match &raw.idle_timeout {
        Some(zero) if *zero.get_ref() == 0 => Some(0),
        other => positive(other)
            .map_err(|(span, problem)| fail(span, format!("idle_timeout {problem} (or 0: off)")))?,
    };
    let max_entries = positive(&raw.max_entries)
        .map_err(|(span, problem)| fail(span, format!("max_entries {problem}")))?;
    let verify = match &raw.verify {
        None => None,
        Some(mode) => Some(
            mode.get_ref()
                .parse::<super::model::Verify>()
                .ok()
                .ok_or_else(|| {
                    fail(
                        mode.span(),
                        format!(
                            "verify must be none, size or sha256, got {:?}",
                            mode.get_ref()
                        ),
                    )
                })?,
        ),
    };

    // Checked where they are written: a bad default is one mistake, not one per peer.
    let defaults = &raw.defaults;
    for (field, value) in [
        ("rcp_command", &defaults.rcp_command),
        ("rsh_command", &defaults.rsh_command),
        ("cback_command", &defaults.cback_command),
    ] {
        if let Some(value) = value {
            check_command(value.get_ref())
                .map_err(|problem| fail(value.span(), format!("defaults.{field} {problem}")))?;
        }
    }
    for (field, value) in [
        ("remote_user", &defaults.remote_user),
        ("local_user", &defaults.local_user),
    ] {
        if let Some(value) = value {
            check_user(value.get_ref())
                .map_err(|problem| fail(value.span(), format!("defaults.{field} {problem}")))?;
        }
    }
    for action in defaults
        .managed_actions
        .iter()
        .flat_map(|list| list.get_ref())
    {
        check_action(action.get_ref()).map_err(|problem| {
            fail(action.span(), format!("defaults.managed_actions {problem}"))
        })?;
    }

    let mut peers = Vec::with_capacity(raw.peer.len());
    // Where each peer's effective settings were written, to point errors at the right line.
    let mut peer_spans: Vec<Spans> = Vec::with_capacity(raw.peer.len());
    for peer in &raw.peer {
        let (config, spans) = build_peer(peer, &raw).map_err(|(span, problem)| {
            fail(span, format!("peer {:?}: {problem}", peer.name.get_ref()))
        })?;
        peers.push(config);
        peer_spans.push(spans);
    }

    let hooks = HookConfig {
        run_start: strings(&raw.hooks.run_start),
        pre_peer: strings(&raw.hooks.pre_peer),
        post_peer: strings(&raw.hooks.post_peer),
        run_end: strings(&raw.hooks.run_end),
    };
    let config = Config {
        source: path.to_path_buf(),
        staging_dir: PathBuf::from(raw.staging_dir.get_ref()),
        working_dir: raw
            .working_dir
            .as_ref()
            .map(|dir| PathBuf::from(dir.get_ref())),
        backup_user: raw.backup_user.as_ref().map(|user| user.get_ref().clone()),
        backup_group: raw
            .backup_group
            .as_ref()
            .map(|group| group.get_ref().clone()),
        starting_day,
        lock_dir: raw
            .lock_dir
            .as_ref()
            .map(|dir| PathBuf::from(dir.get_ref())),
        jobs,
        timeout,
        idle_timeout,
        max_entries,
        multiplex: raw.multiplex.unwrap_or(true),
        verify,
        hooks,
        peers,
    };

    validate(&config).map_err(|invalid| {
        let (span, message) = match invalid.place {
            Place::Top(field) => {
                let span = match field {
                    "staging_dir" => Some(raw.staging_dir.span()),
                    "working_dir" => raw.working_dir.as_ref().map(Spanned::span),
                    "backup_user" => raw.backup_user.as_ref().map(Spanned::span),
                    "backup_group" => raw.backup_group.as_ref().map(Spanned::span),
                    "lock_dir" => raw.lock_dir.as_ref().map(Spanned::span),
                    _ => None,
                };
                (span.unwrap_or(0..0), format!("{field} {}", invalid.problem))
            }
            Place::Hook(event, index) => {
                let list = match event {
                    "run_start" => &raw.hooks.run_start,
                    "pre_peer" => &raw.hooks.pre_peer,
                    "post_peer" => &raw.hooks.post_peer,
                    _ => &raw.hooks.run_end,
                };
                let span = list.get(index).map(Spanned::span).unwrap_or(0..0);
                (span, format!("hooks.{event} {}", invalid.problem))
            }
            Place::Peer(index, field) => {
                let name = &config.peers[index].name;
                let span = peer_spans[index]
                    .get(field)
                    .cloned()
                    .unwrap_or_else(|| raw.peer[index].name.span());
                (span, format!("peer {name:?}: {field} {}", invalid.problem))
            }
        };
        fail(span, message)
    })?;
    Ok(config)
}

/// Where each field of a built peer was written.
type Spans = HashMap<&'static str, Range<usize>>;

/// A problem found while reading the file: where, and what (without the `peer "NAME": ` prefix).
type Problem = (Range<usize>, String);

/// Resolves one `[[peer]]` table against `[defaults]` and the top level.
fn build_peer(peer: &RawPeer, raw: &RawFile) -> std::result::Result<(PeerConfig, Spans), Problem> {
    let kind = match peer.kind.get_ref().as_str() {
        "local" => PeerKind::Local,
        "remote" => PeerKind::Remote,
        other => {
            return Err((
                peer.kind.span(),
                format!("type must be local or remote, got {other:?}"),
            ))
        }
    };
    let mut spans = Spans::new();
    spans.insert("name", peer.name.span());
    spans.insert("collect_dir", peer.collect_dir.span());
    let mut config = PeerConfig::new(
        peer.name.get_ref().clone(),
        kind,
        peer.collect_dir.get_ref(),
    );
    if let Some(mode) = &peer.ignore_failures {
        config.ignore_failure = mode
            .get_ref()
            .parse::<IgnoreFailure>()
            .ok()
            .ok_or_else(|| {
                (
                    mode.span(),
                    format!(
                        "ignore_failures must be none, all, daily or weekly, got {:?}",
                        mode.get_ref()
                    ),
                )
            })?;
    }
    if kind == PeerKind::Local {
        if let Some((field, Some(span))) = peer
            .remote_only()
            .into_iter()
            .find(|(_, span)| span.is_some())
        {
            return Err((span, format!("{field} is only for remote peers")));
        }
        return Ok((config, spans));
    }

    let defaults = &raw.defaults;
    let mut pick =
        |field: &'static str, own: &Option<Spanned<String>>, fallback: &Option<Spanned<String>>| {
            own.as_ref().or(fallback.as_ref()).map(|value| {
                spans.insert(field, value.span());
                value.get_ref().clone()
            })
        };
    config.working_dir =
        pick("working_dir", &peer.working_dir, &raw.working_dir).map(PathBuf::from);
    config.remote_user = pick("remote_user", &peer.remote_user, &defaults.remote_user);
    config.local_user = pick("local_user", &peer.local_user, &defaults.local_user);
    if let Some(command) = pick("rcp_command", &peer.rcp_command, &defaults.rcp_command) {
        config.rcp_command = command;
    }
    if let Some(command) = pick("rsh_command", &peer.rsh_command, &defaults.rsh_command) {
        config.rsh_command = command;
    }
    if let Some(command) = pick(
        "cback_command",
        &peer.cback_command,
        &defaults.cback_command,
    ) {
        config.cback_command = command;
    }
    config.managed = peer
        .managed
        .as_ref()
        .is_some_and(|managed| *managed.get_ref());
    // An unmanaged peer keeps only its own list, so `config show` does not print inherited
    // actions that will never run.
    let actions = match (&peer.managed_actions, config.managed) {
        (Some(own), _) => Some(own),
        (None, true) => defaults.managed_actions.as_ref(),
        (None, false) => None,
    };
    if let Some(actions) = actions {
        spans.insert("managed_actions", actions.span());
        config.managed_actions = strings(actions.get_ref());
        // Point at the very action that is wrong when there is one.
        for action in actions.get_ref() {
            check_action(action.get_ref())
                .map_err(|problem| (action.span(), format!("managed_actions {problem}")))?;
        }
    }
    Ok((config, spans))
}

fn strings(list: &[Spanned<String>]) -> Vec<String> {
    list.iter().map(|item| item.get_ref().clone()).collect()
}

fn positive<T: TryFrom<i64>>(
    value: &Option<Spanned<i64>>,
) -> std::result::Result<Option<T>, Problem> {
    match value {
        None => Ok(None),
        Some(number) => match T::try_from(*number.get_ref()) {
            Ok(converted) if *number.get_ref() >= 1 => Ok(Some(converted)),
            _ => Err((
                number.span(),
                format!("must be at least 1, got {}", number.get_ref()),
            )),
        },
    }
}

/// Names the peer, table and key that a toml error at byte `offset` is about, as a message
/// prefix (`peer "db1": managed: `, or without the key unless `name_key`), since toml's own
/// messages name neither. `None` when the text does not parse as TOML at all or when the error
/// is about a top-level key name itself.
fn error_context(text: &str, offset: usize, name_key: bool) -> Option<String> {
    let Ok(root) = DeTable::parse(text) else {
        return syntax_error_key(text, offset);
    };
    let within = |span: Range<usize>| span.contains(&offset);
    // The entry of `table` whose key or value holds the offset, and whether the value does.
    let entry_at = |table: &DeTable| {
        table.iter().find_map(|(key, value)| {
            if within(value.span()) {
                Some((key.get_ref().to_string(), name_key))
            } else if within(key.span()) {
                Some((key.get_ref().to_string(), false))
            } else {
                None
            }
        })
    };
    for (key, value) in root.get_ref().iter() {
        let key = key.get_ref();
        match value.get_ref() {
            DeValue::Array(items) if key == "peer" => {
                for item in items.iter() {
                    let Some(table) = item.get_ref().as_table() else {
                        continue;
                    };
                    let name = table
                        .iter()
                        .find(|(field, _)| field.get_ref() == "name")
                        .and_then(|(_, name)| name.get_ref().as_str().map(str::to_string));
                    let peer = match name {
                        Some(name) => format!("peer {name:?}: "),
                        None => "peer: ".to_string(),
                    };
                    // A table's span is its `[[peer]]` header, where toml puts a missing field.
                    if within(item.span()) {
                        return Some(peer);
                    }
                    match entry_at(table) {
                        Some((field, true)) => return Some(format!("{peer}{field}: ")),
                        Some((_, false)) => return Some(peer),
                        None => {}
                    }
                }
            }
            DeValue::Table(table) => {
                if within(value.span()) {
                    return Some(format!("{key}: "));
                }
                match entry_at(table) {
                    Some((field, true)) => return Some(format!("{key}.{field}: ")),
                    Some((_, false)) => return Some(format!("{key}: ")),
                    None => {}
                }
            }
            _ if within(value.span()) => return Some(format!("{key}: ")),
            _ => {}
        }
    }
    None
}

/// For a file that does not parse at all: the key at the start of the offending line, when
/// the line is a `key = value` line.
fn syntax_error_key(text: &str, offset: usize) -> Option<String> {
    let start = text
        .get(..offset)?
        .rfind('\n')
        .map_or(0, |newline| newline + 1);
    let line = text.get(start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    plain.then(|| format!("{key}: "))
}

/// The 1-based line holding byte `offset` of `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::render::quote;
    use crate::config::{DEFAULT_CBACK_COMMAND, DEFAULT_RCP_COMMAND, DEFAULT_RSH_COMMAND};

    pub fn parse_ok(text: &str) -> Config {
        match parse(Path::new("/etc/peerstage.toml"), text) {
            Ok(config) => config,
            Err(err) => panic!("unexpected error: {err}"),
        }
    }

    fn parse_err(text: &str) -> String {
        match parse(Path::new("/etc/peerstage.toml"), text) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(err) => {
                assert_eq!(err.exit_code(), crate::error::EXIT_USAGE);
                assert!(
                    !err.message().contains('\n'),
                    "not one line: {}",
                    err.message()
                );
                err.message()
            }
        }
    }

    pub const FULL: &str = r#"
staging_dir = "/var/backup/staging"
working_dir = "/var/tmp/peerstage"
backup_user = "backup"
backup_group = "backup"
starting_day = "Tuesday"
lock_dir = "/run/peerstage"
jobs = 4
timeout = 3600

[defaults]
rcp_command = "/usr/bin/scp -B -q"
rsh_command = "/usr/bin/ssh -o BatchMode=yes"
cback_command = "/usr/local/bin/cback3"
remote_user = "cback"
local_user = "backup"
managed_actions = ["collect"]

[hooks]
run_start = ["/usr/local/bin/notify start"]
pre_peer = ["/usr/local/bin/wake-peer"]
post_peer = ["logger -t peerstage 'peer done'"]
run_end = ["/usr/local/bin/notify end", "sync"]

[[peer]]
name = "master"
type = "local"
collect_dir = "/var/backup/collect"
ignore_failures = "all"

[[peer]]
name = "db1.example.com"
type = "remote"
collect_dir = "/srv/backup/collect"
managed = true

[[peer]]
name = "web1"
type = "remote"
collect_dir = "/var/backup/collect"
working_dir = "/var/tmp/web1"
remote_user = "web"
local_user = "staging"
rcp_command = "/usr/bin/scp -B"
rsh_command = "/usr/bin/ssh"
cback_command = "/usr/bin/cback3"
ignore_failures = "weekly"
managed = true
managed_actions = ["collect", "purge"]

[[peer]]
name = "files"
type = "remote"
collect_dir = "/var/backup/collect"
"#;

    #[test]
    fn parses_every_field_with_fallbacks() {
        let config = parse_ok(FULL);
        assert_eq!(config.source, PathBuf::from("/etc/peerstage.toml"));
        assert_eq!(config.staging_dir, PathBuf::from("/var/backup/staging"));
        assert_eq!(
            config.working_dir,
            Some(PathBuf::from("/var/tmp/peerstage"))
        );
        assert_eq!(config.backup_user.as_deref(), Some("backup"));
        assert_eq!(config.backup_group.as_deref(), Some("backup"));
        assert_eq!(config.starting_day, Weekday::Tuesday);
        assert_eq!(config.lock_dir, Some(PathBuf::from("/run/peerstage")));
        assert_eq!(config.jobs, Some(4));
        assert_eq!(config.timeout, Some(3600));
        assert_eq!(config.hooks.run_start, vec!["/usr/local/bin/notify start"]);
        assert_eq!(
            config.hooks.post_peer,
            vec!["logger -t peerstage 'peer done'"]
        );
        assert_eq!(config.hooks.run_end.len(), 2);
        assert_eq!(config.peers.len(), 4);

        // Local peers take nothing from [defaults] or the top level.
        let mut local = PeerConfig::new("master", PeerKind::Local, "/var/backup/collect");
        local.ignore_failure = IgnoreFailure::All;
        assert_eq!(config.peers[0], local);

        let db1 = &config.peers[1];
        assert_eq!(db1.kind, PeerKind::Remote);
        assert_eq!(db1.working_dir, Some(PathBuf::from("/var/tmp/peerstage")));
        assert_eq!(db1.remote_user.as_deref(), Some("cback"));
        assert_eq!(db1.local_user.as_deref(), Some("backup"));
        assert_eq!(db1.rcp_command, "/usr/bin/scp -B -q");
        assert_eq!(db1.rsh_command, "/usr/bin/ssh -o BatchMode=yes");
        assert_eq!(db1.cback_command, "/usr/local/bin/cback3");
        assert_eq!(db1.ignore_failure, IgnoreFailure::None);
        assert!(db1.managed);
        assert_eq!(db1.managed_actions, vec!["collect"]);

        let web1 = &config.peers[2];
        assert_eq!(web1.working_dir, Some(PathBuf::from("/var/tmp/web1")));
        assert_eq!(web1.remote_user.as_deref(), Some("web"));
        assert_eq!(web1.local_user.as_deref(), Some("staging"));
        assert_eq!(web1.rcp_command, "/usr/bin/scp -B");
        assert_eq!(web1.ignore_failure, IgnoreFailure::Weekly);
        assert_eq!(web1.managed_actions, vec!["collect", "purge"]);

        // Unmanaged: the default actions are not inherited.
        let files = &config.peers[3];
        assert!(!files.managed);
        assert!(files.managed_actions.is_empty());
    }

    #[test]
    fn minimal_config_uses_builtin_defaults() {
        let config = parse_ok(
            "staging_dir = \"/stage\"\n[[peer]]\nname = \"h\"\ntype = \"remote\"\ncollect_dir = \"/c\"\n",
        );
        assert_eq!(config.starting_day, Weekday::Monday);
        assert_eq!(config.jobs, None);
        assert_eq!(config.hooks, HookConfig::default());
        assert_eq!(
            config.peers,
            vec![PeerConfig::new("h", PeerKind::Remote, "/c")]
        );
        assert_eq!(config.peers[0].rcp_command, DEFAULT_RCP_COMMAND);
        assert_eq!(config.peers[0].rsh_command, DEFAULT_RSH_COMMAND);
        assert_eq!(config.peers[0].cback_command, DEFAULT_CBACK_COMMAND);
    }

    #[test]
    fn zero_peers_is_allowed() {
        let config = parse_ok("staging_dir = \"/stage\"\n");
        assert!(config.peers.is_empty());
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let text = "staging_dir = \"/s\"\n\n[[peer]]\nname = \"db1\"\ntype = \"remote\"\ncollect_dir = \"var/x\"\n";
        assert_eq!(
            parse_err(text),
            "config /etc/peerstage.toml line 6: peer \"db1\": collect_dir must be absolute, got \"var/x\""
        );
        assert_eq!(
            parse_err("staging_dir = \"s\"\n"),
            "config /etc/peerstage.toml line 1: staging_dir must be absolute, got \"s\""
        );
        assert_eq!(
            parse_err("staging_dir = \"/s\"\njobs = 0\n"),
            "config /etc/peerstage.toml line 2: jobs must be at least 1, got 0"
        );
        assert_eq!(
            parse_err("staging_dir = \"/s\"\ntimeout = -5\n"),
            "config /etc/peerstage.toml line 2: timeout must be at least 1, got -5"
        );
        assert_eq!(
            parse_err("staging_dir = \"/s\"\nstarting_day = \"someday\"\n"),
            "config /etc/peerstage.toml line 2: starting_day must be a day of the week, got \"someday\""
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let message = parse_err("staging_dir = \"/s\"\nstagingdir = \"/t\"\n");
        assert!(
            message.starts_with("config /etc/peerstage.toml line 2: unknown field `stagingdir`"),
            "{message}"
        );
        let message = parse_err("staging_dir = \"/s\"\n[defaults]\nworking = 1\n");
        assert!(
            message.contains("line 3: defaults: unknown field `working`"),
            "{message}"
        );
        let message = parse_err(
            "staging_dir = \"/s\"\n[[peer]]\nname = \"a\"\ntype = \"local\"\ncollect_dir = \"/c\"\ncolect_dir = \"/d\"\n",
        );
        assert!(
            message.contains("line 6: peer \"a\": unknown field `colect_dir`"),
            "{message}"
        );
        let message = parse_err("staging_dir = \"/s\"\n[hooks]\nrun_begin = []\n");
        assert!(
            message.contains("line 3: hooks: unknown field `run_begin`"),
            "{message}"
        );
    }

    #[test]
    fn toml_errors_name_the_peer_and_key() {
        let peer = "staging_dir = \"/s\"\n[[peer]]\nname = \"x\"\ntype = \"remote\"\ncollect_dir = \"/c\"\n";
        assert_eq!(
            parse_err(&format!("{peer}managed = \"yes\"\n")),
            "config /etc/peerstage.toml line 6: peer \"x\": managed: invalid type: string \"yes\", expected a boolean"
        );
        assert_eq!(
            parse_err(&format!("{peer}[peer.extra]\n")),
            "config /etc/peerstage.toml line 6: peer \"x\": unknown field `extra`, expected one of `name`, `type`, `collect_dir`, `working_dir`, `remote_user`, `local_user`, `rcp_command`, `rsh_command`, `cback_command`, `ignore_failures`, `managed`, `managed_actions`"
        );
        assert_eq!(
            parse_err(&format!("{peer}managed_actions = [\"a\",\n  3]\n")),
            "config /etc/peerstage.toml line 7: peer \"x\": managed_actions: invalid type: integer `3`, expected a string"
        );
        assert_eq!(
            parse_err("staging_dir = \"/s\"\n[defaults]\nrcp_command = [\"scp\"]\n"),
            "config /etc/peerstage.toml line 3: defaults.rcp_command: invalid type: sequence, expected a string"
        );
        assert_eq!(
            parse_err("staging_dir = \"/s\"\n[hooks]\nrun_end = \"sync\"\n"),
            "config /etc/peerstage.toml line 3: hooks.run_end: invalid type: string \"sync\", expected a sequence"
        );
        assert_eq!(
            parse_err("staging_dir = \"/s\"\njobs = \"4\"\n"),
            "config /etc/peerstage.toml line 2: jobs: invalid type: string \"4\", expected i64"
        );
        assert_eq!(
            parse_err("staging_dir = \"/s\"\n[[peer]]\ntype = \"local\"\ncollect_dir = \"/c\"\n"),
            "config /etc/peerstage.toml line 2: peer: missing field `name`"
        );
    }

    #[test]
    fn missing_and_mistyped_fields() {
        let message = parse_err("working_dir = \"/w\"\n");
        assert!(message.contains("missing field `staging_dir`"), "{message}");
        let message =
            parse_err("staging_dir = \"/s\"\n\n[[peer]]\nname = \"a\"\ntype = \"local\"\n");
        assert!(
            message.starts_with(
                "config /etc/peerstage.toml line 3: peer \"a\": missing field `collect_dir`"
            ),
            "{message}"
        );
        let message = parse_err("staging_dir = 3\n");
        assert!(
            message.contains("line 1: staging_dir: invalid type"),
            "{message}"
        );
        let message = parse_err("staging_dir = \"/s\n");
        assert!(
            message.starts_with("config /etc/peerstage.toml line 1: "),
            "{message}"
        );
    }

    #[test]
    fn bad_peer_values() {
        let peer = |body: &str| {
            format!("staging_dir = \"/s\"\n[[peer]]\nname = \"db1\"\ntype = \"remote\"\ncollect_dir = \"/c\"\n{body}")
        };
        assert_eq!(
            parse_err(&peer("ignore_failures = \"sometimes\"\n")),
            "config /etc/peerstage.toml line 6: peer \"db1\": ignore_failures must be none, all, daily or weekly, got \"sometimes\""
        );
        assert!(
            parse_err(&peer("managed_actions = [\"collect\", \"rm -rf\"]\n"))
                .contains("line 6: peer \"db1\": managed_actions must be action names")
        );
        assert!(parse_err(&peer("remote_user = \"-oProxyCommand=x\"\n"))
            .contains("line 6: peer \"db1\": remote_user must be a user name"));
        assert!(parse_err(&peer("rcp_command = \"scp 'unclosed\"\n"))
            .contains("line 6: peer \"db1\": rcp_command cannot be split into words"));
        assert!(parse_err(&peer("rsh_command = \"  \"\n"))
            .contains("line 6: peer \"db1\": rsh_command must be a command line"));
        assert!(parse_err(&peer("working_dir = \"tmp\"\n"))
            .contains("line 6: peer \"db1\": working_dir must be absolute"));
        let message = parse_err("staging_dir = \"/s\"\n[[peer]]\nname = \"db1\"\ntype = \"cloud\"\ncollect_dir = \"/c\"\n");
        assert_eq!(
            message,
            "config /etc/peerstage.toml line 4: peer \"db1\": type must be local or remote, got \"cloud\""
        );
    }

    #[test]
    fn bad_peer_names() {
        let named = |name: &str, kind: &str| {
            format!("staging_dir = \"/s\"\n[[peer]]\nname = {}\ntype = \"{kind}\"\ncollect_dir = \"/c\"\n", quote(name))
        };
        for name in [
            "",
            ".",
            "..",
            "a/b",
            "-oProxyCommand",
            "a b",
            "a\tb",
            "a\nb",
            "a\0b",
        ] {
            let message = parse_err(&named(name, "local"));
            assert!(
                message.contains("line 3: peer ") && message.contains(": name must"),
                "{name:?}: {message}"
            );
        }
        for name in ["host;reboot", "h$(x)", "h@x", "h\\x", "h~"] {
            let message = parse_err(&named(name, "remote"));
            assert!(
                message.contains("name must be a host name"),
                "{name:?}: {message}"
            );
        }
        // A local peer's name is only a directory name: no host name rules.
        parse_ok(&named("my box@home", "local").replace("my box", "my_box"));
        parse_ok(&named("fe80::1", "remote"));
        parse_ok(&named("db-1.example.com", "remote"));
    }

    #[test]
    fn duplicate_peer_names_are_errors() {
        let text = "staging_dir = \"/s\"\n[[peer]]\nname = \"a\"\ntype = \"local\"\ncollect_dir = \"/c\"\n[[peer]]\nname = \"a\"\ntype = \"remote\"\ncollect_dir = \"/c\"\n";
        let message = parse_err(text);
        assert!(
            message.starts_with(
                "config /etc/peerstage.toml line 7: peer \"a\": name is used by an earlier peer"
            ),
            "{message}"
        );
    }

    #[test]
    fn remote_settings_on_local_peers_are_errors() {
        let text = "staging_dir = \"/s\"\n[[peer]]\nname = \"a\"\ntype = \"local\"\ncollect_dir = \"/c\"\nrcp_command = \"scp\"\n";
        assert_eq!(
            parse_err(text),
            "config /etc/peerstage.toml line 6: peer \"a\": rcp_command is only for remote peers"
        );
        let text = "staging_dir = \"/s\"\n[[peer]]\nname = \"a\"\ntype = \"local\"\ncollect_dir = \"/c\"\nmanaged = false\n";
        assert!(parse_err(text).contains("managed is only for remote peers"));
    }

    #[test]
    fn bad_defaults_are_reported_where_written() {
        let message = parse_err("staging_dir = \"/s\"\n[defaults]\nrcp_command = \"\"\n");
        assert_eq!(message, "config /etc/peerstage.toml line 3: defaults.rcp_command must be a command line, got \"\"");
        let message = parse_err("staging_dir = \"/s\"\n[defaults]\nmanaged_actions = [\"a b\"]\n");
        assert!(
            message.contains("line 3: defaults.managed_actions must be action names"),
            "{message}"
        );
        let message = parse_err("staging_dir = \"/s\"\n[defaults]\nlocal_user = \"root user\"\n");
        assert!(
            message.contains("line 3: defaults.local_user must be a user name"),
            "{message}"
        );
    }

    #[test]
    fn bad_top_level_values() {
        assert!(parse_err("staging_dir = \"/s\"\nworking_dir = \"w\"\n")
            .contains("line 2: working_dir must be absolute"));
        assert!(parse_err("staging_dir = \"/s\"\nlock_dir = \"l\"\n")
            .contains("line 2: lock_dir must be absolute"));
        assert!(parse_err("staging_dir = \"/s\"\nbackup_group = \"-g\"\n")
            .contains("line 2: backup_group must be a user name"));
        let message =
            parse_err("staging_dir = \"/s\"\n[hooks]\nrun_end = [\"ok\",\n  \"echo 'oops\"]\n");
        assert!(
            message.starts_with(
                "config /etc/peerstage.toml line 4: hooks.run_end cannot be split into words"
            ),
            "{message}"
        );
    }

    #[test]
    fn line_numbers() {
        assert_eq!(line_of("", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\n", 99), 2);
    }
}
