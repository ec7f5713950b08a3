//! What an administrator meets running peerstage by hand and every night: mistakes said as
//! such, wording that tells a wrong path from a peer still collecting, output people read.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A pool dir of its own: staging, lock dir, collect dirs.
struct Pool {
    dir: tempfile::TempDir,
}

impl Pool {
    fn new() -> Pool {
        let pool = Pool { dir: tempdir() };
        mkdir(&pool.staging());
        pool
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn staging(&self) -> PathBuf {
        self.path("staging")
    }
    fn collect(&self, name: &str, ready: bool) -> PathBuf {
        let dir = mkdir(&self.path("collect").join(name));
        write_samples(&dir);
        if ready {
            write_file(&dir.join("cback.collect"), "");
        }
        dir
    }
    /// A config with `peers` (local ones: name and collect dir).
    fn config(&self, peers: &[(&str, &Path)]) -> PathBuf {
        let mut text = toml_dirs(&self.staging(), &self.path("work"), &self.path("locks"));
        for (name, collect) in peers {
            text.push_str(&local_peer_toml(name, collect, ""));
        }
        let path = write_file(&self.path("pool.toml"), text);
        set_mode(&path, 0o600);
        path
    }
}

/// Point 1: a pool with no peers looked valid ("0 peers") and a run of it completed (T),
/// writing the master indicator: a broken nightly config passed for a good backup.
#[test]
fn a_pool_without_peers_is_a_configuration_error() {
    let pool = Pool::new();
    let config = pool.config(&[]);
    for sub in [
        &["config", "check"][..],
        &["run"][..],
        &["config", "show"][..],
    ] {
        let mut args: Vec<&str> = sub.to_vec();
        let config = p(&config);
        args.extend(["--config", &config]);
        let what = format!("{sub:?} of a pool without peers");
        ps(&args)
            .expect_code(2, &what)
            .expect_one_error_line(&what)
            .expect_stderr_contains("no peers", &what);
    }
    assert!(
        list_dir(&pool.staging()).is_empty(),
        "the run staged or marked something"
    );
}

/// Point 2: a mistyped collect dir read as "absent" everywhere but `stage`.
#[test]
fn a_missing_collect_dir_is_told_apart_from_an_absent_indicator() {
    let pool = Pool::new();
    let waiting = pool.collect("waiting", false);
    let mistyped = pool.path("collect/no-such-dir");
    let check = |dir: &Path| ps(&["check", "--collect-dir", &p(dir)]);
    let out = check(&waiting);
    out.expect_code(1, "check of a peer still collecting");
    assert!(
        out.stdout.contains("cback.collect in") && out.stdout.contains("absent"),
        "{}",
        out.describe()
    );
    let out = check(&mistyped);
    out.expect_code(1, "check of a mistyped collect dir");
    assert!(
        out.stdout.contains("does not exist") && !out.stdout.contains("absent"),
        "{}",
        out.describe()
    );

    let config = pool.config(&[("waiting", &waiting), ("mistyped", &mistyped)]);
    let out = ps(&["run", "--config", &p(&config), "--json"]);
    out.expect_code(1, "run with a mistyped collect dir");
    let report = json_of(&out);
    let message = |name| {
        peer_report(&report, name)["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        message("waiting").contains("no cback.collect"),
        "{}",
        message("waiting")
    );
    assert!(
        message("mistyped").contains("does not exist"),
        "{}",
        message("mistyped")
    );
    out.expect_stderr_line_with(&["peer mistyped", "does not exist"], "run log");

    let out = ps(&["status", "--config", &p(&config)]);
    assert!(
        out.stdout.contains("collect dir missing"),
        "{}",
        out.describe()
    );
}

/// Point 3: `stage` of a collect dir without its indicator staged half-collected data
/// without a word. Point 12: a missing local collect dir exited 1.
#[test]
fn stage_warns_without_the_collect_indicator_and_a_missing_collect_dir_is_exit_2() {
    let pool = Pool::new();
    let collect = pool.collect("half", false);
    let target = mkdir(&pool.path("target"));
    let out = ps(&[
        "stage",
        "--collect-dir",
        &p(&collect),
        "--target",
        &p(&target),
    ]);
    out.expect_code(0, "stage without the collect indicator")
        .expect_stderr_line_with(&["warning", "no cback.collect", &p(&collect)], "stage");
    let ready = pool.collect("ready", true);
    let target = mkdir(&pool.path("target-ready"));
    let out = ps(&[
        "stage",
        "--collect-dir",
        &p(&ready),
        "--target",
        &p(&target),
    ]);
    out.expect_code(0, "stage of a ready peer");
    assert!(out.stderr.is_empty(), "{}", out.describe());

    let target = mkdir(&pool.path("target-missing"));
    let missing = pool.path("collect/missing");
    ps(&[
        "stage",
        "--collect-dir",
        &p(&missing),
        "--target",
        &p(&target),
    ])
    .expect_code(2, "stage of a missing collect dir")
    .expect_one_error_line("stage of a missing collect dir")
    .expect_stderr_line_with(&[&p(&missing), "does not exist"], "stage");
}

/// Point 13 and the text half of 12: sizes in IEC units, plurals, `mark` says what it did,
/// each error once in the run summary with its peer named once.
#[test]
fn text_output_reads_as_people_write_it() {
    let pool = Pool::new();
    let collect = mkdir(&pool.path("collect/one"));
    write_file(&collect.join("only.tar"), vec![0u8; 3 * 1024 * 1024]);
    let target = mkdir(&pool.path("target"));
    let out = ps(&[
        "stage",
        "--collect-dir",
        &p(&collect),
        "--target",
        &p(&target),
    ]);
    out.expect_code(0, "stage of one file");
    assert!(
        out.stdout.contains("staged 1 file (3.00 MiB) from peer"),
        "{}",
        out.describe()
    );

    let out = ps(&["mark", "--collect-dir", &p(&collect)]);
    out.expect_code(0, "mark");
    assert!(
        out.stdout.contains("wrote cback.stage in"),
        "{}",
        out.describe()
    );

    let waiting = pool.collect("waiting", false);
    let config = pool.config(&[("waiting", &waiting)]);
    let out = ps(&["run", "--config", &p(&config)]);
    out.expect_code(1, "run with a peer not ready");
    assert_eq!(
        out.stdout.matches("not ready to be staged").count(),
        1,
        "the error once in the summary\n{}",
        out.describe()
    );
    assert!(
        !out.stdout.contains("waiting: peer waiting"),
        "{}",
        out.describe()
    );
    assert!(out.stdout.contains("0 files, 0 B"), "{}", out.describe());
}

/// Point 7: the native sample is the Cedar sample, setting for setting. As root, Cedar runs
/// the copies of remote peers as backup_user (through su), which the native sample says in
/// so many words; run otherwise, cback3.conf means no local user.
#[test]
fn the_native_sample_means_what_the_cedar_sample_means() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let show = |name: &str| {
        let out = ps(&[
            "config",
            "show",
            "--config",
            &p(&repo.join("fixtures").join(name)),
        ]);
        out.expect_code(0, name);
        // The first line names the file it came from.
        out.stdout.lines().skip(1).collect::<Vec<_>>().join("\n")
    };
    let native = show("pool.toml");
    let cedar = show("cback3.conf");
    if is_root() {
        assert_eq!(native, cedar);
    } else {
        assert_eq!(native.replace("local_user = \"backup\"\n", ""), cedar);
    }
}

/// Point 10: each subcommand's help lists the options that apply to it, and an option given
/// before a subcommand it does not apply to is refused rather than ignored.
#[test]
fn each_subcommand_shows_only_the_options_that_apply() {
    let help = |sub: &[&str]| {
        let mut args = sub.to_vec();
        args.push("--help");
        let out = ps(&args);
        out.expect_code(0, &format!("{sub:?} --help"));
        out.stdout
    };
    let applies: &[(&[&str], &[&str], &[&str])] = &[
        (
            &["stage"],
            &[
                "--dry-run",
                "--verify",
                "--max-entries",
                "--lock-dir",
                "--wait",
                "--no-multiplex",
            ],
            &[],
        ),
        (
            &["check"],
            &["--dry-run", "--timeout", "--no-multiplex"],
            &["--verify", "--max-entries", "--lock-dir", "--wait"],
        ),
        (
            &["mark"],
            &["--lock-dir", "--wait", "--no-multiplex"],
            &["--verify", "--max-entries"],
        ),
        (
            &["exec"],
            &["--no-multiplex", "--timeout"],
            &["--verify", "--lock-dir", "--wait", "--idle-timeout"],
        ),
        (
            &["config", "check"],
            &["--config"],
            &[
                "--verify",
                "--no-multiplex",
                "--dry-run",
                "--lock-dir",
                "--timeout",
            ],
        ),
        (
            &["locks"],
            &["--lock-dir", "--all"],
            &["--verify", "--no-multiplex", "--dry-run", "--timeout"],
        ),
        (
            &["run"],
            &[
                "--verify",
                "--metrics-file",
                "--lock-dir",
                "--dry-run",
                "--wait",
            ],
            &[],
        ),
    ];
    for (sub, present, absent) in applies {
        let text = help(sub);
        for option in *present {
            assert!(
                text.contains(option),
                "{sub:?} --help lacks {option}\n{text}"
            );
        }
        for option in *absent {
            assert!(
                !text.contains(option),
                "{sub:?} --help lists {option}\n{text}"
            );
        }
    }
    // Before a subcommand they do not apply to, shared options are ignored, said once.
    let pool = Pool::new();
    let ready = pool.collect("ready", true);
    ps(&["--verify", "sha256", "check", "--collect-dir", &p(&ready)])
        .expect_code(0, "--verify before check")
        .expect_stderr_line_with(
            &[
                "warning",
                "--verify does not apply to `peerstage check`; ignored",
            ],
            "--verify",
        );

    // Completions offer neither the hidden generate nor file names for peer names.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bash = std::fs::read_to_string(repo.join("completions/peerstage.bash")).unwrap();
    assert!(
        !bash.contains("generate"),
        "bash completion offers generate"
    );
    let fish = std::fs::read_to_string(repo.join("completions/peerstage.fish")).unwrap();
    let only = fish
        .lines()
        .find(|line| line.contains("-l only"))
        .expect("--only in fish completion");
    assert!(only.contains(" -f"), "--only completes file names: {only}");
}

/// Point 6: every command line of the man page's EXAMPLES and of the README, and the
/// SYNOPSIS, is one the CLI accepts as written.
#[test]
fn every_example_command_line_parses_with_the_real_cli() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let man = std::fs::read_to_string(repo.join("man/peerstage.1")).unwrap();
    let unroff = |line: &str| line.replace("\\-", "-").replace("\\e", "\\");
    let examples = section(&man, ".SH EXAMPLES", ".SH ");
    let mut lines = Vec::new();
    let mut in_block = false;
    for line in examples.lines() {
        match line {
            ".nf" => in_block = true,
            ".fi" => in_block = false,
            _ if in_block => lines.push(unroff(line)),
            _ => {}
        }
    }
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let mut in_code = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if in_code {
            lines.push(line.to_string());
        }
    }
    let commands = command_lines(&lines);
    assert!(commands.len() >= 8, "{commands:#?}");
    for words in &commands {
        peerstage::cli::command()
            .try_get_matches_from(words)
            .unwrap_or_else(|err| panic!("{words:?} does not parse:\n{err}"));
    }

    // The synopsis of exec puts the peer before `--`, as it must be given.
    let synopsis = man.split(".SH SYNOPSIS").nth(1).unwrap();
    let exec = synopsis
        .lines()
        .find(|line| line.starts_with("peerstage exec"))
        .map(unroff)
        .expect("exec in the synopsis");
    assert!(exec.contains("PEER -- <COMMAND>..."), "{exec}");
    assert!(
        man.contains("/srv/db/collect is srv\\-db\\-collect"),
        "--name's default"
    );
}

