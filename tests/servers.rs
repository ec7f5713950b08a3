//! Remote peers as they are in the field, through the `peerstage` binary: connection options
//! written only in the rcp command (the rsh command cannot reach the peer), peers without an
//! SFTP server (OpenSSH without the subsystem, Dropbear without sftp-server), Dropbear with
//! one, login shells that print a banner, rcp wrappers that are not scp with a collect dir
//! with spaces, bash, fish and tcsh login shells, and an sftp-only account.
//!
//! Every server is the test's own, on a free 127.0.0.1 port with throwaway keys (see
//! `common/servers.rs`); every command gets a `--lock-dir` in the server's temp dir. These
//! tests need root (they create accounts and start servers that switch to them) and fail,
//! saying so, without it.

mod common;
#[path = "common/servers.rs"]
mod servers;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use servers::*;

/// An rsh command as many cback3.conf files have it: plain ssh, no options. It cannot reach
/// a test server (no config sends the peer's name to loopback, so the name does not resolve).
const PLAIN_SSH: &str = "/usr/bin/ssh";

/// Words a shell reads specially, each of which must reach the remote command as written.
const SHELL_WORDS: [&str; 18] = [
    "!hist",
    "a b",
    "it's",
    r"back\slash",
    r"two\\backslashes",
    "$HOME",
    "`id`",
    "$(id)",
    "*",
    "~",
    "{a,b}",
    ";",
    "",
    "%x",
    "\"quoted\"",
    "a  two  spaces",
    "tab\there",
    "#not-a-comment",
];

// ---------------------------------------------------------------------------------------------
// A remote peer of one of the test's servers

struct Peer<'a> {
    server: &'a Server,
    /// The account to log in as (`--remote-user`); None: the server's default (root).
    user: Option<&'static Account>,
    collect: PathBuf,
    rcp: String,
    rsh: String,
    /// Numbers the target and staging dirs of successive commands.
    made: std::cell::Cell<u32>,
}

