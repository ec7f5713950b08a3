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
//! log_file = "/var/log/peerstage.log"   # absolute; timestamped lines of every run
//! metrics_file = "/var/lib/prometheus/node-exporter/peerstage.prom"   # absolute
//! multiplex = true                      # one ssh connection per remote peer (OpenSSH)
//! verify = "size"                       # none, size or sha256
//! bwlimit = "10MiB/s"                   # the whole run's rate, shared by the peers staged at
//!                                       # once: B, kB, MB, GB, KiB, MiB, GiB (K, M, G: KiB...)
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
//! bwlimit = "2MiB/s"                    # this peer's own rate (the run's applies too)
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
use crate::rate::Rate;

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
    log_file: Option<Spanned<String>>,
    metrics_file: Option<Spanned<String>>,
    multiplex: Option<bool>,
    verify: Option<Spanned<String>>,
    bwlimit: Option<Spanned<String>>,
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
    bwlimit: Option<Spanned<String>>,
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
    let bwlimit = rate(&raw.bwlimit).map_err(|(span, problem)| fail(span, problem))?;
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
        bwlimit,
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
        log_file: raw
            .log_file
            .as_ref()
            .map(|file| PathBuf::from(file.get_ref())),
        metrics_file: raw
            .metrics_file
            .as_ref()
            .map(|file| PathBuf::from(file.get_ref())),
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
                    "log_file" => raw.log_file.as_ref().map(Spanned::span),
                    "metrics_file" => raw.metrics_file.as_ref().map(Spanned::span),
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
    config.bwlimit = rate(&peer.bwlimit)?;
    if let Some(limit) = &peer.bwlimit {
        spans.insert("bwlimit", limit.span());
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
    let commands = [
        (
            "rcp_command",
            pick("rcp_command", &peer.rcp_command, &defaults.rcp_command),
        ),
        (
            "rsh_command",
            pick("rsh_command", &peer.rsh_command, &defaults.rsh_command),
        ),
        (
            "cback_command",
            pick(
                "cback_command",
                &peer.cback_command,
                &defaults.cback_command,
            ),
        ),
    ];
    for (field, command) in commands {
        let Some(command) = command else { continue };
        let parsed = command.parse().map_err(|problem| {
            let span = spans.get(field).cloned().unwrap_or(0..0);
            (span, format!("{field} {problem}"))
        })?;
        match field {
            "rcp_command" => config.rcp_command = parsed,
            "rsh_command" => config.rsh_command = parsed,
            _ => config.cback_command = parsed,
        }
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

/// A `bwlimit`, read as `Rate` reads it.
fn rate(value: &Option<Spanned<String>>) -> std::result::Result<Option<Rate>, Problem> {
    match value {
        None => Ok(None),
        Some(text) => text
            .get_ref()
            .parse::<Rate>()
            .map(Some)
            .map_err(|problem| (text.span(), format!("bwlimit: {problem}"))),
    }
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
pub(super) mod tests;