/// The `peerstage ...` command lines in `lines`: continuations joined, each line of `a &&
/// b | c` taken apart, the program's own path (`/usr/local/bin/peerstage`) and a cron
/// schedule before it dropped.
fn command_lines(lines: &[String]) -> Vec<Vec<String>> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in lines {
        let line = line.trim();
        if let Some(start) = line.strip_suffix('\\') {
            current.push_str(start);
            current.push(' ');
        } else if current.ends_with("&& ") || line.starts_with("&&") {
            current.push_str(line);
            current.push(' ');
        } else {
            current.push_str(line);
            joined.push(std::mem::take(&mut current));
        }
    }
    let mut commands = Vec::new();
    for line in joined {
        for part in line.split("&&").flat_map(|part| part.split(" | ")) {
            let Ok(mut words) = shell_words::split(part.trim()) else {
                continue;
            };
            // A redirection is the shell's, not an argument.
            if let Some(at) = words
                .iter()
                .position(|word| word.starts_with('>') || word.starts_with("2>"))
            {
                words.truncate(at);
            }
            let Some(at) = words
                .iter()
                .position(|word| word == "peerstage" || word.ends_with("/peerstage"))
            else {
                continue;
            };
            // `cargo run -- ...` and `peerstage` alone (an install line) are not examples.
            if words.len() == at + 1 || words[..at].iter().any(|word| word == "cargo") {
                continue;
            }
            let mut command = vec!["peerstage".to_string()];
            command.extend(words[at + 1..].iter().cloned());
            commands.push(command);
        }
    }
    commands
}

