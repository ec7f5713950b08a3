//! Fault injection ("unbreakable staging"): rcp commands that are killed mid-copy, lie about
//! their exit code or corrupt what they copied; a full disk; peerstage itself killed with
//! SIGKILL; a peer that only allows SFTP; hostile file, dir, peer, user and indicator names;
//! symlinks planted in the target, lock and working dirs; a group-writable config as root; a
//! peer that accepts a connection and never answers; two commands on one peer at once; and
//! file names that are not UTF-8.
//!
//! Misbehaving rcp commands are shell scripts written into each test's temp dir. They are
//! named `scp` so that peerstage treats them as OpenSSH's and, by default, routes them
//! through its shared (multiplexed) connection, which they reach through the real scp.
//! Every command gets its own `--lock-dir` inside the test's temp dir.

mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use common::*;

/// Prefix of peerstage's temp files and dirs inside a target dir.
const TEMP_PREFIX: &str = ".peerstage-tmp-";

// ---------------------------------------------------------------------------------------------
// The fixture: a temp dir (the sshd's, for remote tests) with a lock dir, a working dir for
// peerstage's process, and whatever collect and target dirs a test makes.

struct Fx {
    sshd: Option<Sshd>,
    tmp: Option<TempDir>,
}

impl Fx {
    fn local() -> Fx {
        Fx {
            sshd: None,
            tmp: Some(tempdir()),
        }
    }

    fn remote() -> Fx {
        Fx::remote_with("")
    }

    fn remote_with(extra_sshd_config: &str) -> Fx {
        Fx {
            sshd: Some(Sshd::start_with(extra_sshd_config).expect(NEEDS_OPENSSH)),
            tmp: None,
        }
    }

    fn base(&self) -> &Path {
        match (&self.sshd, &self.tmp) {
            (Some(sshd), _) => sshd.dir.path(),
            (None, Some(tmp)) => tmp.path(),
            (None, None) => unreachable!("a fixture has a dir"),
        }
    }

    fn sshd(&self) -> &Sshd {
        self.sshd.as_ref().expect("fixture started with an sshd")
    }

    /// A new (or existing) dir `rel` under the base.
    fn dir(&self, rel: &str) -> PathBuf {
        mkdir(&self.base().join(rel))
    }

    /// The lock dir of every command of this test (peerstage creates it).
    fn locks(&self) -> PathBuf {
        self.base().join("locks")
    }

    /// peerstage's current dir: a canary touched by a shell there would show up here.
    fn cwd(&self) -> PathBuf {
        self.dir("cwd")
    }

    /// The remote peer's host name; the client ssh_config sends every name to 127.0.0.1.
    fn host(&self) -> String {
        format!("peer-{}", self.sshd().port)
    }

    fn ssh_config(&self) -> String {
        p(&self.sshd().ssh_config)
    }

    /// The real scp; `legacy` selects the old scp/rcp protocol (`scp -O`), where remote paths
    /// go through the remote shell.
    fn rcp(&self, legacy: bool) -> String {
        if legacy {
            format!("{SCP} -F {} -O -B -q -C", self.ssh_config())
        } else {
            self.sshd().rcp_command()
        }
    }

    fn rsh(&self) -> String {
        self.sshd().rsh_command()
    }

    /// Writes `<base>/wrap-<kind>/scp` running `body` and returns it as an rcp command with
    /// the server's usual options (which the script gets as "$@"). A bandwidth limit too
    /// high to matter keeps the copy with the rcp command: with options only scp knows,
    /// peerstage does not copy over its own SFTP session, and the wrapper is what copies.
    fn wrapper_rcp(&self, kind: &str, body: &str, legacy: bool) -> String {
        let script = write_script(&self.dir(&format!("wrap-{kind}")).join("scp"), body);
        format!(
            "{} -F {}{} -B -q -C -l 100000000",
            p(&script),
            self.ssh_config(),
            if legacy { " -O" } else { "" }
        )
    }

    /// PEER arguments of the remote peer with this collect dir and rcp command.
    fn remote_peer(&self, collect: &Path, rcp: &str) -> Vec<String> {
        remote_peer_args(&self.host(), collect, &self.dir("work"), rcp, &self.rsh())
    }

    /// PEER arguments of a local peer.
    fn local_peer(&self, name: &str, collect: &Path) -> Vec<String> {
        vec![
            "--name".into(),
            name.into(),
            "--collect-dir".into(),
            p(collect),
        ]
    }

    /// `peerstage SUB... --lock-dir LOCKS OPTS... PEER... TAIL...`, run in `cwd()`.
    fn cmd(&self, sub: &[&str], opts: &[String], peer: &[String], tail: &[String]) -> Command {
        let mut cmd = peerstage();
        cmd.current_dir(self.cwd())
            .args(sub)
            .arg("--lock-dir")
            .arg(self.locks())
            .args(opts)
            .args(peer)
            .args(tail);
        cmd
    }

    fn run(&self, sub: &[&str], opts: &[String], peer: &[String], tail: &[String]) -> Out {
        run(&mut self.cmd(sub, opts, peer, tail))
    }

    fn stage(&self, target: &Path, opts: &[&str], peer: &[String]) -> Out {
        let mut all = vec!["--target".to_string(), p(target)];
        all.extend(strings(opts));
        self.run(&["stage"], &all, peer, &[])
    }

