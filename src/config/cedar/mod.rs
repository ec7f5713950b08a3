//! Cedar Backup 3's `cback3.conf`, read as it is: the `<options>` that matter to staging, the
//! `<stage>` section, and the `<peers>` section as Cedar uses it. Every other section belongs to
//! other Cedar actions and is ignored.
//!
//! Values are read as Cedar's `readString` does (the first same-named child element that has
//! text), except that surrounding white space is trimmed, so a pretty-printed
//! `<staging_dir>\n  /var/backup\n</staging_dir>` works. Two things are stricter than Cedar,
//! which silently drops them: a peer whose `<type>` is neither `local` nor `remote`, and a
//! stage hook without a command.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use roxmltree::{Document, Node};

use super::model::{Config, HookConfig, IgnoreFailure, PeerConfig, PeerKind, Weekday};
use super::rules::{check_action, check_command, one_line, validate, Place};
use crate::error::{Error, Result};

/// One value read from the document, with the element it came from for error messages.
#[derive(Clone, Copy)]
struct Value<'a, 'input> {
    text: &'a str,
    node: Node<'a, 'input>,
}

/// The `<options>` that staging uses.
#[derive(Default)]
struct Options<'a, 'input> {
    working_dir: Option<Value<'a, 'input>>,
    backup_user: Option<Value<'a, 'input>>,
    backup_group: Option<Value<'a, 'input>>,
    rcp_command: Option<Value<'a, 'input>>,
    rsh_command: Option<Value<'a, 'input>>,
    cback_command: Option<Value<'a, 'input>>,
    managed_actions: Option<Value<'a, 'input>>,
}

/// A `<peer>` element as written, before Cedar's fallbacks are applied.
struct RawPeer<'a, 'input> {
    node: Node<'a, 'input>,
    section: &'static str,
    name: Option<Value<'a, 'input>>,
    kind: PeerKind,
    collect_dir: Option<Value<'a, 'input>>,
    ignore_failures: Option<Value<'a, 'input>>,
    backup_user: Option<Value<'a, 'input>>,
    rcp_command: Option<Value<'a, 'input>>,
    rsh_command: Option<Value<'a, 'input>>,
    cback_command: Option<Value<'a, 'input>>,
    managed: Option<(bool, Node<'a, 'input>)>,
    managed_actions: Option<Value<'a, 'input>>,
}

impl RawPeer<'_, '_> {
    fn name(&self) -> &str {
        self.name.map_or("", |name| name.text)
    }
}

struct Reader<'p, 'a, 'input> {
    path: &'p Path,
    doc: &'a Document<'input>,
}

impl Reader<'_, '_, '_> {
    fn line(&self, node: Node) -> u32 {
        self.doc.text_pos_at(node.range().start).row
    }

    fn fail(&self, node: Node, message: &str) -> Error {
        Error::usage(format!(
            "config {} line {}: {}",
            self.path.display(),
            self.line(node),
            one_line(message)
        ))
    }

    fn peer_fail(&self, peer: &RawPeer, node: Node, problem: &str) -> Error {
        let what = match &peer.name {
            Some(name) => format!("{}/peer {:?}", peer.section, name.text),
            None => format!("{}/peer", peer.section),
        };
        self.fail(node, &format!("{what}: {problem}"))
    }
}

