//! Shared test harness: runs the `peerstage` binary as users call it, and starts a private
//! OpenSSH server on loopback so remote peers are tested against the real thing.
//!
//! Everything the server needs lives in a `TempDir`; the machine's own sshd, `~/.ssh` and
//! `/etc/ssh` are never touched, and clients only ever connect to 127.0.0.1.

// Each test crate includes this module and uses a different subset of it.
#![allow(dead_code)]

mod fixtures;

#[allow(unused_imports)]
pub use fixtures::*;

use std::fs;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const SSHD: &str = "/usr/sbin/sshd";
pub const SSH: &str = "/usr/bin/ssh";
pub const SCP: &str = "/usr/bin/scp";
pub const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";

/// Throwaway system account for the `--local-user` and owner-by-name tests (root only).
pub const TEST_USER: &str = "peerstage-test";

/// Upper bound for one peerstage run; every run in these tests takes well under a second,
/// so hitting this means a hang (e.g. ssh waiting for input), which must fail, not stall CI.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const SSHD_READY_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Running commands

/// What a finished process left behind.
#[derive(Debug)]
pub struct Out {
    /// Exit code, or `-signal` when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for failure messages.
    pub cmdline: String,
}

impl Out {
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit code: {}\n--- stdout ---\n{}--- stderr ---\n{}--------------",
            self.cmdline, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts the exit code and that nothing panicked, printing the whole run on failure.
    #[track_caller]
    pub fn expect_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code,
            code,
            "{what}: expected exit code {code}\n{}",
            self.describe()
        );
        self.expect_no_panic(what);
        self
    }

    #[track_caller]
    pub fn expect_no_panic(&self, what: &str) -> &Self {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "{what}: peerstage panicked\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that some stderr line contains every needle (an error names the peer, the path
    /// and the cause on one line, so the needles must appear together).
    #[track_caller]
    pub fn expect_stderr_line_with(&self, needles: &[&str], what: &str) -> &Self {
        let found = self
            .stderr
            .lines()
            .any(|line| needles.iter().all(|n| line.contains(n)));
        assert!(
            found,
            "{what}: no stderr line contains all of {needles:?}\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that stderr is exactly one non-empty line (the documented error format).
    #[track_caller]
    pub fn expect_one_error_line(&self, what: &str) -> &Self {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{what}: expected exactly one error line on stderr\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn expect_stderr_contains(&self, needle: &str, what: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "{what}: stderr does not mention {needle:?}\n{}",
            self.describe()
        );
        self
    }

    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to completion with a time limit, capturing stdout and stderr.
#[track_caller]
pub fn run(cmd: &mut Command) -> Out {
    let cmdline = format!("{cmd:?}");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmdline}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));

    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmdline} did not finish within {RUN_TIMEOUT:?} (hung?)");
        }
        thread::sleep(Duration::from_millis(5));
    };
    // A helper that outlives peerstage while holding its stdout/stderr (say, a lingering ssh
    // control master that was not detached from the pipes) would block the readers forever.
    let grace = Duration::from_secs(10);
    let collect = |rx: mpsc::Receiver<Vec<u8>>, name: &str| {
        let bytes = rx.recv_timeout(grace).unwrap_or_else(|_| {
            panic!("{cmdline} exited but a leftover process still holds its {name} open")
        });
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Out {
        code: status
            .code()
            .unwrap_or_else(|| -status.signal().unwrap_or(0)),
        stdout: collect(stdout, "stdout"),
        stderr: collect(stderr, "stderr"),
        cmdline,
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// The binary under test, isolated from the caller's logging and backtrace settings so that
/// output is what a user with a clean environment sees.
pub fn peerstage() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerstage"));
    cmd.stdin(Stdio::null())
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    cmd
}

/// Runs peerstage with `args`.
#[track_caller]
pub fn ps<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Out {
    run(peerstage().args(args))
}

/// Effective uid 0, read off /proc/self (owned by the process's euid) to avoid a libc call.
pub fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// What a test that needs OpenSSH says without it. It fails rather than skips: a green run
/// must mean that every test ran.
pub const NEEDS_OPENSSH: &str =
    "OpenSSH is not installed: run the tests through scripts/test, which installs it";

/// Fails the test unless it runs as root: a test that cannot run must not pass.
#[track_caller]
pub fn needs_root(why: &str) {
    assert!(
        is_root(),
        "this test needs root ({why}); run the tests as root, as CI does"
    );
}

/// Fails the test unless `path` is installed.
#[track_caller]
pub fn needs_tool(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is not installed: apt-get install {package} (scripts/test does)"
    );
}

