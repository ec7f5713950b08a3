//! Lock files: one run lock per staging dir and one lock per peer, as barman's lock files.
//!
//! A lock is an `flock(2)` on a file in a private lock dir; the file also holds the owner's pid
//! and what it is doing, for error messages and `peerstage locks`. The kernel drops an flock
//! when its owner dies, so a crashed or `kill -9`'d run never blocks the next one, and no
//! "stale lock" guesswork is needed. Lock files are never unlinked: a waiter may have the old
//! inode open, and unlinking would let it and a newcomer both "hold" the lock.

use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::unistd::{geteuid, Pid};

use crate::error::{io_cause, Error, Result};
use crate::fsutil::is_plain_file_name;

/// Longest readable part of a run lock's file name; with the prefix, hash and suffix the name
/// stays far below the 255-byte limit of most file systems.
const MAX_READABLE: usize = 200;

/// A planted file in the lock dir must not make `list` read without end.
const MAX_CONTENT: u64 = 4096;

/// Where lock files live. Default: as root `/run/peerstage`; otherwise
/// `$XDG_RUNTIME_DIR/peerstage` when that is set and absolute, else `/tmp/peerstage-<uid>`.
pub fn default_lock_dir() -> PathBuf {
    let uid = geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/peerstage");
    }
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
        let runtime = PathBuf::from(runtime);
        // A relative value would make the lock dir depend on the working dir, so two runs
        // started from different places would not see each other's locks.
        if runtime.is_absolute() {
            return runtime.join("peerstage");
        }
    }
    PathBuf::from(format!("/tmp/peerstage-{uid}"))
}