    fn canary(&self) -> Canary {
        Canary {
            name: unique_name("CANARY", self.base()),
            base: self.base().to_path_buf(),
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Files

type Files = BTreeMap<OsString, Vec<u8>>;

/// Writes the files into `dir` and returns them.
fn write_files(dir: &Path, files: &[(OsString, Vec<u8>)]) -> Files {
    for (name, data) in files {
        write_file(&dir.join(name), data);
    }
    files.iter().cloned().collect()
}

fn named(name: &str, data: impl AsRef<[u8]>) -> (OsString, Vec<u8>) {
    (OsString::from(name), data.as_ref().to_vec())
}

/// peerstage's temp files and dirs in `dir`.
fn debris(dir: &Path) -> Vec<OsString> {
    entries(dir)
        .into_iter()
        .filter(|name| name.as_bytes().starts_with(TEMP_PREFIX.as_bytes()))
        .collect()
}

/// Asserts that `target` holds exactly `expected`: the same names (bytes), each a regular
/// file with the same bytes, nothing else.
#[track_caller]
fn assert_holds_exactly(target: &Path, expected: &Files, what: &str, out: &Out) {
    let got = entries(target);
    let want: Vec<OsString> = expected.keys().cloned().collect();
    assert!(
        got == want,
        "{what}: entries of {}\n  got:      {got:?}\n  expected: {want:?}\n  missing:  {:?}\n  extra:    {:?}\n{}",
        target.display(),
        want.iter().filter(|n| !got.contains(n)).collect::<Vec<_>>(),
        got.iter().filter(|n| !want.contains(n)).collect::<Vec<_>>(),
        out.describe()
    );
    for (name, data) in expected {
        let path = target.join(name);
        let meta = fs::symlink_metadata(&path).expect("stat staged file");
        assert!(
            meta.file_type().is_file(),
            "{what}: {name:?} is not a regular file\n{}",
            out.describe()
        );
        let got = fs::read(&path).expect("read staged file");
        assert!(
            &got == data,
            "{what}: bytes of {name:?} differ ({} bytes, expected {})\n{}",
            got.len(),
            data.len(),
            out.describe()
        );
    }
}

/// Asserts that nothing partial is in `target`: no temp debris, and every entry is a regular
/// file whose bytes are, whole, either the new version (`new`) or the one that was there
/// before (`old`).
#[track_caller]
fn assert_nothing_partial(target: &Path, new: &Files, old: &Files, what: &str, out: &Out) {
    assert!(
        debris(target).is_empty(),
        "{what}: temp debris left in {}: {:?}\n{}",
        target.display(),
        debris(target),
        out.describe()
    );
    for name in entries(target) {
        let path = target.join(&name);
        let meta = fs::symlink_metadata(&path).expect("stat");
        assert!(
            meta.file_type().is_file(),
            "{what}: {name:?} in the target is not a regular file\n{}",
            out.describe()
        );
        let data = fs::read(&path).expect("read");
        let whole = new.get(&name) == Some(&data) || old.get(&name) == Some(&data);
        assert!(
            whole,
            "{what}: {name:?} in the target ({} bytes) is neither the complete new file ({:?} bytes) nor the old one ({:?} bytes)\n{}",
            data.len(),
            new.get(&name).map(Vec::len),
            old.get(&name).map(Vec::len),
            out.describe()
        );
    }
}

fn lower(out: &Out) -> String {
    out.stderr.to_lowercase()
}

// ---------------------------------------------------------------------------------------------
// Canaries: `touch NAME` inside a hostile string. If anything ever hands such a string to a
// shell, NAME appears in that shell's current dir.

struct Canary {
    name: String,
    base: PathBuf,
}

impl Canary {
    /// A shell command that creates the canary in the current dir.
    fn touch(&self) -> String {
        format!("touch {}", self.name)
    }

    /// Every place a shell could have run: peerstage's cwd and the whole test dir, the
    /// test process's cwd, /tmp, /, and the home dirs (the remote shell starts in $HOME).
    fn found(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = vec!["/tmp".into(), "/".into(), "/root".into()];
        if let Some(home) = std::env::var_os("HOME") {
            dirs.push(home.into());
        }
        if let Ok(cwd) = std::env::current_dir() {
            dirs.push(cwd);
        }
        let mut found: Vec<PathBuf> = dirs
            .iter()
            .map(|d| d.join(&self.name))
            .filter(|path| fs::symlink_metadata(path).is_ok())
            .collect();
        fn walk(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
            for entry in entries(dir) {
                let path = dir.join(&entry);
                if entry == OsStr::new(name) {
                    found.push(path.clone());
                }
                if fs::symlink_metadata(&path)
                    .map(|m| m.file_type().is_dir())
                    .unwrap_or(false)
                {
                    walk(&path, name, found);
                }
            }
        }
        walk(&self.base, &self.name, &mut found);
        found
    }

    #[track_caller]
    fn assert_absent(&self, what: &str, out: &Out) {
        let found = self.found();
        for path in &found {
            let _ = fs::remove_file(path);
        }
        assert!(
            found.is_empty(),
            "{what}: a hostile string was run by a shell: canary created at {found:?}\n{}",
            out.describe()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Background processes

/// A pid that no process has any more.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("start true");
    let pid = child.id();
    child.wait().expect("reap true");
    pid
}

// =============================================================================================
// 1. rcp commands that misbehave

/// (a) The real scp, killed with SIGKILL while it is in the middle of a 64 MiB file.
#[test]
fn a_copy_killed_mid_file_stages_nothing() {
    let fx = Fx::remote();
    let collect = fx.dir("collect");
    let big_len = 64 << 20;
    write_files(
        &collect,
        &[
            named("a-small.tar", b"small and complete\n"),
            named("b-big.tar", random_bytes(big_len, 0x5eed)),
        ],
    );
    let log = fx.base().join("cut.log");
    // Wait until the big file has started arriving, then kill scp.
    let rcp = fx.wrapper_rcp(
        "cut",
        &format!(
            r#"for last; do :; done
/usr/bin/scp "$@" &
pid=$!
i=0
while [ ! -s "$last/b-big.tar" ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done
sleep 0.1
kill -KILL $pid 2>/dev/null
wait $pid
rc=$?
ls -ln "$last" > {log}
exit $rc"#,
            log = sh_quote(&p(&log))
        ),
        false,
    );
    for (mode, opts) in MUX_MODES {
        let _ = fs::remove_file(&log);
        let target = fx.dir(&format!("target-{}", mode.trim_start_matches('-')));
        let out = fx.stage(&target, opts, &fx.remote_peer(&collect, &rcp));
        let what = format!("stage with scp killed mid-copy ({mode})");
        // The copy really was cut inside the big file: the test proves nothing otherwise.
        let listing = fs::read_to_string(&log).unwrap_or_default();
        let partial = listing
            .lines()
            .find(|line| line.ends_with(" b-big.tar"))
            .and_then(|line| line.split_whitespace().nth(4))
            .and_then(|size| size.parse::<usize>().ok());
        assert!(
            matches!(partial, Some(size) if size > 0 && size < big_len),
            "{what}: test problem: the copy was not cut mid-file (listing: {listing:?})\n{}",
            out.describe()
        );
        assert_ne!(out.code, 0, "{what}: exit code\n{}", out.describe());
        out.expect_no_panic(&what);
        assert!(
            entries(&target).is_empty(),
            "{what}: the target holds {:?}\n{}",
            entries(&target),
            out.describe()
        );
    }
}

/// (b) An rcp command that exits 0 without copying anything.
#[test]
fn an_rcp_that_exits_0_without_copying_fails_and_stages_nothing() {
    let fx = Fx::remote();
    let collect = fx.dir("collect");
    write_samples(&collect);
    let rcp = fx.wrapper_rcp("noop", "exit 0", false);
    for (mode, opts) in MUX_MODES {
        let target = fx.dir(&format!("target-{}", mode.trim_start_matches('-')));
        let what = format!("stage with an rcp that copies nothing ({mode})");
        let out = fx.stage(&target, opts, &fx.remote_peer(&collect, &rcp));
        out.expect_code(1, &what)
            .expect_one_error_line(&what)
            .expect_stderr_contains(&fx.host(), &what);
        assert!(
            entries(&target).is_empty(),
            "{what}: {:?}",
            entries(&target)
        );
    }
}

/// An rcp command that exits 0 without pushing the stage indicator: mark fetches the
/// indicator back, so the lie is caught and the peer is not told it was staged. Where the
/// indicator goes over the SFTP session instead (multiplexed, scp in SFTP mode), the rcp
/// command is not used for it, and the indicator written is looked at again.
#[test]
fn an_rcp_that_exits_0_without_pushing_fails_mark() {
    let fx = Fx::remote();
    let collect = fx.dir("collect");
    // Copies from the peer work (the check that follows the push), pushes to it do nothing.
    let body = r#"for last; do :; done
case "$last" in *:*) exit 0 ;; esac
exec /usr/bin/scp "$@""#;
    for legacy in [false, true] {
        let rcp = fx.wrapper_rcp(&format!("no-push-{legacy}"), body, legacy);
        for (mode, opts) in MUX_MODES {
            let what = format!("mark with an rcp that pushes nothing ({mode}, -O: {legacy})");
            let _ = std::fs::remove_file(collect.join("cback.stage"));
            let out = fx.run(
                &["mark"],
                &strings(opts),
                &fx.remote_peer(&collect, &rcp),
                &[],
            );
            if !legacy && opts.is_empty() {
                out.expect_code(0, &what);
                assert!(collect.join("cback.stage").is_file(), "{what}");
                continue;
            }
            out.expect_code(1, &what)
                .expect_one_error_line(&what)
                .expect_stderr_contains("cback.stage", &what);
            assert!(!collect.join("cback.stage").exists(), "{what}");
        }
    }
}

/// Collect dir for the corruption tests: victim.tar is the file the wrappers damage.
fn corruption_collect(fx: &Fx) -> (PathBuf, Files) {
    let collect = fx.dir("collect");
    let files = write_files(
        &collect,
        &[
            named("alpha.tar", random_bytes(4096, 1)),
            named("victim.tar", random_bytes(4096, 2)),
            named("zeta.tar", b"zeta\n"),
        ],
    );
    (collect, files)
}

/// A wrapper body: the real scp, then `damage` on "$f" (the victim in the destination dir)
/// when that file arrived, then exit 0 as if all went well.
fn damaging_body(damage: &str) -> String {
    format!(
        r#"for last; do :; done
/usr/bin/scp "$@" || exit $?
f="$last/victim.tar"
if [ -f "$f" ]; then {damage}; fi
exit 0"#
    )
}

/// (c) An rcp command that copies, then truncates one file and exits 0: the size check
/// after the stage (the peer's listing, through the rsh command) catches it.
#[test]
fn a_file_truncated_after_the_copy_is_caught_by_verification() {
    let fx = Fx::remote();
    let (collect, _files) = corruption_collect(&fx);
    let rcp = fx.wrapper_rcp("truncate", &damaging_body("truncate -s 5 \"$f\""), false);
    let old: Files = [named("victim.tar", b"yesterday's complete victim\n")]
        .into_iter()
        .collect();
    for (mode, opts) in MUX_MODES {
        let target = fx.dir(&format!("target-{}", mode.trim_start_matches('-')));
        write_files(
            &target,
            &[named("victim.tar", &old[OsStr::new("victim.tar")])],
        );
        let what = format!("stage with an rcp that truncates victim.tar ({mode})");
        let out = fx.stage(&target, opts, &fx.remote_peer(&collect, &rcp));
        out.expect_code(1, &what)
            .expect_one_error_line(&what)
            .expect_stderr_line_with(&[&fx.host(), "victim.tar"], &what);
        // Nothing staged: the earlier run's file is still there, whole; nothing else is.
        assert_holds_exactly(&target, &old, &what, &out);
    }
}

// A byte changed in place (same size) passes the size check; `--verify sha256` catches it,
// on `stage` and, from the config's `verify = "sha256"`, on `run`. An honest copy passes.

/// An rcp command that copies, then changes two bytes of victim.tar in place and exits 0.
fn flipping_rcp(fx: &Fx) -> String {
    fx.wrapper_rcp(
        "flip",
        &damaging_body(
            "printf X | dd of=\"$f\" bs=1 seek=100 conv=notrunc 2>/dev/null; printf Y | dd of=\"$f\" bs=1 seek=101 conv=notrunc 2>/dev/null",
        ),
        false,
    )
}

#[test]
fn stage_verify_sha256_catches_a_changed_byte() {
    let fx = Fx::remote();
    let (collect, _files) = corruption_collect(&fx);
    let rcp = flipping_rcp(&fx);
    for (mode, opts) in MUX_MODES {
        let target = fx.dir(&format!("target-{}", mode.trim_start_matches('-')));
        let mut all = opts.to_vec();
        all.extend(["--verify", "sha256"]);
        let what = format!("stage --verify sha256 with an rcp that changes a byte ({mode})");
        let out = fx.stage(&target, &all, &fx.remote_peer(&collect, &rcp));
        out.expect_code(1, &what)
            .expect_one_error_line(&what)
            .expect_stderr_line_with(&[&fx.host(), "victim.tar"], &what);
        assert!(
            entries(&target).is_empty(),
            "{what}: target holds {:?}\n{}",
            entries(&target),
            out.describe()
        );
    }
}

#[test]
fn stage_verify_sha256_passes_an_honest_copy() {
    let fx = Fx::remote();
    let (collect, files) = corruption_collect(&fx);
    for (mode, opts) in MUX_MODES {
        let honest = fx.dir(&format!("honest-{}", mode.trim_start_matches('-')));
        let mut all = opts.to_vec();
        all.extend(["--verify", "sha256"]);
        let what = format!("stage --verify sha256 with the real scp ({mode})");
        let out = fx.stage(&honest, &all, &fx.remote_peer(&collect, &fx.rcp(false)));
        out.expect_code(0, &what);
        assert_holds_exactly(&honest, &files, &what, &out);
    }
}

/// A pool of the corruption peer, ready to stage.
struct VerifyPool {
    config: PathBuf,
    collect: PathBuf,
    /// Where the peer's files go.
    target: PathBuf,
    /// What the target should hold after an honest run.
    files: Files,
}

/// `verify_line` is among the settings; `rcp` is the peer's rcp command, the real scp if None.
fn verify_pool(fx: &Fx, verify_line: &str, rcp: Option<&str>) -> VerifyPool {
    let (collect, mut files) = corruption_collect(fx);
    write_file(&collect.join("cback.collect"), "");
    files.insert("cback.collect".into(), Vec::new());
    let staging = fx.dir("staging");
    let host = fx.host();
    let rcp = rcp.map_or_else(|| fx.rcp(false), str::to_string);
    let config = write_file(
        &fx.base().join("pool.toml"),
        format!(
            "{}{verify_line}\n{}",
            toml_dirs(&staging, &fx.dir("work"), &fx.locks()),
            remote_peer_toml(&host, &collect, &commands_toml(&rcp, &fx.rsh())),
        ),
    );
    VerifyPool {
        config,
        collect,
        target: staging.join(DAY).join(&host),
        files,
    }
}

#[test]
fn run_with_verify_sha256_in_the_config_catches_a_changed_byte() {
    let fx = Fx::remote();
    let rcp = flipping_rcp(&fx);
    let pool = verify_pool(&fx, "verify = \"sha256\"", Some(&rcp));
    let target = &pool.target;
    let out = run(peerstage().current_dir(fx.cwd()).args([
        "run",
        "--config",
        &p(&pool.config),
        "--date",
        DATE,
        "--json",
    ]));
    let what = "run with verify = \"sha256\" and an rcp that changes a byte";
    out.expect_code(1, what);
    let report = json_of(&out);
    assert_ne!(
        peer_report(&report, &fx.host())["status"],
        "T",
        "{what}: status\n{report:#}"
    );
    assert!(
        regular_files(target).is_empty() && debris(target).is_empty(),
        "{what}: staged {:?}\n{}",
        entries(target),
        out.describe()
    );
    assert!(
        !pool.collect.join("cback.stage").exists(),
        "{what}: the peer was told its files were staged"
    );
}

#[test]
fn run_verify_sha256_passes_an_honest_copy() {
    let fx = Fx::remote();
    let pool = verify_pool(&fx, "", None);
    let out = run(peerstage().current_dir(fx.cwd()).args([
        "run",
        "--config",
        &p(&pool.config),
        "--date",
        DATE,
        "--verify",
        "sha256",
    ]));
    let what = "run --verify sha256 with the real scp";
    out.expect_code(0, what);
    assert_holds_exactly(&pool.target, &pool.files, what, &out);
}

// =============================================================================================
// 2. A full disk (root: a 1 MiB tmpfs as the target)

/// A mounted tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = run(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir));
        if out.code == 0 {
            Ok(Tmpfs(dir.to_path_buf()))
        } else {
            Err(out.stderr.trim().to_string())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let out = run(Command::new("umount").arg(&self.0));
        if out.code != 0 {
            let _ = run(Command::new("umount").arg("-l").arg(&self.0));
        }
    }
}

#[test]
fn a_full_disk_fails_clearly_and_leaves_nothing_partial() {
    needs_root("it mounts a small tmpfs as the target");
    let fx = Fx::remote();
    let collect = fx.dir("collect");
    let files = write_files(
        &collect,
        &[
            named("a-small.tar", b"small\n"),
            named("b-big.tar", random_bytes(3 << 20, 3)),
        ],
    );
    let local = fx.local_peer("full-local", &collect);
    let remote = fx.remote_peer(&collect, &fx.rcp(false));
    for (kind, peer) in [("local", local), ("remote", remote)] {
        let target = fx.dir(&format!("full-{kind}"));
        // A container that forbids mounting fails here: the promise cannot be checked there.
        let _mount = Tmpfs::mount(&target, "1m")
            .unwrap_or_else(|why| panic!("cannot mount a tmpfs on {}: {why}", target.display()));
        let what = format!("{kind} stage into a 1 MiB file system");
        let out = fx.stage(&target, &[], &peer);
        out.expect_code(1, &what).expect_one_error_line(&what);
        let err = lower(&out);
        assert!(
            err.contains("disk full") || err.contains("no space left"),
            "{what}: the error does not say the disk is full\n{}",
            out.describe()
        );
        out.expect_stderr_contains(&p(&target), &what);
        assert_nothing_partial(&target, &files, &Files::new(), &what, &out);
        assert!(
            !target.join("b-big.tar").exists(),
            "{what}: b-big.tar cannot fit, yet is there"
        );
    }
}

// =============================================================================================
// 3. peerstage killed with SIGKILL mid-stage, then run again

/// A stage killed with SIGKILL while its rcp command, done copying, holds on to the copy.
struct KilledStage {
    collect: PathBuf,
    target: PathBuf,
    /// The collect dir's files.
    new: Files,
    /// An earlier run's files in the target: replaced only by complete new ones.
    old: Files,
    /// Children of the killed run still alive 3 s later, as `pid: command line`; they have
    /// been killed since, so that they disturb nothing else.
    leftovers: Vec<String>,
}

fn kill_a_stage_mid_copy(fx: &Fx) -> KilledStage {
    let collect = fx.dir("collect");
    let new = write_files(
        &collect,
        &[
            named("a.tar", random_bytes(100_000, 4)),
            named("b.tar", b"b, new\n"),
            named("c.tar", random_bytes(5000, 5)),
        ],
    );
    let target = fx.dir("target");
    let old = write_files(
        &target,
        &[
            named("a.tar", b"a, yesterday\n"),
            named("old-only.tar", b"kept\n"),
        ],
    );
    let copied = fx.base().join("copied");
    let sockets = fx.base().join("control-paths");
    let rcp = fx.wrapper_rcp(
        "slow",
        &format!(
            r#"for a; do case $a in ControlPath=*) printf '%s\n' "${{a#ControlPath=}}" >> {sockets};; esac; done
/usr/bin/scp "$@"
rc=$?
echo $$ >> {copied}
sleep 10
exit $rc"#,
            sockets = sh_quote(&p(&sockets)),
            copied = sh_quote(&p(&copied)),
        ),
        false,
    );
    let mut cmd = fx.cmd(
        &["stage"],
        &["--target".into(), p(&target)],
        &fx.remote_peer(&collect, &rcp),
        &[],
    );
    let mut child = spawn_into(&mut cmd, fx.base(), "killed");
    wait_for_lines(&copied, 1, "the copy of the run to kill");
    thread::sleep(Duration::from_millis(200));
    child.kill().expect("SIGKILL peerstage");
    let killed = finish(child, fx.base(), "killed", Duration::from_secs(10));
    assert_eq!(killed.code, -9, "{}", killed.describe());
    let wrapper: u32 = fs::read_to_string(&copied)
        .unwrap_or_default()
        .trim()
        .parse()
        .expect("the wrapper's pid");
    let control_paths: Vec<String> = fs::read_to_string(&sockets)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    // The copy it was waiting for, and its ssh control master (found by its socket path).
    let leftovers = || {
        let mut pids: Vec<u32> = control_paths
            .iter()
            .flat_map(|path| processes_mentioning(path))
            .collect();
        if alive(wrapper) {
            pids.push(wrapper);
        }
        pids
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while !leftovers().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let left = leftovers();
    let described = left
        .iter()
        .map(|pid| format!("{pid}: {}", cmdline_of(*pid)))
        .collect();
    for pid in &left {
        kill_pid(*pid);
    }
    KilledStage {
        collect,
        target,
        new,
        old,
        leftovers: described,
    }
}

#[test]
fn a_stage_killed_with_sigkill_takes_its_copy_and_ssh_master_with_it() {
    let fx = Fx::remote();
    let killed = kill_a_stage_mid_copy(&fx);
    assert!(
        killed.leftovers.is_empty(),
        "children of the killed run still alive 3 s later: {}",
        killed.leftovers.join("; ")
    );
}

#[test]
fn a_stage_killed_with_sigkill_leaves_nothing_partial_and_the_rerun_finishes_it() {
    let fx = Fx::remote();
    let KilledStage {
        collect,
        target,
        new,
        old,
        ..
    } = kill_a_stage_mid_copy(&fx);

    // Its temp dir, or the dir it keeps what arrived in to resume from, may remain, but
    // nothing under a final name is partial.
    for name in entries(&target) {
        if name.as_bytes().starts_with(TEMP_PREFIX.as_bytes())
            || name.as_bytes().starts_with(b".peerstage-partial-")
        {
            continue;
        }
        let data = fs::read(target.join(&name)).expect("read");
        assert!(
            new.get(&name) == Some(&data) || old.get(&name) == Some(&data),
            "after SIGKILL: {name:?} is neither complete old nor complete new"
        );
    }

    let out = fx.stage(&target, &[], &fx.remote_peer(&collect, &fx.rcp(false)));
    let what = "stage again after a run killed with SIGKILL";
    out.expect_code(0, what);
    let mut expected = new.clone();
    expected.insert("old-only.tar".into(), b"kept\n".to_vec());
    assert_holds_exactly(&target, &expected, what, &out);
}

/// Temp debris named after a dead pid (a killed run) is removed by the next stage into that
/// target; debris of a live process (a run in progress) is left alone.
#[test]
fn temp_debris_of_a_dead_run_is_removed_by_the_next_stage() {
    let fx = Fx::remote();
    let collect = fx.dir("collect");
    let files = write_files(&collect, &[named("one.tar", b"one\n")]);
    let local = fx.local_peer("debris-local", &collect);
    let remote = fx.remote_peer(&collect, &fx.rcp(false));
    for (kind, peer) in [("local", local), ("remote", remote)] {
        let target = fx.dir(&format!("target-{kind}"));
        let dead = dead_pid();
        let live = std::process::id();
        write_file(
            &target.join(format!("{TEMP_PREFIX}{dead}-0")),
            "half a file",
        );
        let dir = mkdir(&target.join(format!("{TEMP_PREFIX}{dead}-1")));
        write_file(&dir.join("inner.tar"), "half");
        let live_name = format!("{TEMP_PREFIX}{live}-0");
        write_file(&target.join(&live_name), "a run in progress");
        let what = format!("{kind} stage into a target with a killed run's debris");
        let out = fx.stage(&target, &[], &peer);
        out.expect_code(0, &what);
        let mut expected = files.clone();
        expected.insert(live_name.into(), b"a run in progress".to_vec());
        assert_holds_exactly(&target, &expected, &what, &out);
    }
}

// =============================================================================================
// 4. A peer that allows SFTP only

/// A peer on a second port of the test's sshd where every session runs `force_command`:
/// `Sshd::start_with("ForceCommand ...")` alone cannot start, as the harness's readiness
/// probe (`ssh host true`) would be refused too, so only connections to that port are
/// restricted (`Match LocalPort`). Its collect dir holds the samples and the collect
/// indicator. Returns the fixture, the port, the collect dir and PEER arguments whose rcp
/// and rsh commands use the port.
fn restricted_peer(force_command: &str) -> (Fx, u16, PathBuf, Vec<String>) {
    let port = free_port();
    let fx = Fx::remote_with(&format!(
        "Port {port}\nMatch LocalPort {port}\n  ForceCommand {force_command}"
    ));
    let collect = fx.dir("collect");
    write_samples(&collect);
    write_file(&collect.join("cback.collect"), "");
    let option = format!("-o Port={port}");
    let mut peer = fx.remote_peer(
        &collect,
        &format!("{SCP} -F {} {option} -B -q -C", fx.ssh_config()),
    );
    let rsh = peer.iter().position(|a| a == "--rsh-command").expect("rsh") + 1;
    peer[rsh] = format!("{} {option}", fx.rsh());
    (fx, port, collect, peer)
}

#[test]
fn an_sftp_only_peer_stages_checks_and_marks_but_refuses_commands() {
    let (fx, sftp_port, collect, peer) = restricted_peer("internal-sftp");
    let files = regular_files(&collect);
    // Make sure the restriction is real: a plain ssh command is refused on that port.
    let direct = run(Command::new(SSH)
        .args(["-F", &fx.ssh_config(), "-o", &format!("Port={sftp_port}")])
        .args([fx.host().as_str(), "echo", "remote-commands-work"])
        .stdin(Stdio::null()));
    assert!(
        !direct.stdout.contains("remote-commands-work"),
        "test problem: the second port allows remote commands\n{}",
        direct.describe()
    );
    let host = fx.host();

    fx.run(&["check"], &[], &peer, &[])
        .expect_code(0, "check on an sftp-only peer");

    // Sizes are listed over SFTP when the connection is shared; digests need a command.
    for (tag, opts, verified) in [
        ("size", &[][..], true),
        ("size-unshared", &["--no-multiplex"][..], false),
        ("sha256", &["--verify", "sha256"][..], false),
    ] {
        let target = fx.dir(&format!("target-{tag}"));
        let what = format!("stage ({tag}) from an sftp-only peer");
        let out = fx.stage(&target, opts, &peer);
        out.expect_code(0, &what);
        assert_holds_exactly(&target, &files, &what, &out);
        let err = lower(&out);
        assert_eq!(
            !(err.contains("verif") && err.contains("skip")),
            verified,
            "{what}: verification skipped or not, as expected?\n{}",
            out.describe()
        );
    }

    fx.run(&["mark"], &[], &peer, &[])
        .expect_code(0, "mark on an sftp-only peer");
    assert!(collect.join("cback.stage").is_file(), "cback.stage pushed");

    let exec = fx.run(&["exec"], &[], &peer, &strings(&["--", "true"]));
    let action = fx.run(
        &["action"],
        &[],
        &peer,
        &strings(&["--cback-command", "/bin/true", "collect"]),
    );
    for (what, out) in [("exec on an sftp-only peer", exec), ("action", action)] {
        out.expect_code(1, what)
            .expect_stderr_line_with(&[&host], what);
        assert!(
            lower(&out).contains("remote command"),
            "{what}: the error does not say the peer allows no remote commands\n{}",
            out.describe()
        );
    }
}

// =============================================================================================
// 5. Hostile input

/// At least 30 file names that mean something to a shell, to scp, or to a glob. Leading dots
/// are left out: a local peer stages dotfiles, a remote `*` glob skips them (as Cedar).
fn hostile_names(canary: &Canary) -> Vec<String> {
    let t = canary.touch();
    let c = &canary.name;
    let mut names: Vec<String> = vec![
        "with space.tar".into(),
        "two  spaces  .tar".into(),
        " leading-space.tar".into(),
        "trailing-space.tar ".into(),
        " ".into(),
        "it's.tar".into(),
        "dq\"uote.tar".into(),
        format!("$({t})"),
        format!("`{t}`"),
        format!("x;{t}"),
        format!("x; {t};"),
        format!("x && {t} || {t}"),
        format!("x | {t}"),
        format!("x > {c}"),
        format!("x < {c}"),
        format!("'; {t}; '"),
        format!("\"; {t}; \""),
        format!("$IFS{t}"),
        "-leading-dash.tar".into(),
        "--".into(),
        "-rf".into(),
        "tab\there.tar".into(),
        "new\nline.tar".into(),
        "cr\rhere.tar".into(),
        "*".into(),
        "star*.tar".into(),
        "q?.tar".into(),
        "[ab].tar".into(),
        "open[.tar".into(),
        "back\\slash.tar".into(),
        "trailing-backslash\\".into(),
        "$HOME".into(),
        "~tilde.tar".into(),
        "brace{a,b}.tar".into(),
        "paren(x).tar".into(),
        "hash#x.tar".into(),
        "bang!x.tar".into(),
        "percent%s%n.tar".into(),
        "colon:x.tar".into(),
        "user@host:x.tar".into(),
        "=eq".into(),
        "ends-with-dot.".into(),
        "unicodé-日本語.tar".into(),
        "emoji-🎉.tar".into(),
    ];
    names.push(format!("{}.tar", "l".repeat(196)));
    assert!(names.len() >= 30);
    names
}

fn hostile_files(canary: &Canary) -> Vec<(OsString, Vec<u8>)> {
    hostile_names(canary)
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let mut data = format!("file #{i}: ").into_bytes();
            data.extend_from_slice(name.as_bytes());
            data.extend_from_slice(&[0, 255, b'\n', i as u8]);
            (OsString::from(name), data)
        })
        .collect()
}

#[test]
fn hostile_file_names_arrive_intact_and_run_nothing() {
    let fx = Fx::remote();
    let canary = fx.canary();
    let collect = fx.dir("collect");
    let files = write_files(&collect, &hostile_files(&canary));
    // The same without names holding a newline, which the legacy protocol cannot carry.
    let collect_nl = fx.dir("collect-no-newline");
    let files_nl = write_files(
        &collect_nl,
        &hostile_files(&canary)
            .into_iter()
            .filter(|(name, _)| !name.as_bytes().contains(&b'\n'))
            .collect::<Vec<_>>(),
    );

    let target = fx.dir("target-local");
    let what = "local stage of hostile names";
    let out = fx.stage(&target, &[], &fx.local_peer("hostile-local", &collect));
    out.expect_code(0, what);
    assert_holds_exactly(&target, &files, what, &out);
    canary.assert_absent(what, &out);

    let target = fx.dir("target-sftp");
    let what = "remote stage of hostile names (scp, SFTP protocol)";
    let out = fx.stage(&target, &[], &fx.remote_peer(&collect, &fx.rcp(false)));
    out.expect_code(0, what);
    assert_holds_exactly(&target, &files, what, &out);
    canary.assert_absent(what, &out);

    let target = fx.dir("target-legacy");
    let what = "remote stage of hostile names (scp -O, legacy protocol)";
    let out = fx.stage(&target, &[], &fx.remote_peer(&collect, &fx.rcp(true)));
    canary.assert_absent(what, &out);
    out.expect_no_panic(what);
    if out.code == 0 {
        assert_holds_exactly(&target, &files, what, &out);
    } else {
        // The name with a newline may legitimately fail here: a clear error, nothing partial.
        out.expect_code(1, what)
            .expect_one_error_line(what)
            .expect_stderr_contains(&fx.host(), what);
        assert_nothing_partial(&target, &files, &Files::new(), what, &out);
        let target = fx.dir("target-legacy-no-newline");
        let what = "remote stage of hostile names without newlines (scp -O)";
        let out = fx.stage(&target, &[], &fx.remote_peer(&collect_nl, &fx.rcp(true)));
        out.expect_code(0, what);
        assert_holds_exactly(&target, &files_nl, what, &out);
        canary.assert_absent(what, &out);
    }
}

#[test]
fn a_hostile_collect_dir_works_for_stage_check_and_mark() {
    let fx = Fx::remote();
    let canary = fx.canary();
    let t = canary.touch();
    let name = format!("col $({t}) `{t}` 'sq' \"dq\" ; && | > * ? [ab] \\ \t -x $HOME end");
    let collect = mkdir(&fx.base().join(&name));
    write_samples(&collect);
    write_file(&collect.join("cback.collect"), "");
    let files = regular_files(&collect);
    let peers = [
        ("local", fx.local_peer("odd-local", &collect)),
        ("remote (SFTP)", fx.remote_peer(&collect, &fx.rcp(false))),
        ("remote (scp -O)", fx.remote_peer(&collect, &fx.rcp(true))),
    ];
    for (i, (kind, peer)) in peers.iter().enumerate() {
        let what = format!("{kind} peer with a hostile collect dir");
        let out = fx.run(&["check"], &[], peer, &[]);
        out.expect_code(0, &format!("check: {what}"));
        canary.assert_absent(&what, &out);

        let target = fx.dir(&format!("target-{i}"));
        let out = fx.stage(&target, &[], peer);
        out.expect_code(0, &format!("stage: {what}"));
        assert_holds_exactly(&target, &files, &what, &out);
        canary.assert_absent(&what, &out);

        let out = fx.run(&["mark"], &[], peer, &[]);
        out.expect_code(0, &format!("mark: {what}"));
        canary.assert_absent(&what, &out);
        let marked = collect.join("cback.stage");
        assert!(
            marked.is_file(),
            "mark: {what}: no cback.stage\n{}",
            out.describe()
        );
        fs::remove_file(&marked).expect("remove cback.stage");
        assert_eq!(
            regular_files(&collect),
            files,
            "{what}: the collect dir changed"
        );
    }
}

#[test]
fn hostile_indicator_names_are_refused_or_taken_literally() {
    let fx = Fx::remote();
    let canary = fx.canary();
    let parent = fx.dir("collects");
    let collect = mkdir(&parent.join("collect"));
    write_samples(&collect);
    write_file(&collect.join("cback.collect"), "");
    let peers = [
        ("local", fx.local_peer("ind-local", &collect)),
        ("remote (SFTP)", fx.remote_peer(&collect, &fx.rcp(false))),
        ("remote (scp -O)", fx.remote_peer(&collect, &fx.rcp(true))),
    ];
    let t = canary.touch();
    for (kind, peer) in &peers {
        for bad in ["../x", "a/b", "..", ".", "/abs", ""] {
            for sub in ["check", "mark"] {
                let what = format!("{kind} {sub} --indicator {bad:?}");
                let out = fx.run(&[sub], &strings(&["--indicator", bad]), peer, &[]);
                out.expect_code(2, &what);
                assert!(!parent.join("x").exists(), "{what}: wrote outside");
            }
        }
        // Glob characters are literal: no file is named `*` or `cback.*`, so not present.
        for glob in ["*", "cback.*", "cback.collec?", "[c]back.collect"] {
            let what = format!("{kind} check --indicator {glob:?}");
            let out = fx.run(&["check"], &strings(&["--indicator", glob]), peer, &[]);
            assert!(
                out.code == 1 || out.code == 2,
                "{what}: a glob matched another file (exit {})\n{}",
                out.code,
                out.describe()
            );
            out.expect_no_panic(&what);
        }
        for odd in [
            format!("$({t})"),
            format!("`{t}`"),
            format!("x; {t}"),
            "-rf".to_string(),
            "it's here".to_string(),
        ] {
            let before = regular_files(&collect);
            let what = format!("{kind} check --indicator {odd:?} (absent)");
            let out = fx.run(&["check"], &["--indicator".into(), odd.clone()], peer, &[]);
            assert!(
                out.code == 1 || out.code == 2,
                "{what}: exit {}\n{}",
                out.code,
                out.describe()
            );
            out.expect_no_panic(&what);
            canary.assert_absent(&what, &out);

            let what = format!("{kind} mark --indicator {odd:?}");
            let out = fx.run(&["mark"], &["--indicator".into(), odd.clone()], peer, &[]);
            canary.assert_absent(&what, &out);
            out.expect_no_panic(&what);
            if out.code == 2 {
                assert_eq!(
                    regular_files(&collect),
                    before,
                    "{what}: refused, yet wrote"
                );
                continue;
            }
            out.expect_code(0, &what);
            let mut expected = before.clone();
            expected.insert(OsString::from(&odd), Vec::new());
            assert_eq!(
                regular_files(&collect),
                expected,
                "{what}: not written under exactly that name"
            );
            let what = format!("{kind} check --indicator {odd:?} (present)");
            fx.run(&["check"], &["--indicator".into(), odd.clone()], peer, &[])
                .expect_code(0, &what);
            fs::remove_file(collect.join(&odd)).expect("remove indicator");
        }
    }
}

/// A collect dir with the samples and the collect indicator: ready to stage.
fn ready_collect(fx: &Fx) -> PathBuf {
    let collect = fx.dir("collect");
    write_samples(&collect);
    write_file(&collect.join("cback.collect"), "");
    collect
}

/// `args` with the value of `flag` set to `value` (added when `args` has no such flag).
fn with_value(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut args = args.to_vec();
    match args.iter().position(|a| a == flag) {
        Some(i) => args[i + 1] = value.to_string(),
        None => args.extend([flag.to_string(), value.to_string()]),
    }
    args
}

#[test]
fn hostile_host_names_are_refused_before_anything_runs() {
    let fx = Fx::remote();
    let canary = fx.canary();
    let t = canary.touch();
    let collect = ready_collect(&fx);
    let target = fx.dir("target");
    let logins = fx.sshd().logins();
    let good = fx.remote_peer(&collect, &fx.rcp(false));
    let hosts = [
        "a;b".to_string(),
        format!("$({t})"),
        format!("`{t}`"),
        format!("-oProxyCommand={t}"),
        format!("-oProxyCommand={t} #"),
        "a b".into(),
        "h/x".into(),
        "..".into(),
        "a\nb".into(),
        "*".into(),
        "x'y".into(),
        "root@peer".into(),
        String::new(),
    ];
    for host in &hosts {
        for sub in ["check", "stage", "mark"] {
            let what = format!("{sub} --host {host:?}");
            let opts = if sub == "stage" {
                vec!["--target".to_string(), p(&target)]
            } else {
                Vec::new()
            };
            let out = fx.run(&[sub], &opts, &with_value(&good, "--host", host), &[]);
            out.expect_code(2, &what);
            canary.assert_absent(&what, &out);
        }
    }
    assert_eq!(
        fx.sshd().logins(),
        logins,
        "peerstage connected with a hostile host"
    );
    assert!(entries(&target).is_empty());
}

#[test]
fn hostile_remote_users_are_refused_before_anything_runs() {
    let fx = Fx::remote();
    let canary = fx.canary();
    let t = canary.touch();
    let collect = ready_collect(&fx);
    let logins = fx.sshd().logins();
    let good = fx.remote_peer(&collect, &fx.rcp(false));
    let users = [
        format!("-oProxyCommand={t} #"),
        format!("$({t})"),
        format!("`{t}`"),
        format!("a;{t}"),
        "a b".into(),
        "x@y".into(),
    ];
    for user in &users {
        let what = format!("check --remote-user {user:?}");
        let out = fx.run(
            &["check"],
            &[],
            &with_value(&good, "--remote-user", user),
            &[],
        );
        out.expect_code(2, &what);
        canary.assert_absent(&what, &out);
    }
    assert_eq!(
        fx.sshd().logins(),
        logins,
        "peerstage connected with a hostile user"
    );
}

/// Plain names work or are refused; names with '/' or '..' are refused, and no lock file is
/// ever made outside the lock dir.
#[test]
fn hostile_local_peer_names_are_refused_or_kept_inside_the_lock_dir() {
    let fx = Fx::local();
    let canary = fx.canary();
    let t = canary.touch();
    let collect = ready_collect(&fx);
    let local_target = fx.dir("target-local");
    for name in [
        "../x",
        "a/b",
        "..",
        ".",
        "-x",
        "a b",
        "a\nb",
        &format!("$({t})"),
    ] {
        let what = format!("local stage --name {name:?}");
        let out = fx.stage(&local_target, &[], &fx.local_peer(name, &collect));
        assert!(
            out.code == 0 || out.code == 2,
            "{what}: exit {}\n{}",
            out.code,
            out.describe()
        );
        if name.contains('/') || name.starts_with('.') {
            out.expect_code(2, &what);
        }
        out.expect_no_panic(&what);
        canary.assert_absent(&what, &out);
        for lock in entries(&fx.locks()) {
            assert!(!lock.as_bytes().contains(&b'/'), "{what}: lock {lock:?}");
        }
        assert!(!fx.base().join("x.lock").exists(), "{what}: lock outside");
    }
}

// =============================================================================================
// 6. Symlinks planted in the target, the lock dir and the working dir

#[test]
fn symlinks_and_fifos_in_the_target_are_replaced_never_written_through() {
    let fx = Fx::remote();
    let collect = fx.dir("collect");
    let files = write_files(
        &collect,
        &[
            named("a.tar", b"new a\n"),
            named("b.tar", b"new b\n"),
            named("c.tar", b"new c\n"),
            named("d.tar", b"new d\n"),
        ],
    );
    let outside = fx.dir("outside");
    let secret = write_file(&outside.join("secret.txt"), "precious, do not overwrite\n");
    let peers = [
        ("local", fx.local_peer("planted-local", &collect)),
        ("remote", fx.remote_peer(&collect, &fx.rcp(false))),
    ];
    for (kind, peer) in &peers {
        let target = fx.dir(&format!("target-{kind}"));
        symlink(&secret, target.join("a.tar")).unwrap();
        symlink(&outside, target.join("b.tar")).unwrap();
        symlink(outside.join("does-not-exist"), target.join("c.tar")).unwrap();
        mkfifo(&target.join("d.tar"));
        let before = snapshot(&[&outside]);
        let what = format!("{kind} stage over planted symlinks and a fifo");
        let out = fx.stage(&target, &[], peer);
        out.expect_code(0, &what);
        assert_holds_exactly(&target, &files, &what, &out);
        assert_unchanged(&before, &snapshot(&[&outside]), &what, &out);
    }
}

#[test]
fn a_symlink_planted_as_a_lock_file_is_refused() {
    let fx = Fx::local();
    let collect = fx.dir("collect");
    write_samples(&collect);
    let target = fx.dir("target");
    let locks = fx.locks();
    fs::create_dir(&locks).unwrap();
    set_mode(&locks, 0o700);
    let outside = fx.dir("outside");
    let precious = write_file(&outside.join("precious"), "precious\n");
    symlink(&precious, locks.join("peer-linked.lock")).unwrap();
    symlink(outside.join("created"), locks.join("peer-dangling.lock")).unwrap();
    for name in ["linked", "dangling"] {
        let before = snapshot(&[&outside]);
        let what = format!("stage of peer {name} with a symlink as its lock file");
        let out = fx.stage(&target, &[], &fx.local_peer(name, &collect));
        out.expect_code(2, &what)
            .expect_one_error_line(&what)
            .expect_stderr_contains(&p(&locks.join(format!("peer-{name}.lock"))), &what);
        assert_unchanged(&before, &snapshot(&[&outside]), &what, &out);
        assert!(entries(&target).is_empty(), "{what}: staged anyway");
    }
}

#[test]
fn symlinks_in_the_working_dir_are_never_followed() {
    let fx = Fx::remote();
    let collect = fx.dir("collect");
    write_samples(&collect);
    write_file(&collect.join("cback.collect"), "");
    let files = regular_files(&collect);
    let outside = fx.dir("outside");
    let victim = write_file(&outside.join("victim"), "precious\n");
    let work = fx.dir("work");
    let cwd = fx.cwd();
    let mut planted = Vec::new();
    for dir in [&work, &cwd] {
        for name in [
            "cback.collect",
            "cback.stage",
            "ssh",
            "master.log",
            ".peerstage-tmp-XXXXXX",
            ".peerstage-tmp-000000",
            "alpha-etc-20261121.tar",
            "empty.dat",
        ] {
            symlink(&victim, dir.join(name)).unwrap();
            planted.push(dir.join(name));
        }
        symlink(&outside, dir.join("dir-link")).unwrap();
        planted.push(dir.join("dir-link"));
    }
    let before = snapshot(&[&outside]);
    let work_before = entries(&work);
    let peer = fx.remote_peer(&collect, &fx.rcp(false));

    let out = fx.run(&["check"], &[], &peer, &[]);
    out.expect_code(0, "check with symlinks in the working dir");
    assert_unchanged(&before, &snapshot(&[&outside]), "check", &out);

    let target = fx.dir("target");
    let out = fx.stage(&target, &[], &peer);
    out.expect_code(0, "stage with symlinks in the working dir");
    assert_holds_exactly(&target, &files, "stage", &out);
    assert_unchanged(&before, &snapshot(&[&outside]), "stage", &out);

    let out = fx.run(&["mark"], &[], &peer, &[]);
    out.expect_code(0, "mark with symlinks in the working dir");
    assert_unchanged(&before, &snapshot(&[&outside]), "mark", &out);
    assert!(collect.join("cback.stage").is_file());

    assert_eq!(entries(&work), work_before, "the working dir changed");
    for link in planted {
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{} is no longer the planted symlink",
            link.display()
        );
    }
}

// =============================================================================================
// 7. A config file others can write, as root

#[test]
fn a_group_or_world_writable_config_is_refused_as_root() {
    needs_root("config files writable by others are refused only as root");
    let fx = Fx::local();
    let collect = fx.dir("collect");
    write_samples(&collect);
    write_file(&collect.join("cback.collect"), "");
    let staging = fx.dir("staging");
    let text = format!(
        "staging_dir = {}\nlock_dir = {}\n\n[[peer]]\nname = \"a\"\ntype = \"local\"\ncollect_dir = {}\n",
        q(&p(&staging)),
        q(&p(&fx.locks())),
        q(&p(&collect))
    );
    for mode in [0o664u32, 0o646, 0o666, 0o620] {
        let config = write_file(&fx.base().join(format!("pool-{mode:o}.toml")), &text);
        set_mode(&config, mode);
        let symbolic = symbolic_mode(mode);
        for sub in [&["run", "--date", DATE][..], &["config", "check"][..]] {
            let mut args = strings(sub);
            args.extend(["--config".to_string(), p(&config)]);
            let what = format!("{} with a config of mode {mode:04o}", sub.join(" "));
            let out = run(peerstage().current_dir(fx.cwd()).args(&args));
            out.expect_code(2, &what).expect_one_error_line(&what);
            let names_mode = out.stderr.lines().any(|line| {
                line.contains(&p(&config))
                    && (line.contains(&format!("{mode:o}")) || line.contains(&symbolic))
            });
            assert!(
                names_mode,
                "{what}: no error line names the file and its mode\n{}",
                out.describe()
            );
            assert!(entries(&staging).is_empty(), "{what}: staged anyway");
        }
    }
    let config = write_file(&fx.base().join("pool-644.toml"), &text);
    set_mode(&config, 0o644);
    run(peerstage().args(["config", "check", "--config", &p(&config)]))
        .expect_code(0, "config check of a 0644 config");
}

/// `rw-rw-r--` for 0o664.
fn symbolic_mode(mode: u32) -> String {
    (0..9)
        .map(|i| {
            let bit = 0o400 >> i;
            if mode & bit == 0 {
                '-'
            } else {
                ['r', 'w', 'x'][i % 3]
            }
        })
        .collect()
}

// =============================================================================================
// 8. A peer that accepts the connection and never answers

/// A loopback listener that accepts connections and never sends a byte.
struct Silent {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = conn {
                    held.push(stream);
                }
            }
        });
        Silent { port, stop }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A peer that logs in and then never answers on its sessions (every session runs `sleep`):
