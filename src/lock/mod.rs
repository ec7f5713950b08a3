//! Lock files: one run lock per staging dir and one lock per peer, as barman's lock files.
//!
//! A lock is an `flock(2)` on a file in a private lock dir; the file also holds the owner's pid
//! and what it is doing, for error messages and `peerstage locks`. The kernel drops an flock
//! when its owner dies, so a crashed or `kill -9`'d run never blocks the next one, and no
//! "stale lock" guesswork is needed. The holder unlinks its lock file before releasing it, so
//! the lock dir holds only the locks in use (and those of killed owners, until `run` sweeps
//! them). That is safe because every taker checks, once it has the flock, that its inode is
//! still the one at the path, and starts over when it is not: a waiter that had the unlinked
//! file open never shares the lock with a newcomer.

mod dir;
mod list;

pub use dir::{default_lock_dir, prepare_lock_dir};
pub use list::{list, remove_free, LockInfo};

use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::error::{io_cause, Error, Result};
use crate::fsutil::is_plain_file_name;

use list::holder_pid;

/// Longest readable part of a run lock's file name; with the prefix, hash and suffix the name
/// stays far below the 255-byte limit of most file systems.
const MAX_READABLE: usize = 200;

/// A held lock; released (and its file emptied) when dropped.
#[derive(Debug)]
pub struct Lock {
    // An Option only so that Drop can take it and unlock without risking nix's panic.
    file: Option<Flock<File>>,
    path: PathBuf,
}

impl Lock {
    /// The run lock of a staging dir: `<dir>/run-<name>.lock`, where `<name>` is a readable,
    /// file-name-safe form of the staging dir plus a short stable hash, so two staging dirs
    /// never share a lock and the name stays under 255 bytes.
    pub fn run(dir: &Path, staging_dir: &Path, wait: bool) -> Result<Lock> {
        let path = dir.join(run_lock_file_name(staging_dir));
        let what = format!("staging dir {}", staging_dir.display());
        let purpose = format!("run {}", staging_dir.display());
        Lock::acquire(path, &what, &purpose, wait).map_err(|err| err.at(&what))
    }

    /// One lock per peer: `<dir>/peer-<peer name>.lock`.
    pub fn peer(dir: &Path, peer: &str, wait: bool) -> Result<Lock> {
        // Peer names are checked when the config is read; checking again here keeps a
        // mistake elsewhere from turning into a path outside the lock dir.
        if !is_plain_file_name(peer.as_ref()) {
            return Err(Error::usage(format!(
                "peer name {peer:?}: not a plain name, cannot name a lock file after it"
            )));
        }
        let path = dir.join(Lock::peer_file_name(peer));
        let what = format!("peer {peer}");
        Lock::acquire(path, &what, &what, wait).map_err(|err| err.for_peer(peer))
    }

    /// The file name of a peer's lock.
    pub fn peer_file_name(peer: &str) -> String {
        format!("peer-{peer}.lock")
    }

