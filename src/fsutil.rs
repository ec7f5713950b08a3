//! File-system primitives that never follow a link they did not create: exclusive temp files
//! renamed into place, and private scratch dirs that are removed when dropped.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// Prefix of every temp file and dir peerstage creates inside a target or collect dir, so that
/// debris from a killed run is recognisable and can be cleaned by a later one.
pub const TEMP_PREFIX: &str = ".peerstage-tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written under a temporary name; it appears under its final name only through
/// `commit`, and is removed when dropped uncommitted.
pub struct TempFile {
    pub file: File,
    path: PathBuf,
    committed: bool,
}

impl TempFile {
    /// Creates an empty file in `dir` with `O_EXCL | O_NOFOLLOW` and mode 0600, so nothing
    /// planted there can be written through and nobody else can read it before it is final.
    pub fn create_in(dir: &Path) -> io::Result<TempFile> {
        loop {
            let name = format!(
                "{TEMP_PREFIX}{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let path = dir.join(name);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc_flags::O_NOFOLLOW | libc_flags::O_CLOEXEC)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        file,
                        path,
                        committed: false,
                    })
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file over `dir/name`. rename(2) replaces whatever is there (a file, or a
    /// planted symlink) without following it, and the final name never shows a partial file.
    pub fn commit(mut self, final_path: &Path) -> io::Result<()> {
        fs::rename(&self.path, final_path)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `dir/name` whole: contents into a temp file, owner and mode applied, then renamed
/// into place. Used for indicators and reports, which must never be seen half-written.
pub fn write_file_atomically(
    dir: &Path,
    name: &str,
    contents: &[u8],
    perms: &crate::ownership::Perms,
    default_mode: crate::ownership::Mode,
) -> Result<(), String> {
    let path = dir.join(name);
    let mut temp = TempFile::create_in(dir)
        .map_err(|err| format!("{}: {}", dir.display(), crate::error::io_cause(&err)))?;
    io::Write::write_all(&mut temp.file, contents)
        .map_err(|err| format!("{}: {}", path.display(), crate::error::io_cause(&err)))?;
    perms
        .apply(&temp.file, Some(default_mode))
        .map_err(|cause| format!("{}: {cause}", path.display()))?;
    temp.commit(&path)
        .map_err(|err| format!("{}: {}", path.display(), crate::error::io_cause(&err)))
}

/// A private directory (mode 0700) created with mkdtemp(3) and removed with its contents when
/// dropped.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn create_in(parent: &Path) -> io::Result<ScratchDir> {
        let template = parent.join(format!("{TEMP_PREFIX}{}-XXXXXX", std::process::id()));
        let path = nix::unistd::mkdtemp(&template).map_err(io::Error::from)?;
        Ok(ScratchDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // remove_dir_all does not follow symlinks inside the tree.
        if let Err(err) = fs::remove_dir_all(&self.path) {
            if err.kind() != io::ErrorKind::NotFound {
                log::warn!("cannot remove scratch dir {}: {err}", self.path.display());
            }
        }
    }
}

/// Removes what a killed peerstage left in `dir`: temp files and dirs whose name carries the
/// pid of a process that no longer exists. A live pid's debris is left alone (it may be
/// another peerstage at work, or a recycled pid; either way it is not ours to take).
/// Returns whether the dir holds anything else (anything a stage could collide with).
pub fn remove_debris(dir: &Path) -> bool {
    let mut others = false;
    let Ok(entries) = fs::read_dir(dir) else {
        return true;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|name| name.strip_prefix(TEMP_PREFIX))
        else {
            others = true;
            continue;
        };
        let Some(pid) = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if !gone || pid <= 0 {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(kind) if kind.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(err) => Err(err),
        };
        match removed {
            Ok(()) => log::info!(
                "removed {} left by a killed run (pid {pid})",
                path.display()
            ),
            // Another user's debris in a shared dir such as /tmp is not ours to remove.
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                log::debug!("cannot remove {}: {err}", path.display())
            }
            Err(err) => log::warn!(
                "cannot remove {} left by a killed run: {err}",
                path.display()
            ),
        }
    }
    others
}

/// Opens a file for reading without following a symlink at its final component.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags::O_NOFOLLOW | libc_flags::O_CLOEXEC)
        .open(path)
}

/// An open directory that files are opened, created and renamed relative to (the *at(2)
/// calls): the kernel does not walk the whole path again for every file of a big collect dir,
/// and a directory swapped for another mid-stage cannot redirect the files still to come.
pub struct DirFd {
    fd: OwnedFd,
}

impl DirFd {
    /// Opens `path` as a directory; a symlink naming the dir itself is followed, as a path
    /// given by the administrator is.
    pub fn open(path: &Path) -> io::Result<DirFd> {
        Self::open_with(path, OFlag::empty())
    }

