//! Speed as behaviour: one ssh connection per remote peer (counted in the loopback sshd's
//! log), a fallback when the shared connection dies, and peers staged in parallel. Timings
//! themselves live in the benchmark (bench/run, BENCHMARKS.md), not here.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A TOML pool of `names` remote peers on the loopback sshd, each with two files ready.
fn remote_pool(sshd: &Sshd, base: &Path, names: &[&str], rcp_command: &str) -> PathBuf {
    remote_pool_with(base, names, rcp_command, &sshd.rsh_command())
}

fn remote_pool_with(base: &Path, names: &[&str], rcp_command: &str, rsh_command: &str) -> PathBuf {
    let staging = mkdir(&base.join("staging"));
    let mut toml = toml_dirs(&staging, &mkdir(&base.join("work")), &base.join("locks"));
    for name in names {
        let collect = mkdir(&base.join("collect").join(name));
        write_file(&collect.join(format!("{name}-a.tar")), vec![b'a'; 70_000]);
        write_file(&collect.join(format!("{name}-b.tar")), b"bb");
        write_file(&collect.join("cback.collect"), "");
        toml += &remote_peer_toml(name, &collect, &commands_toml(rcp_command, rsh_command));
    }
    write_file(&base.join("pool.toml"), toml)
}

fn run_pool(config: &Path, tmpdir: &Path, extra: &[&str]) -> Out {
    let mut cmd = peerstage();
    cmd.env("TMPDIR", tmpdir)
        .args(["run", "--json", "--date", "2026-11-21", "--config"])
        .arg(config)
        .args(extra);
    run(&mut cmd)
}

fn staged(base: &Path, peer: &str) -> Vec<String> {
    list_dir(&base.join("staging/2026/11/21").join(peer))
}

/// What the loopback sshd logs (LogLevel VERBOSE) for each session on a connection.
const SFTP_SESSION: &str = "Starting session: subsystem 'sftp'";
const COMMAND_SESSION: &str = "Starting session: command";

#[test]
fn a_run_makes_one_ssh_login_per_remote_peer() {
    let sshd = Sshd::start().expect(NEEDS_OPENSSH);
    let base = tempdir();
    let names = ["mux-a", "mux-b", "mux-c"];
    let config = remote_pool(&sshd, base.path(), &names, &sshd.rcp_command());
    let tmp = mkdir(&base.path().join("tmp"));
    let before = sshd.logins();
    let sessions = |kind: &str| sshd.log().matches(kind).count();
    let (sftp_before, commands_before) = (sessions(SFTP_SESSION), sessions(COMMAND_SESSION));
    let out = run_pool(&config, &tmp, &[]);
    out.expect_code(0, "pool run with multiplexing");
    // check, copy, verification listing, indicator push and its check: one login a peer.
    assert_eq!(sshd.logins() - before, names.len(), "{}", out.describe());
    // And on it one session: the master's own SFTP session does all of it, the copy too.
    assert_eq!(
        sessions(SFTP_SESSION) - sftp_before,
        names.len(),
        "{}",
        out.describe()
    );
    assert_eq!(sessions(COMMAND_SESSION) - commands_before, 0);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("json report");
    for peer in report["peers"].as_array().expect("peers") {
        assert_eq!(peer["status"], "T", "{}", out.describe());
        assert_eq!(peer["verified"], "size", "{}", out.describe());
    }
    for name in names {
        assert!(staged(base.path(), name).contains(&format!("{name}-a.tar")));
        assert!(base
            .path()
            .join("collect")
            .join(name)
            .join("cback.stage")
            .exists());
    }
    // The control sockets and their private dirs are gone with the run.
    assert!(
        list_dir(&tmp).is_empty(),
        "left in TMPDIR: {:?}",
        list_dir(&tmp)
    );
}

#[test]
fn without_multiplexing_every_step_logs_in_again() {
    let sshd = Sshd::start().expect(NEEDS_OPENSSH);
    let base = tempdir();
    let config = remote_pool(&sshd, base.path(), &["plain-a"], &sshd.rcp_command());
    let tmp = mkdir(&base.path().join("tmp"));
    let before = sshd.logins();
    run_pool(&config, &tmp, &["--no-multiplex"]).expect_code(0, "pool run without multiplexing");
    assert_eq!(
        sshd.logins() - before,
        5,
        "check, copy, listing, indicator push, indicator fetched back"
    );
}

/// The shared connection and its socket dir go at the end of a peer that failed too.
#[test]
fn the_shared_connection_is_closed_when_a_peer_fails() {
    let sshd = Sshd::start().expect(NEEDS_OPENSSH);
    let base = tempdir();
    let config = remote_pool(&sshd, base.path(), &["fails-a"], &sshd.rcp_command());
    // Ready, reachable, and failing in the copy: a symlink to nothing fails it, as with scp.
    std::os::unix::fs::symlink(
        base.path().join("nowhere"),
        base.path().join("collect/fails-a/dangling.tar"),
    )
    .expect("symlink");
    let tmp = mkdir(&base.path().join("tmp"));
    let out = run_pool(&config, &tmp, &[]);
    out.expect_code(1, "pool run whose peer fails mid-stage");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("json report");
    assert_eq!(report["peers"][0]["status"], "E", "{}", out.describe());
    assert!(
        list_dir(&tmp).is_empty(),
        "left in TMPDIR: {:?}",
        list_dir(&tmp)
    );
    let masters: Vec<String> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|line| line.contains(&p(&tmp)))
        .collect();
    assert!(masters.is_empty(), "still running: {masters:?}");
}