impl<'a> Peer<'a> {
    fn new(server: &'a Server, user: Option<&'static Account>, collect: PathBuf) -> Peer<'a> {
        Peer {
            server,
            user,
            collect,
            rcp: server.rcp_command(),
            rsh: server.rsh_command(),
            made: std::cell::Cell::new(0),
        }
    }

    fn with_rcp(mut self, rcp: impl Into<String>) -> Self {
        self.rcp = rcp.into();
        self
    }

    fn with_rsh(mut self, rsh: impl Into<String>) -> Self {
        self.rsh = rsh.into();
        self
    }

    fn base(&self) -> &Path {
        self.server.dir.path()
    }

    fn dir(&self, rel: &str) -> PathBuf {
        mkdir(&self.base().join(rel))
    }

    /// A new dir `prefix-N` under the base.
    fn fresh(&self, prefix: &str) -> PathBuf {
        self.made.set(self.made.get() + 1);
        self.dir(&format!("{prefix}-{}", self.made.get()))
    }

    fn locks(&self) -> String {
        p(&self.base().join("locks"))
    }

    fn host(&self) -> String {
        self.server.host()
    }

    fn user_name(&self) -> Option<&'static str> {
        self.user.map(|account| account.name)
    }

    /// The PEER arguments.
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--host".to_string(),
            self.host(),
            "--collect-dir".into(),
            p(&self.collect),
            "--working-dir".into(),
            p(&self.dir("work")),
            "--rcp-command".into(),
            self.rcp.clone(),
            "--rsh-command".into(),
            self.rsh.clone(),
        ];
        if let Some(user) = self.user_name() {
            args.extend(["--remote-user".to_string(), user.to_string()]);
        }
        args
    }

    /// `peerstage SUB --lock-dir LOCKS OPTS... PEER... TAIL...`
    fn cmd(&self, sub: &str, opts: &[&str], tail: &[&str]) -> Out {
        run(peerstage()
            .current_dir(self.base())
            .args([sub, "--lock-dir", &self.locks()])
            .args(opts)
            .args(self.args())
            .args(tail))
    }

    fn check(&self, opts: &[&str]) -> Out {
        self.cmd("check", opts, &[])
    }

    fn stage(&self, target: &Path, opts: &[&str]) -> Out {
        let target = p(target);
        let mut all = vec!["--target", target.as_str()];
        all.extend_from_slice(opts);
        self.cmd("stage", &all, &[])
    }

    fn mark(&self, opts: &[&str]) -> Out {
        self.cmd("mark", opts, &[])
    }

    /// `peerstage exec OPTS PEER -- WORDS...`
    fn exec(&self, opts: &[&str], words: &[&str]) -> Out {
        let mut tail = vec!["--"];
        tail.extend_from_slice(words);
        self.cmd("exec", opts, &tail)
    }

    /// `peerstage run OPTS --config POOL --date DATE --json` for a pool of this one peer,
    /// staging into `staging`.
    fn pool(&self, staging: &Path, opts: &[&str]) -> Out {
        let mut text = format!(
            "staging_dir = {}\nworking_dir = {}\nlock_dir = {}\n\n\
             [[peer]]\nname = {}\ntype = \"remote\"\ncollect_dir = {}\n\
             rcp_command = {}\nrsh_command = {}\n",
            q(&p(staging)),
            q(&p(&self.dir("work"))),
            q(&self.locks()),
            q(&self.host()),
            q(&p(&self.collect)),
            q(&self.rcp),
            q(&self.rsh),
        );
        if let Some(user) = self.user_name() {
            text += &format!("remote_user = {}\n", q(user));
        }
        let config = write_file(
            &staging.with_file_name(format!(
                "{}.toml",
                staging.file_name().unwrap().to_string_lossy()
            )),
            text,
        );
        let config = p(&config);
        let mut args = vec!["run"];
        args.extend_from_slice(opts);
        args.extend(["--config", &config, "--date", DATE, "--json"]);
        run(peerstage().current_dir(self.base()).args(&args))
    }

    /// check, stage, mark and a pool run of this peer, each with `opts`, must all succeed:
    /// the files staged byte for byte, the stage indicator on the peer, the run's status T.
    /// Returns each command's output, for more checks.
    fn works(&self, tag: &str, opts: &[&str]) -> Vec<(String, Out)> {
        let mut outs = Vec::new();
        let what = |step: &str| format!("{step} ({tag})");

        let out = self.check(opts);
        out.expect_code(0, &what("check"));
        outs.push((what("check"), out));

        let target = self.fresh("target");
        let expected = regular_files(&self.collect);
        let out = self.stage(&target, opts);
        out.expect_code(0, &what("stage"));
        assert_same_files(&target, &expected, &what("stage"), &out);
        outs.push((what("stage"), out));

        let indicator = self.collect.join("cback.stage");
        remove_if_there(&indicator);
        let out = self.mark(opts);
        out.expect_code(0, &what("mark"));
        assert!(
            indicator.is_file(),
            "{}: no stage indicator {}\n{}",
            what("mark"),
            indicator.display(),
            out.describe()
        );
        outs.push((what("mark"), out));

        remove_if_there(&indicator);
        let staging = self.fresh("staging");
        let expected = regular_files(&self.collect);
        let out = self.pool(&staging, opts);
        out.expect_code(0, &what("run"));
        let report = json_of(&out);
        assert_eq!(
            report["status"],
            "T",
            "{}: run status\n{report:#}\n{}",
            what("run"),
            out.describe()
        );
        let entry = report["peers"]
            .as_array()
            .and_then(|peers| peers.iter().find(|peer| peer["peer"] == self.host()))
            .unwrap_or_else(|| panic!("no peer {} in the report\n{report:#}", self.host()));
        assert_eq!(
            entry["status"],
            "T",
            "{}: peer status\n{report:#}",
            what("run")
        );
        assert_same_files(
            &staging.join(DAY).join(self.host()),
            &expected,
            &what("run"),
            &out,
        );
        assert!(
            indicator.is_file(),
            "{}: no stage indicator {}",
            what("run"),
            indicator.display()
        );
        outs.push((what("run"), out));
        outs
    }
}

fn slug(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn remove_if_there(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("rm {}: {e}", path.display()),
    }
}

