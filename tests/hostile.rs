//! The master runs as root and its peers may be hostile. Each test here is an attack, made as
//! the attacker would make it: a compromised peer whose SFTP server or scp answers what the
//! attacker wants (`common/hostile_peer.rs`, run by the test sshd), or an unprivileged local
//! user (`nobody`, when the tests run as root) who can write into a local collect dir.

mod common;
#[path = "common/hostile_peer.rs"]
mod hostile_peer;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tempfile::TempDir;

/// A peer whose SFTP server or scp is the attacker's, with a collect dir that holds the
/// samples and the collect indicator.
struct Hostile {
    sshd: Sshd,
    dir: TempDir,
    collect: PathBuf,
    host: String,
}

impl Hostile {
    /// A peer whose sftp subsystem is the hostile server of `scenario`.
    fn sftp(scenario: &str) -> Hostile {
        Self::start(scenario, |wrapper| {
            Sshd::start_custom(&p(wrapper), "").expect("OpenSSH (scripts/test installs it)")
        })
    }

    /// A peer where every session runs the hostile scp of `scenario` (other commands run as
    /// they would).
    fn scp(scenario: &str) -> Hostile {
        Self::start(scenario, |wrapper| {
            Sshd::start_with(&format!("ForceCommand {}", p(wrapper)))
                .expect("OpenSSH (scripts/test installs it)")
        })
    }

    fn start(scenario: &str, sshd: impl FnOnce(&Path) -> Sshd) -> Hostile {
        let dir = tempdir();
        let wrapper = hostile_peer::wrapper(dir.path(), scenario);
        let sshd = sshd(&wrapper);
        let collect = mkdir(&dir.path().join("collect"));
        write_samples(&collect);
        write_file(&collect.join("cback.collect"), "");
        let host = unique_name("evil", dir.path());
        Hostile {
            sshd,
            dir,
            collect,
            host,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn target(&self, name: &str) -> PathBuf {
        mkdir(&self.path(name))
    }

    /// The peer's arguments, with `rcp_options` after the config file in the rcp command.
    fn peer(&self, rcp_options: &str) -> Vec<String> {
        vec![
            "--host".into(),
            self.host.clone(),
            "--collect-dir".into(),
            p(&self.collect),
            "--working-dir".into(),
            p(&mkdir(&self.path("work"))),
            "--rcp-command".into(),
            format!("{SCP} -F {} {rcp_options}", p(&self.sshd.ssh_config)),
            "--rsh-command".into(),
            self.sshd.rsh_command(),
        ]
    }

    /// `peerstage GLOBAL... SUB PEER... EXTRA...`, with a lock dir of its own.
    fn run(&self, sub: &str, global: &[&str], peer: &[String], extra: &[&str]) -> Out {
        let mut cmd = peerstage();
        cmd.arg("--lock-dir")
            .arg(self.path("locks"))
            .args(global)
            .arg(sub)
            .args(peer)
            .args(extra);
        run(&mut cmd)
    }

    fn stage(&self, target: &Path, global: &[&str], peer: &[String]) -> Out {
        self.run("stage", global, peer, &["--target", &p(target)])
    }
}

/// What a staged dir holds, names and all (debris included).
fn holds(dir: &Path) -> Vec<String> {
    list_dir(dir)
}

#[track_caller]
fn assert_nothing_staged(target: &Path, what: &str, out: &Out) {
    assert_eq!(
        holds(target),
        Vec::<String>::new(),
        "{what}: the target holds something\n{}",
        out.describe()
    );
}

/// Nothing staged; what arrived before a stall may be kept for the next attempt, in a
/// private dir of its own.
#[track_caller]
fn assert_nothing_staged_but_kept(target: &Path, what: &str, out: &Out) {
    for name in holds(target) {
        assert!(
            name.starts_with(".peerstage-partial-"),
            "{what}: the target holds {name}\n{}",
            out.describe()
        );
        assert_eq!(
            mode_of(&target.join(&name)) & 0o777,
            0o700,
            "{what}: {name}"
        );
    }
}

/// Nothing a peer said reaches the terminal raw: no ESC or other control byte, and every
/// line is one of ours.
#[track_caller]
fn assert_no_terminal_control(out: &Out, what: &str) {
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' || ('\u{202a}'..='\u{202e}').contains(&c)),
            "{what}: raw control characters on {name}\n{}",
            out.describe()
        );
    }
    for line in out.stderr.lines() {
        assert!(
            line.starts_with("peerstage: "),
            "{what}: a line on stderr that peerstage did not write: {line:?}\n{}",
            out.describe()
        );
    }
}