/// the SFTP session's requests wait no longer than --timeout, and the peer is unreachable.
#[test]
fn a_peer_whose_sessions_hang_times_out_over_sftp() {
    let (fx, _, collect, peer) = restricted_peer("sleep 60");
    for sub in ["check", "mark"] {
        let what = format!("{sub} on a peer whose sessions hang");
        fx.run(&[sub], &strings(&["--timeout", "3"]), &peer, &[])
            .expect_code(69, &what)
            .expect_one_error_line(&what)
            .expect_stderr_contains("timed out starting an SFTP session", &what);
    }
    assert!(!collect.join("cback.stage").exists());
}

/// A peerstage run in a thread of the test: its output and how long it took.
type Job = thread::JoinHandle<(Out, Duration)>;

/// A remote peer on a loopback port that accepts connections and never answers, and a pool of
/// it and a good local peer.
struct NeverAnswers {
    fx: Fx,
    /// Kept for as long as the peer must keep not answering.
    _silent: Silent,
    host: String,
    /// PEER arguments of the peer that never answers.
    peer: Vec<String>,
    good_files: Files,
    staging: PathBuf,
    config: PathBuf,
}

impl NeverAnswers {
    fn new() -> NeverAnswers {
        needs_tool(SCP, "openssh-client");
        needs_tool(SSH, "openssh-client");
        let fx = Fx::local();
        let silent = Silent::start();
        // Our own client config: no ConnectTimeout of its own (and a long one on the command
        // line, which wins over peerstage's), so only --timeout can end the wait.
        let ssh_config = write_file(
            &fx.base().join("ssh_config"),
            "Host *\n  HostName 127.0.0.1\n  BatchMode yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n",
        );
        let conn = format!(
            "-F {} -o Port={} -o ConnectTimeout=600",
            p(&ssh_config),
            silent.port
        );
        let rcp = format!("{SCP} {conn} -B -q -C");
        let rsh = format!("{SSH} {conn}");
        let host = unique_name("hung", fx.base());
        let collect = fx.dir("collect");
        write_samples(&collect);
        write_file(&collect.join("cback.collect"), "");
        let peer = remote_peer_args(&host, &collect, &fx.dir("work"), &rcp, &rsh);

        let good = fx.dir("good");
        let good_files = write_files(&good, &[named("good.tar", b"good\n")]);
        write_file(&good.join("cback.collect"), "");
        let staging = fx.dir("staging");
        let config = write_file(
            &fx.base().join("pool.toml"),
            format!(
                "{}{}{}",
                toml_dirs(&staging, &fx.dir("work"), &fx.base().join("locks-run")),
                local_peer_toml("good", &good, ""),
                remote_peer_toml(&host, &collect, &commands_toml(&rcp, &rsh)),
            ),
        );
        NeverAnswers {
            fx,
            _silent: silent,
            host,
            peer,
            good_files,
            staging,
            config,
        }
    }