/// `target` holds exactly `expected`: the same names, the same bytes, nothing else.
#[track_caller]
fn assert_same_files(
    target: &Path,
    expected: &std::collections::BTreeMap<std::ffi::OsString, Vec<u8>>,
    what: &str,
    out: &Out,
) {
    let got = regular_files(target);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: files in {}\n{}",
        target.display(),
        out.describe()
    );
    for (name, data) in expected {
        assert!(
            &got[name] == data,
            "{what}: bytes of {:?} differ\n{}",
            name,
            out.describe()
        );
    }
    assert_eq!(
        list_dir(target).len(),
        got.len(),
        "{what}: {} holds more than regular files: {:?}",
        target.display(),
        list_dir(target)
    );
}

/// How many stderr lines contain `needle`, any case.
fn lines_with(out: &Out, needle: &str) -> usize {
    let needle = needle.to_lowercase();
    out.stderr
        .lines()
        .filter(|line| line.to_lowercase().contains(&needle))
        .count()
}

/// stdout is `expected`, after the account's banner if it prints one.
#[track_caller]
fn assert_output_after_banner(out: &Out, login: Login, expected: &str, what: &str) {
    let before = out.stdout.strip_suffix(expected);
    assert!(
        before == Some("") || before == Some(login.banner()),
        "{what}: stdout is not {:?} after the banner {:?}\n{}",
        expected,
        login.banner(),
        out.describe()
    );
}

/// `printf '%s|' WORDS...` prints this.
fn joined(words: &[&str]) -> String {
    words.iter().map(|w| format!("{w}|")).collect()
}

/// An admin's check that `login` logs in to `server` and gets its own login shell.
#[track_caller]
fn assert_logs_in(server: &Server, login: Login) {
    let name = account(login).name;
    let what = format!("test problem: {name} on {:?}", server.flavor);
    let out = server.ssh(Some(name), "printf ok");
    if login == Login::SftpOnly {
        // sshd says so only to an account that logged in.
        assert!(
            !out.stdout.contains("ok") && out.stdout.contains("allows sftp connections only"),
            "{what}: ssh -l {name} printf ok should log in and be refused the command\n{}\n\
             server log:\n{}",
            out.describe(),
            server.log()
        );
        return;
    }
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, format!("{}ok", login.banner()).as_str()),
        "{what}: ssh -l {name} printf ok\n{}\nserver log:\n{}",
        out.describe(),
        server.log()
    );
    let out = server.ssh(Some(name), login.shell_probe());
    let shown = out.stdout.strip_prefix(login.banner()).unwrap_or("");
    assert!(
        out.code == 0
            && shown.starts_with(login.shell_tag())
            && shown.trim_end().len() > login.shell_tag().len(),
        "{what}: the login shell is not {}\n{}",
        login.shell(),
        out.describe()
    );
}

/// An admin's check of the copies a server allows: scp's default (SFTP) protocol works
/// exactly when the server has an SFTP server, and legacy scp (`-O`) always.
#[track_caller]
fn assert_scp_protocols(server: &Server, user: Option<&Account>) {
    let file = server.collect_dir("scp-probe", user).join("cback.collect");
    let from = server.remote(user.map(|a| a.name), &file);
    for (flag, works) in [("-s", server.has_sftp), ("-O", true)] {
        let to = server.dir.path().join(format!("scp-probe{flag}"));
        let out = server.scp(&[flag], &from, &p(&to));
        assert_eq!(
            out.code == 0 && to.is_file(),
            works,
            "test problem: scp {flag} from {:?} (user {:?}) should {}work\n{}\nserver log:\n{}",
            server.flavor,
            user.map(|a| a.name),
            if works { "" } else { "not " },
            out.describe(),
            server.log()
        );
    }
}

// =============================================================================================
// The harness itself