/// Creates the dir (mode 0700, parents of the default as needed) if missing, then checks it
/// is safe: lstat says a real directory (not a symlink), owned by the effective uid, not
/// writable by group or others. Otherwise `Error::usage` naming the dir and the problem.
pub fn prepare_lock_dir(dir: &Path) -> Result<()> {
    let shown = dir.display();
    let mut builder = DirBuilder::new();
    builder.mode(0o700);
    // Only the default's parents are created: a mistyped --lock-dir should fail, not grow a
    // tree of directories somewhere unexpected.
    builder.recursive(dir == default_lock_dir());
    if let Err(err) = builder.create(dir) {
        if err.kind() != io::ErrorKind::AlreadyExists {
            return Err(dir_error(dir, "cannot create it", &err));
        }
    }
    let meta =
        std::fs::symlink_metadata(dir).map_err(|err| dir_error(dir, "cannot examine it", &err))?;
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        return Err(Error::usage(format!(
            "lock dir {shown}: is a symbolic link; refusing to use it"
        )));
    }
    if !file_type.is_dir() {
        return Err(Error::usage(format!(
            "lock dir {shown}: not a directory; refusing to use it"
        )));
    }
    let euid = geteuid().as_raw();
    if meta.uid() != euid {
        return Err(Error::usage(format!(
            "lock dir {shown}: owned by uid {}, not by us ({euid}); refusing to use it",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Error::usage(format!(
            "lock dir {shown}: writable by group or others (mode {mode:04o}); refusing to use it"
        )));
    }
    Ok(())
}

/// A missing parent or a permission problem is a configuration mistake; anything else (a full
/// disk, an I/O error) is trouble on the host.
fn dir_error(dir: &Path, what: &str, err: &io::Error) -> Error {
    let message = format!("lock dir {}: {what}: {}", dir.display(), io_cause(err));
    let errno = Errno::from_raw(err.raw_os_error().unwrap_or(0));
    match errno {
        Errno::EACCES
        | Errno::EPERM
        | Errno::ENOENT
        | Errno::ENOTDIR
        | Errno::EROFS
        | Errno::ELOOP => Error::usage(message),
        _ => Error::failed(message),
    }
}

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
        let path = dir.join(format!("peer-{peer}.lock"));
        let what = format!("peer {peer}");
        Lock::acquire(path, &what, &what, wait).map_err(|err| err.for_peer(peer))
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
        // Emptied while still held, so that a new owner's pid is never wiped and `list` does
        // not show us as the owner of a lock we no longer have.
        if let Err(err) = locked.set_len(0) {
            log::debug!(
                "cannot empty lock file {}: {}",
                self.path.display(),
                io_cause(&err)
            );
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
fn open_lock_file(path: &Path) -> Result<File> {
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

fn still_at_path(file: &File, path: &Path) -> bool {
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

/// Who holds a lock we failed to take.
fn holder_pid(file: &File) -> Option<u32> {
    let (file_pid, _) = read_content(file);
    let kernel_pid = file
        .metadata()
        .ok()
        .and_then(|meta| {
            kernel_holder(
                &std::fs::read_to_string("/proc/locks").ok()?,
                &meta,
                file_pid,
            )
        })
        .unwrap_or(0);
    held_by(file_pid, kernel_pid)
}

/// The owner of a held lock. The kernel records the process that called flock, which need
/// not hold it now (the lock travels with the descriptor into children, as with
/// `flock 9; exec cmd`), so a live pid in the file wins; the kernel's pid serves when the file
/// names nobody alive (a holder that is not peerstage, or one that has not written yet).
fn held_by(file_pid: Option<u32>, kernel_pid: u32) -> Option<u32> {
    match file_pid {
        Some(pid) if pid_alive(pid) => Some(pid),
        _ if kernel_pid > 0 => Some(kernel_pid),
        _ => file_pid,
    }
}

/// Reads `<pid>\n<purpose>\n` from a lock file; an empty or garbled file names nobody.
fn read_content(file: &File) -> (Option<u32>, Option<String>) {
    // pread, not read: the descriptor's offset is shared with whoever else uses it.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while (buf.len() as u64) < MAX_CONTENT {
        match file.read_at(&mut chunk, buf.len() as u64) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.splitn(2, '\n');
    let pid = lines
        .next()
        .and_then(|line| line.trim().parse::<u32>().ok())
        .filter(|pid| *pid > 0);
    let purpose = lines
        .next()
        .map(|rest| rest.strip_suffix('\n').unwrap_or(rest).to_string())
        .filter(|purpose| !purpose.is_empty());
    (pid, purpose)
}

/// Finds the holder of an flock on the file `meta` describes in the text of /proc/locks:
/// None when there is none, Some(0) when there is one but its pid is not visible to us.
///
/// Lines look like `1: FLOCK  ADVISORY  WRITE 4242 fe:00:10010984 0 EOF`, with the device as
/// hex major:minor and the inode in decimal; `->` lines are waiters, not holders. Some file
/// systems (btrfs subvolumes, overlayfs) report a device there that differs from stat's, so
/// an inode-only match is accepted too, but only when it names the pid the file names, which
/// keeps an unrelated file with the same inode number elsewhere from counting.
fn kernel_holder(locks: &str, meta: &Metadata, file_pid: Option<u32>) -> Option<u32> {
    let dev = meta.dev();
    let want_dev = format!(
        "{:02x}:{:02x}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    let want_ino = meta.ino();
    let mut inode_only = None;
    for line in locks.lines() {
        let mut fields = line.split_whitespace().skip(1);
        let (Some(kind), Some(_), Some(_), Some(pid), Some(id)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        if kind != "FLOCK" {
            // Also skips "->" (waiter) lines, whose second field is the arrow.
            continue;
        }
        let Some((device, inode)) = id.rsplit_once(':') else {
            continue;
        };
        if inode.parse::<u64>().ok() != Some(want_ino) {
            continue;
        }
        // Pids of holders outside our pid namespace show as 0 or -1: held, owner unknown.
        let pid = pid
            .parse::<i64>()
            .ok()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0);
        if device.eq_ignore_ascii_case(&want_dev) {
            return Some(pid.unwrap_or(0));
        }
        if pid.is_some() && pid == file_pid {
            inode_only = pid;
        }
    }
    inode_only
}

/// `kill(pid, 0)`: EPERM means the process exists but belongs to someone else.
fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    matches!(
        nix::sys::signal::kill(Pid::from_raw(raw), None),
        Ok(()) | Err(Errno::EPERM)
    )
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

/// One lock file as `list` sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockInfo {
    pub path: PathBuf,
    /// `run <name>` or `peer NAME`, from the file name.
    pub name: String,
    /// The pid the file names; for a held lock whose file names nobody alive, the holder the
    /// kernel reports.
    pub owner_pid: Option<u32>,
    pub held: bool,
    /// None when there is no pid to ask about.
    pub owner_alive: Option<bool>,
    /// What the owner is doing, e.g. `run /var/backup/staging` or `peer db1`.
    pub purpose: Option<String>,
}

/// Every `*.lock` file in `dir`, sorted by name, without disturbing any holder: nothing is
/// locked, written or created, so a run starting meanwhile never fails because of us.
pub fn list(dir: &Path) -> Result<Vec<LockInfo>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // No lock dir yet means no run has taken a lock here.
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(Error::failed(format!(
                "lock dir {}: cannot list it: {}",
                dir.display(),
                io_cause(&err)
            )))
        }
    };
    let kernel_locks = std::fs::read_to_string("/proc/locks").ok();
    let mut infos = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| {
            Error::failed(format!(
                "lock dir {}: cannot list it: {}",
                dir.display(),
                io_cause(&err)
            ))
        })?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(stem) = file_name.strip_suffix(".lock") else {
            continue;
        };
        let path = entry.path();
        // Opening a device node can have effects of its own (a tape rewinds), so only what
        // looks like a regular file is opened; the fstat below catches a swap in between.
        if !entry.file_type().is_ok_and(|kind| kind.is_file()) {
            log::warn!("lock file {}: skipped: not a regular file", path.display());
            continue;
        }
        let file = match open_for_reading(&path) {
            Ok(file) => file,
            Err(err) => {
                log::warn!("lock file {}: skipped: {}", path.display(), io_cause(&err));
                continue;
            }
        };
        let meta = file.metadata().map_err(|err| {
            Error::failed(format!(
                "lock file {}: cannot examine it: {}",
                path.display(),
                io_cause(&err)
            ))
        })?;
        if !meta.file_type().is_file() {
            log::warn!("lock file {}: skipped: not a regular file", path.display());
            continue;
        }
        let (file_pid, purpose) = read_content(&file);
        let (held, owner_pid) = match &kernel_locks {
            Some(locks) => match kernel_holder(locks, &meta, file_pid) {
                Some(kernel_pid) => (true, held_by(file_pid, kernel_pid)),
                None => (false, file_pid),
            },
            None => (false, file_pid),
        };
        let owner_alive = owner_pid.map(pid_alive);
        let held = if kernel_locks.is_some() {
            held
        } else {
            owner_alive == Some(true)
        };
        infos.push(LockInfo {
            path,
            name: lock_name(stem),
            owner_pid,
            held,
            owner_alive,
            purpose,
        });
    }
    infos.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(infos)
}