    /// Starts `peerstage ARGS` in a thread, timing it, so that the runs of a test wait out
    /// their timeouts together.
    fn start(&self, args: Vec<String>) -> Job {
        let cwd = self.fx.cwd();
        thread::spawn(move || {
            let clock = Instant::now();
            let out = run(peerstage().current_dir(cwd).args(&args));
            (out, clock.elapsed())
        })
    }

    /// `SUB --timeout 5` of the peer alone, shared and not, each with a lock dir of its own;
    /// with the target dir each may stage into.
    fn start_single_peer(&self, sub: &str) -> Vec<(String, PathBuf, Job)> {
        let mut jobs = Vec::new();
        for (mode, opts) in MUX_MODES {
            let tag = format!("{sub}{}", mode.replace('-', ""));
            let target = self.fx.dir(&format!("target-{tag}"));
            let mut args = vec![
                sub.to_string(),
                "--timeout".into(),
                "5".into(),
                "--lock-dir".into(),
                p(&self.fx.base().join(format!("locks-{tag}"))),
            ];
            args.extend(strings(opts));
            if sub == "stage" {
                args.extend(["--target".to_string(), p(&target)]);
            }
            args.extend(self.peer.clone());
            let what = format!("{sub} of a peer that never answers ({mode})");
            jobs.push((what, target, self.start(args)));
        }
        jobs
    }