/// The OpenSSH servers and the accounts the other tests use do what those take for granted,
/// checked with plain ssh and scp: each account logs in and gets its own login shell (the
/// banner account's banner first), the sftp-only account gets no shell but SFTP, and scp's
/// SFTP protocol works exactly where there is an SFTP subsystem while legacy scp works
/// everywhere.
#[test]
fn the_openssh_test_servers_and_accounts_work_with_plain_ssh_and_scp() {
    let openssh = Server::openssh(Some("internal-sftp"), &sftp_only_config());
    for login in Login::SHELLS {
        assert_logs_in(&openssh, login);
    }
    assert_scp_protocols(&openssh, Some(account(Login::Bash)));
    assert_scp_protocols(&openssh, None);
    let sftp_only = account(Login::SftpOnly);
    assert_logs_in(&openssh, Login::SftpOnly);
    let file = openssh
        .collect_dir("sftp-only-probe", Some(sftp_only))
        .join("cback.collect");
    let to = openssh.dir.path().join("sftp-only-probe-copy");
    let out = openssh.scp(&[], &openssh.remote(Some(sftp_only.name), &file), &p(&to));
    assert!(
        out.code == 0 && to.is_file(),
        "test problem: scp from the sftp-only account\n{}",
        out.describe()
    );

    let no_sftp = Server::openssh(None, "");
    assert_logs_in(&no_sftp, Login::Bash);
    assert_scp_protocols(&no_sftp, None);
}

/// The same for Dropbear: every account with a shell logs in to it with the client key and
/// gets its own login shell; scp's SFTP protocol works with sftp-server and not without it
/// (while the machine's sftp-server stays as it is), legacy scp works with both.
#[test]
fn the_dropbear_test_servers_and_accounts_work_with_plain_ssh_and_scp() {
    let dropbear = Server::dropbear(true, &Login::SHELLS);
    for login in Login::SHELLS {
        assert_logs_in(&dropbear, login);
    }
    assert_scp_protocols(&dropbear, Some(account(Login::Bash)));

    let dropbear_no_sftp = Server::dropbear(false, &[Login::Bash]);
    assert_logs_in(&dropbear_no_sftp, Login::Bash);
    assert_scp_protocols(&dropbear_no_sftp, Some(account(Login::Bash)));
}

// =============================================================================================
// 1. Connection options only in the rcp command

/// A peer reached through options that only its rcp command carries (as in many cback3.conf
/// files: `<rcp_command>` has them, `<rsh_command>` is plain ssh): check, stage, mark and a
/// pool run all succeed, with and without multiplexing. `drop` are the settings the ssh_config
/// leaves out, so that `option` is what reaches the peer.
fn connection_only_in_the_rcp_command(drop: &[&str], option: impl Fn(&Server) -> String) {
    let server = Server::openssh(Some("internal-sftp"), "");
    let config = if drop.is_empty() {
        server.ssh_config.clone()
    } else {
        server.config_without(drop)
    };
    let option = option(&server);
    let collect = server.collect_dir("collect", None);

    // The premises: the rsh command cannot reach the peer, the rcp command can, and without
    // its option it could not.
    let rsh = run(Command::new(PLAIN_SSH)
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"])
        .args([server.host().as_str(), "true"])
        .stdin(Stdio::null()));
    assert_ne!(
        rsh.code,
        0,
        "test problem: plain ssh reaches the test server\n{}",
        rsh.describe()
    );
    let from = server.remote(None, &collect.join("cback.collect"));
    let scp = |options: &str, to: &str| {
        let to = server.dir.path().join(to);
        let mut cmd = Command::new(SCP);
        cmd.arg("-F").arg(&config).args(["-B", "-q"]);
        cmd.args(options.split_whitespace()).arg(&from).arg(&to);
        (run(cmd.stdin(Stdio::null())), to)
    };
    let (out, to) = scp(&option, "premise-with");
    assert!(
        out.code == 0 && to.is_file(),
        "test problem: scp -F CONFIG {option} does not reach the server\n{}",
        out.describe()
    );
    if !drop.is_empty() {
        let (out, to) = scp("", "premise-without");
        assert!(
            out.code != 0 && !to.exists(),
            "test problem: scp -F CONFIG reaches the server without {option}\n{}",
            out.describe()
        );
    }

    let rcp = format!("{SCP} -F {} {option} -B -q -C", p(&config));
    let peer = Peer::new(&server, None, collect)
        .with_rcp(&rcp)
        .with_rsh(PLAIN_SSH);
    for (mode, opts) in MUX_MODES {
        peer.works(&format!("rcp {rcp}, rsh {PLAIN_SSH}, {mode}"), opts);
    }
}

