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
    let peer =
        "staging_dir = \"/s\"\n[[peer]]\nname = \"x\"\ntype = \"remote\"\ncollect_dir = \"/c\"\n";
    assert_eq!(
        parse_err(&format!("{peer}managed = \"yes\"\n")),
        "config /etc/peerstage.toml line 6: peer \"x\": managed: invalid type: string \"yes\", expected a boolean"
    );
    assert_eq!(
        parse_err(&format!("{peer}[peer.extra]\n")),
        "config /etc/peerstage.toml line 6: peer \"x\": unknown field `extra`, expected one of `name`, `type`, `collect_dir`, `working_dir`, `remote_user`, `local_user`, `rcp_command`, `rsh_command`, `cback_command`, `ignore_failures`, `managed`, `managed_actions`, `bwlimit`"
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
    let message = parse_err("staging_dir = \"/s\"\n\n[[peer]]\nname = \"a\"\ntype = \"local\"\n");
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
    let message = parse_err(
        "staging_dir = \"/s\"\n[[peer]]\nname = \"db1\"\ntype = \"cloud\"\ncollect_dir = \"/c\"\n",
    );
    assert_eq!(
        message,
        "config /etc/peerstage.toml line 4: peer \"db1\": type must be local or remote, got \"cloud\""
    );
}

#[test]
fn bad_peer_names() {
    let named = |name: &str, kind: &str| {
        format!(
            "staging_dir = \"/s\"\n[[peer]]\nname = {}\ntype = \"{kind}\"\ncollect_dir = \"/c\"\n",
            quote(name)
        )
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
    assert_eq!(
        message,
        "config /etc/peerstage.toml line 3: defaults.rcp_command must be a command line, got \"\""
    );
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
fn bandwidth_limits_for_the_run_and_for_a_peer() {
    let config = parse_ok(
        "staging_dir = \"/s\"\nbwlimit = \"10MiB/s\"\n[[peer]]\nname = \"a\"\ntype = \"local\"\ncollect_dir = \"/c\"\nbwlimit = \"500 KiB/s\"\n[[peer]]\nname = \"b\"\ntype = \"remote\"\ncollect_dir = \"/c\"\n",
    );
    let rate = |text: &str| text.parse::<crate::rate::Rate>().ok();
    assert_eq!(config.bwlimit, rate("10MiB/s"));
    assert_eq!(config.peers[0].bwlimit, rate("500KiB/s"));
    assert_eq!(config.peers[1].bwlimit, None);
    assert_eq!(
        parse_err("staging_dir = \"/s\"\nbwlimit = \"fast\"\n"),
        "config /etc/peerstage.toml line 2: bwlimit: \"fast\" is not a rate: write bytes per second, like 10MiB/s, 500KiB/s or 2MB/s"
    );
    let message = parse_err(
        "staging_dir = \"/s\"\n[[peer]]\nname = \"db1\"\ntype = \"remote\"\ncollect_dir = \"/c\"\nbwlimit = \"0\"\n",
    );
    assert!(
        message.starts_with(
            "config /etc/peerstage.toml line 6: peer \"db1\": bwlimit: \"0\" is not a rate"
        ),
        "{message}"
    );
    let message = parse_err("staging_dir = \"/s\"\nbwlimit = 100\n");
    assert!(message.contains("line 2: bwlimit: "), "{message}");
}

#[test]
fn line_numbers() {
    assert_eq!(line_of("", 0), 1);
    assert_eq!(line_of("a\nb\nc", 2), 2);
    assert_eq!(line_of("a\nb\nc", 4), 3);
    assert_eq!(line_of("a\n", 99), 2);
}
