//! The lock dir: where lock files live, and the checks that keep anyone else from planting
//! or removing one there.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::geteuid;

use crate::error::{io_cause, Error, Result};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::lock::tests::lock_dir;
    use std::os::unix::fs::PermissionsExt;

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
    fn default_lock_dir_is_absolute() {
        let dir = default_lock_dir();
        assert!(dir.is_absolute());
        if geteuid().is_root() {
            assert_eq!(dir, Path::new("/run/peerstage"));
        }
    }
}