#[test]
fn a_port_given_only_as_scp_capital_p_in_the_rcp_command_reaches_the_peer() {
    connection_only_in_the_rcp_command(&["Port"], |s| format!("-P {}", s.port));
}

#[test]
fn a_port_given_only_as_an_o_option_of_the_rcp_command_reaches_the_peer() {
    connection_only_in_the_rcp_command(&["Port"], |s| format!("-o Port={}", s.port));
}

#[test]
fn an_identity_given_only_in_the_rcp_command_reaches_the_peer() {
    connection_only_in_the_rcp_command(&["IdentityFile"], |s| format!("-i {}", p(&s.client_key)));
}

#[test]
fn an_rcp_command_with_a_bandwidth_limit_and_a_plain_rsh_command_stages() {
    connection_only_in_the_rcp_command(&[], |_| "-l 100000".to_string());
}

// =============================================================================================
// 2. Peers without an SFTP server

/// check, stage, mark and run of a peer without an SFTP server, with the default rcp
/// command (scp with no protocol flag): each succeeds, says once (at -v) that it uses the
/// legacy scp protocol, and never that it could not connect.
fn falls_back_to_legacy_scp(peer: &Peer) {
    for (mode, opts) in MUX_MODES {
        let mut all = vec!["-v"];
        all.extend_from_slice(opts);
        for (what, out) in peer.works(&format!("no SFTP server, {mode}"), &all) {
            assert_eq!(
                lines_with(&out, "legacy scp protocol"),
                1,
                "{what}: one stderr line should say the peer gets the legacy scp protocol\n{}",
                out.describe()
            );
            for wrong in ["could not connect", "cannot connect"] {
                assert_eq!(
                    lines_with(&out, wrong),
                    0,
                    "{what}: a peer without SFTP is not a peer that cannot be reached\n{}",
                    out.describe()
                );
            }
        }
    }
}

#[test]
fn a_peer_whose_sshd_has_no_sftp_subsystem_gets_legacy_scp_silently() {
    let server = Server::openssh(None, "");
    assert_scp_protocols(&server, None);
    let peer = Peer::new(&server, None, server.collect_dir("collect", None));
    falls_back_to_legacy_scp(&peer);
}

#[test]
fn a_dropbear_peer_without_sftp_server_gets_legacy_scp_silently() {
    let server = Server::dropbear(false, &[Login::Bash]);
    let user = account(Login::Bash);
    assert_scp_protocols(&server, Some(user));
    let peer = Peer::new(
        &server,
        Some(user),
        server.collect_dir("collect", Some(user)),
    );
    falls_back_to_legacy_scp(&peer);
}

#[test]
fn a_dropbear_peer_with_sftp_server_checks_stages_marks_and_runs_over_sftp() {
    let server = Server::dropbear(true, &[Login::Bash]);
    let user = account(Login::Bash);
    assert_scp_protocols(&server, Some(user));
    let peer = Peer::new(
        &server,
        Some(user),
        server.collect_dir("collect", Some(user)),
    );
    for (mode, opts) in MUX_MODES {
        let mut all = vec!["-v"];
        all.extend_from_slice(opts);
        for (what, out) in peer.works(&format!("Dropbear with sftp-server, {mode}"), &all) {
            assert_eq!(
                lines_with(&out, "legacy scp protocol"),
                0,
                "{what}: a peer with an SFTP server does not need legacy scp\n{}",
                out.describe()
            );
        }
    }
}

// =============================================================================================
// 3. A login shell that prints a banner