// =============================================================================================
// 1. Set-id bits

/// Files with set-uid, set-gid and sticky bits in a local collect dir, written by `nobody`
/// when running as root (a user who can write into the collect dir), else by us.
fn set_id_collect(base: &Path) -> PathBuf {
    let collect = mkdir(&base.join("collect"));
    if is_root() {
        std::os::unix::fs::chown(&collect, Some(nobody().0), Some(nobody().1)).unwrap();
        let out = run_as(
            "nobody",
            &format!(
                "cd {} && cp /bin/sh sh && chmod 4755 sh && echo g > setgid && chmod 2755 setgid \
                 && echo s > sticky && chmod 1644 sticky && : > cback.collect",
                sh_quote(&p(&collect))
            ),
        );
        assert_eq!(
            out.code,
            0,
            "nobody writes the collect dir\n{}",
            out.describe()
        );
    } else {
        fs::copy("/bin/sh", collect.join("sh")).unwrap();
        set_mode(&collect.join("sh"), 0o4755);
        write_file(&collect.join("setgid"), "g\n");
        set_mode(&collect.join("setgid"), 0o2755);
        write_file(&collect.join("sticky"), "s\n");
        set_mode(&collect.join("sticky"), 0o1644);
        write_file(&collect.join("cback.collect"), "");
    }
    assert_eq!(
        mode_of(&collect.join("sh")),
        0o4755,
        "test problem: no set-uid bit"
    );
    collect
}

fn nobody() -> (u32, u32) {
    user_ids("nobody").expect("the nobody account")
}

#[track_caller]
fn assert_no_set_id(dir: &Path, what: &str) {
    for (name, mode) in [("sh", 0o755), ("setgid", 0o755), ("sticky", 0o644)] {
        assert_eq!(
            mode_of(&dir.join(name)),
            mode,
            "{what}: {name} staged with mode {:o}",
            mode_of(&dir.join(name))
        );
    }
}

/// Finding 1: `nobody` copies /bin/sh into a local collect dir and sets its set-uid bit; root
/// staged it as a root-owned set-uid shell, and `nobody` ran it with euid 0.
#[test]
fn a_set_uid_shell_in_a_local_collect_dir_is_staged_without_its_set_id_bits() {
    let base = tempdir();
    let collect = set_id_collect(base.path());
    let owners: Vec<Vec<&str>> = if is_root() {
        vec![vec![], vec!["--owner", "root"], vec!["--owner", "nobody"]]
    } else {
        vec![vec![]]
    };
    for (index, owner) in owners.iter().enumerate() {
        let target = mkdir(&base.path().join(format!("target-{index}")));
        let what = format!("local stage {owner:?} of set-id files");
        let mut args = vec![
            "--lock-dir".to_string(),
            p(&base.path().join("locks")),
            "stage".into(),
            "--target".into(),
            p(&target),
            "--collect-dir".into(),
            p(&collect),
        ];
        args.extend(owner.iter().map(|word| word.to_string()));
        ps(&args).expect_code(0, &what);
        assert_no_set_id(&target, &what);
        if is_root() {
            // The attacker's own test: run the staged shell.
            let euid = run_as(
                "nobody",
                &format!("{} -c 'id -u'", sh_quote(&p(&target.join("sh")))),
            );
            assert_eq!(
                euid.stdout.trim(),
                nobody().0.to_string(),
                "{what}: nobody ran the staged shell as another user\n{}",
                euid.describe()
            );
        }
    }
    if is_root() {
        // A pool run whose backup user is root, as in finding 1.
        let staging = mkdir(&base.path().join("staging"));
        let config = write_file(
            &base.path().join("pool.toml"),
            format!(
                "staging_dir = '{}'\nbackup_user = 'root'\nlock_dir = '{}'\n\n[[peer]]\nname = 'users'\ntype = 'local'\ncollect_dir = '{}'\n",
                p(&staging),
                p(&base.path().join("locks")),
                p(&collect)
            ),
        );
        set_mode(&config, 0o600);
        let out = ps(&["run", "--config", &p(&config), "--date", "2026-12-01"]);
        out.expect_code(0, "run with backup_user root");
        assert_no_set_id(
            &staging.join("2026/12/01/users"),
            "run with backup_user root",
        );
    }
}