/// Point 9: a dry run of a pool says what it would probe and what it would write, and calls
/// the peers it did not run C (not run), not T.
#[test]
fn a_dry_run_of_a_pool_says_what_it_would_probe_and_write() {
    let pool = Pool::new();
    let ready = pool.collect("ready", true);
    let mut text = toml_dirs(&pool.staging(), &pool.path("work"), &pool.path("locks"));
    text.push_str(&local_peer_toml("ready", &ready, ""));
    text.push_str(&remote_peer_toml(
        "far.example.invalid",
        Path::new("/var/backup/collect"),
        "",
    ));
    let config = write_file(&pool.path("pool.toml"), text);
    set_mode(&config, 0o600);
    let out = ps(&["--dry-run", "run", "--config", &p(&config), "--json"]);
    out.expect_code(0, "dry run");
    // stdout is the JSON document alone; the dry-run lines went to stderr.
    let report = json_of(&out);
    assert!(
        out.stderr.contains("# write the job report to "),
        "{}",
        out.describe()
    );
    assert_status(&report, "ready", "C");
    assert_status(&report, "far.example.invalid", "C");
    let out = ps(&["--dry-run", "run", "--config", &p(&config)]);
    for needle in [
        "open /var/backup/collect/cback.collect",
        "# if cback.collect is there (the peer is ready):",
        "touch -- ",
        "# write the job report to ",
        "not run (dry run)",
    ] {
        assert!(out.stdout.contains(needle), "{needle}\n{}", out.describe());
    }
    assert!(
        list_dir(&pool.staging()).is_empty(),
        "a dry run wrote something"
    );

    // exec needs no collect dir: it only runs a command.
    let out = ps(&[
        "--dry-run",
        "exec",
        "--host",
        "far.example.invalid",
        "--",
        "df",
        "-h",
    ]);
    out.expect_code(0, "exec without --collect-dir");
    assert!(
        out.stdout.contains("far.example.invalid"),
        "{}",
        out.describe()
    );
}

