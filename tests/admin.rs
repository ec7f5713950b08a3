//! What an administrator meets running peerstage by hand and every night: mistakes said as
//! such, wording that tells a wrong path from a peer still collecting, output people read.

mod common;

use std::path::{Path, PathBuf};

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