fn lock_name(stem: &str) -> String {
    if let Some(rest) = stem.strip_prefix("run-") {
        format!("run {rest}")
    } else if let Some(rest) = stem.strip_prefix("peer-") {
        format!("peer {rest}")
    } else {
        stem.to_string()
    }
}

/// Read-only and non-blocking, so that a FIFO planted under a `.lock` name cannot hang us.
fn open_for_reading(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).bits())
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    fn lock_dir() -> tempfile::TempDir {
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
        assert!(path.exists(), "lock files are emptied, never unlinked");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
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
    fn spawn_holder(path: &Path) -> Child {
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
    fn a_dead_owner_left_in_the_file_shows_as_free() {
        let dir = lock_dir();
        let path = dir.path().join("peer-db1.lock");
        let mut child = spawn_holder(&path);
        let pid = child.id();
        nix::sys::signal::kill(Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL).unwrap();
        child.wait().unwrap();
        let infos = list(dir.path()).unwrap();
        assert_eq!(infos[0].owner_pid, Some(pid));
        assert!(!infos[0].held);
        assert_eq!(infos[0].owner_alive, Some(false));
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

    #[test]
    fn prepare_creates_a_private_dir_and_accepts_it_again() {
        let parent = lock_dir();
        let dir = parent.path().join("locks");
        prepare_lock_dir(&dir).unwrap();
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        prepare_lock_dir(&dir).unwrap();
        // Only the default lock dir gets its parents created.
        let err = prepare_lock_dir(&parent.path().join("no/such/locks")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Usage);
    }

    #[test]
    fn unsafe_lock_dirs_are_refused() {
        let parent = lock_dir();
        let open = parent.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o770)).unwrap();
        let err = prepare_lock_dir(&open).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Usage);
        assert!(
            err.message().contains(&open.display().to_string()),
            "{}",
            err.message()
        );
        assert!(
            err.message().contains("writable by group or others"),
            "{}",
            err.message()
        );

        let real = parent.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = parent.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = prepare_lock_dir(&link).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Usage);
        assert!(err.message().contains("symbolic link"), "{}", err.message());

        let file = parent.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(prepare_lock_dir(&file).unwrap_err().kind, ErrorKind::Usage);

        if geteuid().is_root() {
            let theirs = parent.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
            nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
            let err = prepare_lock_dir(&theirs).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Usage);
            assert!(
                err.message().contains("owned by uid 4242, not by us (0)"),
                "{}",
                err.message()
            );
        }
    }

    #[test]
    fn list_reports_held_and_free_locks_without_disturbing_the_holder() {
        let dir = lock_dir();
        let held = Lock::peer(dir.path(), "db1", false).unwrap();
        drop(Lock::run(dir.path(), Path::new("/var/backup/staging"), false).unwrap());
        std::fs::write(dir.path().join("notes.txt"), "not a lock").unwrap();

        let infos = list(dir.path()).unwrap();
        assert_eq!(infos.len(), 2, "{infos:?}");
        assert_eq!(infos[0].name, "peer db1");
        assert_eq!(infos[0].path, held.path());
        assert!(infos[0].held);
        assert_eq!(infos[0].owner_pid, Some(std::process::id()));
        assert_eq!(infos[0].owner_alive, Some(true));
        assert_eq!(infos[0].purpose.as_deref(), Some("peer db1"));
        assert!(
            infos[1].name.starts_with("run var-backup-staging-"),
            "{}",
            infos[1].name
        );
        assert!(!infos[1].held);
        assert_eq!(infos[1].owner_pid, None);
        assert_eq!(infos[1].owner_alive, None);
        assert_eq!(infos[1].purpose, None);

        // Still ours, still recorded: listing neither took nor released anything.
        assert_eq!(
            Lock::peer(dir.path(), "db1", false).unwrap_err().kind,
            ErrorKind::Locked
        );
        let text = std::fs::read_to_string(held.path()).unwrap();
        assert_eq!(text, format!("{}\npeer db1\n", std::process::id()));
        drop(held);
        assert!(!list(dir.path()).unwrap()[0].held);
    }

    #[test]
    fn list_of_a_missing_dir_is_empty() {
        let parent = lock_dir();
        assert!(list(&parent.path().join("none")).unwrap().is_empty());
    }

    #[test]
    fn kernel_holder_parses_proc_locks() {
        let dir = lock_dir();
        let path = dir.path().join("x.lock");
        std::fs::write(&path, "").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let dev = format!(
            "{:02x}:{:02x}",
            nix::sys::stat::major(meta.dev()),
            nix::sys::stat::minor(meta.dev())
        );
        let ino = meta.ino();
        let text = format!(
            "1: POSIX  ADVISORY  WRITE 11 {dev}:{ino} 0 EOF\n\
             2: -> FLOCK  ADVISORY  WRITE 12 {dev}:{ino} 0 EOF\n\
             3: FLOCK  ADVISORY  WRITE 13 ff:ff:{ino} 0 EOF\n"
        );
        assert_eq!(kernel_holder(&text, &meta, None), None);
        assert_eq!(kernel_holder(&text, &meta, Some(13)), Some(13));
        let text = format!("{text}4: FLOCK  ADVISORY  WRITE 14 {dev}:{ino} 0 EOF\n");
        assert_eq!(kernel_holder(&text, &meta, None), Some(14));
    }

    #[test]
    fn default_lock_dir_is_absolute() {
        let dir = default_lock_dir();
        assert!(dir.is_absolute());
        if geteuid().is_root() {
            assert_eq!(dir, Path::new("/run/peerstage"));
        }
    }
}
