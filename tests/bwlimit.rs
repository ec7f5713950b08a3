//! The bandwidth limit (`--bwlimit`, `bwlimit =`): a remote peer's copy over SFTP held to its
//! rate, the run's limit shared by peers staged in parallel, a peer's own limit from the
//! config (remote and local), the limit as scp's `-l` through a literal scp, and bad rates
//! as usage errors. Against the private loopback sshd of `common::Sshd`.
//!
//! Only lower bounds on time are asserted (a loaded machine may be slower, never faster than
//! the limit allows); how close to the limit a copy comes is measured by `bench/run`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1 << 20;

/// A sshd, and a temp dir of its own for collect dirs, staging, working and lock dirs.
struct Fx {
    sshd: Sshd,
}

impl Fx {
    fn new() -> Fx {
        Fx {
            sshd: Sshd::start().expect(NEEDS_OPENSSH),
        }
    }

    fn base(&self) -> &Path {
        self.sshd.dir.path()
    }

    fn dir(&self, name: &str) -> PathBuf {
        mkdir(&self.base().join(name))
    }

    /// A ready collect dir holding one file of `len` random bytes.
    fn ready(&self, name: &str, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
        let collect = self.dir(&format!("collect-{name}"));
        let data = random_bytes(len, seed);
        write_file(&collect.join(format!("{name}.tar")), &data);
        write_file(&collect.join("cback.collect"), "");
        (collect, data)
    }

    /// scp without -C: random data gains nothing from it.
    fn rcp(&self) -> String {
        format!("{SCP} -F {} -B -q", p(&self.sshd.ssh_config))
    }

    fn peer_name(&self, prefix: &str) -> String {
        unique_name(prefix, self.base())
    }

    /// `peerstage <before> stage --target TARGET <PEER of host> <after>`, and how long it took.
    fn stage(&self, host: &str, collect: &Path, rcp: &str, before: &[&str]) -> (Out, Duration) {
        let target = self.dir("target");
        let mut args: Vec<String> = before.iter().map(|s| s.to_string()).collect();
        args.extend(["stage".into(), "--target".into(), p(&target)]);
        args.extend(remote_peer_args(
            host,
            collect,
            &self.dir("work"),
            rcp,
            &self.sshd.rsh_command(),
        ));
        args.extend(["--lock-dir".into(), p(&self.base().join("locks"))]);
        let started = Instant::now();
        let out = ps(&args);
        (out, started.elapsed())
    }
}

/// At least 90 % of the time `bytes` take at `rate` bytes per second.
#[track_caller]
fn assert_held(elapsed: Duration, bytes: usize, rate: usize, what: &str) {
    let least = Duration::from_secs_f64(0.9 * bytes as f64 / rate as f64);
    assert!(
        elapsed >= least,
        "{what}: {} in {elapsed:?}, faster than the limit allows (at least {least:?})",
        iec(bytes as u64)
    );
}

#[test]
fn a_copy_over_sftp_holds_to_its_limit_and_arrives_whole() {
    let fx = Fx::new();
    let host = fx.peer_name("limited");
    let (collect, data) = fx.ready("big", 50 * MIB, 1);
    let (out, elapsed) = fx.stage(&host, &collect, &fx.rcp(), &["--bwlimit", "10MiB/s"]);
    out.expect_code(0, "a stage at 10MiB/s");
    assert_held(elapsed, 50 * MIB, 10 * MIB, "50 MiB at 10MiB/s over SFTP");
    let staged = std::fs::read(fx.base().join("target/big.tar")).expect("the staged file");
    assert!(staged == data, "the staged file differs from the peer's");
    assert!(
        out.stdout.contains("(50.0 MiB at ")
            && out.stdout.contains(", limit 10.0 MiB/s) from peer"),
        "the summary shows the rate and the limit\n{}",
        out.describe()
    );
}