    /// Opens a dir peerstage created itself; a symlink planted in its place is refused.
    pub fn open_nofollow(path: &Path) -> io::Result<DirFd> {
        Self::open_with(path, OFlag::O_NOFOLLOW)
    }

    fn open_with(path: &Path, extra: OFlag) -> io::Result<DirFd> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | extra;
        let fd = nix::fcntl::open(path, flags, Mode::empty()).map_err(io::Error::from)?;
        Ok(DirFd { fd })
    }

    /// The entries of the dir, read a few at a time (memory stays flat in their number).
    /// `.` and `..` are left out.
    pub fn entries(&self) -> io::Result<DirEntries> {
        let dir = nix::dir::Dir::from_fd(self.fd.try_clone()?).map_err(io::Error::from)?;
        Ok(DirEntries { dir })
    }

    /// Opens `name` for reading without following a symlink and without blocking: a fifo
    /// or device swapped in for a listed file since the dir was read would otherwise hold
    /// the open forever. The caller checks with fstat what it got.
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let fd =
            nix::fcntl::openat(&self.fd, name, flags, Mode::empty()).map_err(io::Error::from)?;
        Ok(File::from(fd))
    }

    /// Creates `name` exclusively (nothing planted there is written through) with `mode`
    /// (less the umask).
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(&self.fd, name, flags, Mode::from_bits_truncate(mode))
            .map_err(io::Error::from)?;
        Ok(File::from(fd))
    }

    /// Opens `name`, a file an earlier attempt created here, to write more of it; a
    /// symlink is refused, and the file is not truncated.
    pub fn open_to_continue(&self, name: &OsStr) -> io::Result<File> {
        let flags = OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd =
            nix::fcntl::openat(&self.fd, name, flags, Mode::empty()).map_err(io::Error::from)?;
        Ok(File::from(fd))
    }

    /// Removes the file `name` if it is there (a symlink itself, not what it names).
    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        match nix::unistd::unlinkat(&self.fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// The type of `name` itself (a symlink is reported as one), for file systems whose
    /// directory entries do not carry it.
    pub fn entry_kind(&self, name: &OsStr) -> io::Result<EntryKind> {
        let stat =
            nix::sys::stat::fstatat(&self.fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(io::Error::from)?;
        let format =
            nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode) & nix::sys::stat::SFlag::S_IFMT;
        Ok(if format == nix::sys::stat::SFlag::S_IFREG {
            EntryKind::File
        } else if format == nix::sys::stat::SFlag::S_IFDIR {
            EntryKind::Dir
        } else if format == nix::sys::stat::SFlag::S_IFLNK {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        })
    }

    /// The owner (uid) of the dir itself.
    pub fn owner(&self) -> io::Result<u32> {
        let stat = nix::sys::stat::fstat(&self.fd).map_err(io::Error::from)?;
        Ok(stat.st_uid)
    }

    /// Renames `name` in this dir to the same name in `target`, replacing whatever is there
    /// without following it.
    pub fn rename_to(&self, name: &OsStr, target: &DirFd) -> io::Result<()> {
        nix::fcntl::renameat(&self.fd, name, &target.fd, name).map_err(io::Error::from)
    }
}

/// What a directory entry is, as far as staging cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

pub struct DirEntries {
    dir: nix::dir::Dir,
}

impl DirEntries {
    /// Calls `each` with the name of every entry and its kind when the file system says it
    /// (None: ask `DirFd::entry_kind`). Stops at the first error of `each`, or of reading the
    /// dir (turned into an E by `read_error`).
    pub fn for_each<E>(
        &mut self,
        read_error: impl Fn(io::Error) -> E,
        mut each: impl FnMut(&OsStr, Option<EntryKind>) -> Result<(), E>,
    ) -> Result<(), E> {
        use nix::dir::Type;
        use std::os::unix::ffi::OsStrExt;
        for entry in self.dir.iter() {
            let entry = entry.map_err(|errno| read_error(errno.into()))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let kind = entry.file_type().map(|kind| match kind {
                Type::File => EntryKind::File,
                Type::Directory => EntryKind::Dir,
                Type::Symlink => EntryKind::Symlink,
                _ => EntryKind::Other,
            });
            each(name, kind)?;
        }
        Ok(())
    }
}

/// The mode a new file really gets when created with `mode`, if that is exactly `mode`:
/// then no chmod is needed after creating it. None when the umask would take bits away or
/// `mode` has set-id or sticky bits (open(2) does not set those reliably).
pub fn born_with(mode: u32) -> Option<u32> {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    // Read from /proc rather than with umask(2), which can only be read by changing it.
    let umask = (*UMASK.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    }))?;
    (mode & !0o777 == 0 && mode & umask == 0).then_some(mode)
}