/// Parses a `cback3.conf`. `path` is only used in error messages.
pub fn parse(path: &Path, text: &str) -> Result<Config> {
    // roxmltree refuses a DOCTYPE, which keeps entity expansion out of a file read as root;
    // Cedar never writes one.
    let doc = Document::parse(text).map_err(|err| {
        Error::usage(format!(
            "config {} line {}: not well-formed XML: {}",
            path.display(),
            err.pos().row,
            one_line(&err.to_string())
        ))
    })?;
    let reader = Reader { path, doc: &doc };
    let root = doc.root_element();
    if root.tag_name().name() != "cb_config" {
        return Err(reader.fail(
            root,
            &format!(
                "not a Cedar Backup config: the root element is <{}>, not <cb_config>",
                root.tag_name().name()
            ),
        ));
    }

    let options = read_options(root);
    let starting_day = match child_value(child(root, "options"), "starting_day") {
        None => Weekday::Monday,
        Some(day) => day
            .text
            .to_ascii_lowercase()
            .parse::<Weekday>()
            .ok()
            .ok_or_else(|| {
                reader.fail(
                    day.node,
                    &format!(
                        "options/starting_day must be a day of the week, got {:?}",
                        day.text
                    ),
                )
            })?,
    };
    // Checked where they are written: a bad option is one mistake, not one per peer.
    for (field, value) in [
        ("rcp_command", options.rcp_command),
        ("rsh_command", options.rsh_command),
        ("cback_command", options.cback_command),
    ] {
        if let Some(value) = value {
            check_command(value.text).map_err(|problem| {
                reader.fail(value.node, &format!("options/{field} {problem}"))
            })?;
        }
    }
    if let Some(actions) = options.managed_actions {
        for action in comma_list(actions.text) {
            check_action(&action).map_err(|problem| {
                reader.fail(actions.node, &format!("options/managed_actions {problem}"))
            })?;
        }
    }
    let hooks = read_hooks(&reader, root)?;

    let stage = child(root, "stage");
    let staging_dir = child_value(stage, "staging_dir")
        .ok_or_else(|| reader.fail(stage.unwrap_or(root), "stage/staging_dir is required"))?;

    // As Cedar's stage action: the peers of <stage>, or those of <peers> when <stage> has none.
    let mut raw_peers = read_peers(&reader, stage, "stage")?;
    let pool_peers = read_peers(&reader, child(root, "peers"), "peers")?;
    if raw_peers.is_empty() {
        raw_peers = pool_peers;
    } else {
        inherit_management(&mut raw_peers, &pool_peers);
    }
    // Cedar keeps local and remote peers in two lists and stages the local ones first.
    raw_peers.sort_by_key(|peer| peer.kind == PeerKind::Remote);

    let mut peers = Vec::with_capacity(raw_peers.len());
    let mut sources = Vec::with_capacity(raw_peers.len());
    for raw in &raw_peers {
        let (peer, fields) = build_peer(&reader, raw, &options)?;
        peers.push(peer);
        sources.push(fields);
    }

    let config = Config {
        bwlimit: None,
        source: path.to_path_buf(),
        staging_dir: PathBuf::from(staging_dir.text),
        working_dir: options.working_dir.map(|dir| PathBuf::from(dir.text)),
        backup_user: options.backup_user.map(|user| user.text.to_string()),
        backup_group: options.backup_group.map(|group| group.text.to_string()),
        starting_day,
        lock_dir: None,
        jobs: None,
        timeout: None,
        idle_timeout: None,
        max_entries: None,
        log_file: None,
        metrics_file: None,
        multiplex: true,
        verify: None,
        hooks: HookConfig {
            run_start: hooks.pre.iter().map(|hook| hook.text.to_string()).collect(),
            pre_peer: Vec::new(),
            post_peer: Vec::new(),
            run_end: hooks
                .post
                .iter()
                .map(|hook| hook.text.to_string())
                .collect(),
        },
        peers,
    };

    validate(&config).map_err(|invalid| match invalid.place {
        Place::Top(field) => {
            let (section, value) = match field {
                "staging_dir" => ("stage", Some(staging_dir)),
                "working_dir" => ("options", options.working_dir),
                "backup_user" => ("options", options.backup_user),
                "backup_group" => ("options", options.backup_group),
                _ => ("options", None),
            };
            let node = value.map_or(root, |value| value.node);
            reader.fail(node, &format!("{section}/{field} {}", invalid.problem))
        }
        Place::Hook(event, index) => {
            let (element, list) = match event {
                "run_start" => ("pre_action_hook", &hooks.pre),
                _ => ("post_action_hook", &hooks.post),
            };
            let node = list.get(index).map_or(root, |hook| hook.node);
            reader.fail(
                node,
                &format!("options/{element}/command {}", invalid.problem),
            )
        }
        Place::Peer(index, field) => {
            let raw = &raw_peers[index];
            let node = sources[index].get(field).copied().unwrap_or(raw.node);
            let element = match field {
                "remote_user" => "backup_user",
                "ignore_failure" => "ignore_failures",
                other => other,
            };
            reader.peer_fail(raw, node, &format!("{element} {}", invalid.problem))
        }
    })?;
    Ok(config)
}

fn read_options<'a, 'input>(root: Node<'a, 'input>) -> Options<'a, 'input> {
    let Some(section) = child(root, "options") else {
        return Options::default();
    };
    let value = |name| child_value(Some(section), name);
    Options {
        working_dir: value("working_dir"),
        backup_user: value("backup_user"),
        backup_group: value("backup_group"),
        rcp_command: value("rcp_command"),
        rsh_command: value("rsh_command"),
        cback_command: value("cback_command"),
        managed_actions: value("managed_actions"),
    }
}