#[test]
fn a_mode_that_asks_for_set_id_bits_is_a_usage_error() {
    let base = tempdir();
    let collect = mkdir(&base.path().join("collect"));
    write_samples(&collect);
    let target = mkdir(&base.path().join("target"));
    for mode in ["4755", "02750", "1777"] {
        let what = format!("stage --mode {mode}");
        ps(&[
            "stage",
            "--target",
            &p(&target),
            "--collect-dir",
            &p(&collect),
            "--mode",
            mode,
        ])
        .expect_code(2, &what)
        .expect_one_error_line(&what)
        .expect_stderr_contains("set-uid", &what);
        assert_eq!(holds(&target), Vec::<String>::new(), "{what}: staged");
        let what = format!("mark --mode {mode}");
        ps(&["mark", "--collect-dir", &p(&collect), "--mode", mode]).expect_code(2, &what);
        assert!(!collect.join("cback.stage").exists(), "{what}: marked");
    }
}

/// Finding 2: with an rcp command that keeps modes (`scp -O -p`), the peer sends
/// `C4755 5 suid` and the staged file was set-uid root.
#[test]
fn a_peer_cannot_stage_a_set_uid_file_through_scp_p() {
    let peer = Hostile::scp("scp-setuid");
    let args = peer.peer("-O -p -B -q");
    let target = peer.target("target");
    let what = "legacy scp -p stage of a C4755 record";
    // The listing does not know the attacker's file: only the copy is under test here.
    let out = peer.stage(&target, &["--verify", "none"], &args);
    out.expect_code(0, what);
    assert_eq!(fs::read(target.join("suid")).unwrap(), b"hello");
    assert_eq!(
        mode_of(&target.join("suid")),
        0o755,
        "{what}: mode kept set-id bits"
    );
}

// =============================================================================================
// 2. Disk and memory

/// A small file system when root (so that the old behaviour, reading to the file's "real
/// end", cannot fill the machine's disk), else a plain dir.
struct Target {
    path: PathBuf,
}

impl Target {
    fn new(base: &Path) -> Target {
        let path = mkdir(&base.join("small-target"));
        if is_root() {
            let out = run(Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
                .arg(&path));
            assert_eq!(out.code, 0, "mount a tmpfs\n{}", out.describe());
        }
        Target { path }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if is_root() {
            let _ = run(Command::new("umount").arg("-l").arg(&self.path));
        }
    }
}

/// Finding 3: a file listed at 5 bytes whose reads never end filled the target file system:
/// the copy read to the file's "real end", not to its listed size.
#[test]
fn a_file_that_never_ends_is_copied_to_its_listed_size_and_fails_the_peer() {
    let peer = Hostile::sftp("grow");
    let target = Target::new(peer.dir.path());
    let started = Instant::now();
    let what = "stage of a file that grows without end";
    let out = peer.stage(&target.path, &[], &peer.peer("-B -q"));
    out.expect_code(1, what)
        .expect_one_error_line(what)
        .expect_stderr_line_with(
            &[&peer.host, "5 bytes listed", "changed while being copied"],
            what,
        );
    assert_nothing_staged(&target.path, what, &out);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{what}: took {:?}",
        started.elapsed()
    );
}

