//! Local peers through the `peerstage` binary: stage, check, mark, and the refusal of
//! exec/action, with the exit codes and messages scripts rely on.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use common::*;

/// A temp dir holding a collect dir and an (empty, existing) target dir.
struct Pool {
    dir: tempfile::TempDir,
    /// Unique per test: peerstage locks peers by name and tests run in parallel.
    name: String,
    collect: PathBuf,
    target: PathBuf,
}

fn pool() -> Pool {
    let dir = tempdir();
    let collect = mkdir(&dir.path().join("collect"));
    let target = mkdir(&dir.path().join("staging"));
    Pool {
        name: unique_name("alpha", dir.path()),
        dir,
        collect,
        target,
    }
}

impl Pool {
    /// `peerstage <sub> <sub_args...> --collect-dir C --name NAME`
    fn run(&self, sub: &str, sub_args: &[&str]) -> Out {
        let mut args: Vec<String> = vec![sub.to_string()];
        args.extend(sub_args.iter().map(|s| s.to_string()));
        args.extend([
            "--collect-dir".into(),
            p(&self.collect),
            "--name".into(),
            self.name.clone(),
        ]);
        ps(&args)
    }

    fn stage(&self, extra: &[&str]) -> Out {
        let target = p(&self.target);
        let mut args = vec!["--target", target.as_str()];
        args.extend_from_slice(extra);
        self.run("stage", &args)
    }
}

fn total_bytes(files: &[(&str, Vec<u8>)]) -> usize {
    files.iter().map(|(_, d)| d.len()).sum()
}

#[test]
fn stage_copies_regular_files_only() {
    let pool = pool();
    let files = write_samples(&pool.collect);
    // Non-regular entries that must be skipped, never followed.
    let subdir = mkdir(&pool.collect.join("nested-dir"));
    write_file(&subdir.join("inner.tar"), "inner");
    let secret = write_file(&pool.dir.path().join("outside-secret"), "not for staging");
    symlink(&secret, pool.collect.join("link-to-secret")).unwrap();
    mkfifo(&pool.collect.join("a-fifo"));

    let out = pool.stage(&[]);
    out.expect_code(0, "stage");
    assert_staged_exactly(&pool.target, &files);

    let expected = format!(
        "staged {} files ({}) from peer {} into {}",
        files.len(),
        iec(total_bytes(&files) as u64),
        pool.name,
        p(&pool.target)
    );
    assert_eq!(
        out.stdout.trim_end(),
        expected,
        "stage summary line\n{}",
        out.describe()
    );
    for skipped in ["nested-dir", "link-to-secret", "a-fifo"] {
        out.expect_stderr_contains(skipped, "warning about a skipped entry");
    }
    // The source is left as it was.
    assert_eq!(
        list_dir(&pool.collect),
        [
            "a-fifo",
            "alpha-etc-20261121.tar",
            "alpha-home-20261121.tar",
            "empty.dat",
            "link-to-secret",
            "nested-dir"
        ]
    );
}

#[test]
fn stage_with_odd_file_names() {
    let pool = pool();
    let names = [
        "with space.tar",
        "it's.tar",
        "semi;colon $(x).tar",
        "-dash.tar",
    ];
    for name in names {
        write_file(&pool.collect.join(name), name);
    }
    pool.stage(&[]).expect_code(0, "stage odd names");
    for name in names {
        assert_eq!(fs::read_to_string(pool.target.join(name)).unwrap(), name);
    }
}

#[test]
fn stage_sets_mode() {
    let pool = pool();
    let files = write_samples(&pool.collect);
    // Source modes differ from the requested one, so inheriting them would show.
    set_mode(&pool.collect.join(files[0].0), 0o600);
    set_mode(&pool.collect.join(files[1].0), 0o755);
    pool.stage(&["--mode", "0640"])
        .expect_code(0, "stage --mode 0640");
    for (name, _) in &files {
        assert_eq!(
            mode_of(&pool.target.join(name)),
            0o640,
            "mode of staged {name}"
        );
    }
}