struct Hooks<'a, 'input> {
    /// The commands of the `stage` pre-action hooks, in document order.
    pre: Vec<Value<'a, 'input>>,
    post: Vec<Value<'a, 'input>>,
}

/// The `stage` action's hooks; hooks of Cedar's other actions do not concern staging.
fn read_hooks<'a, 'input>(
    reader: &Reader<'_, 'a, 'input>,
    root: Node<'a, 'input>,
) -> Result<Hooks<'a, 'input>> {
    let mut hooks = Hooks {
        pre: Vec::new(),
        post: Vec::new(),
    };
    let Some(section) = child(root, "options") else {
        return Ok(hooks);
    };
    for (element, list) in [
        ("pre_action_hook", &mut hooks.pre),
        ("post_action_hook", &mut hooks.post),
    ] {
        for hook in children(section, element) {
            if child_value(Some(hook), "action").map(|action| action.text) != Some("stage") {
                continue;
            }
            let command = child_value(Some(hook), "command").ok_or_else(|| {
                reader.fail(hook, &format!("options/{element}/command is required"))
            })?;
            list.push(command);
        }
    }
    Ok(hooks)
}

fn read_peers<'a, 'input>(
    reader: &Reader<'_, 'a, 'input>,
    section: Option<Node<'a, 'input>>,
    section_name: &'static str,
) -> Result<Vec<RawPeer<'a, 'input>>> {
    let Some(section) = section else {
        return Ok(Vec::new());
    };
    let mut peers = Vec::new();
    for node in children(section, "peer") {
        let value = |name| child_value(Some(node), name);
        let mut peer = RawPeer {
            node,
            section: section_name,
            name: value("name"),
            kind: PeerKind::Local,
            collect_dir: value("collect_dir"),
            ignore_failures: value("ignore_failures"),
            backup_user: None,
            rcp_command: None,
            rsh_command: None,
            cback_command: None,
            managed: None,
            managed_actions: None,
        };
        peer.kind = match value("type") {
            Some(kind) if kind.text == "local" => PeerKind::Local,
            Some(kind) if kind.text == "remote" => PeerKind::Remote,
            Some(kind) => {
                return Err(reader.peer_fail(
                    &peer,
                    kind.node,
                    &format!("type must be local or remote, got {:?}", kind.text),
                ))
            }
            None => {
                return Err(reader.peer_fail(&peer, node, "type is required (local or remote)"))
            }
        };
        // Cedar reads these for remote peers only; on a local peer they are ignored, not refused.
        if peer.kind == PeerKind::Remote {
            peer.backup_user = value("backup_user");
            peer.rcp_command = value("rcp_command");
            peer.rsh_command = value("rsh_command");
            peer.cback_command = value("cback_command");
            peer.managed_actions = value("managed_actions");
            if let Some(managed) = value("managed") {
                let flag = match managed.text {
                    "Y" | "y" => true,
                    "N" | "n" => false,
                    other => {
                        return Err(reader.peer_fail(
                            &peer,
                            managed.node,
                            &format!("managed must be Y or N, got {other:?}"),
                        ))
                    }
                };
                peer.managed = Some((flag, managed.node));
            }
        }
        peers.push(peer);
    }
    Ok(peers)
}

/// Cedar runs managed actions on the managed peers of `<peers>` only, whatever `<stage>` lists.
/// So a remote peer listed in `<stage>` that says nothing about management takes it from the
/// remote peer of the same name in `<peers>`, with the commands used to manage it.
fn inherit_management<'a, 'input>(stage: &mut [RawPeer<'a, 'input>], pool: &[RawPeer<'a, 'input>]) {
    for peer in stage
        .iter_mut()
        .filter(|peer| peer.kind == PeerKind::Remote)
    {
        if peer.managed.is_some() {
            continue;
        }
        let Some(source) = pool
            .iter()
            .find(|other| other.kind == PeerKind::Remote && other.name() == peer.name())
        else {
            continue;
        };
        peer.managed = source.managed;
        peer.managed_actions = peer.managed_actions.or(source.managed_actions);
        peer.rsh_command = peer.rsh_command.or(source.rsh_command);
        peer.cback_command = peer.cback_command.or(source.cback_command);
    }
}