/// A file listed bigger than it is: the copy ends short, and says so.
#[test]
fn a_file_listed_bigger_than_it_is_fails_the_peer() {
    let peer = Hostile::sftp("shrink");
    let target = peer.target("target");
    let what = "stage of a file listed 10 bytes too big";
    let out = peer.stage(&target, &[], &peer.peer("-B -q"));
    out.expect_code(1, what)
        .expect_one_error_line(what)
        .expect_stderr_contains("changed while being copied", what);
    assert_nothing_staged(&target, what, &out);
}

/// Finding 4: a READDIR that never ends grew peerstage without bound (1.2 GB in 40 s).
#[test]
fn a_listing_without_end_stops_at_max_entries() {
    let peer = Hostile::sftp("endless-readdir");
    for (opts, limit) in [(&["--max-entries", "500"][..], "500"), (&[][..], "100000")] {
        let target = peer.target(&format!("target-{limit}"));
        let what = format!("stage of an endless listing, limit {limit}");
        let out = peer.stage(&target, opts, &peer.peer("-B -q"));
        out.expect_code(1, &what)
            .expect_one_error_line(&what)
            .expect_stderr_line_with(
                &[
                    &peer.host,
                    &format!("more than {limit} entries"),
                    "max_entries",
                ],
                &what,
            );
        assert_nothing_staged(&target, &what, &out);
    }
}

/// Answers to requests answered already were kept (up to 1 GiB per peer); now the first one
/// ends the session, and scp is not sent to the same server instead.
#[test]
fn a_second_answer_to_a_request_ends_the_session_as_a_protocol_error() {
    let peer = Hostile::sftp("duplicate-answers");
    let target = peer.target("target");
    let what = "stage from a server that answers everything twice";
    let out = peer.stage(&target, &[], &peer.peer("-B -q"));
    out.expect_code(1, what)
        .expect_one_error_line(what)
        .expect_stderr_line_with(&[&peer.host, "SFTP protocol error", "not waiting"], what);
    assert_nothing_staged(&target, what, &out);
}

/// Packets that are too big or answer requests never made: a clear error, no panic,
/// nothing staged, and no second try through scp. (A packet cut short by the end of the
/// session is a lost connection: see `a_packet_cut_short_by_a_lost_session`.)
#[test]
fn broken_packets_fail_the_peer_cleanly() {
    for scenario in ["huge-packet", "wrong-id"] {
        let peer = Hostile::sftp(scenario);
        let target = peer.target("target");
        let what = format!("stage from a server sending {scenario}");
        let out = peer.stage(&target, &[], &peer.peer("-B -q"));
        assert!(
            out.code == 1 || out.code == 69,
            "{what}: exit code\n{}",
            out.describe()
        );
        out.expect_no_panic(&what)
            .expect_stderr_line_with(&[&peer.host, "nothing staged"], &what);
        assert_no_terminal_control(&out, &what);
        assert_nothing_staged(&target, &what, &out);
    }
}

/// A packet cut short, then the session ends: a connection lost mid-copy. The copy starts
/// again with scp on a connection of its own (here the peer's scp serves the real files,
/// through the legacy protocol since its SFTP server is the broken one): the files staged
/// are the peer's, whole, or nothing is.
#[test]
fn a_packet_cut_short_by_a_lost_session() {
    let peer = Hostile::sftp("truncated");
    let target = peer.target("target");
    let what = "stage from a server whose session ends inside a packet";
    let out = peer.stage(&target, &[], &peer.peer("-B -q"));
    out.expect_no_panic(what);
    assert_no_terminal_control(&out, what);
    if out.code == 0 {
        assert_eq!(
            regular_files(&target),
            regular_files(&peer.collect),
            "{what}: staged files differ from the peer's\n{}",
            out.describe()
        );
        out.expect_stderr_contains("SFTP session lost", what);
    } else {
        assert_nothing_staged(&target, what, &out);
    }
}

/// Names from a listing that would become other paths, or shell or terminal commands.
#[test]
fn hostile_names_in_a_listing_stage_nothing_anywhere() {
    let peer = Hostile::sftp("hostile-names");
    let target = peer.target("target");
    let what = "stage of a listing of hostile names";
    let out = peer.stage(&target, &[], &peer.peer("-B -q"));
    out.expect_code(1, what)
        .expect_one_error_line(what)
        .expect_stderr_contains("not a plain file name", what);
    assert_no_terminal_control(&out, what);
    assert_nothing_staged(&target, what, &out);
    assert!(
        !peer.dir.path().join("escaped").exists(),
        "{what}: a file outside the target"
    );
    assert!(!Path::new("/abs").exists());
}

