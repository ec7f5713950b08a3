//! Fixtures that several test files build with: the day pool runs stage into, pool configs in
//! the native TOML, peer arguments, the JSON job report, snapshots of files that must not
//! change, processes that must not outlive a run, and peerstage runs in the background.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{entries, p, Out};

/// The day every pool run stages into (a Saturday, which the ignore-failure tests rely on).
pub const DATE: &str = "2026-11-21";
/// DATE as the daily dir under the staging dir.
pub const DAY: &str = "2026/11/21";

/// The two ways a remote peer's commands connect: one shared ssh connection (the default),
/// or a connection per command.
pub const MUX_MODES: [(&str, &[&str]); 2] = [
    ("multiplexed", &[]),
    ("--no-multiplex", &["--no-multiplex"]),
];

// ---------------------------------------------------------------------------------------------
// Configs and peers

/// A TOML basic string (JSON string syntax is a subset of it).
pub fn q(text: &str) -> String {
    serde_json::to_string(text).expect("string to JSON")
}

/// The top of a native TOML config. The lock dir is always the test's own: tests run in
/// parallel, and a shared one would make them wait for, or fail on, each other's locks.
pub fn toml_dirs(staging: &Path, work: &Path, lock_dir: &Path) -> String {
    format!(
        "staging_dir = {}\nworking_dir = {}\nlock_dir = {}\n",
        q(&p(staging)),
        q(&p(work)),
        q(&p(lock_dir)),
    )
}

/// A `[[peer]]` table of a local peer; `extra` is more of its lines.
pub fn local_peer_toml(name: &str, collect: &Path, extra: &str) -> String {
    format!(
        "\n[[peer]]\nname = {}\ntype = \"local\"\ncollect_dir = {}\n{extra}",
        q(name),
        q(&p(collect))
    )
}

/// A `[[peer]]` table of a remote peer; `extra` is more of its lines.
pub fn remote_peer_toml(name: &str, collect: &Path, extra: &str) -> String {
    format!(
        "\n[[peer]]\nname = {}\ntype = \"remote\"\ncollect_dir = {}\n{extra}",
        q(name),
        q(&p(collect))
    )
}

/// The lines that point a remote peer's `[[peer]]` table at its own rcp and rsh commands.
pub fn commands_toml(rcp: &str, rsh: &str) -> String {
    format!("rcp_command = {}\nrsh_command = {}\n", q(rcp), q(rsh))
}

/// The PEER arguments of a single-peer command for a remote peer.
pub fn remote_peer_args(
    host: &str,
    collect: &Path,
    work: &Path,
    rcp: &str,
    rsh: &str,
) -> Vec<String> {
    vec![
        "--host".into(),
        host.into(),
        "--collect-dir".into(),
        p(collect),
        "--working-dir".into(),
        p(work),
        "--rcp-command".into(),
        rcp.into(),
        "--rsh-command".into(),
        rsh.into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// The job report

/// stdout as one JSON document.
#[track_caller]
pub fn json_of(out: &Out) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|err| panic!("stdout is not one JSON document: {err}\n{}", out.describe()))
}

/// The report entry of one peer.
#[track_caller]
pub fn peer_report<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|peer| peer["peer"] == name))
        .unwrap_or_else(|| panic!("no peer {name:?} in the report:\n{report:#}"))
}

#[track_caller]
pub fn assert_status(report: &Value, name: &str, letter: &str) {
    assert_eq!(
        peer_report(report, name)["status"],
        letter,
        "status of peer {name}:\n{report:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// Files that must not change

/// Everything under `roots`, recursively: type, size, mode, mtime and contents of each entry,
/// or where a symlink points (never followed).
pub fn snapshot<P: AsRef<Path>>(roots: &[P]) -> BTreeMap<PathBuf, String> {
    fn walk(path: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(meta) = fs::symlink_metadata(path) else {
            out.insert(path.to_path_buf(), "absent".into());
            return;
        };
        let kind = meta.file_type();
        let common = format!(
            "mode {:o} size {} mtime {}.{}",
            meta.mode(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec()
        );
        let key = path.to_path_buf();
        if kind.is_symlink() {
            out.insert(key, format!("symlink -> {:?}", fs::read_link(path).ok()));
        } else if kind.is_dir() {
            out.insert(key, format!("dir {common}"));
            for name in entries(path) {
                walk(&path.join(name), out);
            }
        } else if kind.is_file() {
            let data = fs::read(path).unwrap_or_default();
            out.insert(key, format!("file {common} bytes {data:?}"));
        } else {
            out.insert(key, format!("other {common}"));
        }
    }
    let mut out = BTreeMap::new();
    for root in roots {
        walk(root.as_ref(), &mut out);
    }
    out
}

/// Asserts two snapshots are equal, naming only what differs.
#[track_caller]
pub fn assert_unchanged(
    before: &BTreeMap<PathBuf, String>,
    after: &BTreeMap<PathBuf, String>,
    what: &str,
    out: &Out,
) {
    let mut changes = Vec::new();
    for (path, was) in before {
        match after.get(path) {
            None => changes.push(format!("removed {}", path.display())),
            Some(now) if now != was => {
                changes.push(format!("changed {}: {was} => {now}", path.display()))
            }
            _ => {}
        }
    }
    for path in after.keys().filter(|path| !before.contains_key(*path)) {
        changes.push(format!("created {}", path.display()));
    }
    assert!(
        changes.is_empty(),
        "{what}: files changed:\n{}\n{}",
        changes.join("\n"),
        out.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// Processes

/// Whether `pid` is a running process (a zombie that nobody reaped counts as ended).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

pub fn cmdline_of(pid: u32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

/// Running processes other than this one whose command line mentions `needle` (a unique temp
/// path or host name).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| *pid != std::process::id())
                .filter(|pid| alive(*pid) && cmdline_of(*pid).contains(needle))
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILLs one process of ours that outlived its test.
pub fn kill_pid(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

// ---------------------------------------------------------------------------------------------
// Runs in the background

/// Starts `cmd` with stdout and stderr into `<dir>/<tag>.stdout|.stderr`.
pub fn spawn_into(cmd: &mut Command, dir: &Path, tag: &str) -> Child {
    let stdout = fs::File::create(dir.join(format!("{tag}.stdout"))).expect("stdout file");
    let stderr = fs::File::create(dir.join(format!("{tag}.stderr"))).expect("stderr file");
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start peerstage in the background")
}

/// Waits for a background child (killing it after `limit`) and collects its output.
#[track_caller]
pub fn finish(mut child: Child, dir: &Path, tag: &str, limit: Duration) -> Out {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{tag}: background peerstage did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let read = |ext: &str| {
        String::from_utf8_lossy(&fs::read(dir.join(format!("{tag}.{ext}"))).unwrap_or_default())
            .into_owned()
    };
    Out {
        code: status
            .code()
            .unwrap_or_else(|| -status.signal().unwrap_or(0)),
        stdout: read("stdout"),
        stderr: read("stderr"),
        cmdline: tag.to_string(),
    }
}

/// Waits until `path` has at least `lines` lines; a hook or wrapper writes one when it gets
/// to the point a test must wait for.
#[track_caller]
pub fn wait_for_lines(path: &Path, lines: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= lines {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} did not get {lines} line(s)",
            path.display()
        );
        thread::sleep(Duration::from_millis(10));
    }
}
