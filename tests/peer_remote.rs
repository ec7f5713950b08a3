//! Remote peers through the `peerstage` binary, against a private OpenSSH server on loopback
//! (see `common::Sshd`): stage with scp, check, mark, exec, managed actions, `--local-user`,
//! unreachable peers and an rcp command that lies about its exit code.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::*;

/// A running sshd plus a collect dir, a target dir and a working dir inside its temp dir.
struct Remote {
    sshd: Sshd,
    /// Host name of the peer: an alias that the client ssh_config maps to 127.0.0.1. Unique per
    /// test (by port) because peerstage locks peers by name and tests run in parallel.
    host: String,
    collect: PathBuf,
    target: PathBuf,
    work: PathBuf,
}

fn remote() -> Remote {
    let sshd = Sshd::start().expect(NEEDS_OPENSSH);
    let base = sshd.dir.path().to_path_buf();
    Remote {
        host: format!("peer-{}", sshd.port),
        collect: mkdir(&base.join("collect")),
        target: mkdir(&base.join("staging")),
        work: mkdir(&base.join("work")),
        sshd,
    }
}

impl Remote {
    fn base(&self) -> &Path {
        self.sshd.dir.path()
    }

    /// The PEER arguments for this server.
    fn peer_args(&self) -> Vec<String> {
        remote_peer_args(
            &self.host,
            &self.collect,
            &self.work,
            &self.sshd.rcp_command(),
            &self.sshd.rsh_command(),
        )
    }

    /// The PEER arguments with the value of `flag` replaced.
    fn peer_args_with(&self, flag: &str, value: &str) -> Vec<String> {
        let mut args = self.peer_args();
        let i = args.iter().position(|a| a == flag).expect("a PEER flag");
        args[i + 1] = value.to_string();
        args
    }

    /// `peerstage <before...> <PEER> <after...>`
    fn run(&self, before: &[&str], after: &[&str]) -> Out {
        let mut args: Vec<String> = before.iter().map(|s| s.to_string()).collect();
        args.extend(self.peer_args());
        args.extend(after.iter().map(|s| s.to_string()));
        ps(&args)
    }

    fn stage(&self, extra: &[&str]) -> Out {
        let target = p(&self.target);
        let mut before = vec!["stage", "--target", target.as_str()];
        before.extend_from_slice(extra);
        self.run(&before, &[])
    }

    /// A peer whose rcp and rsh commands point at a closed loopback port.
    fn unreachable_args(&self) -> Vec<String> {
        remote_peer_args(
            &self.host,
            &self.collect,
            &self.work,
            &self.sshd.unreachable_rcp_command(),
            &self.sshd.unreachable_rsh_command(),
        )
    }
}

#[test]
fn stage_pulls_regular_files() {
    let r = remote();
    let mut files = write_samples(&r.collect);
    let subdir = mkdir(&r.collect.join("nested-dir"));
    write_file(&subdir.join("inner.tar"), "inner");
    mkfifo(&r.collect.join("a-fifo"));
    // scp copies a symlink's target; the link name arrives as a regular file.
    let linked = write_file(&r.base().join("link-target.tar"), "linked contents\n");
    symlink(&linked, r.collect.join("link.tar")).unwrap();
    files.push(("link.tar", b"linked contents\n".to_vec()));

    let out = r.stage(&[]);
    out.expect_code(0, "remote stage");
    assert_staged_exactly(&r.target, &files);
    let bytes: usize = files.iter().map(|(_, d)| d.len()).sum();
    let expected = format!(
        "staged {} files ({}) from peer {} into {}",
        files.len(),
        iec(bytes as u64),
        r.host,
        p(&r.target)
    );
    assert!(
        out.stdout.lines().any(|l| l == expected),
        "stage summary line {expected:?} missing\n{}",
        out.describe()
    );
    for skipped in ["nested-dir", "a-fifo"] {
        out.expect_stderr_contains(skipped, "warning about a skipped entry");
    }
    assert!(
        list_dir(&r.work).is_empty(),
        "working dir left with {:?}",
        list_dir(&r.work)
    );
}