/// An account whose ~/.bashrc prints a banner on stdout for every session, on OpenSSH and on
/// Dropbear: exec prints the command's output after the banner and exits 0; a managed action
/// exits 0.
#[test]
fn a_banner_from_the_login_shell_is_tolerated_by_exec_and_action() {
    let user = account(Login::Banner);
    for server in [
        Server::openssh(Some("internal-sftp"), ""),
        Server::dropbear(true, &[Login::Banner]),
    ] {
        assert_logs_in(&server, Login::Banner);
        let peer = Peer::new(
            &server,
            Some(user),
            server.collect_dir("collect", Some(user)),
        );
        for (mode, opts) in MUX_MODES {
            let what = format!("{:?}, banner account, {mode}", server.flavor);
            let out = peer.exec(opts, &["printf", "%s|", "a", "b c"]);
            out.expect_code(0, &format!("exec ({what})"));
            assert_output_after_banner(&out, Login::Banner, "a|b c|", &what);

            let out = peer.cmd("action", opts, &["--cback-command", "/bin/echo", "collect"]);
            out.expect_code(0, &format!("action ({what})"));
        }
    }
}

// =============================================================================================
// 4. An rcp wrapper that is not scp, and a collect dir with spaces

/// An rcp command that is a wrapper script around scp (so peerstage cannot know what it
/// speaks), and a collect dir whose name has spaces: check, stage, mark and run succeed, and
/// the stage indicator lands in that very dir (nothing appears next to it).
fn a_wrapper_rcp_command_works_with_spaces(scp_options: &str) {
    let server = Server::openssh(Some("internal-sftp"), "");
    let collect = server.collect_dir("collect dir with spaces", None);
    let wrapper = write_script(
        &mkdir(&server.dir.path().join("bin")).join("my-rcp"),
        &format!(
            "exec {SCP} {scp_options}-F {} \"$@\"",
            sh_quote(&server.config())
        ),
    );
    // The premise: the wrapper copies by hand.
    let premise = server.dir.path().join("premise-copy");
    let out = run(Command::new(&wrapper)
        .args(["-B", "-q"])
        .arg(server.remote(None, &server.dir.path().join("ssh_config")))
        .arg(&premise)
        .stdin(Stdio::null()));
    assert!(
        out.code == 0 && premise.is_file(),
        "test problem: the wrapper does not copy\n{}",
        out.describe()
    );

    let around = list_dir(server.dir.path());
    let rcp = format!("{} -B -q -C", p(&wrapper));
    let peer = Peer::new(&server, None, collect.clone()).with_rcp(&rcp);
    for (mode, opts) in MUX_MODES {
        peer.works(&format!("wrapper {rcp} ({scp_options}), {mode}"), opts);
    }
    let new: Vec<String> = list_dir(server.dir.path())
        .into_iter()
        .filter(|name| {
            !around.contains(name)
                && !["locks", "work"].contains(&name.as_str())
                && !name.starts_with("target-")
                && !name.starts_with("staging-")
        })
        .collect();
    assert!(
        new.is_empty(),
        "something was written next to the collect dir: {new:?}"
    );
    assert_eq!(
        list_dir(&collect)
            .into_iter()
            .filter(|name| name.starts_with("cback."))
            .collect::<Vec<_>>(),
        ["cback.collect", "cback.stage"],
        "indicators in {}",
        collect.display()
    );
}

#[test]
fn a_wrapper_around_scp_as_rcp_command_checks_stages_and_marks_a_collect_dir_with_spaces() {
    a_wrapper_rcp_command_works_with_spaces("");
}

#[test]
fn a_wrapper_around_legacy_scp_as_rcp_command_checks_stages_and_marks_a_collect_dir_with_spaces() {
    a_wrapper_rcp_command_works_with_spaces("-O ");
}

// =============================================================================================
// 5. Login shells