/// Names in legacy scp records that would leave the target: scp itself refuses them.
#[test]
fn hostile_names_in_legacy_scp_records_stage_nothing() {
    let peer = Hostile::scp("scp-names");
    let target = peer.target("target");
    let what = "legacy scp stage of a ../ record";
    let out = peer.stage(&target, &["--verify", "none"], &peer.peer("-O -B -q"));
    out.expect_code(1, what).expect_one_error_line(what);
    assert_nothing_staged(&target, what, &out);
    assert!(
        !peer.dir.path().join("escaped").exists(),
        "{what}: a file outside the target"
    );
}

// =============================================================================================
// 3. Text from the peer

/// Finding 5: SFTP status messages, names of skipped entries and remote stderr reached
/// stderr and the report table raw: a peer printed its own `peer evil: staged OK` line and
/// set the admin's terminal title.
#[test]
fn text_from_a_peer_never_forges_a_line_or_drives_the_terminal() {
    let peer = Hostile::sftp("forged-status");
    let target = peer.target("target");
    let what = "stage, SFTP status message with a newline and escapes";
    let out = peer.stage(&target, &[], &peer.peer("-B -q"));
    out.expect_code(1, what).expect_one_error_line(what);
    out.expect_stderr_contains(r"Permission denied\npeerstage: info: peer evil", what);
    assert_no_terminal_control(&out, what);

    // The same in a pool run: the log, the report table and the hook variable.
    let staging = mkdir(&peer.path("staging"));
    let hook_out = peer.path("hook-message");
    let config = write_file(
        &peer.path("pool.toml"),
        format!(
            "staging_dir = '{}'\nlock_dir = '{}'\n[hooks]\npost_peer = [\"sh -c 'printf %s \\\"$PEERSTAGE_MESSAGE\\\" > {}'\"]\n\n[[peer]]\nname = '{}'\ntype = 'remote'\ncollect_dir = '{}'\nrcp_command = '{SCP} -F {} -B -q'\nrsh_command = '{}'\n",
            p(&staging),
            p(&peer.path("locks")),
            p(&hook_out),
            peer.host,
            p(&peer.collect),
            p(&peer.sshd.ssh_config),
            peer.sshd.rsh_command(),
        ),
    );
    set_mode(&config, 0o600);
    let out = ps(&["run", "--config", &p(&config)]);
    out.expect_code(1, "run with a forged status message");
    assert_no_terminal_control(&out, "run with a forged status message");
    assert!(
        !out.stdout
            .lines()
            .any(|line| line.starts_with("peerstage: info: peer evil")),
        "a forged line in the report\n{}",
        out.describe()
    );
    let message = fs::read_to_string(&hook_out).expect("the post_peer hook ran");
    assert!(
        message.contains(r"\npeerstage") && !message.contains('\x1b') && !message.contains('\n'),
        "PEERSTAGE_MESSAGE: {message:?}"
    );

    // Remote stderr through a legacy scp.
    let peer = Hostile::scp("scp-forged-stderr");
    let target = peer.target("target");
    let what = "legacy scp stage whose scp prints escapes and a forged line";
    let out = peer.stage(&target, &["--verify", "none"], &peer.peer("-O -B -q"));
    out.expect_code(1, what);
    assert_no_terminal_control(&out, what);
    assert_nothing_staged(&target, what, &out);
}