    #[track_caller]
    fn assert_in_time(&self, what: &str, out: &Out, took: Duration) {
        assert!(
            took < Duration::from_secs(15),
            "{what}: took {took:?} with --timeout 5\n{}",
            out.describe()
        );
    }

    /// Ended by --timeout as unreachable, naming the peer, having staged nothing.
    #[track_caller]
    fn assert_timed_out(&self, what: &str, target: &Path, job: Job) {
        let (out, took) = job.join().expect("job thread");
        self.assert_in_time(what, &out, took);
        out.expect_code(69, what)
            .expect_one_error_line(what)
            .expect_stderr_contains(&self.host, what);
        assert!(
            entries(target).is_empty(),
            "{what}: the target holds {:?}",
            entries(target)
        );
    }
}

#[test]
fn a_check_of_a_peer_that_never_answers_times_out() {
    let hung = NeverAnswers::new();
    for (what, target, job) in hung.start_single_peer("check") {
        hung.assert_timed_out(&what, &target, job);
    }
}

#[test]
fn a_stage_of_a_peer_that_never_answers_times_out_and_stages_nothing() {
    let hung = NeverAnswers::new();
    for (what, target, job) in hung.start_single_peer("stage") {
        hung.assert_timed_out(&what, &target, job);
    }
}