    /// The file name of a staging dir's run lock.
    pub fn run_file_name(staging_dir: &Path) -> String {
        run_lock_file_name(staging_dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn acquire(path: PathBuf, what: &str, purpose: &str, wait: bool) -> Result<Lock> {
        let mut announced = false;
        loop {
            let file = open_lock_file(&path)?;
            let locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => locked,
                Err((file, Errno::EWOULDBLOCK)) => {
                    let pid = holder_pid(&file);
                    if !wait {
                        return Err(Error::locked(locked_message(&path, pid)));
                    }
                    if !announced {
                        let by = pid
                            .map_or_else(|| "another process".to_string(), |p| format!("pid {p}"));
                        log::info!(
                            "{what}: waiting for the lock held by {by} (lock file {})",
                            path.display()
                        );
                        announced = true;
                    }
                    block_on(file, &path)?
                }
                Err((_, errno)) => {
                    return Err(Error::failed(format!(
                        "cannot lock {}: {}",
                        path.display(),
                        errno.desc()
                    )))
                }
            };
            // Someone may have removed or replaced the file between our open and our flock;
            // a lock on an inode no longer at the path excludes nobody, so start over.
            if !still_at_path(&locked, &path) {
                continue;
            }
            record_owner(&locked, &path, purpose);
            return Ok(Lock {
                file: Some(locked),
                path,
            });
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let Some(locked) = self.file.take() else {
            return;
        };
        // Unlinked (or else emptied) while still held, so that a new owner's file is never
        // touched and `list` does not show us as the owner of a lock we no longer have.
        let unlinked =
            still_at_path(&locked, &self.path) && std::fs::remove_file(&self.path).is_ok();
        if !unlinked {
            if let Err(err) = locked.set_len(0) {
                log::debug!(
                    "cannot empty lock file {}: {}",
                    self.path.display(),
                    io_cause(&err)
                );
            }
        }

        // nix's own Drop would panic if unlocking failed; unlock explicitly and only warn.
        if let Err((locked, errno)) = locked.unlock() {
            log::warn!(
                "cannot release lock {}: {}",
                self.path.display(),
                errno.desc()
            );
            // Closing the descriptor still drops the lock once no other copy of it is open.
            std::mem::forget(locked);
        }
    }
}

/// Opens (creating if needed) a lock file without following a symlink at its path.
pub(super) fn open_lock_file(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(path)
        .map_err(|err| {
            if err.raw_os_error() == Some(Errno::ELOOP as i32) {
                Error::usage(format!(
                    "lock file {} is a symbolic link; refusing to follow it",
                    path.display()
                ))
            } else {
                Error::failed(format!(
                    "cannot open lock file {}: {}",
                    path.display(),
                    io_cause(&err)
                ))
            }
        })?;
    let meta = file.metadata().map_err(|err| {
        Error::failed(format!(
            "cannot examine lock file {}: {}",
            path.display(),
            io_cause(&err)
        ))
    })?;
    if !meta.file_type().is_file() {
        return Err(Error::usage(format!(
            "lock file {} is not a regular file; refusing to use it",
            path.display()
        )));
    }
    Ok(file)
}

/// Waits for the lock, trying again every 20 ms rather than in a blocking flock, which a
/// Ctrl-C could not end: peerstage takes its signals in a thread of its own (see `cancel`).
fn block_on(mut file: File, path: &Path) -> Result<Flock<File>> {
    loop {
        if let Some(signal) = crate::cancel::canceled_by() {
            return Err(Error::canceled(format!(
                "canceled by {signal} while waiting for lock file {}",
                path.display()
            )));
        }
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((back, Errno::EWOULDBLOCK | Errno::EINTR)) => {
                file = back;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err((_, errno)) => {
                return Err(Error::failed(format!(
                    "cannot lock {}: {}",
                    path.display(),
                    errno.desc()
                )))
            }
        }
    }
}

pub(super) fn still_at_path(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(held), Ok(there)) => held.dev() == there.dev() && held.ino() == there.ino(),
        _ => false,
    }
}

/// Writes `<pid>\n<purpose>\n`. A failure here (a full disk) only costs the diagnostics, not
/// the lock, so it is a warning rather than a reason to skip the run.
fn record_owner(file: &File, path: &Path, purpose: &str) {
    // One line whatever the staging dir is called, so the pid and purpose parse back.
    let purpose: String = purpose
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    let content = format!("{}\n{purpose}\n", std::process::id());
    // No fsync: the lock itself lives in the kernel, and the pid only matters while this
    // process does. On the file system being staged onto, an fsync per peer would force a
    // journal commit of every copy in flight.
    let result = file
        .set_len(0)
        .and_then(|()| file.write_all_at(content.as_bytes(), 0));
    if let Err(err) = result {
        log::warn!(
            "cannot record our pid in lock file {}: {}",
            path.display(),
            io_cause(&err)
        );
    }
}

fn locked_message(path: &Path, pid: Option<u32>) -> String {
    let path = path.display();
    match pid {
        Some(pid) if pid == std::process::id() => format!(
            "locked by this peerstage process (pid {pid}, lock file {path}); use --wait to wait for it"
        ),
        Some(pid) => format!(
            "locked by another peerstage (pid {pid}, lock file {path}); use --wait to wait for it"
        ),
        None => format!("locked by another process (lock file {path}); use --wait to wait for it"),
    }
}