#[test]
fn stage_keeps_source_modes_whatever_the_umask() {
    use std::os::unix::process::CommandExt;
    let pool = pool();
    let files = write_samples(&pool.collect);
    // Modes the umask would cut down if they were only asked of open(2), and one it leaves.
    let modes = [0o644, 0o755, 0o600, 0o664, 0o2750];
    for ((name, _), mode) in files.iter().zip(modes) {
        set_mode(&pool.collect.join(name), mode);
    }
    for (umask, extra) in [
        (0o077, vec![]),
        (0o022, vec![]),
        (0o077, vec!["--mode", "0664"]),
    ] {
        for (name, _) in &files {
            let _ = fs::remove_file(pool.target.join(name));
        }
        let target = p(&pool.target);
        let collect = p(&pool.collect);
        let mut cmd = peerstage();
        cmd.args(["stage", "--target", &target, "--collect-dir", &collect])
            .args(["--name", &pool.name])
            .args(&extra);
        // SAFETY: umask(2) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
                Ok(())
            });
        }
        run(&mut cmd).expect_code(0, &format!("stage under umask {umask:03o} {extra:?}"));
        for ((name, _), mode) in files.iter().zip(modes) {
            let expected = if extra.is_empty() { mode } else { 0o664 };
            assert_eq!(
                mode_of(&pool.target.join(name)),
                expected,
                "mode of staged {name} under umask {umask:03o} {extra:?}"
            );
        }
    }
}

#[test]
fn stage_sets_owner_by_ids() {
    needs_root("it chowns to arbitrary ids");
    let pool = pool();
    let files = write_samples(&pool.collect);
    pool.stage(&["--owner", "1234:2345"])
        .expect_code(0, "stage --owner 1234:2345");
    for (name, _) in &files {
        assert_eq!(owner_of(&pool.target.join(name)), (1234, 2345), "{name}");
    }
}

#[test]
fn stage_sets_owner_by_names() {
    let (uid, gid) = needs_test_user("it creates a user and chowns");
    let pool = pool();
    let files = write_samples(&pool.collect);
    pool.stage(&["--owner", TEST_USER])
        .expect_code(0, "stage --owner USER");
    for (name, _) in &files {
        assert_eq!(owner_of(&pool.target.join(name)), (uid, gid), "{name}");
    }

    let nobody = user_ids("nobody").expect("user nobody").0;
    let nogroup = group_id("nogroup").expect("group nogroup");
    let pool = pool_with(&files);
    pool.stage(&["--owner", "nobody:nogroup"])
        .expect_code(0, "stage --owner nobody:nogroup");
    for (name, _) in &files {
        assert_eq!(
            owner_of(&pool.target.join(name)),
            (nobody, nogroup),
            "{name}"
        );
    }
}

fn pool_with(files: &[(&str, Vec<u8>)]) -> Pool {
    let pool = pool();
    for (name, data) in files {
        write_file(&pool.collect.join(name), data);
    }
    pool
}

#[test]
fn stage_empty_collect_dir_fails() {
    let pool = pool();
    let out = pool.stage(&[]);
    out.expect_code(1, "stage of an empty collect dir")
        .expect_one_error_line("stage of an empty collect dir")
        .expect_stderr_line_with(
            &[&pool.name, &p(&pool.collect)],
            "error names peer and path",
        );
    assert!(list_dir(&pool.target).is_empty());

    // Only non-regular entries: nothing to stage either.
    mkdir(&pool.collect.join("only-a-dir"));
    let out = pool.stage(&[]);
    out.expect_code(1, "stage of a collect dir holding only a subdirectory");
    assert!(list_dir(&pool.target).is_empty());
}