#[test]
fn a_peer_that_never_answers_does_not_hold_up_the_run() {
    let hung = NeverAnswers::new();
    let job = hung.start(vec![
        "run".to_string(),
        "--config".into(),
        p(&hung.config),
        "--date".into(),
        DATE.into(),
        "--timeout".into(),
        "5".into(),
        "--json".into(),
    ]);
    let what = "run with a peer that never answers and a good one";
    let (out, took) = job.join().expect("job thread");
    hung.assert_in_time(what, &out, took);
    out.expect_code(1, what);
    let report = json_of(&out);
    assert_status(&report, "good", "T");
    assert_status(&report, &hung.host, "f");
    let mut expected = hung.good_files.clone();
    expected.insert("cback.collect".into(), Vec::new());
    assert_holds_exactly(&hung.staging.join(DAY).join("good"), &expected, what, &out);
}

// =============================================================================================
// 9. Two commands on one peer at once

#[test]
fn two_stages_of_one_peer_at_once_fail_fast_or_wait() {
    let fx = Fx::remote();
    let collect = fx.dir("collect");
    write_samples(&collect);
    let files = regular_files(&collect);
    let started = fx.base().join("started");
    let rcp = fx.wrapper_rcp(
        "slow",
        &format!(
            "echo $$ >> {}\n/usr/bin/scp \"$@\"\nrc=$?\nsleep 2\nexit $rc",
            sh_quote(&p(&started))
        ),
        false,
    );
    let peer = fx.remote_peer(&collect, &rcp);

    // Without --wait: the second fails at once with 75, naming the holder, touching nothing.
    let first_target = fx.dir("target-1");
    let mut cmd = fx.cmd(
        &["stage"],
        &["--target".into(), p(&first_target)],
        &peer,
        &[],
    );
    let first = spawn_into(&mut cmd, fx.base(), "first");
    let holder = first.id();
    wait_for_lines(&started, 1, "the first stage's copy");
    let second_target = fx.dir("target-2");
    let clock = Instant::now();
    let out = fx.stage(&second_target, &[], &peer);
    let took = clock.elapsed();
    out.expect_code(75, "second stage of the same peer")
        .expect_one_error_line("second stage of the same peer")
        .expect_stderr_contains(&holder.to_string(), "the error names the holder's pid");
    assert!(
        took < Duration::from_secs(2),
        "the second stage waited ({took:?})"
    );
    assert!(entries(&second_target).is_empty(), "second target touched");
    let out = finish(first, fx.base(), "first", Duration::from_secs(60));
    out.expect_code(0, "first stage");
    assert_holds_exactly(&first_target, &files, "first stage", &out);

    // With --wait: the second waits for the first, then stages; both whole.
    let third_target = fx.dir("target-3");
    let mut cmd = fx.cmd(
        &["stage"],
        &["--target".into(), p(&third_target)],
        &peer,
        &[],
    );
    let third = spawn_into(&mut cmd, fx.base(), "third");
    wait_for_lines(&started, 2, "the third stage's copy");
    let fourth_target = fx.dir("target-4");
    let clock = Instant::now();
    let out = fx.stage(
        &fourth_target,
        &[],
        &[peer.clone(), strings(&["--wait"])].concat(),
    );
    let took = clock.elapsed();
    out.expect_code(0, "stage --wait while another stage holds the peer");
    assert!(
        took > Duration::from_millis(1000),
        "stage --wait did not wait ({took:?})"
    );
    assert_holds_exactly(&fourth_target, &files, "stage --wait", &out);
    let out = finish(third, fx.base(), "third", Duration::from_secs(60));
    out.expect_code(0, "stage held while another waited");
    assert_holds_exactly(&third_target, &files, "third stage", &out);
}

