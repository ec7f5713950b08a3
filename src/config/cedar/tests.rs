use super::*;
use crate::config::native;
use crate::config::DEFAULT_CBACK_COMMAND;

fn parse_ok(text: &str) -> Config {
    match parse(Path::new("/etc/cback3.conf"), text) {
        Ok(config) => config,
        Err(err) => panic!("unexpected error: {err}"),
    }
}

fn parse_err(text: &str) -> String {
    match parse(Path::new("/etc/cback3.conf"), text) {
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

/// A config with the given `<options>` body and `<stage>` body.
fn conf(options: &str, stage: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<cb_config>\n<options>\n{options}\n</options>\n<stage>\n\
         <staging_dir>/var/backup/staging</staging_dir>\n{stage}\n</stage>\n</cb_config>\n"
    )
}

const FIXTURE: &str = include_str!("../../../fixtures/cback3.conf");
const NATIVE_FIXTURE: &str = include_str!("../../../fixtures/pool.toml");

fn without_source(mut config: Config) -> Config {
    config.source = PathBuf::new();
    config
}

#[test]
fn reads_the_fixture() {
    let config = parse_ok(FIXTURE);
    assert_eq!(config.staging_dir, PathBuf::from("/var/backup/staging"));
    assert_eq!(config.working_dir, Some(PathBuf::from("/var/tmp/cback")));
    assert_eq!(config.backup_user.as_deref(), Some("backup"));
    assert_eq!(config.backup_group.as_deref(), Some("backup"));
    assert_eq!(config.starting_day, Weekday::Tuesday);
    assert_eq!(
        config.hooks.run_start,
        vec!["/usr/local/sbin/wake-peers --quiet"]
    );
    assert_eq!(
        config.hooks.run_end,
        vec!["/usr/bin/logger -t cback3 \"staging done\""]
    );
    assert!(config.hooks.pre_peer.is_empty() && config.hooks.post_peer.is_empty());
    assert_eq!(config.peers.len(), 2);

    let local = PeerConfig::new("master", PeerKind::Local, "/var/backup/collect");
    assert_eq!(config.peers[0], local);

    let remote = &config.peers[1];
    assert_eq!(remote.name, "db1.example.com");
    assert_eq!(remote.kind, PeerKind::Remote);
    assert_eq!(remote.collect_dir, PathBuf::from("/var/backup/collect"));
    assert_eq!(remote.working_dir, Some(PathBuf::from("/var/tmp/cback")));
    assert_eq!(remote.remote_user.as_deref(), Some("cback"));
    assert_eq!(remote.local_user, None);
    assert_eq!(
        remote.rcp_command,
        "/usr/bin/scp -B -q -C -o ConnectTimeout=30"
    );
    assert_eq!(remote.rsh_command, "/usr/bin/ssh -o ConnectTimeout=30");
    assert_eq!(remote.cback_command, DEFAULT_CBACK_COMMAND);
    assert_eq!(remote.ignore_failure, IgnoreFailure::Weekly);
    assert!(remote.managed);
    assert_eq!(remote.managed_actions, vec!["collect", "purge"]);
}

#[test]
fn fixture_matches_the_native_fixture() {
    let cedar = parse_ok(FIXTURE);
    let mut native =
        native::parse(Path::new("pool.toml"), NATIVE_FIXTURE).unwrap_or_else(|err| panic!("{err}"));
    // cback3.conf's local user depends on who runs it (Config::load gives remote peers the
    // backup user as root); the native sample writes the root case out.
    for peer in &mut native.peers {
        peer.local_user = None;
    }
    assert_eq!(without_source(cedar), without_source(native));
}

#[test]
fn renders_as_native_toml() {
    let cedar = parse_ok(FIXTURE);
    let text = super::super::render::render(&cedar);
    let native =
        native::parse(Path::new("shown.toml"), &text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    assert_eq!(without_source(native), without_source(cedar));
}

#[test]
fn minimal_config() {
    let config = parse_ok(
        "<cb_config><stage><staging_dir>/s</staging_dir>\
         <peer><name>h</name><type>remote</type><collect_dir>/c</collect_dir></peer>\
         </stage></cb_config>",
    );
    assert_eq!(config.starting_day, Weekday::Monday);
    assert_eq!(config.working_dir, None);
    assert_eq!(config.hooks, HookConfig::default());
    assert_eq!(
        config.peers,
        vec![PeerConfig::new("h", PeerKind::Remote, "/c")]
    );
}

#[test]
fn remote_peers_fall_back_to_options() {
    let config = parse_ok(&conf(
        "<working_dir>/w</working_dir><backup_user>backup</backup_user>\
         <rcp_command>/usr/bin/scp -B</rcp_command><rsh_command>/usr/bin/ssh -4</rsh_command>\
         <cback_command>/opt/cback3</cback_command><managed_actions>collect, , purge</managed_actions>",
        "<peer><name>a</name><type>remote</type><collect_dir>/c</collect_dir><managed>Y</managed></peer>\
         <peer><name>b</name><type>remote</type><collect_dir>/c</collect_dir>\
         <backup_user>bee</backup_user><rcp_command>scp</rcp_command><rsh_command>ssh</rsh_command>\
         <cback_command>cback3</cback_command><managed>y</managed><managed_actions>store</managed_actions></peer>\
         <peer><name>c</name><type>remote</type><collect_dir>/c</collect_dir><managed>N</managed></peer>\
         <peer><name>l</name><type>local</type><collect_dir>/l</collect_dir>\
         <backup_user>x</backup_user><rcp_command>x</rcp_command><managed>Y</managed></peer>",
    ));
    // Local peers come first, as Cedar stages them, and get no remote settings.
    assert_eq!(config.peers[0], PeerConfig::new("l", PeerKind::Local, "/l"));
    let a = &config.peers[1];
    assert_eq!(a.working_dir, Some(PathBuf::from("/w")));
    assert_eq!(a.remote_user.as_deref(), Some("backup"));
    assert_eq!(a.rcp_command, "/usr/bin/scp -B");
    assert_eq!(a.rsh_command, "/usr/bin/ssh -4");
    assert_eq!(a.cback_command, "/opt/cback3");
    assert!(a.managed);
    assert_eq!(a.managed_actions, vec!["collect", "purge"]);
    let b = &config.peers[2];
    assert_eq!(b.remote_user.as_deref(), Some("bee"));
    assert_eq!(
        (b.rcp_command.as_str(), b.rsh_command.as_str()),
        ("scp", "ssh")
    );
    assert_eq!(b.cback_command, "cback3");
    assert_eq!(b.managed_actions, vec!["store"]);
    let c = &config.peers[3];
    assert!(!c.managed);
    assert!(c.managed_actions.is_empty());
}

#[test]
fn peers_section_is_the_fallback() {
    let text = "<cb_config>\n<peers>\n<peer><name>p</name><type>remote</type><collect_dir>/c</collect_dir>\
                <managed>Y</managed><managed_actions>collect</managed_actions></peer>\n</peers>\n\
                <stage><staging_dir>/s</staging_dir></stage>\n</cb_config>";
    let config = parse_ok(text);
    assert_eq!(config.peers.len(), 1);
    assert_eq!(config.peers[0].name, "p");
    assert!(config.peers[0].managed);
    assert_eq!(config.peers[0].managed_actions, vec!["collect"]);
}

#[test]
fn stage_peers_win_and_take_management_from_peers() {
    let text = "<cb_config>\n<peers>\n\
                <peer><name>p</name><type>remote</type><collect_dir>/other</collect_dir>\
                <cback_command>/opt/cback3</cback_command>\
                <managed>Y</managed><managed_actions>collect</managed_actions></peer>\n\
                <peer><name>only-in-peers</name><type>remote</type><collect_dir>/c</collect_dir></peer>\n\
                </peers>\n<stage><staging_dir>/s</staging_dir>\n\
                <peer><name>p</name><type>remote</type><collect_dir>/c</collect_dir></peer>\n\
                <peer><name>q</name><type>remote</type><collect_dir>/c</collect_dir><managed>N</managed></peer>\n\
                </stage>\n</cb_config>";
    let config = parse_ok(text);
    let names: Vec<&str> = config.peers.iter().map(|peer| peer.name.as_str()).collect();
    assert_eq!(names, ["p", "q"]);
    let p = &config.peers[0];
    assert_eq!(p.collect_dir, PathBuf::from("/c"));
    assert!(p.managed);
    assert_eq!(p.managed_actions, vec!["collect"]);
    assert_eq!(p.cback_command, "/opt/cback3");
    assert!(!config.peers[1].managed);
}

#[test]
fn only_stage_hooks_are_used() {
    let config = parse_ok(&conf(
        "<pre_action_hook><action>collect</action><command>echo collect</command></pre_action_hook>\
         <pre_action_hook><action>stage</action><command>echo one</command></pre_action_hook>\
         <post_action_hook><action>stage</action><command>echo done</command></post_action_hook>\
         <pre_action_hook><action>stage</action><command>echo two</command></pre_action_hook>",
        "",
    ));
    assert_eq!(config.hooks.run_start, vec!["echo one", "echo two"]);
    assert_eq!(config.hooks.run_end, vec!["echo done"]);
}

#[test]
fn values_are_read_like_cedar() {
    let config = parse_ok(
        "<cb_config>\n<stage>\n<staging_dir/>\n<staging_dir>\n   /var/backup/st&amp;ge <!-- why --></staging_dir>\n\
         <peer><name> h </name><type>local</type><collect_dir><![CDATA[/c<d>]]></collect_dir></peer>\
         </stage>\n<collect><collect_dir>relative/is/ignored</collect_dir></collect>\n</cb_config>",
    );
    assert_eq!(config.staging_dir, PathBuf::from("/var/backup/st&ge"));
    assert_eq!(config.peers[0].name, "h");
    assert_eq!(config.peers[0].collect_dir, PathBuf::from("/c<d>"));
}

#[test]
fn errors_name_file_line_and_field() {
    let text = conf(
        "",
        "<peer>\n<name>db1</name>\n<type>remote</type>\n<collect_dir>/c</collect_dir>\n\
         <ignore_failures>sometimes</ignore_failures>\n</peer>",
    );
    assert_eq!(
        parse_err(&text),
        "config /etc/cback3.conf line 12: stage/peer \"db1\": ignore_failures must be none, all, daily or weekly, got \"sometimes\""
    );
    let text = conf(
        "",
        "<peer>\n<name>db1</name>\n<type>remote</type>\n<collect_dir>var/x</collect_dir>\n</peer>",
    );
    assert_eq!(
        parse_err(&text),
        "config /etc/cback3.conf line 11: stage/peer \"db1\": collect_dir must be absolute, got \"var/x\""
    );
    let text = conf(
        "",
        "<peer>\n<name>db1</name>\n<type>cloud</type>\n<collect_dir>/c</collect_dir>\n</peer>",
    );
    assert_eq!(
        parse_err(&text),
        "config /etc/cback3.conf line 10: stage/peer \"db1\": type must be local or remote, got \"cloud\""
    );
    let text = conf("<starting_day>someday</starting_day>", "");
    assert_eq!(
        parse_err(&text),
        "config /etc/cback3.conf line 4: options/starting_day must be a day of the week, got \"someday\""
    );
    let text = conf("<working_dir>tmp</working_dir>", "");
    assert_eq!(
        parse_err(&text),
        "config /etc/cback3.conf line 4: options/working_dir must be absolute, got \"tmp\""
    );
}

#[test]
fn malformed_xml() {
    let message = parse_err("<cb_config>\n<stage>\n</stag>\n</cb_config>");
    assert!(
        message.starts_with("config /etc/cback3.conf line 3: not well-formed XML: "),
        "{message}"
    );
    let message = parse_err("");
    assert!(
        message.starts_with("config /etc/cback3.conf line 1: not well-formed XML: "),
        "{message}"
    );
}

#[test]
fn structural_errors() {
    let message = parse_err("<?xml version=\"1.0\"?>\n<config/>");
    assert!(
        message.contains("line 2: not a Cedar Backup config"),
        "{message}"
    );
    let message = parse_err("<cb_config>\n<options/>\n</cb_config>");
    assert_eq!(
        message,
        "config /etc/cback3.conf line 1: stage/staging_dir is required"
    );
    let message = parse_err("<cb_config>\n<stage>\n<staging_dir/>\n</stage>\n</cb_config>");
    assert_eq!(
        message,
        "config /etc/cback3.conf line 2: stage/staging_dir is required"
    );
    let message = parse_err(&conf(
        "",
        "<peer><type>local</type><collect_dir>/c</collect_dir></peer>",
    ));
    assert!(
        message.ends_with("line 8: stage/peer: name is required"),
        "{message}"
    );
    let message = parse_err(&conf("", "<peer><name>x</name><type>local</type></peer>"));
    assert!(
        message.ends_with("line 8: stage/peer \"x\": collect_dir is required"),
        "{message}"
    );
    let message = parse_err(&conf(
        "",
        "<peer><name>x</name><collect_dir>/c</collect_dir></peer>",
    ));
    assert!(
        message.ends_with("line 8: stage/peer \"x\": type is required (local or remote)"),
        "{message}"
    );
    let message = parse_err(&conf(
        "",
        "<peer><name>x</name><type>remote</type><collect_dir>/c</collect_dir><managed>yes</managed></peer>",
    ));
    assert!(
        message.ends_with("stage/peer \"x\": managed must be Y or N, got \"yes\""),
        "{message}"
    );
    let message = parse_err(&conf(
        "<pre_action_hook><action>stage</action></pre_action_hook>",
        "",
    ));
    assert!(
        message.ends_with("line 4: options/pre_action_hook/command is required"),
        "{message}"
    );
}

#[test]
fn shared_validation_applies() {
    let message = parse_err(&conf(
        "",
        "<peer><name>a</name><type>local</type><collect_dir>/c</collect_dir></peer>\n\
         <peer><name>a</name><type>remote</type><collect_dir>/c</collect_dir></peer>",
    ));
    assert!(
        message.contains("line 9: stage/peer \"a\": name is used by an earlier peer"),
        "{message}"
    );
    let message = parse_err(&conf(
        "",
        "<peer><name>host;reboot</name><type>remote</type><collect_dir>/c</collect_dir></peer>",
    ));
    assert!(
        message.contains("line 8: stage/peer \"host;reboot\": name must be a host name"),
        "{message}"
    );
    let message = parse_err(&conf(
        "",
        "<peer><name>h</name><type>remote</type><collect_dir>/c</collect_dir>\n\
         <backup_user>-oProxyCommand=x</backup_user></peer>",
    ));
    assert!(
        message.contains("line 9: stage/peer \"h\": backup_user must be a user name"),
        "{message}"
    );
    let message = parse_err(&conf("<backup_user>back up</backup_user>", ""));
    assert!(
        message.contains("line 4: options/backup_user must be a user name"),
        "{message}"
    );
    let message = parse_err(&conf("<rcp_command>scp 'x</rcp_command>", ""));
    assert!(
        message.contains("line 4: options/rcp_command cannot be split into words"),
        "{message}"
    );
    let message = parse_err(&conf(
        "<managed_actions>collect, rm -rf</managed_actions>",
        "",
    ));
    assert!(
        message.contains("line 4: options/managed_actions must be action names"),
        "{message}"
    );
    let message = parse_err(&conf(
        "<post_action_hook><action>stage</action><command>echo \"x</command></post_action_hook>",
        "",
    ));
    assert!(
        message.contains("line 4: options/post_action_hook/command cannot be split"),
        "{message}"
    );
    let message = parse_err(&conf("<backup_group>-wheel</backup_group>", ""));
    assert!(
        message.contains("line 4: options/backup_group must be a user name"),
        "{message}"
    );
}

#[test]
fn doctype_is_refused() {
    let message = parse_err(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE cb_config [ <!ENTITY base \"/var/backup\"> ]>\n\
         <cb_config><stage><staging_dir>&base;/staging</staging_dir></stage></cb_config>",
    );
    assert!(
        message.starts_with("config /etc/cback3.conf line 1: not well-formed XML: "),
        "{message}"
    );
}