#[test]
fn an_rcp_option_the_session_cannot_honour_leaves_the_copy_to_scp() {
    let sshd = Sshd::start().expect(NEEDS_OPENSSH);
    let base = tempdir();
    // A bandwidth limit is scp's own business: it copies, over the shared connection.
    let rcp = format!("{} -l 100000000", sshd.rcp_command());
    let config = remote_pool(&sshd, base.path(), &["limited-a"], &rcp);
    let tmp = mkdir(&base.path().join("tmp"));
    let before = sshd.logins();
    let sessions = || sshd.log().matches(SFTP_SESSION).count();
    let sftp_before = sessions();
    let out = run_pool(&config, &tmp, &[]);
    out.expect_code(0, "pool run with scp -l");
    assert_eq!(sshd.logins() - before, 1, "{}", out.describe());
    assert_eq!(sessions() - sftp_before, 2, "{}", out.describe());
    assert_eq!(
        staged(base.path(), "limited-a"),
        ["cback.collect", "limited-a-a.tar", "limited-a-b.tar"]
    );
}

#[test]
fn a_dead_shared_connection_is_replaced_by_a_direct_one() {
    let sshd = Sshd::start().expect(NEEDS_OPENSSH);
    let base = tempdir();
    // The ssh of the rcp command (`scp -S`), whose control master (the one started with
    // ControlMaster=yes and -s, for the SFTP session) is cut off 20,000 bytes into its
    // answers, in the middle of the copy, as a dropped link would cut it. The copy must
    // still happen, with scp over a connection of its own. Named ssh, like OpenSSH's.
    let wrapper = write_script(
        &mkdir(&base.path().join("cut-master")).join("ssh"),
        r#"case " $* " in
  *" ControlMaster=yes "*" -s "*)
    fifo="$(dirname "$0")/answers"; rm -f "$fifo"; mkfifo "$fifo"
    # A command put in the background reads /dev/null unless told otherwise.
    exec 3<&0
    /usr/bin/ssh "$@" <&3 > "$fifo" &
    dd bs=1 count=20000 < "$fifo" 2>/dev/null
    kill $!; exit 1 ;;
esac
exec /usr/bin/ssh "$@""#,
    );
    let rcp = sshd.rcp_command().replacen(
        "/usr/bin/scp",
        &format!("/usr/bin/scp -S {}", p(&wrapper)),
        1,
    );
    let config = remote_pool_with(base.path(), &["dies-a"], &rcp, &sshd.rsh_command());
    let tmp = mkdir(&base.path().join("tmp"));
    let out = run_pool(&config, &tmp, &[]);
    out.expect_code(0, "pool run whose shared connection dies");
    assert_eq!(
        staged(base.path(), "dies-a"),
        ["cback.collect", "dies-a-a.tar", "dies-a-b.tar"],
        "{}",
        out.describe()
    );
    let staged_a = base.path().join("staging/2026/11/21/dies-a/dies-a-a.tar");
    assert_eq!(std::fs::read(staged_a).expect("staged"), vec![b'a'; 70_000]);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("json report");
    assert_eq!(report["peers"][0]["verified"], "size", "{}", out.describe());
    assert!(base.path().join("collect/dies-a/cback.stage").is_file());
    assert!(
        out.stderr.contains("SFTP session lost"),
        "the lost session is said: {}",
        out.describe()
    );
    assert!(
        list_dir(&tmp).is_empty(),
        "left in TMPDIR: {:?}",
        list_dir(&tmp)
    );
}

/// Start and end times of each peer's copy, logged by a wrapper rcp command that holds
/// every copy for a moment.
fn copy_intervals(base: &Path, jobs: &str) -> Vec<(f64, f64)> {
    let sshd = Sshd::start().expect(NEEDS_OPENSSH);
    let log = base.join("copies.log");
    let wrapper = write_script(
        &base.join("slow-scp"),
        &format!(
            r#"case "$*" in *cback.collect*|*cback.stage*) exec /usr/bin/scp "$@" ;; esac
start=$(date +%s.%N); sleep 0.6; /usr/bin/scp "$@"; rc=$?
echo "$start $(date +%s.%N)" >> {}
exit $rc"#,
            p(&log)
        ),
    );
    let rcp = sshd.rcp_command().replacen("/usr/bin/scp", &p(&wrapper), 1);
    let config = remote_pool(&sshd, base, &["par-a", "par-b", "par-c", "par-d"], &rcp);
    let tmp = mkdir(&base.join("tmp"));
    run_pool(&config, &tmp, &["--jobs", jobs]).expect_code(0, "pool run");
    std::fs::read_to_string(&log)
        .expect("copy log")
        .lines()
        .map(|line| {
            let (start, end) = line.split_once(' ').expect("two times");
            (start.parse().expect("start"), end.parse().expect("end"))
        })
        .collect()
}

fn overlapping_pairs(intervals: &[(f64, f64)]) -> usize {
    let mut count = 0;
    for (i, a) in intervals.iter().enumerate() {
        for b in &intervals[i + 1..] {
            if a.0 < b.1 && b.0 < a.1 {
                count += 1;
            }
        }
    }
    count
}

#[test]
fn peers_are_staged_in_parallel_up_to_jobs() {
    let parallel = tempdir();
    let intervals = copy_intervals(parallel.path(), "4");
    assert_eq!(intervals.len(), 4);
    assert!(
        overlapping_pairs(&intervals) >= 1,
        "with --jobs 4 the copies never overlapped: {intervals:?}"
    );
    let serial = tempdir();
    let intervals = copy_intervals(serial.path(), "1");
    assert_eq!(intervals.len(), 4);
    assert_eq!(
        overlapping_pairs(&intervals),
        0,
        "with --jobs 1 copies overlapped: {intervals:?}"
    );
}