/// Multiplexed, peerstage copies over its SFTP session what scp would copy; the files must
/// come out as scp makes them: the same bytes (a file of many reads, an empty one), the
/// same modes (the source's less the umask), fresh times, and with `scp -p` the source's
/// modes and times.
#[test]
fn the_copy_over_sftp_gives_what_scp_gives() {
    let r = remote();
    let big = random_bytes((3 << 20) + 4321, 7);
    let files: [(&str, &[u8], u32); 4] = [
        ("big.tar", &big, 0o640),
        ("empty.tar", b"", 0o600),
        ("script.sh", b"#!/bin/sh\n", 0o775),
        ("open.txt", b"all may write\n", 0o666),
    ];
    let old = filetime_of_2001();
    for (name, data, mode) in files {
        let path = write_file(&r.collect.join(name), data);
        set_mode(&path, mode);
        set_times(&path, old);
    }
    for preserve in [false, true] {
        let rcp = format!(
            "{}{}",
            r.sshd.rcp_command(),
            if preserve { " -p" } else { "" }
        );
        let mut staged = Vec::new();
        for mode in ["multiplexed", "--no-multiplex"] {
            let target = mkdir(&r.base().join(format!("into-{preserve}-{mode}")));
            let mut args: Vec<String> = vec!["stage".into(), "--target".into(), p(&target)];
            if mode != "multiplexed" {
                args.push(mode.into());
            }
            args.extend(r.peer_args_with("--rcp-command", &rcp));
            let what = format!("stage ({mode}, rcp {rcp})");
            let sessions = || r.sshd.log().matches("subsystem 'sftp'").count();
            let before = sessions();
            ps(&args).expect_code(0, &what);
            if mode == "multiplexed" {
                // One session for everything: the copy did go over it, not through scp.
                assert_eq!(sessions() - before, 1, "{what}: SFTP sessions");
            }
            for (name, data, source_mode) in files {
                let path = target.join(name);
                assert_eq!(&fs::read(&path).unwrap()[..], data, "{what}: {name}");
                let mtime = fs::metadata(&path).unwrap().modified().unwrap();
                if preserve {
                    assert_eq!(mode_of(&path), source_mode, "{what}: mode of {name}");
                    assert_eq!(mtime, old, "{what}: time of {name}");
                } else {
                    assert_ne!(mtime, old, "{what}: time of {name}");
                }
            }
            staged.push(
                files
                    .iter()
                    .map(|(name, ..)| mode_of(&target.join(name)))
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(
            staged[0], staged[1],
            "modes over SFTP and with scp (-p: {preserve})"
        );
    }
}

fn filetime_of_2001() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000)
}

fn set_times(path: &Path, time: std::time::SystemTime) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_times(fs::FileTimes::new().set_accessed(time).set_modified(time))
        .unwrap();
}