#[test]
fn the_run_limit_is_shared_by_peers_staged_in_parallel() {
    let fx = Fx::new();
    let staging = fx.dir("staging");
    let part = 25 * MIB / 2;
    let mut peers = String::new();
    let mut expected = Vec::new();
    for i in 0..4 {
        let name = fx.peer_name(&format!("shared{i}"));
        let (collect, data) = fx.ready(&format!("p{i}"), part, 10 + i as u64);
        peers += &remote_peer_toml(
            &name,
            &collect,
            &commands_toml(&fx.rcp(), &fx.sshd.rsh_command()),
        );
        expected.push((name, format!("p{i}.tar"), data));
    }
    let config = write_file(
        &fx.base().join("pool.toml"),
        format!(
            "{}jobs = 4\nbwlimit = \"10MiB/s\"\n{peers}",
            toml_dirs(&staging, &fx.dir("work"), &fx.base().join("locks"))
        ),
    );
    let started = Instant::now();
    let out = ps(&["run", "--config", &p(&config), "--date", DATE, "--json"]);
    let elapsed = started.elapsed();
    out.expect_code(0, "a run of 4 peers sharing 10MiB/s");
    assert_held(elapsed, 4 * part, 10 * MIB, "4 x 12.5 MiB sharing 10MiB/s");
    let report = json_of(&out);
    assert_eq!(report["bwlimit_bytes_per_second"], 10 * MIB);
    assert!(report["bytes_per_second"].as_f64().unwrap_or_default() > 0.0);
    for (name, file, data) in &expected {
        assert_status(&report, name, "T");
        assert_eq!(
            peer_report(&report, name)["bwlimit_bytes_per_second"],
            10 * MIB
        );
        let staged = std::fs::read(staging.join(DAY).join(name).join(file)).expect("staged");
        assert!(&staged == data, "peer {name}: the staged file differs");
    }
}

#[test]
fn a_peers_own_limit_from_the_config_applies_remote_and_local() {
    let fx = Fx::new();
    let staging = fx.dir("staging");
    let remote = fx.peer_name("own-remote");
    let local = fx.peer_name("own-local");
    let (remote_collect, _) = fx.ready("r", 8 * MIB, 20);
    let (local_collect, local_data) = fx.ready("l", 8 * MIB, 21);
    let peers = remote_peer_toml(
        &remote,
        &remote_collect,
        &format!(
            "{}bwlimit = \"4MiB/s\"\n",
            commands_toml(&fx.rcp(), &fx.sshd.rsh_command())
        ),
    ) + &local_peer_toml(&local, &local_collect, "bwlimit = \"4MiB/s\"\n");
    let config = write_file(
        &fx.base().join("pool.toml"),
        format!(
            "{}jobs = 2\n{peers}",
            toml_dirs(&staging, &fx.dir("work"), &fx.base().join("locks"))
        ),
    );
    let out = ps(&["run", "--config", &p(&config), "--date", DATE, "--json"]);
    out.expect_code(0, "a run of two peers with limits of their own");
    let report = json_of(&out);
    assert!(report["bwlimit_bytes_per_second"].is_null());
    for name in [&remote, &local] {
        let peer = peer_report(&report, name);
        assert_status(&report, name, "T");
        assert_eq!(peer["bwlimit_bytes_per_second"], 4 * MIB);
        let seconds = peer["seconds"].as_f64().unwrap_or_default();
        assert_held(Duration::from_secs_f64(seconds), 8 * MIB, 4 * MIB, name);
    }

    // One peer of the config by hand: its own limit holds there too.
    let target = fx.dir("by-hand");
    let started = Instant::now();
    let out = ps(&[
        "stage",
        "--config",
        &p(&config),
        "--peer",
        &local,
        "--target",
        &p(&target),
    ]);
    out.expect_code(0, "stage --config --peer of a limited local peer");
    assert_held(started.elapsed(), 8 * MIB, 4 * MIB, "stage --config --peer");
    assert!(
        out.stdout.contains(", limit 4.00 MiB/s) from peer"),
        "{}",
        out.describe()
    );
    let staged = std::fs::read(target.join("l.tar")).expect("staged");
    assert!(staged == local_data, "the staged local file differs");
}