/// The throwaway [`TEST_USER`]'s (uid, gid), failing the test when it cannot be had.
#[track_caller]
pub fn needs_test_user(why: &str) -> (u32, u32) {
    needs_root(why);
    test_user().expect("the test user exists once created as root")
}

/// Quotes `s` for a POSIX shell (used for `su -c` strings and scripts).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------------------------
// Files

pub fn tempdir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("peerstage-test-")
        .tempdir()
        .expect("create temp dir");
    // Readable by the throwaway user, which reads keys, configs and collect dirs in here.
    set_mode(dir.path(), 0o755);
    dir
}

pub fn mkdir(path: &Path) -> PathBuf {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    path.to_path_buf()
}

pub fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> PathBuf {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_path_buf()
}

/// Writes an executable `/bin/sh` script.
pub fn write_script(path: &Path, body: &str) -> PathBuf {
    write_file(path, format!("#!/bin/sh\n{body}\n"));
    set_mode(path, 0o755);
    path.to_path_buf()
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

pub fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .mode()
        & 0o7777
}

pub fn owner_of(path: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.uid(), m.gid())
}

pub fn mkfifo(path: &Path) {
    let out = run(Command::new("mkfifo").arg(path));
    assert_eq!(out.code, 0, "mkfifo failed\n{}", out.describe());
}

/// Sorted names of the entries of `dir` (empty when it does not exist).
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| {
                e.expect("read dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read dir {}: {e}", dir.display()),
    };
    names.sort();
    names
}