/// `exec -- printf '%s|' WORDS` prints each word as written through `login`'s shell, on
/// OpenSSH and Dropbear, with and without multiplexing. A word with a newline arrives
/// intact, except through a csh-family shell, which cannot carry one: that is refused (2)
/// with one error line naming the peer, and nothing runs.
fn exec_arguments_arrive_as_written(login: Login) {
    let user = account(login);
    for server in [
        Server::openssh(Some("internal-sftp"), ""),
        Server::dropbear(true, &[login]),
    ] {
        assert_logs_in(&server, login);
        let peer = Peer::new(
            &server,
            Some(user),
            server.collect_dir("collect", Some(user)),
        );
        // A dir the account can write, for the canary of a command that must not run.
        let canaries = server.collect_dir("canaries", Some(user));
        for (mode, opts) in MUX_MODES {
            let what = format!("{:?}, {} login shell, {mode}", server.flavor, login.shell());
            let mut words = vec!["printf", "%s|"];
            words.extend_from_slice(&SHELL_WORDS);
            let out = peer.exec(opts, &words);
            out.expect_code(0, &format!("exec ({what})"));
            assert_output_after_banner(&out, login, &joined(&SHELL_WORDS), &what);

            let newline = "line one\nline two";
            if login == Login::Tcsh {
                let canary = canaries.join(format!("ran-{}", slug(mode)));
                let out = peer.exec(opts, &["/usr/bin/touch", &p(&canary), newline]);
                let what = format!("exec with a newline ({what})");
                out.expect_code(2, &what)
                    .expect_one_error_line(&what)
                    .expect_stderr_line_with(&[&peer.host()], &what);
                let err = out.stderr.to_lowercase();
                assert!(
                    err.contains("newline") && err.contains("csh"),
                    "{what}: the error does not say a csh-family login shell cannot carry a \
                     newline\n{}",
                    out.describe()
                );
                assert!(!canary.exists(), "{what}: the command ran anyway");
            } else {
                let out = peer.exec(opts, &["printf", "%s|", newline, "after"]);
                let what = format!("exec with a newline ({what})");
                out.expect_code(0, &what);
                assert_output_after_banner(&out, login, &joined(&[newline, "after"]), &what);
            }
        }
    }
}

#[test]
fn exec_arguments_arrive_as_written_through_a_bash_login_shell() {
    exec_arguments_arrive_as_written(Login::Bash);
}

#[test]
fn exec_arguments_arrive_as_written_through_a_fish_login_shell() {
    exec_arguments_arrive_as_written(Login::Fish);
}

#[test]
fn exec_arguments_arrive_as_written_through_a_tcsh_login_shell_and_a_newline_is_refused() {
    exec_arguments_arrive_as_written(Login::Tcsh);
}

#[test]
fn exec_arguments_arrive_as_written_after_the_banner_of_a_login_shell() {
    exec_arguments_arrive_as_written(Login::Banner);
}

// =============================================================================================
// An sftp-only account

/// An account that may only use SFTP (`ForceCommand internal-sftp` for its user), reached
/// with the connection only in the rcp command (plain ssh as rsh command): check, stage, mark
/// and run succeed; with an rsh command that reaches it, exec and action say the peer does not
/// allow remote commands. (`an_sftp_only_peer_stages_checks_and_marks_but_refuses_commands`
/// in tests/faults.rs covers a port-restricted peer with both commands configured alike.)
#[test]
fn an_sftp_only_account_stages_with_the_connection_only_in_the_rcp_command_and_refuses_commands() {
    let server = Server::openssh(Some("internal-sftp"), &sftp_only_config());
    let user = account(Login::SftpOnly);
    assert_logs_in(&server, Login::SftpOnly);
    let collect = server.collect_dir("collect", Some(user));
    let config = server.config_without(&["Port"]);
    let rcp = format!("{SCP} -F {} -P {} -B -q -C", p(&config), server.port);
    let peer = Peer::new(&server, Some(user), collect)
        .with_rcp(&rcp)
        .with_rsh(PLAIN_SSH);
    for (mode, opts) in MUX_MODES {
        peer.works(&format!("sftp-only account, rcp {rcp}, {mode}"), opts);
    }

    let peer = peer.with_rsh(server.rsh_command());
    let host = peer.host();
    for (mode, opts) in MUX_MODES {
        let exec = peer.exec(opts, &["true"]);
        let action = peer.cmd("action", opts, &["--cback-command", "/bin/true", "collect"]);
        for (what, out) in [("exec", exec), ("action", action)] {
            let what = format!("{what} on an sftp-only account ({mode})");
            out.expect_code(1, &what)
                .expect_stderr_line_with(&[&host], &what);
            assert!(
                out.stderr.to_lowercase().contains("remote command"),
                "{what}: the error does not say the peer allows no remote commands\n{}",
                out.describe()
            );
        }
    }
}