#[test]
fn through_a_literal_scp_the_limit_becomes_scps_l() {
    let fx = Fx::new();
    let host = fx.peer_name("scp");
    let (collect, data) = fx.ready("small", MIB, 30);
    // Without the shared connection, scp itself copies: the limit is its -l, in Kbit/s.
    let (out, _) = fx.stage(
        &host,
        &collect,
        &fx.rcp(),
        &["-v", "--no-multiplex", "--bwlimit", "10MiB/s"],
    );
    out.expect_code(0, "a stage through scp with a limit");
    out.expect_stderr_line_with(&[SCP, " -l 83886 ", &host], "scp's command line with -l");
    let staged = std::fs::read(fx.base().join("target/small.tar")).expect("staged");
    assert!(staged == data, "the staged file differs");

    // A dry run shows the same command line.
    let (out, _) = fx.stage(
        &host,
        &collect,
        &fx.rcp(),
        &["--dry-run", "--no-multiplex", "--bwlimit", "10MiB/s"],
    );
    out.expect_code(0, "a dry run through scp with a limit");
    assert!(
        out.stdout.lines().any(|line| line.starts_with(SCP)
            && line.contains(" -l 83886 ")
            && line.contains("/*")),
        "the dry run's copy line carries -l\n{}",
        out.describe()
    );

    // An scp with a -l of its own keeps it (and then scp does the copy, over the shared
    // connection).
    let own = format!("{} -l 8000", fx.rcp());
    let (out, _) = fx.stage(
        &host,
        &collect,
        &own,
        &["--dry-run", "--bwlimit", "10MiB/s"],
    );
    out.expect_code(0, "a dry run of an scp with its own -l");
    let copy = out
        .stdout
        .lines()
        .find(|line| line.starts_with(SCP) && line.contains("/*"))
        .unwrap_or_else(|| panic!("no copy line\n{}", out.describe()));
    assert!(
        copy.contains(" -l 8000 ") && !copy.contains("83886"),
        "{copy}"
    );

    // Any other rcp command cannot be limited, and that is said.
    let wrapper = write_script(
        &fx.base().join("my-rcp"),
        &format!("exec {} \"$@\"", fx.rcp()),
    );
    let (out, _) = fx.stage(&host, &collect, &p(&wrapper), &["--bwlimit", "10MiB/s"]);
    out.expect_code(0, "a stage through a wrapper rcp command");
    out.expect_stderr_line_with(
        &[&host, "cannot be applied to rcp command", "my-rcp"],
        "the warning about a wrapper",
    );
}

#[test]
fn a_bad_rate_is_a_usage_error() {
    let base = tempdir();
    let collect = mkdir(&base.path().join("collect"));
    let target = mkdir(&base.path().join("target"));
    let out = ps(&[
        "stage",
        "--bwlimit",
        "fast",
        "--collect-dir",
        &p(&collect),
        "--target",
        &p(&target),
    ]);
    out.expect_code(2, "--bwlimit fast");
    out.expect_stderr_line_with(
        &["--bwlimit", "\"fast\" is not a rate", "10MiB/s"],
        "--bwlimit fast",
    );
    let errors = out
        .stderr
        .lines()
        .filter(|line| line.starts_with("error"))
        .count();
    assert_eq!(errors, 1, "one error line\n{}", out.describe());

    let config = write_file(
        &base.path().join("pool.toml"),
        format!(
            "staging_dir = {}\n\n[[peer]]\nname = \"a\"\ntype = \"local\"\ncollect_dir = {}\nbwlimit = \"10 MiB/h\"\n",
            q(&p(&target)),
            q(&p(&collect))
        ),
    );
    let out = ps(&["config", "check", "--config", &p(&config)]);
    out.expect_code(2, "bwlimit in the config")
        .expect_one_error_line("bwlimit in the config");
    out.expect_stderr_line_with(
        &[
            &p(&config),
            "line 7",
            "peer \"a\"",
            "bwlimit",
            "is not a rate",
        ],
        "bwlimit in the config",
    );
}