/// For each `PeerConfig` field, the element its value came from.
type Sources<'a, 'input> = HashMap<&'static str, Node<'a, 'input>>;

/// Applies Cedar's fallbacks to one peer.
fn build_peer<'a, 'input>(
    reader: &Reader<'_, 'a, 'input>,
    raw: &RawPeer<'a, 'input>,
    options: &Options<'a, 'input>,
) -> Result<(PeerConfig, Sources<'a, 'input>)> {
    let name = raw
        .name
        .ok_or_else(|| reader.peer_fail(raw, raw.node, "name is required"))?;
    let collect_dir = raw
        .collect_dir
        .ok_or_else(|| reader.peer_fail(raw, raw.node, "collect_dir is required"))?;
    let mut fields = HashMap::new();
    fields.insert("name", name.node);
    fields.insert("collect_dir", collect_dir.node);
    let mut peer = PeerConfig::new(name.text, raw.kind, collect_dir.text);
    if let Some(mode) = raw.ignore_failures {
        fields.insert("ignore_failure", mode.node);
        peer.ignore_failure = mode.text.parse::<IgnoreFailure>().ok().ok_or_else(|| {
            reader.peer_fail(
                raw,
                mode.node,
                &format!(
                    "ignore_failures must be none, all, daily or weekly, got {:?}",
                    mode.text
                ),
            )
        })?;
    }
    if raw.kind == PeerKind::Local {
        return Ok((peer, fields));
    }

    let mut pick =
        |field: &'static str, own: Option<Value<'a, 'input>>, option: Option<Value<'a, 'input>>| {
            own.or(option).map(|value| {
                fields.insert(field, value.node);
                value.text.to_string()
            })
        };
    peer.working_dir = pick("working_dir", None, options.working_dir).map(PathBuf::from);
    peer.remote_user = pick("remote_user", raw.backup_user, options.backup_user);
    // Cedar's local user is the backup user when it runs as root: that depends on who runs the
    // pool, not on the file, so it is left to the run.
    peer.local_user = None;
    let commands = [
        (
            "rcp_command",
            pick("rcp_command", raw.rcp_command, options.rcp_command),
        ),
        (
            "rsh_command",
            pick("rsh_command", raw.rsh_command, options.rsh_command),
        ),
        (
            "cback_command",
            pick("cback_command", raw.cback_command, options.cback_command),
        ),
    ];
    for (field, command) in commands {
        // Unset: Cedar's default, which PeerConfig::new gave already.
        let Some(command) = command else { continue };
        let parsed = command.parse().map_err(|problem| {
            let node = fields.get(field).copied().unwrap_or(raw.node);
            reader.peer_fail(raw, node, &format!("{field} {problem}"))
        })?;
        match field {
            "rcp_command" => peer.rcp_command = parsed,
            "rsh_command" => peer.rsh_command = parsed,
            _ => peer.cback_command = parsed,
        }
    }
    if let Some((managed, node)) = raw.managed {
        fields.insert("managed", node);
        peer.managed = managed;
    }
    // An unmanaged peer keeps only its own list, as in the native format.
    let actions = match (raw.managed_actions, peer.managed) {
        (Some(own), _) => Some(own),
        (None, true) => options.managed_actions,
        (None, false) => None,
    };
    if let Some(actions) = actions {
        fields.insert("managed_actions", actions.node);
        peer.managed_actions = comma_list(actions.text);
    }
    Ok((peer, fields))
}

/// Cedar's `parseCommaSeparatedString`: split on commas, trim, drop empty items.
fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

fn children<'a, 'input>(
    parent: Node<'a, 'input>,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'input>> {
    parent
        .children()
        .filter(move |node| node.is_element() && node.tag_name().name() == name)
}

fn child<'a, 'input>(parent: Node<'a, 'input>, name: &'static str) -> Option<Node<'a, 'input>> {
    children(parent, name).next()
}

/// Cedar's `readString`: the text of the first child element of that name that has any.
fn child_value<'a, 'input>(
    parent: Option<Node<'a, 'input>>,
    name: &'static str,
) -> Option<Value<'a, 'input>> {
    children(parent?, name).find_map(|node| {
        let text = node.children().find(Node::is_text)?.text()?.trim();
        (!text.is_empty()).then_some(Value { text, node })
    })
}

#[cfg(test)]
mod tests;