/// Runs `peerstage ARGS --name NAME` from the pool's dir, where ARGS hold exactly one bad
/// value, and asserts that it exits 2 with an error message and creates or changes nothing.
#[track_caller]
fn assert_bad_input_refused(pool: &Pool, what: &str, args: &[&str]) {
    let base = pool.dir.path();
    let out = run(peerstage()
        .current_dir(base)
        .args(args)
        .args(["--name", &pool.name]));
    out.expect_code(2, what);
    assert!(!out.stderr.trim().is_empty(), "{what}: no error message");
    assert!(list_dir(&pool.target).is_empty(), "{what}: target changed");
    assert!(!base.join("no-such-staging").exists(), "{what}: created");
    assert!(!base.join("staging").join("staging").exists(), "{what}");
    assert_eq!(
        list_dir(base),
        ["collect", "staging"],
        "{what}: nothing was created beside the pool"
    );
}

/// A pool with samples to stage, and the paths its bad-input cases are made of.
struct BadInput {
    pool: Pool,
    target: String,
    collect: String,
    /// A target dir that does not exist.
    missing: String,
}

fn bad_input() -> BadInput {
    let pool = pool();
    write_samples(&pool.collect);
    BadInput {
        target: p(&pool.target),
        collect: p(&pool.collect),
        missing: p(&pool.dir.path().join("no-such-staging")),
        pool,
    }
}

#[test]
fn stage_with_a_relative_or_missing_target_exits_2_and_changes_nothing() {
    let BadInput {
        pool,
        collect,
        missing,
        ..
    } = bad_input();
    for (what, args) in [
        (
            "relative target",
            ["stage", "--target", "staging", "--collect-dir", &collect],
        ),
        (
            "missing target",
            ["stage", "--target", &missing, "--collect-dir", &collect],
        ),
    ] {
        assert_bad_input_refused(&pool, what, &args);
    }
}

#[test]
fn stage_with_a_relative_collect_dir_exits_2_and_changes_nothing() {
    let BadInput { pool, target, .. } = bad_input();
    // `collect` exists relative to the cwd, so only its relativeness is wrong.
    assert_bad_input_refused(
        &pool,
        "relative collect dir",
        &["stage", "--target", &target, "--collect-dir", "collect"],
    );
}

#[test]
fn stage_with_a_bad_mode_exits_2_and_changes_nothing() {
    let BadInput {
        pool,
        target,
        collect,
        ..
    } = bad_input();
    for (what, mode) in [("mode 0999", "0999"), ("mode abc", "abc")] {
        let args = [
            "stage",
            "--target",
            &target,
            "--collect-dir",
            &collect,
            "--mode",
            mode,
        ];
        assert_bad_input_refused(&pool, what, &args);
    }
}

#[test]
fn stage_with_an_unknown_owner_exits_2_and_changes_nothing() {
    let BadInput {
        pool,
        target,
        collect,
        ..
    } = bad_input();
    for (what, owner) in [
        ("unknown owner user", "no-such-user-peerstage"),
        ("unknown owner group", "root:no-such-group-peerstage"),
    ] {
        let args = [
            "stage",
            "--target",
            &target,
            "--collect-dir",
            &collect,
            "--owner",
            owner,
        ];
        assert_bad_input_refused(&pool, what, &args);
    }
}

/// The errors that are not command-line syntax are one line naming the path.
#[test]
fn a_missing_target_is_one_error_line_naming_it() {
    let BadInput {
        pool,
        collect,
        missing,
        ..
    } = bad_input();
    let out = run(peerstage().current_dir(pool.dir.path()).args([
        "stage",
        "--target",
        &missing,
        "--collect-dir",
        &collect,
        "--name",
        &pool.name,
    ]));
    out.expect_one_error_line("missing target")
        .expect_stderr_contains(&missing, "missing target named");
}

#[test]
fn check_reports_indicator() {
    let pool = pool();
    pool.run("check", &[])
        .expect_code(1, "check without indicator");

    write_file(&pool.collect.join("cback.collect"), "");
    pool.run("check", &[])
        .expect_code(0, "check with cback.collect");

    pool.run("check", &["--indicator", "ready.flag"])
        .expect_code(1, "check custom indicator absent");
    write_file(&pool.collect.join("ready.flag"), "");
    pool.run("check", &["--indicator", "ready.flag"])
        .expect_code(0, "check custom indicator present");
}

