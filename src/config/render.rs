//! The config as native TOML, which the native loader reads back into the same config.

use std::fmt::Write as _;
use std::path::Path;

use super::model::{Config, PeerKind};
use super::rules::one_line;

/// Prints a config as native TOML that `parse` reads back into an equal config (but for
/// `source`). Every peer is written out in full, so no `[defaults]` table is needed.
///
/// Two things cannot be written, as the format has no way to say them: a remote peer without a
/// working dir when the top level has one (it would inherit it), and remote-only settings of a
/// local peer (unused when staging). Neither comes out of a loader.
pub fn render(config: &Config) -> String {
    let mut out = String::new();
    // A line break in the file name would end the comment and inject TOML.
    let _ = writeln!(
        out,
        "# peerstage configuration, from {}",
        one_line(&config.source.display().to_string())
    );
    line(&mut out, "staging_dir", &path_value(&config.staging_dir));
    if let Some(dir) = &config.working_dir {
        line(&mut out, "working_dir", &path_value(dir));
    }
    if let Some(user) = &config.backup_user {
        line(&mut out, "backup_user", &quote(user));
    }
    if let Some(group) = &config.backup_group {
        line(&mut out, "backup_group", &quote(group));
    }
    line(
        &mut out,
        "starting_day",
        &quote(config.starting_day.as_str()),
    );
    if let Some(dir) = &config.lock_dir {
        line(&mut out, "lock_dir", &path_value(dir));
    }
    if let Some(jobs) = config.jobs {
        line(&mut out, "jobs", &jobs.to_string());
    }
    if let Some(timeout) = config.timeout {
        line(&mut out, "timeout", &timeout.to_string());
    }
    if let Some(idle) = config.idle_timeout {
        line(&mut out, "idle_timeout", &idle.to_string());
    }
    if let Some(max) = config.max_entries {
        line(&mut out, "max_entries", &max.to_string());
    }
    if let Some(file) = &config.log_file {
        line(&mut out, "log_file", &path_value(file));
    }
    if let Some(file) = &config.metrics_file {
        line(&mut out, "metrics_file", &path_value(file));
    }
    if !config.multiplex {
        line(&mut out, "multiplex", "false");
    }
    if let Some(verify) = config.verify {
        line(&mut out, "verify", &quote(verify.as_str()));
    }
    if let Some(rate) = config.bwlimit {
        line(&mut out, "bwlimit", &quote(&rate.exact()));
    }

    let hooks = &config.hooks;
    let events = [
        ("run_start", &hooks.run_start),
        ("pre_peer", &hooks.pre_peer),
        ("post_peer", &hooks.post_peer),
        ("run_end", &hooks.run_end),
    ];
    if events.iter().any(|(_, list)| !list.is_empty()) {
        out.push_str("\n[hooks]\n");
        for (event, list) in events {
            if !list.is_empty() {
                line(&mut out, event, &list_value(list));
            }
        }
    }

    for peer in &config.peers {
        out.push_str("\n[[peer]]\n");
        line(&mut out, "name", &quote(&peer.name));
        let kind = match peer.kind {
            PeerKind::Local => "local",
            PeerKind::Remote => "remote",
        };
        line(&mut out, "type", &quote(kind));
        line(&mut out, "collect_dir", &path_value(&peer.collect_dir));
        if peer.kind == PeerKind::Remote {
            if let Some(dir) = &peer.working_dir {
                line(&mut out, "working_dir", &path_value(dir));
            }
            if let Some(user) = &peer.remote_user {
                line(&mut out, "remote_user", &quote(user));
            }
            if let Some(user) = &peer.local_user {
                line(&mut out, "local_user", &quote(user));
            }
            line(&mut out, "rcp_command", &quote(peer.rcp_command.as_str()));
            line(&mut out, "rsh_command", &quote(peer.rsh_command.as_str()));
            line(
                &mut out,
                "cback_command",
                &quote(peer.cback_command.as_str()),
            );
        }
        line(
            &mut out,
            "ignore_failures",
            &quote(peer.ignore_failure.as_str()),
        );
        if let Some(rate) = peer.bwlimit {
            line(&mut out, "bwlimit", &quote(&rate.exact()));
        }
        if peer.kind == PeerKind::Remote {
            line(
                &mut out,
                "managed",
                if peer.managed { "true" } else { "false" },
            );
            line(
                &mut out,
                "managed_actions",
                &list_value(&peer.managed_actions),
            );
        }
    }
    out
}

fn line(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "{key} = {value}");
}

/// A TOML string literal, escaped by the toml crate itself.
pub(super) fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// Paths that are not UTF-8 cannot be written in TOML; they never come out of a loader.
fn path_value(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

fn list_value(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| quote(item)).collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::native::tests::{parse_ok, FULL};
    use crate::config::PeerConfig;
    use std::path::PathBuf;

    fn without_source(mut config: Config) -> Config {
        config.source = PathBuf::new();
        config
    }

    #[test]
    fn render_round_trips() {
        let config = parse_ok(FULL);
        let text = render(&config);
        let again = parse_ok(&text);
        assert_eq!(without_source(again), without_source(config));
    }

    #[test]
    fn render_round_trips_awkward_strings() {
        let mut config = parse_ok("staging_dir = \"/var/backup/st\\\"a'g\u{e9}\"\n");
        config.hooks.run_start = vec!["echo 'multi\nline' \"q\" \\ back".to_string()];
        config.hooks.pre_peer = vec!["printf '%s\\t' \"$PEERSTAGE_PEER\"".to_string()];
        let mut peer = PeerConfig::new("h", PeerKind::Remote, "/c/with space/and\"quote");
        peer.rcp_command = "/usr/bin/scp -o 'ProxyCommand ssh -W %h:%p gw'"
            .parse()
            .unwrap();
        peer.managed = true;
        peer.bwlimit = "1.5M".parse().ok();
        config.peers.push(peer);
        let mut local = PeerConfig::new("local-peer\u{e9}", PeerKind::Local, "/l");
        local.bwlimit = "2000/s".parse().ok();
        config.peers.push(local);
        config.bwlimit = "2MB/s".parse().ok();
        let text = render(&config);
        assert_eq!(without_source(parse_ok(&text)), without_source(config));
    }

    #[test]
    fn render_survives_a_hostile_source_name() {
        let mut config = parse_ok("staging_dir = \"/s\"\n");
        config.source = PathBuf::from("/tmp/x\nstaging_dir = \"/etc\"");
        let again = parse_ok(&render(&config));
        assert_eq!(again.staging_dir, PathBuf::from("/s"));
    }

    #[test]
    fn render_writes_every_remote_field() {
        let config = parse_ok(FULL);
        let text = render(&config);
        assert!(!text.contains("[defaults]"));
        let db1 = text.split("[[peer]]").nth(2).unwrap_or_default();
        for key in [
            "working_dir",
            "remote_user",
            "local_user",
            "rcp_command",
            "rsh_command",
            "cback_command",
            "ignore_failures",
            "managed",
            "managed_actions",
        ] {
            assert!(
                db1.contains(&format!("\n{key} = ")),
                "{key} missing from {db1}"
            );
        }
    }
}