/// The names in `dir` as they are (not necessarily UTF-8), sorted; none if it is missing.
pub fn entries(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<std::ffi::OsString> = match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.expect("dir entry").file_name()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The regular files at the top of `dir`, by name, with their contents.
pub fn regular_files(dir: &Path) -> std::collections::BTreeMap<std::ffi::OsString, Vec<u8>> {
    entries(dir)
        .into_iter()
        .filter(|name| {
            fs::symlink_metadata(dir.join(name))
                .map(|m| m.file_type().is_file())
                .unwrap_or(false)
        })
        .map(|name| {
            let data = fs::read(dir.join(&name)).expect("read file");
            (name, data)
        })
        .collect()
}

/// A size as peerstage's text output shows it: bytes below 1 KiB, else KiB, MiB... with two
/// decimals below 10 and one above.
pub fn iec(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut units = ["KiB", "MiB", "GiB", "TiB"].iter();
    let mut unit = units.next().copied().unwrap_or("KiB");
    while value >= 1024.0 {
        match units.next() {
            Some(next) => {
                value /= 1024.0;
                unit = next;
            }
            None => break,
        }
    }
    if value < 10.0 {
        format!("{value:.2} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// The part of a document after the heading `start` up to the next heading that begins with
/// `next` (`.SH ` in the man page, `\n## ` in the README).
#[track_caller]
pub fn section<'a>(document: &'a str, start: &str, next: &str) -> &'a str {
    document
        .split(start)
        .nth(1)
        .and_then(|rest| rest.split(next).next())
        .unwrap_or_else(|| panic!("no {start:?} section"))
}

pub fn p(path: &Path) -> String {
    path.to_str().expect("utf-8 test path").to_string()
}

/// A collect dir's worth of sample files: binary bytes (NUL, newlines, high bytes), text and
/// an empty file. Returns (name, contents) pairs.
pub fn sample_files() -> Vec<(&'static str, Vec<u8>)> {
    let binary: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    vec![
        ("alpha-etc-20261121.tar", binary),
        (
            "alpha-home-20261121.tar",
            b"home directories\nline two\n".to_vec(),
        ),
        ("empty.dat", Vec::new()),
    ]
}

pub fn write_samples(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let files = sample_files();
    for (name, data) in &files {
        write_file(&dir.join(name), data);
    }
    files
}

/// Asserts that `target` holds exactly `files`, as regular files with the same contents.
#[track_caller]
pub fn assert_staged_exactly(target: &Path, files: &[(&str, Vec<u8>)]) {
    let mut expected: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
    expected.sort();
    assert_eq!(list_dir(target), expected, "staged file names");
    for (name, data) in files {
        let path = target.join(name);
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file(), "{name} is not a regular file");
        assert_eq!(&fs::read(&path).unwrap(), data, "contents of {name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Users

/// Creates the throwaway [`TEST_USER`] once per test process and returns its (uid, gid);
/// None when not root.
pub fn test_user() -> Option<(u32, u32)> {
    static USER: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *USER.get_or_init(|| {
        if !is_root() {
            return None;
        }
        // `-p '*'`: with `UsePAM no`, sshd refuses even key logins to an account whose password
        // field starts with '!' ("account is locked"), which is what useradd writes by default.
        let created = retry_on_lock(|| {
            run(Command::new("useradd").args([
                "--system",
                "--no-create-home",
                "--shell",
                "/bin/sh",
                "-p",
                "*",
                TEST_USER,
            ]))
        });
        if created.code != 0 {
            assert!(
                created.stderr.contains("already exists"),
                "useradd failed\n{}",
                created.describe()
            );
            let shadow = run(Command::new("getent").args(["shadow", TEST_USER]));
            if shadow
                .stdout
                .split(':')
                .nth(1)
                .unwrap_or("!")
                .starts_with('!')
            {
                let out =
                    retry_on_lock(|| run(Command::new("usermod").args(["-p", "*", TEST_USER])));
                assert_eq!(out.code, 0, "usermod failed\n{}", out.describe());
            }
        }
        Some(user_ids(TEST_USER).expect("test user exists after useradd"))
    })
}

/// Runs a user-database command again while another process (a parallel test process under
/// nextest, say) holds the passwd/shadow lock.
pub fn retry_on_lock(mut f: impl FnMut() -> Out) -> Out {
    let mut out = f();
    for _ in 0..50 {
        if out.code == 0 || !out.stderr.contains("lock") {
            break;
        }
        thread::sleep(Duration::from_millis(100));
        out = f();
    }
    out
}

/// (uid, primary gid) of a local user.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = run(Command::new("id").args([flag, name]));
        (out.code == 0).then(|| out.stdout.trim().parse().ok())?
    };
    Some((id("-u")?, id("-g")?))
}

pub fn group_id(name: &str) -> Option<u32> {
    let out = run(Command::new("getent").args(["group", name]));
    if out.code != 0 {
        return None;
    }
    out.stdout.trim().split(':').nth(2)?.parse().ok()
}

/// Runs a shell command line as `user` through `su` (root only).
pub fn run_as(user: &str, shell_cmd: &str) -> Out {
    run(Command::new("su")
        .args([user, "-s", "/bin/sh", "-c", shell_cmd])
        .stdin(Stdio::null())
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE"))
}

// ---------------------------------------------------------------------------------------------
// Ports

/// A loopback port that was free a moment ago. Racy by nature; callers retry on bind failure.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A loopback port with nothing listening on it, for "peer unreachable" cases.
pub fn closed_port() -> u16 {
    free_port()
}

// ---------------------------------------------------------------------------------------------
// The OpenSSH server

pub struct Sshd {
    pub dir: TempDir,
    pub port: u16,
    pub ssh_config: PathBuf,
    pub sshd_config: PathBuf,
    pub client_key: PathBuf,
    log_file: PathBuf,
    child: Child,
    /// A loopback port where nothing listens: "the peer is down". One per server, so that
    /// the rcp and rsh commands of an unreachable peer aim at the same place, as they would
    /// for a real host that is off.
    closed_port: u16,
}

impl Sshd {
    pub fn start() -> Option<Sshd> {
        Self::start_with("")
    }

    /// Starts a private sshd on a free loopback port with `extra_sshd_config` appended to its
    /// config. Returns None (after printing why) only when OpenSSH is not installed, which
    /// callers turn into a failure with `.expect(NEEDS_OPENSSH)`; any other failure panics
    /// here, so a broken harness cannot pass as a silently skipped test.
    pub fn start_with(extra_sshd_config: &str) -> Option<Sshd> {
        Self::start_custom("internal-sftp", extra_sshd_config)
    }

    /// Like `start_with`, with `sftp_subsystem` as the command of the sftp subsystem (a
    /// hostile server of the test, say).
    pub fn start_custom(sftp_subsystem: &str, extra_sshd_config: &str) -> Option<Sshd> {
        for tool in [SSHD, SSH, SCP, SSH_KEYGEN] {
            if !Path::new(tool).exists() {
                eprintln!(
                    "{tool} is not installed (apt-get install openssh-server openssh-client)"
                );
                return None;
            }
        }
        if is_root() {
            // sshd refuses to start as root without its privilege separation directory.
            match fs::create_dir("/run/sshd") {
                Ok(()) => set_mode(Path::new("/run/sshd"), 0o755),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => panic!("mkdir /run/sshd: {e}"),
            }
        }

        let dir = tempfile::Builder::new()
            .prefix("peerstage-sshd-")
            .tempdir()
            .expect("create sshd temp dir");
        set_mode(dir.path(), 0o755);
        let d = dir.path();
        let host_key = d.join("host_ed25519_key");
        let client_key = d.join("client_ed25519_key");
        keygen(&host_key);
        keygen(&client_key);
        let authorized_keys = d.join("authorized_keys");
        fs::copy(client_key.with_extension("pub"), &authorized_keys).expect("authorized_keys");
        let sshd_config = d.join("sshd_config");
        let ssh_config = d.join("ssh_config");
        let log_file = d.join("sshd.log");

        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            write_file(
                &sshd_config,
                format!(
                    "ListenAddress 127.0.0.1\n\
                     Port {port}\n\
                     HostKey {host_key}\n\
                     AuthorizedKeysFile {authorized_keys}\n\
                     StrictModes no\n\
                     UsePAM no\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     Subsystem sftp {sftp_subsystem}\n\
                     LogLevel VERBOSE\n\
                     PidFile {pid}\n\
                     PermitRootLogin prohibit-password\n\
                     UseDNS no\n\
                     PrintMotd no\n\
                     PrintLastLog no\n\
                     {extra_sshd_config}\n",
                    host_key = p(&host_key),
                    authorized_keys = p(&authorized_keys),
                    pid = p(&d.join("sshd.pid")),
                ),
            );
            // HostName pins every host name a test might use to loopback.
            write_file(
                &ssh_config,
                format!(
                    "Host *\n\
                     \x20 HostName 127.0.0.1\n\
                     \x20 Port {port}\n\
                     \x20 IdentityFile {key}\n\
                     \x20 IdentitiesOnly yes\n\
                     \x20 StrictHostKeyChecking no\n\
                     \x20 UserKnownHostsFile /dev/null\n\
                     \x20 LogLevel ERROR\n\
                     \x20 BatchMode yes\n\
                     \x20 ConnectTimeout 5\n",
                    key = p(&client_key),
                ),
            );
            let _ = fs::remove_file(&log_file);
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-E")
                .arg(&log_file)
                .arg("-f")
                .arg(&sshd_config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
            match wait_ready(&mut child, port, &ssh_config, &log_file) {
                Ok(()) => {
                    return Some(Sshd {
                        closed_port: closed_port(),
                        dir,
                        port,
                        ssh_config,
                        sshd_config,
                        client_key,
                        log_file,
                        child,
                    })
                }
                Err(log) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = log;
                }
            }
        }
        panic!("sshd could not bind a free loopback port after 5 attempts; last log:\n{last_log}");
    }

    /// `--rcp-command` for this server.
    pub fn rcp_command(&self) -> String {
        format!("{SCP} -F {} -B -q -C", p(&self.ssh_config))
    }

    /// `--rsh-command` for this server.
    pub fn rsh_command(&self) -> String {
        format!("{SSH} -F {}", p(&self.ssh_config))
    }

    /// An rcp command aimed at a loopback port where nothing listens.
    pub fn unreachable_rcp_command(&self) -> String {
        format!(
            "{SCP} -F {} -o Port={} -B -q -C",
            p(&self.ssh_config),
            self.closed_port
        )
    }

    /// An rsh command aimed at a loopback port where nothing listens.
    pub fn unreachable_rsh_command(&self) -> String {
        format!(
            "{SSH} -F {} -o Port={}",
            p(&self.ssh_config),
            self.closed_port
        )
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Number of successful logins so far (the readiness probe counts as one).
    pub fn logins(&self) -> usize {
        self.log().matches("Accepted publickey").count()
    }

    /// Lets `user` use the client key. ssh refuses a private key that its own user can read
    /// with group/other bits set, but it does not check keys owned by someone else; handing
    /// the 0600 key to `user` therefore keeps it usable both by `user` and by root.
    pub fn allow_user(&self, user: &str) {
        let (uid, gid) = user_ids(user).unwrap_or_else(|| panic!("no such user {user}"));
        std::os::unix::fs::chown(&self.client_key, Some(uid), Some(gid)).expect("chown client key");
        set_mode(&self.client_key, 0o600);
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Only the listener is ours to stop; per-connection children exit with their clients.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the sshd in `child` accepts an `ssh … true`. Err(log) means it could not bind
/// its port (another process took it since we picked it), which the caller retries.
fn wait_ready(
    child: &mut Child,
    port: u16,
    ssh_config: &Path,
    log_file: &Path,
) -> Result<(), String> {
    let log = || fs::read_to_string(log_file).unwrap_or_default();
    let deadline = Instant::now() + SSHD_READY_TIMEOUT;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut last_probe = None;
    loop {
        if let Some(status) = child.try_wait().expect("wait for sshd") {
            let log = log();
            if log.contains("Bind to port") || log.contains("Cannot bind any address") {
                return Err(log);
            }
            panic!("sshd exited at start ({status}); log:\n{log}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "sshd on port {port} not usable within {SSHD_READY_TIMEOUT:?}\n\
                 last ssh probe: {}\nsshd log:\n{}",
                last_probe.as_ref().map(Out::describe).unwrap_or_default(),
                log()
            );
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            let probe = run(Command::new(SSH)
                .arg("-F")
                .arg(ssh_config)
                .args(["127.0.0.1", "true"])
                .stdin(Stdio::null()));
            // A server with `ForceCommand internal-sftp` authenticates us and then refuses the
            // command: that is a ready server too.
            if probe.code == 0 || probe.combined().contains("allows sftp connections only") {
                return Ok(());
            }
            last_probe = Some(probe);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

pub fn keygen(path: &Path) {
    let out = run(Command::new(SSH_KEYGEN)
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "peerstage-test",
            "-f",
        ])
        .arg(path));
    assert_eq!(out.code, 0, "ssh-keygen failed\n{}", out.describe());
}

/// `prefix-XXXXXX` with the random part of a temp dir's name: a peer name no other test
/// running at the same time uses (peerstage locks peers by name).
pub fn unique_name(prefix: &str, temp_dir: &Path) -> String {
    let base = temp_dir
        .file_name()
        .expect("temp dir has a name")
        .to_string_lossy();
    let suffix = base.rsplit('-').next().unwrap_or(&base);
    format!("{prefix}-{suffix}")
}

/// Incompressible bytes (xorshift64*): `scp -C` cannot shrink them, so a copy takes its time.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}