/// Points 12 and 13: a flag is named as a flag; the demo leaves nothing behind; lock files go
/// with their owners, and `locks` lists the given config's.
#[test]
fn flags_are_named_the_demo_cleans_up_and_locks_go_with_their_owners() {
    ps(&["stage", "--collect-dir", "relative/dir", "--target", "/tmp"])
        .expect_code(2, "relative --collect-dir")
        .expect_stderr_contains("--collect-dir must be an absolute path", "flag name");

    let pool = Pool::new();
    // A working dir that is not there is a mistake in the settings (2), not a peer failure.
    let mut text = toml_dirs(
        &pool.staging(),
        &pool.path("no-such-work/deeper"),
        &pool.path("locks"),
    );
    text.push_str(&remote_peer_toml(
        "127.0.0.1",
        Path::new("/var/backup/collect"),
        "rcp_command = \"/usr/bin/scp -B -q -F /dev/null -P 1\"\n",
    ));
    let broken = write_file(&pool.path("broken.toml"), text);
    set_mode(&broken, 0o600);
    ps(&["status", "--no-multiplex", "--config", &p(&broken)])
        .expect_code(2, "status with a missing working dir")
        .expect_stderr_contains("cannot create a scratch dir", "status");

    let tmp = mkdir(&pool.path("tmp"));
    let out = run(peerstage().env("TMPDIR", &tmp).args(["run", "--demo"]));
    out.expect_code(0, "demo");
    assert!(
        out.stdout.contains("alpha/alpha-etc-20261121.tar"),
        "{}",
        out.describe()
    );
    assert!(
        list_dir(&tmp).is_empty(),
        "the demo left {:?}",
        list_dir(&tmp)
    );

    let ready = pool.collect("ready", true);
    let config = pool.config(&[("ready", &ready)]);
    let locks = pool.path("locks");
    mkdir(&locks);
    set_mode(&locks, 0o700);
    // A lock of a killed owner, and one of another pool, held right now.
    write_file(&locks.join("peer-ghost.lock"), "999999\npeer ghost\n");
    let held = locks.join("peer-other.lock");
    let mut holder = Command::new("flock")
        .arg(&held)
        .args(["sleep", "30"])
        .spawn()
        .expect("util-linux flock");
    while !held.exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    ps(&["run", "--config", &p(&config)]).expect_code(0, "run");
    let left = list_dir(&locks);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(
        left,
        vec!["peer-other.lock".to_string()],
        "only the held lock stays"
    );

    write_file(&locks.join("peer-ready.lock"), "");
    let out = ps(&["locks", "--config", &p(&config)]);
    out.expect_code(0, "locks");
    assert!(out.stdout.contains("peer ready"), "{}", out.describe());
    assert!(
        !out.stdout.contains("other"),
        "another pool's lock: {}",
        out.describe()
    );
    let out = ps(&["locks", "--config", &p(&config), "--all"]);
    assert!(out.stdout.contains("other"), "{}", out.describe());
}