/// Names of skipped entries of a local collect dir, written by its (unprivileged) owner.
#[test]
fn names_of_skipped_local_entries_are_escaped() {
    let base = tempdir();
    let collect = mkdir(&base.path().join("collect"));
    write_samples(&collect);
    mkdir(&collect.join("evil\x1b]0;owned\x07\npeerstage: info: peer x: staged OK"));
    let target = mkdir(&base.path().join("target"));
    let what = "local stage with a hostile directory name";
    let out = ps(&[
        "stage",
        "--target",
        &p(&target),
        "--collect-dir",
        &p(&collect),
    ]);
    out.expect_code(0, what)
        .expect_stderr_contains(r"evil\x1b]0;owned\x07\npeerstage: info", what);
    assert_no_terminal_control(&out, what);
    let out = ps(&[
        "--dry-run",
        "stage",
        "--target",
        &p(&target),
        "--collect-dir",
        &p(&collect),
    ]);
    assert_no_terminal_control(&out, "dry run with a hostile directory name");
}

// =============================================================================================
// 4. Time

/// Finding 6: the owner of a local collect dir swaps a listed file for a fifo between the
/// listing and the copy; root's open of it blocked forever, and --timeout did not end it.
#[test]
fn a_fifo_swapped_in_during_a_local_stage_is_skipped_not_waited_for() {
    let base = tempdir();
    let collect = mkdir(&base.path().join("collect"));
    // Four files, each hashed twice with --verify sha256: the stage takes long enough with
    // its first file for the attacker to swap the others once the stage has begun.
    let names = ["a.tar", "b.tar", "c.tar", "d.tar"];
    for (index, name) in names.iter().enumerate() {
        write_file(&collect.join(name), random_bytes(8 << 20, index as u64 + 1));
    }
    if is_root() {
        let out = run(Command::new("chown").arg("-R").arg("nobody").arg(&collect));
        assert_eq!(out.code, 0, "{}", out.describe());
    }
    let target = mkdir(&base.path().join("target"));
    let mut child = peerstage()
        .args(["--verify", "sha256", "--timeout", "30", "stage", "--target"])
        .arg(&target)
        .arg("--collect-dir")
        .arg(&collect)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start peerstage");
    // The attacker: once the stage's private incoming dir appears, every file is swapped
    // for a fifo (the one being copied keeps its open file).
    let begun = Instant::now();
    loop {
        let started = fs::read_dir(&target).unwrap().flatten().any(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with(".peerstage-tmp-")
        });
        if started {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(20),
            "the stage never began"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    for name in names {
        let fifo = collect.join(format!(".fifo-{name}"));
        mkfifo(&fifo);
        fs::rename(&fifo, collect.join(name)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the stage hangs on a fifo swapped in for a listed file");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "stage failed: {stderr}");
    assert!(
        stderr.contains("swapped in since the collect dir was read"),
        "the swapped files are not said to be skipped: {stderr}"
    );
    let staged = holds(&target);
    assert_eq!(
        staged.len(),
        1,
        "one file staged (the one being copied): {staged:?}"
    );
}

/// A hard link to a file the collect dir's owner cannot read (the attacker links
/// /etc/shadow, or here a root-only file, into the collect dir): root does not copy it out.
#[test]
fn a_hard_link_to_another_owners_file_is_not_staged() {
    let base = tempdir();
    let collect = mkdir(&base.path().join("collect"));
    write_samples(&collect);
    let secret = write_file(&base.path().join("secret"), "root only\n");
    set_mode(&secret, 0o600);
    fs::hard_link(&secret, collect.join("stolen")).unwrap();
    let owner = if is_root() { nobody() } else { (1, 1) };
    if is_root() {
        std::os::unix::fs::chown(&collect, Some(owner.0), Some(owner.1)).unwrap();
    } else if fs::metadata(&secret).unwrap().uid() == fs::metadata(&collect).unwrap().uid() {
        // Without root the collect dir and the file share their owner: nothing to refuse.
        // The rule is still checked the other way round: a link of our own is staged.
        let target = mkdir(&base.path().join("target"));
        ps(&[
            "stage",
            "--target",
            &p(&target),
            "--collect-dir",
            &p(&collect),
            "--mode",
            "0644",
        ])
        .expect_code(0, "stage with a hard link of the collect dir's owner");
        assert!(target.join("stolen").exists());
        return;
    }
    let target = mkdir(&base.path().join("target"));
    let what = "stage of a collect dir with a hard link to root's file";
    let out = ps(&[
        "stage",
        "--target",
        &p(&target),
        "--collect-dir",
        &p(&collect),
        "--mode",
        "0644",
    ]);
    out.expect_code(0, what)
        .expect_stderr_line_with(&["stolen", "hard link"], what);
    assert!(
        !target.join("stolen").exists(),
        "{what}: the linked file was staged"
    );
    assert!(target.join("empty.dat").exists());
}

/// Finding 7: a peer that stalls held the run forever when no --timeout was given. The idle
/// timeout (on by default; 2 s here) gives it up as unreachable, and the others go on.
#[test]
fn a_stalled_peer_is_given_up_at_the_idle_timeout_and_the_others_go_on() {
    let peer = Hostile::sftp("stall-read");
    let target = peer.target("target");
    let what = "stage from a server that never answers a read";
    let started = Instant::now();
    let out = peer.stage(&target, &["--idle-timeout", "2"], &peer.peer("-B -q"));
    out.expect_code(69, what)
        .expect_one_error_line(what)
        .expect_stderr_line_with(&[&peer.host, "stalled: no byte moved for 2 s"], what);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{what}: {:?}",
        started.elapsed()
    );
    assert_nothing_staged_but_kept(&target, what, &out);

    // A pool: the stalled peer and a good local one; idle_timeout from the config.
    let good = mkdir(&peer.path("good"));
    write_samples(&good);
    write_file(&good.join("cback.collect"), "");
    let staging = mkdir(&peer.path("staging"));
    let config = write_file(
        &peer.path("pool.toml"),
        format!(
            "staging_dir = '{}'\nlock_dir = '{}'\nidle_timeout = 2\n\n[[peer]]\nname = 'good'\ntype = 'local'\ncollect_dir = '{}'\n\n[[peer]]\nname = '{}'\ntype = 'remote'\ncollect_dir = '{}'\nrcp_command = '{SCP} -F {} -B -q'\nrsh_command = '{}'\n",
            p(&staging),
            p(&peer.path("locks")),
            p(&good),
            peer.host,
            p(&peer.collect),
            p(&peer.sshd.ssh_config),
            peer.sshd.rsh_command(),
        ),
    );
    set_mode(&config, 0o600);
    let out = ps(&["run", "--config", &p(&config), "--json"]);
    out.expect_code(1, "run with a stalled peer");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("json report");
    let status = |name: &str| {
        report["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["peer"] == name)
            .map(|entry| entry["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status("good").as_deref(), Some("T"), "{}", out.describe());
    assert_eq!(
        status(&peer.host).as_deref(),
        Some("f"),
        "{}",
        out.describe()
    );

    // The same through a legacy scp that starts a file and then sends nothing.
    let peer = Hostile::scp("scp-stall");
    let target = peer.target("target");
    let what = "legacy scp stage that stalls mid-file";
    let out = peer.stage(
        &target,
        &["--idle-timeout", "2", "--verify", "none"],
        &peer.peer("-O -B -q"),
    );
    out.expect_code(69, what)
        .expect_one_error_line(what)
        .expect_stderr_contains("stalled: no byte moved for 2 s", what);
    assert_nothing_staged(&target, what, &out);
}

/// The idle timeout is on without being asked for; 0 turns it off.
#[test]
fn the_idle_timeout_is_on_by_default_and_shown_by_config_show() {
    let base = tempdir();
    let config = write_file(
        &base.path().join("pool.toml"),
        "staging_dir = '/srv/staging'\nidle_timeout = 0\nmax_entries = 20\n[[peer]]\nname = 'a'\ntype = 'local'\ncollect_dir = '/c'\n",
    );
    set_mode(&config, 0o600);
    let out = ps(&["config", "show", "--config", &p(&config)]);
    out.expect_code(0, "config show");
    assert!(
        out.stdout.contains("idle_timeout = 0\n") && out.stdout.contains("max_entries = 20\n"),
        "{}",
        out.describe()
    );
    let help = ps(&["--help"]);
    assert!(
        help.stdout.contains("--idle-timeout") && help.stdout.contains("else 300"),
        "{}",
        help.describe()
    );
}