/// The file name of a staging dir's run lock.
fn run_lock_file_name(staging_dir: &Path) -> String {
    // Lexical normalisation only (`/a/b/`, `/a//b` and `/a/./b` are one dir): resolving
    // symlinks would give a different name depending on whether the dir exists yet.
    let normal: PathBuf = staging_dir
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect();
    let bytes = normal.as_os_str().as_bytes();
    let hash = stable_hash(bytes);
    let mut readable = String::new();
    for &byte in bytes {
        let keep = byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-');
        let ch = if keep { byte as char } else { '-' };
        if ch == '-' && readable.ends_with('-') {
            continue;
        }
        readable.push(ch);
    }
    let mut readable = readable.trim_matches('-');
    if readable.len() > MAX_READABLE {
        // The tail of a path tells dirs apart better than its head; all bytes are ASCII here.
        readable = readable[readable.len() - MAX_READABLE..].trim_start_matches('-');
    }
    if readable.is_empty() {
        format!("run-{hash:08x}.lock")
    } else {
        format!("run-{readable}-{hash:08x}.lock")
    }
}

/// 64-bit FNV-1a folded to 32 bits: unlike std's hasher it is the same in every build, so
/// the lock name of a staging dir never changes across peerstage versions.
fn stable_hash(bytes: &[u8]) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash ^ (hash >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use nix::unistd::Pid;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    pub(super) fn lock_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn acquire_release_and_reacquire() {
        let dir = lock_dir();
        let lock = Lock::peer(dir.path(), "db1", false).unwrap();
        assert_eq!(lock.path(), dir.path().join("peer-db1.lock"));
        let text = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(text, format!("{}\npeer db1\n", std::process::id()));
        let mode = std::fs::metadata(lock.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "lock file mode {mode:o}");
        let path = lock.path().to_path_buf();
        drop(lock);
        assert!(!path.exists(), "a released lock's file is unlinked");
        drop(Lock::peer(dir.path(), "db1", false).unwrap());
    }

    #[test]
    fn second_acquire_in_the_same_process_fails_naming_pid_and_file() {
        let dir = lock_dir();
        let held = Lock::peer(dir.path(), "db1", false).unwrap();
        let err = Lock::peer(dir.path(), "db1", false).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Locked);
        assert_eq!(err.exit_code(), 75);
        assert!(
            err.message().starts_with("peer db1: locked by "),
            "{}",
            err.message()
        );
        assert!(
            err.message()
                .contains(&format!("pid {}", std::process::id())),
            "{}",
            err.message()
        );
        assert!(
            err.message().contains(&held.path().display().to_string()),
            "{}",
            err.message()
        );
        assert!(err.message().contains("--wait"), "{}", err.message());
        assert!(!err.message().contains('\n'));
        // Another thread is no different: each acquire has its own open file description.
        let dir_path = dir.path().to_path_buf();
        let other = std::thread::spawn(move || Lock::peer(&dir_path, "db1", false).map(drop))
            .join()
            .unwrap();
        assert_eq!(other.unwrap_err().kind, ErrorKind::Locked);
        // A different peer is a different lock.
        drop(Lock::peer(dir.path(), "db2", false).unwrap());
        // A failed attempt must not have clobbered the holder's record.
        let text = std::fs::read_to_string(held.path()).unwrap();
        assert_eq!(text, format!("{}\npeer db1\n", std::process::id()));
    }

    #[test]
    fn run_lock_excludes_the_same_staging_dir_only() {
        let dir = lock_dir();
        let held = Lock::run(dir.path(), Path::new("/var/backup/staging"), false).unwrap();
        let name = held
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            name.starts_with("run-var-backup-staging-") && name.ends_with(".lock"),
            "{name}"
        );
        let err = Lock::run(dir.path(), Path::new("/var/backup//staging/"), false).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Locked);
        assert!(
            err.message()
                .starts_with("staging dir /var/backup//staging/: locked by"),
            "{}",
            err.message()
        );
        drop(Lock::run(dir.path(), Path::new("/var/backup-staging"), false).unwrap());
        let text = std::fs::read_to_string(held.path()).unwrap();
        assert_eq!(
            text,
            format!("{}\nrun /var/backup/staging\n", std::process::id())
        );
    }

    #[test]
    fn run_lock_names_are_readable_stable_distinct_and_short() {
        let a = run_lock_file_name(Path::new("/var/backup/staging"));
        assert_eq!(a, run_lock_file_name(Path::new("/var/backup/staging/")));
        assert_eq!(a, run_lock_file_name(Path::new("/var//backup/./staging")));
        assert_eq!(
            a,
            format!(
                "run-var-backup-staging-{:08x}.lock",
                stable_hash(b"/var/backup/staging")
            )
        );
        assert_ne!(a, run_lock_file_name(Path::new("/var/backup-staging")));
        assert_ne!(a, run_lock_file_name(Path::new("/var/backup staging")));
        let odd = run_lock_file_name(Path::new("/srv/x y/\u{e9}t\u{e9}/..\n"));
        assert!(
            odd.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{odd}"
        );
        let long = format!("/{}", "d/".repeat(400));
        let long = run_lock_file_name(Path::new(&long));
        assert!(long.len() < 255, "{}", long.len());
        assert!(run_lock_file_name(Path::new("/")).starts_with("run-"));
        // Pinned: a changed hash would let an old and a new peerstage run side by side.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4 ^ 0x8422_2325);
    }

    #[test]
    fn peer_names_that_are_not_plain_are_refused() {
        let dir = lock_dir();
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert_eq!(
                Lock::peer(dir.path(), bad, false).unwrap_err().kind,
                ErrorKind::Usage,
                "{bad:?}"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A holder that is another process: a shell opens the file, `flock` locks that open file
    /// description, and the shell then becomes `sleep`, which keeps it; no grandchild holds it.
    pub(super) fn spawn_holder(path: &Path) -> Child {
        let script =
            r#"exec 9>>"$1" && flock -x 9 && printf '%s\npeer db1\n' "$$" >&9 && exec sleep 30"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(path)
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::fs::read_to_string(path)
            .map(|t| t.is_empty())
            .unwrap_or(true)
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "holder never took the lock"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    }

    #[test]
    fn a_killed_holder_never_blocks_the_next_run() {
        let dir = lock_dir();
        let path = dir.path().join("peer-db1.lock");
        let mut child = spawn_holder(&path);
        let err = Lock::peer(dir.path(), "db1", false).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Locked);
        assert!(
            err.message().contains(&format!("pid {}", child.id())),
            "{}",
            err.message()
        );
        assert!(
            err.message().contains("another peerstage"),
            "{}",
            err.message()
        );
        let infos = list(dir.path()).unwrap();
        assert_eq!(infos.len(), 1);
        assert!(infos[0].held);
        assert_eq!(infos[0].owner_pid, Some(child.id()));
        assert_eq!(infos[0].owner_alive, Some(true));

        nix::sys::signal::kill(Pid::from_raw(child.id() as i32), nix::sys::signal::SIGKILL)
            .unwrap();
        child.wait().unwrap();
        let start = Instant::now();
        let lock = Lock::peer(dir.path(), "db1", false).unwrap();
        assert!(start.elapsed() < Duration::from_secs(2));
        drop(lock);
    }

    #[test]
    fn wait_blocks_until_the_holder_releases() {
        let dir = lock_dir();
        let held = Lock::peer(dir.path(), "db1", false).unwrap();
        let start = Instant::now();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let lock = Lock::peer(dir.path(), "db1", true).unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(250),
            "{:?}",
            start.elapsed()
        );
        releaser.join().unwrap();
        let text = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(
            text,
            format!("{}\npeer db1\n", std::process::id()),
            "the releaser must not wipe the new owner"
        );
    }

    #[test]
    fn a_symlink_at_the_lock_path_is_refused_and_its_target_untouched() {
        let dir = lock_dir();
        let victim_dir = tempfile::tempdir().unwrap();
        let victim = victim_dir.path().join("passwd");
        std::fs::write(&victim, "root:x:0:0\n").unwrap();
        let link = dir.path().join("peer-db1.lock");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = Lock::peer(dir.path(), "db1", false).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Usage);
        assert!(
            err.message().contains(&link.display().to_string()),
            "{}",
            err.message()
        );
        assert!(err.message().contains("symbolic link"), "{}", err.message());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:x:0:0\n");
        // A dangling one must not be created through either.
        let missing = victim_dir.path().join("created");
        let link2 = dir.path().join("peer-db2.lock");
        std::os::unix::fs::symlink(&missing, &link2).unwrap();
        assert_eq!(
            Lock::peer(dir.path(), "db2", false).unwrap_err().kind,
            ErrorKind::Usage
        );
        assert!(!missing.exists());
        // `list` skips them rather than reading through them.
        assert!(list(dir.path()).unwrap().is_empty());
    }
}