/// Ctrl-C in the middle of a copy over the SFTP session: the session's ssh is ended, nothing
/// staged (what arrived is kept in a private dir, for the next attempt to resume from), and
/// the one error line says it was canceled.
#[test]
fn ctrl_c_mid_copy_stages_nothing_and_says_so() {
    let r = remote();
    write_file(&r.collect.join("a-small.tar"), "small\n");
    write_file(&r.collect.join("b-big.tar"), random_bytes(96 << 20, 3));
    let mut args: Vec<String> = vec!["stage".into(), "--target".into(), p(&r.target)];
    args.extend(r.peer_args());
    let stderr_path = r.base().join("stage.stderr");
    let mut stage = peerstage()
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start peerstage stage");
    // Wait until the big file is arriving in the private incoming dir.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let arriving = || {
        list_dir(&r.target).iter().any(|dir| {
            fs::metadata(r.target.join(dir).join("files/b-big.tar")).is_ok_and(|m| m.len() > 0)
        })
    };
    while !arriving() {
        assert!(
            std::time::Instant::now() < deadline,
            "the big file never started arriving"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(stage.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = stage.wait().unwrap();
    let stderr = fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("peerstage: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("canceled by SIGINT"), "{stderr}");
    assert!(errors[0].contains(&r.host), "{stderr}");
    let kept = list_dir(&r.target);
    assert!(
        kept.len() == 1 && kept[0].starts_with(".peerstage-partial-"),
        "left in the target: {kept:?}"
    );
    assert_eq!(mode_of(&r.target.join(&kept[0])) & 0o777, 0o700);
    let left = processes_mentioning(&r.host);
    assert!(left.is_empty(), "still running: {left:?}");
}

/// scp fails on a symlink to nothing; so does the copy over SFTP (which names it, where
/// scp says only "stat remote"), and nothing is staged.
#[test]
fn a_dangling_symlink_fails_the_copy_both_ways() {
    let r = remote();
    write_samples(&r.collect);
    symlink(r.base().join("nowhere"), r.collect.join("dangling.tar")).unwrap();
    for (extra, names) in [(&[][..], "dangling.tar"), (&["--no-multiplex"][..], "")] {
        let out = r.stage(extra);
        let what = format!("stage {extra:?} with a dangling symlink");
        out.expect_code(1, &what)
            .expect_one_error_line(&what)
            .expect_stderr_contains("No such file or directory", &what)
            .expect_stderr_contains(names, &what);
        assert!(list_dir(&r.target).is_empty(), "{what}: staged something");
    }
}

#[test]
fn stage_with_odd_names_and_a_collect_dir_with_spaces() {
    let r = remote();
    // scp's SFTP mode takes remote paths literally, so shell-style quoting of the remote path
    // (needed by the legacy protocol) would break this.
    let collect = mkdir(&r.base().join("collect dir 'q'"));
    let names = ["with space.tar", "it's.tar", "semi;colon $(x).tar"];
    for name in names {
        write_file(&collect.join(name), name);
    }
    let mut args: Vec<String> = vec!["stage".into(), "--target".into(), p(&r.target)];
    args.extend(r.peer_args_with("--collect-dir", &p(&collect)));
    ps(&args).expect_code(0, "stage with odd names");
    for name in names {
        assert_eq!(fs::read_to_string(r.target.join(name)).unwrap(), name);
    }
    assert_eq!(list_dir(&r.target).len(), names.len());
}

#[test]
fn stage_sets_mode() {
    let r = remote();
    let files = write_samples(&r.collect);
    set_mode(&r.collect.join(files[0].0), 0o600);
    set_mode(&r.collect.join(files[1].0), 0o755);
    r.stage(&["--mode", "0640"])
        .expect_code(0, "remote stage --mode 0640");
    for (name, _) in &files {
        assert_eq!(mode_of(&r.target.join(name)), 0o640, "mode of {name}");
    }
}

#[test]
fn stage_sets_owner_by_ids() {
    needs_root("it chowns to arbitrary ids");
    let r = remote();
    let files = write_samples(&r.collect);
    r.stage(&["--owner", "1234:2345"])
        .expect_code(0, "remote stage --owner ids");
    for (name, _) in &files {
        assert_eq!(owner_of(&r.target.join(name)), (1234, 2345), "{name}");
    }
}

#[test]
fn stage_sets_owner_by_names() {
    let (uid, gid) = needs_test_user("it creates a user and chowns");
    let r = remote();
    let files = write_samples(&r.collect);
    r.stage(&["--owner", TEST_USER])
        .expect_code(0, "remote stage --owner USER");
    for (name, _) in &files {
        assert_eq!(owner_of(&r.target.join(name)), (uid, gid), "{name}");
    }

    let nobody = user_ids("nobody").expect("user nobody").0;
    let nogroup = group_id("nogroup").expect("group nogroup");
    let second = mkdir(&r.base().join("staging2"));
    let second_s = p(&second);
    r.run(
        &["stage", "--target", &second_s, "--owner", "nobody:nogroup"],
        &[],
    )
    .expect_code(0, "remote stage --owner nobody:nogroup");
    for (name, _) in &files {
        assert_eq!(owner_of(&second.join(name)), (nobody, nogroup), "{name}");
    }
}

#[test]
fn stage_empty_collect_dir_fails() {
    let r = remote();
    let out = r.stage(&[]);
    out.expect_code(1, "remote stage of an empty collect dir")
        .expect_one_error_line("remote stage of an empty collect dir")
        .expect_stderr_line_with(&[&r.host, &p(&r.collect)], "error names peer and path");
    assert!(list_dir(&r.target).is_empty());
}

#[test]
fn stage_bad_input_exits_2_before_connecting() {
    let r = remote();
    write_samples(&r.collect);
    let logins_before = r.sshd.logins();
    let base = r.base().to_path_buf();
    let host = r.host.clone();
    let target = p(&r.target);
    let missing = p(&base.join("no-such-staging"));

    let with = |flag: &str, value: &str, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = vec!["stage".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(r.peer_args_with(flag, value));
        args
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "relative target",
            with("--host", &host, &["--target", "staging"]),
        ),
        (
            "missing target",
            with("--host", &host, &["--target", &missing]),
        ),
        (
            "relative collect dir",
            with("--collect-dir", "collect", &["--target", &target]),
        ),
        (
            "relative working dir",
            with("--working-dir", "work", &["--target", &target]),
        ),
        (
            "mode 0999",
            with("--host", &host, &["--target", &target, "--mode", "0999"]),
        ),
        (
            "mode abc",
            with("--host", &host, &["--target", &target, "--mode", "abc"]),
        ),
        (
            "unknown owner",
            with(
                "--host",
                &host,
                &["--target", &target, "--owner", "no-such-user-peerstage"],
            ),
        ),
        (
            "unknown local user",
            with(
                "--host",
                &host,
                &[
                    "--target",
                    &target,
                    "--local-user",
                    "no-such-user-peerstage",
                ],
            ),
        ),
    ];
    for (what, args) in cases {
        let out = run(peerstage().current_dir(&base).args(&args));
        out.expect_code(2, what);
        assert!(!out.stderr.trim().is_empty(), "{what}: no error message");
        assert!(list_dir(&r.target).is_empty(), "{what}: target changed");
        assert!(list_dir(&r.work).is_empty(), "{what}: working dir changed");
        assert!(!base.join("no-such-staging").exists(), "{what}: created");
        assert_eq!(
            r.sshd.logins(),
            logins_before,
            "{what}: peerstage connected to the peer despite bad input\n{}",
            out.describe()
        );
    }
}

#[test]
fn check_reports_indicator() {
    let r = remote();
    r.run(&["check"], &[])
        .expect_code(1, "remote check without indicator");
    write_file(&r.collect.join("cback.collect"), "");
    r.run(&["check"], &[])
        .expect_code(0, "remote check with cback.collect");
    r.run(&["check", "--indicator", "ready.flag"], &[])
        .expect_code(1, "remote check custom indicator absent");
    write_file(&r.collect.join("ready.flag"), "");
    r.run(&["check", "--indicator", "ready.flag"], &[])
        .expect_code(0, "remote check custom indicator present");
    // The probe copy is scratch, not something to leave behind.
    assert!(
        list_dir(&r.work).is_empty(),
        "check left {:?} in the working dir",
        list_dir(&r.work)
    );
}

#[test]
fn check_missing_collect_dir_is_not_ready() {
    let r = remote();
    let mut args: Vec<String> = vec!["check".into()];
    args.extend(r.peer_args_with("--collect-dir", &p(&r.base().join("no-such-collect"))));
    ps(&args).expect_code(1, "remote check with a missing collect dir");
}

#[test]
fn unreachable_peer_exits_69() {
    let r = remote();
    write_samples(&r.collect);
    write_file(&r.collect.join("cback.collect"), "");
    let peer = r.unreachable_args();

    let mut args: Vec<String> = vec!["check".into()];
    args.extend(peer.clone());
    // ssh's own diagnosis ("connect to host ... Connection refused") is the cause to report;
    // scp's closing "Connection closed" alone does not say why.
    ps(&args)
        .expect_code(69, "check of an unreachable peer")
        .expect_one_error_line("check of an unreachable peer")
        .expect_stderr_line_with(&[&r.host, "refused"], "error names peer and cause");

    let mut args: Vec<String> = vec!["stage".into(), "--target".into(), p(&r.target)];
    args.extend(peer.clone());
    ps(&args)
        .expect_code(69, "stage from an unreachable peer")
        .expect_one_error_line("stage from an unreachable peer")
        .expect_stderr_line_with(&[&r.host, "refused"], "error names peer and cause");
    assert!(list_dir(&r.target).is_empty());

    let mut args: Vec<String> = vec!["exec".into()];
    args.extend(peer);
    args.extend(["--".into(), "true".into()]);
    ps(&args).expect_code(69, "exec on an unreachable peer");
}

#[test]
fn rcp_that_exits_0_but_copies_nothing_is_caught() {
    let r = remote();
    write_samples(&r.collect);
    write_file(&r.collect.join("cback.collect"), "");
    let fake = write_script(&r.base().join("fake-scp"), "exit 0");

    let peer = r.peer_args_with("--rcp-command", &p(&fake));

    let mut args: Vec<String> = vec!["stage".into(), "--target".into(), p(&r.target)];
    args.extend(peer.clone());
    ps(&args)
        .expect_code(1, "stage with an rcp command that copies nothing")
        .expect_one_error_line("stage with an rcp command that copies nothing")
        .expect_stderr_line_with(&[&r.host, &p(&fake)], "error names peer and command");
    assert!(list_dir(&r.target).is_empty());

    let mut args: Vec<String> = vec!["check".into()];
    args.extend(peer);
    let out = ps(&args);
    assert_ne!(
        out.code,
        0,
        "check trusted an rcp exit code of 0 without a file\n{}",
        out.describe()
    );
    out.expect_no_panic("check with a lying rcp command");
}

#[test]
fn mark_pushes_indicator() {
    let r = remote();
    r.run(&["mark"], &[]).expect_code(0, "remote mark");
    let indicator = r.collect.join("cback.stage");
    assert_eq!(
        fs::metadata(&indicator).unwrap().len(),
        0,
        "cback.stage empty"
    );

    r.run(&["mark", "--indicator", "staged.flag"], &[])
        .expect_code(0, "remote mark custom");
    assert_eq!(
        fs::metadata(r.collect.join("staged.flag")).unwrap().len(),
        0
    );
    assert_eq!(list_dir(&r.collect), ["cback.stage", "staged.flag"]);
    assert!(
        list_dir(&r.work).is_empty(),
        "mark left {:?} in the working dir",
        list_dir(&r.work)
    );
}

#[test]
fn mark_into_missing_collect_dir_fails() {
    let r = remote();
    let missing = r.base().join("no-such-collect");
    let mut args: Vec<String> = vec!["mark".into()];
    args.extend(r.peer_args_with("--collect-dir", &p(&missing)));
    let out = ps(&args);
    assert_ne!(out.code, 0, "mark into a missing dir\n{}", out.describe());
    out.expect_no_panic("remote mark into a missing dir");
    assert!(!missing.exists());
}

#[test]
fn exec_passes_arguments_intact() {
    let r = remote();
    let canary = |n: u32| r.base().join(format!("CANARY{n}"));
    let args_in = vec![
        "a b".to_string(),
        "it's".to_string(),
        r#"say "hi""#.to_string(),
        format!("$(touch {})", p(&canary(1))),
        format!("`touch {}`", p(&canary(2))),
        format!("x; touch {}", p(&canary(3))),
        format!("x && touch {} | cat", p(&canary(4))),
        "back\\slash".to_string(),
        "*".to_string(),
        "~".to_string(),
        "$HOME".to_string(),
        String::new(),
        "two\nlines".to_string(),
    ];
    let mut after: Vec<&str> = vec!["--", "printf", "%s\\n"];
    after.extend(args_in.iter().map(String::as_str));
    let out = r.run(&["exec"], &after);
    out.expect_code(0, "exec printf");
    let expected: String = args_in.iter().map(|a| format!("{a}\n")).collect();
    assert_eq!(
        out.stdout,
        expected,
        "remote printf output\n{}",
        out.describe()
    );
    for n in 1..=4 {
        assert!(!canary(n).exists(), "an argument ran a command (CANARY{n})");
    }
}

#[test]
fn exec_output_passes_through_untouched() {
    let r = remote();
    let command = [
        "sh",
        "-c",
        "printf 'out 1\\nout 2\\n'; printf 'err 1\\n' >&2",
    ];
    let mut after = vec!["--"];
    after.extend(command);
    let out = r.run(&["exec"], &after);
    out.expect_code(0, "exec sh -c");
    assert_eq!(out.stdout, "out 1\nout 2\n", "stdout\n{}", out.describe());

    // The same command through plain ssh is the reference: the remote side may add lines of its
    // own (sshd's "Could not chdir to home directory" for a user without one), peerstage not.
    let quoted: Vec<String> = command.iter().map(|a| sh_quote(a)).collect();
    let direct = run(std::process::Command::new(SSH)
        .arg("-F")
        .arg(&r.sshd.ssh_config)
        .arg(&r.host)
        .arg(quoted.join(" "))
        .stdin(std::process::Stdio::null()));
    assert_eq!(direct.stdout, "out 1\nout 2\n", "{}", direct.describe());
    assert!(direct.stderr.ends_with("err 1\n"), "{}", direct.describe());
    assert_eq!(out.stderr, direct.stderr, "stderr\n{}", out.describe());
}

#[test]
fn exec_failing_command_exits_1() {
    let r = remote();
    r.run(&["exec"], &["--", "false"])
        .expect_code(1, "exec false");
    r.run(&["exec"], &["--", "sh", "-c", "exit 3"])
        .expect_code(1, "exec exit 3");
}

fn fake_cback(r: &Remote, exit: i32) -> (PathBuf, PathBuf) {
    let log = r.base().join("cback-argv.log");
    let script = write_script(
        &r.base().join("fake-cback"),
        &format!(
            "for a in \"$@\"; do printf '%s\\n' \"$a\"; done >> {}\nexit {exit}",
            sh_quote(&p(&log))
        ),
    );
    (script, log)
}

#[test]
fn action_runs_cback_command() {
    let r = remote();
    let (cback, log) = fake_cback(&r, 0);
    let cback = p(&cback);

    r.run(&["action"], &["--cback-command", &cback, "collect"])
        .expect_code(0, "action collect");
    assert_eq!(fs::read_to_string(&log).unwrap(), "collect\n");

    fs::remove_file(&log).unwrap();
    r.run(
        &["action"],
        &["--cback-command", &cback, "--full", "collect"],
    )
    .expect_code(0, "action --full collect");
    assert_eq!(fs::read_to_string(&log).unwrap(), "--full\ncollect\n");
}

#[test]
fn action_failure_exits_1() {
    let r = remote();
    let (cback, log) = fake_cback(&r, 4);
    r.run(&["action"], &["--cback-command", &p(&cback), "collect"])
        .expect_code(1, "failing action");
    assert_eq!(fs::read_to_string(&log).unwrap(), "collect\n");
}

#[test]
fn dry_run_stage_prints_the_copy_and_changes_nothing() {
    let r = remote();
    write_samples(&r.collect);
    // Multiplexed, the copy goes over the master's SFTP session; without, scp does it.
    for (extra, shows) in [
        (None, "copy every regular file in it"),
        (Some("--no-multiplex"), SCP),
    ] {
        let mut opts = vec!["--dry-run"];
        opts.extend(extra);
        let out = r.stage(&opts);
        let what = format!("dry-run stage {opts:?}");
        out.expect_code(0, &what);
        let all = out.combined();
        assert!(
            all.contains(shows) && all.contains(&p(&r.collect)),
            "{what}: does not show the copy ({shows})\n{}",
            out.describe()
        );
        if extra.is_none() {
            assert!(
                all.contains(" sftp\n") && all.contains("ControlMaster=yes"),
                "{what}: does not show the SFTP session\n{}",
                out.describe()
            );
        }
        assert!(list_dir(&r.target).is_empty(), "{what}: staged files");
        assert!(
            list_dir(&r.work).is_empty(),
            "{what}: wrote to the working dir"
        );
    }
}

/// Root running as `--local-user`: scp runs as that user through `su`. The target and working
/// dirs stay root's (0755), so peerstage itself must give the local user somewhere to write;
/// Cedar instead required both dirs to belong to the local user.
#[test]
fn local_user_stage_and_check() {
    needs_test_user("--local-user is root only");
    let r = remote();
    r.sshd.allow_user(TEST_USER);
    let files = write_samples(&r.collect);
    write_file(&r.collect.join("cback.collect"), "");

    r.run(&["check"], &["--local-user", TEST_USER])
        .expect_code(0, "check --local-user");

    fs::remove_file(r.collect.join("cback.collect")).unwrap();
    r.stage(&["--local-user", TEST_USER])
        .expect_code(0, "stage --local-user");
    assert_staged_exactly(&r.target, &files);
    // Through scp itself, which writes as the local user into peerstage's private dir.
    r.stage(&["--local-user", TEST_USER, "--no-multiplex"])
        .expect_code(0, "stage --local-user --no-multiplex");
    assert_staged_exactly(&r.target, &files);

    let pattern = format!("Accepted publickey for {TEST_USER} from");
    assert!(
        r.sshd.log().contains(&pattern),
        "ssh did not log in as {TEST_USER} (so su was not used?)\nsshd log:\n{}",
        r.sshd.log()
    );

    // The shared connection ran as the local user, in su's own session: it must still end
    // with the command, not linger as an orphan.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left: Vec<String> = processes_mentioning(&r.host)
            .into_iter()
            .map(cmdline_of)
            // The server side (sshd: ...) is the test server's business.
            .filter(|line| !line.starts_with("sshd"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes outlived peerstage: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `--local-user` needs root; anyone else is refused before anything happens.
#[test]
fn local_user_refused_when_not_root() {
    let r = remote();
    write_samples(&r.collect);
    let out = if is_root() {
        needs_test_user("it runs peerstage as another user");
        let bin = env!("CARGO_BIN_EXE_peerstage");
        // Said plainly here, rather than as the shell's exit code 126 below.
        assert_eq!(
            run_as(TEST_USER, &format!("test -x {}", sh_quote(bin))).code,
            0,
            "{TEST_USER} cannot execute {bin}: every dir above it must be searchable by others"
        );
        let mut args: Vec<String> = vec![
            bin.to_string(),
            "stage".into(),
            "--target".into(),
            p(&r.target),
            "--local-user".into(),
            TEST_USER.into(),
        ];
        args.extend(r.peer_args());
        let line: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
        run_as(TEST_USER, &line.join(" "))
    } else {
        r.stage(&["--local-user", "nobody"])
    };
    out.expect_code(2, "--local-user when not root")
        .expect_stderr_contains("root", "refusal explains that root is needed");
    assert!(list_dir(&r.target).is_empty());
}