// =============================================================================================
// 10. File names that are not UTF-8

#[test]
fn non_utf8_file_names_are_staged_as_they_are() {
    let fx = Fx::remote();
    let collect = fx.dir("collect");
    let raw = |bytes: &[u8]| OsString::from_vec(bytes.to_vec());
    let files = write_files(
        &collect,
        &[
            (raw(b"caf\xe9.tar"), b"latin-1 name\n".to_vec()),
            (raw(b"\xff\xfe-raw.bin"), random_bytes(3000, 6)),
            (raw(b"broken-\xc3\x28-utf8 x.tar"), b"\x00\x01".to_vec()),
            (raw(b"plain.tar"), b"plain\n".to_vec()),
        ],
    );
    let peers = [
        ("local", fx.local_peer("raw-local", &collect)),
        ("remote (SFTP)", fx.remote_peer(&collect, &fx.rcp(false))),
        ("remote (scp -O)", fx.remote_peer(&collect, &fx.rcp(true))),
    ];
    for (i, (kind, peer)) in peers.iter().enumerate() {
        let target = fx.dir(&format!("target-{i}"));
        let what = format!("{kind} stage of non-UTF-8 names");
        let out = fx.stage(&target, &[], peer);
        out.expect_code(0, &what);
        assert_holds_exactly(&target, &files, &what, &out);
    }
}