/// Copies the first `len` bytes of `input` to `output` in the kernel: copy_file_range(2)
/// with the length known from the caller's fstat, where io::copy would stat both files again
/// and call once more to see the end. In pieces of 8 MiB, each counted into `moved` (a
/// watchdog tells a stalled copy from a slow one by it). Falls back to read and write where
/// the kernel cannot (another file system type, an old kernel). Returns the bytes copied:
/// fewer than `len` if the file shrank meanwhile, never more.
pub fn copy_contents(
    input: &mut File,
    output: &mut File,
    len: u64,
    moved: &AtomicU64,
) -> io::Result<u64> {
    use nix::errno::Errno;
    const PIECE: u64 = 8 << 20;
    let mut copied = 0u64;
    while copied < len {
        let chunk = usize::try_from((len - copied).min(PIECE)).unwrap_or(usize::MAX);
        match nix::fcntl::copy_file_range(&*input, None, &*output, None, chunk) {
            Ok(0) => return Ok(copied),
            Ok(n) => {
                copied += n as u64;
                moved.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(Errno::EINTR) => {}
            Err(
                Errno::EXDEV | Errno::ENOSYS | Errno::EINVAL | Errno::EOPNOTSUPP | Errno::EPERM,
            ) if copied == 0 => {
                return copy_by_hand(input, output, len, moved);
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(copied)
}

fn copy_by_hand(
    input: &mut File,
    output: &mut File,
    len: u64,
    moved: &AtomicU64,
) -> io::Result<u64> {
    use io::{Read, Write};
    let mut buffer = vec![0u8; 256 * 1024];
    let mut copied = 0u64;
    while copied < len {
        let want = usize::try_from(len - copied)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        let count = match input.read(&mut buffer[..want]) {
            Ok(0) => break,
            Ok(count) => count,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        output.write_all(&buffer[..count])?;
        copied += count as u64;
        moved.fetch_add(count as u64, Ordering::Relaxed);
    }
    Ok(copied)
}

/// SHA-256 of everything from the reader's position on.
pub fn sha256(reader: &mut impl io::Read) -> io::Result<[u8; 32]> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return Ok(hasher.finalize().into()),
            Ok(n) => hasher.update(&buffer[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// A plain file name: not empty, not `.` or `..`, no `/` and no NUL. Everything that comes
/// from a peer or a user and becomes one component of a local path is checked with this.
pub fn is_plain_file_name(name: &OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes != b"."
        && bytes != b".."
        && !bytes.contains(&b'/')
        && !bytes.contains(&0)
}

/// The few open(2) flags we need, from nix so that we do not depend on libc directly.
mod libc_flags {
    pub const O_NOFOLLOW: i32 = nix::fcntl::OFlag::O_NOFOLLOW.bits();
    pub const O_CLOEXEC: i32 = nix::fcntl::OFlag::O_CLOEXEC.bits();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_id_and_sticky_modes_always_need_a_chmod() {
        for mode in [0o4755, 0o2750, 0o1777, 0o7777] {
            assert_eq!(born_with(mode), None, "{mode:o}");
        }
    }

    #[test]
    fn plain_file_names() {
        for good in ["a", "cback.stage", ".hidden", "a b", "..."] {
            assert!(is_plain_file_name(OsStr::new(good)), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "/", "a\0b"] {
            assert!(!is_plain_file_name(OsStr::new(bad)), "{bad:?}");
        }
    }

    #[test]
    fn temp_file_appears_only_on_commit_and_replaces_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let target = dir.path().join("final");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        let mut temp = TempFile::create_in(dir.path()).unwrap();
        io::Write::write_all(&mut temp.file, b"new").unwrap();
        temp.commit(&target).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert!(!fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn debris_of_dead_processes_is_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let dead_dir = dir.path().join(format!("{TEMP_PREFIX}{dead}-abcdef"));
        fs::create_dir(&dead_dir).unwrap();
        fs::write(dead_dir.join("partial"), "x").unwrap();
        fs::write(dir.path().join(format!("{TEMP_PREFIX}{dead}-7")), "x").unwrap();
        let live = dir
            .path()
            .join(format!("{TEMP_PREFIX}{}-1", std::process::id()));
        fs::write(&live, "x").unwrap();
        fs::write(dir.path().join("keep"), "x").unwrap();
        remove_debris(dir.path());
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        left.sort();
        let mut expected = vec![live, dir.path().join("keep")];
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn dropped_temp_file_and_scratch_dir_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        drop(TempFile::create_in(dir.path()).unwrap());
        let scratch = ScratchDir::create_in(dir.path()).unwrap();
        fs::write(scratch.path().join("x"), "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(scratch.path()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        drop(scratch);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
