//! Who holds which lock, for `peerstage locks` and for the message of a lock we could not
//! take: read from the lock files and /proc/locks without taking, writing or creating
//! anything, so that looking never gets in the way of a run. And the sweep of the files
//! nobody holds, which a run does.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::unistd::Pid;

use crate::error::{io_cause, Error, Result};

/// A planted file in the lock dir must not make `list` read without end.
const MAX_CONTENT: u64 = 4096;

/// Who holds a lock we failed to take.
pub(super) fn holder_pid(file: &File) -> Option<u32> {
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

/// Removes the lock files in `dir` that nobody holds: those of owners that were killed
/// before they could unlink them. Each is locked first and unlinked only while held, so a
/// run taking one meanwhile keeps it (see the module's notes). Returns how many went.
pub fn remove_free(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let is_lock = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.ends_with(".lock"));
        if !is_lock || !entry.file_type().is_ok_and(|kind| kind.is_file()) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = super::open_lock_file(&path) else {
            continue;
        };
        let Ok(locked) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        if super::still_at_path(&locked, &path) && std::fs::remove_file(&path).is_ok() {
            log::debug!("removed the free lock file {}", path.display());
            removed += 1;
        }
        if let Err((locked, _)) = locked.unlock() {
            // Closing the descriptor drops the lock; nix's Drop would panic instead.
            std::mem::forget(locked);
        }
    }
    removed
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
    use crate::lock::tests::{lock_dir, spawn_holder};
    use crate::lock::Lock;

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
    fn remove_free_takes_only_the_files_nobody_holds() {
        let dir = lock_dir();
        let held = Lock::peer(dir.path(), "db1", false).unwrap();
        std::fs::write(dir.path().join("peer-ghost.lock"), "999999\npeer ghost\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a lock").unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "kept").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("peer-link.lock")).unwrap();
        assert_eq!(remove_free(dir.path()), 1);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["notes.txt", "peer-db1.lock", "peer-link.lock", "victim"]
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "kept");
        assert!(held.path().exists());
    }

    #[test]
    fn list_reports_held_and_free_locks_without_disturbing_the_holder() {
        let dir = lock_dir();
        let held = Lock::peer(dir.path(), "db1", false).unwrap();
        // A free lock: the empty file of an owner killed before it could unlink it.
        let free = dir
            .path()
            .join(Lock::run_file_name(Path::new("/var/backup/staging")));
        std::fs::write(&free, "").unwrap();
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
}