#[test]
fn check_missing_collect_dir_is_not_ready() {
    let dir = tempdir();
    let missing = p(&dir.path().join("no-such-collect"));
    let name = unique_name("alpha", dir.path());
    ps(&["check", "--collect-dir", &missing, "--name", &name])
        .expect_code(1, "check with a missing collect dir");
    assert!(!dir.path().join("no-such-collect").exists());
}

#[test]
fn mark_writes_empty_indicator() {
    let pool = pool();
    pool.run("mark", &[]).expect_code(0, "mark");
    let indicator = pool.collect.join("cback.stage");
    assert_eq!(
        fs::metadata(&indicator).unwrap().len(),
        0,
        "cback.stage empty"
    );

    pool.run("mark", &["--indicator", "staged.flag"])
        .expect_code(0, "mark custom");
    assert_eq!(
        fs::metadata(pool.collect.join("staged.flag"))
            .unwrap()
            .len(),
        0
    );
    assert_eq!(list_dir(&pool.collect), ["cback.stage", "staged.flag"]);
}

#[test]
fn mark_with_mode_and_owner() {
    let pool = pool();
    pool.run("mark", &["--mode", "0600"])
        .expect_code(0, "mark --mode 0600");
    assert_eq!(mode_of(&pool.collect.join("cback.stage")), 0o600);

    pool.run("mark", &["--indicator", "wide.flag", "--mode", "0664"])
        .expect_code(0, "mark --mode 0664");
    // 0664 is wider than a typical umask allows, so this shows the mode is set, not masked.
    assert_eq!(mode_of(&pool.collect.join("wide.flag")), 0o664);

    if is_root() {
        pool.run(
            "mark",
            &["--indicator", "owned.flag", "--owner", "1234:2345"],
        )
        .expect_code(0, "mark --owner");
        assert_eq!(owner_of(&pool.collect.join("owned.flag")), (1234, 2345));
    }

    pool.run("mark", &["--indicator", "bad.flag", "--mode", "0999"])
        .expect_code(2, "mark with a bad mode");
    assert!(!pool.collect.join("bad.flag").exists());
}

#[test]
fn mark_missing_collect_dir_fails() {
    let dir = tempdir();
    let missing = dir.path().join("no-such-collect");
    let name = unique_name("alpha", dir.path());
    let out = ps(&["mark", "--collect-dir", &p(&missing), "--name", &name]);
    assert_ne!(out.code, 0, "mark into a missing dir\n{}", out.describe());
    out.expect_no_panic("mark into a missing dir")
        .expect_one_error_line("mark into a missing dir")
        .expect_stderr_contains(&p(&missing), "mark names the missing dir");
    assert!(!missing.exists(), "mark created the collect dir");
}

#[test]
fn exec_and_action_are_refused_for_local_peers() {
    let pool = pool();
    let canary = pool.dir.path().join("CANARY");
    let out = ps(&[
        "exec",
        "--collect-dir",
        &p(&pool.collect),
        "--name",
        &pool.name,
        "--",
        "touch",
        &p(&canary),
    ]);
    out.expect_code(2, "exec on a local peer")
        .expect_one_error_line("exec on a local peer");
    assert!(!canary.exists(), "exec ran something on a local peer");

    let out = ps(&[
        "action",
        "--collect-dir",
        &p(&pool.collect),
        "--name",
        &pool.name,
        "collect",
    ]);
    out.expect_code(2, "action on a local peer")
        .expect_one_error_line("action on a local peer");
}

#[test]
fn stage_dry_run_changes_nothing() {
    let pool = pool();
    write_samples(&pool.collect);
    let out = ps(&[
        "--dry-run",
        "stage",
        "--target",
        &p(&pool.target),
        "--collect-dir",
        &p(&pool.collect),
        "--name",
        &pool.name,
        "--mode",
        "0640",
    ]);
    out.expect_code(0, "dry-run stage");
    assert!(
        !out.combined().trim().is_empty(),
        "dry run printed nothing\n{}",
        out.describe()
    );
    assert!(list_dir(&pool.target).is_empty(), "dry run staged files");
}
