//! The staging pipeline every peer's files go through: a private incoming dir inside the
//! target dir, the arrivals given their owner and mode there, checked against what the
//! peer listed, and renamed into place only when the whole collect dir is there. A copy cut
//! short, a scp that lies, a full disk or a killed run leave no file under a final name.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{io_cause, write_cause, Error, ErrorKind, Result};
use crate::escape::Escaped;
use crate::fsutil::{is_plain_file_name, open_nofollow, remove_debris, ScratchDir};
use crate::ownership::{Mode, Ownership, Perms, SET_ID_BITS};

use super::resume::Kept;

use crate::config::Verify;

/// A stage's private incoming dir, inside the target dir so that each file is renamed into
/// place whole. It outlives a failed attempt: what arrived is kept for the next attempt at
/// the same peer on the same day (see `resume`), and removed once staged.
pub struct Incoming {
    target_dir: PathBuf,
    kept: Kept,
    /// The copy resumes from what it keeps (SFTP); a copy that copies every file whole
    /// keeps nothing worth keeping.
    resumable: bool,
    /// The target dir holds something else already (a directory could be in a file's way).
    crowded: bool,
}

impl Incoming {
    /// Removes what a killed run left in the target dir, then opens the kept dir of `peer`
    /// on `day` (made if need be), its files handed to `owner` (the local user the copy runs
    /// as) when there is one.
    pub fn create(
        target_dir: &Path,
        owner: Option<Ownership>,
        peer: &str,
        day: &str,
    ) -> Result<Incoming> {
        let crowded = remove_debris(target_dir);
        let kept = Kept::open(target_dir, peer, day, owner).map_err(|err| {
            Error::failed(format!(
                "{}: cannot keep a dir for the copy: {}",
                target_dir.display(),
                write_cause(&err)
            ))
        })?;
        Ok(Incoming {
            target_dir: target_dir.to_path_buf(),
            kept,
            resumable: false,
            crowded,
        })
    }

    pub fn path(&self) -> &Path {
        self.kept.files()
    }

    /// What an earlier attempt left, to resume from.
    pub fn kept(&self) -> &Kept {
        &self.kept
    }

    /// Starts again from an empty dir (after a copy cut off mid-way, or before a copy that
    /// copies every file whole).
    pub fn renew(&mut self) -> Result<()> {
        self.kept.clear().map_err(|err| {
            Error::failed(format!(
                "{}: {}",
                self.kept.files().display(),
                io_cause(&err)
            ))
        })
    }

    pub fn set_resumable(&mut self, resumable: bool) {
        self.resumable = resumable;
    }

    /// Whether what arrived before `err` stopped the copy is kept for the next attempt: when
    /// the copy resumes and was cut on the way (the link lost or stalled, a timeout, a
    /// cancel; a kill -9 keeps it anyway), and something arrived. A copy that failed
    /// otherwise (a full disk, a file that failed verification) starts from nothing again.
    pub fn worth_keeping(&self, err: &Error) -> bool {
        self.resumable
            && matches!(err.kind, ErrorKind::Unreachable | ErrorKind::Canceled)
            && fs::read_dir(self.path()).is_ok_and(|mut entries| entries.next().is_some())
    }

    /// Gives up what arrived: it is not kept for another attempt.
    pub fn discard(self) {
        self.kept.discard();
    }

    fn error(&self, path: &Path, cause: impl std::fmt::Display) -> Error {
        Error::failed(format!("{}: {cause}", path.display()))
    }

    /// Gives every arrival its final owner and mode while it is still private, owner first
    /// and then the mode it ends with: `perms.mode`, else its own less any set-id or
    /// sticky bit (`scp -p` keeps the peer's). Returns each arrival's name and size.
    pub fn settle(&self, perms: &Perms) -> Result<Vec<(OsString, u64)>> {
        let mut arrivals = Vec::new();
        let entries =
            fs::read_dir(self.path()).map_err(|err| self.error(self.path(), io_cause(&err)))?;
        for entry in entries {
            let entry = entry.map_err(|err| self.error(self.path(), io_cause(&err)))?;
            let name = entry.file_name();
            let arrived = entry.path();
            // The copy writes only regular files here, each under one plain name.
            let meta = fs::symlink_metadata(&arrived)
                .map_err(|err| self.error(&arrived, io_cause(&err)))?;
            if !meta.is_file() || !is_plain_file_name(&name) {
                return Err(self.error(
                    &arrived,
                    "the copy left something that is not a regular file; nothing staged",
                ));
            }
            if self.crowded {
                check_not_dir(&self.target_dir.join(&name))?;
            }
            // Nothing to set is the common case of a single stage: no open per file for it.
            if *perms != Perms::default() || meta.mode() & SET_ID_BITS != 0 {
                let file =
                    open_nofollow(&arrived).map_err(|err| self.error(&arrived, io_cause(&err)))?;
                perms
                    .apply(&file, Some(Mode(meta.mode() & 0o777)))
                    .map_err(|cause| self.error(&arrived, cause))?;
            }
            arrivals.push((name, meta.size()));
        }
        Ok(arrivals)
    }

    /// Moves every file to its final name in the target dir.
    pub fn commit(self) -> Result<()> {
        commit_incoming(self.path(), &self.target_dir)?;
        self.discard();
        Ok(())
    }
}

/// A private scratch dir under `parent`, handed to `owner` when there is one.
pub fn scratch_dir(parent: &Path, owner: Option<Ownership>) -> Result<ScratchDir> {
    let scratch = ScratchDir::create_in(parent).map_err(|err| {
        let cause = format!(
            "{}: cannot create a scratch dir: {}",
            parent.display(),
            write_cause(&err)
        );
        // A working dir that is not there (or not ours to write) is a mistake in the
        // settings, not a failure of the peer.
        match err.kind() {
            std::io::ErrorKind::NotFound
            | std::io::ErrorKind::NotADirectory
            | std::io::ErrorKind::PermissionDenied => Error::usage(cause),
            _ => Error::failed(cause),
        }
    })?;
    if let Some(owner) = owner {
        nix::unistd::chown(
            scratch.path(),
            Some(owner.uid.into()),
            Some(owner.gid.into()),
        )
        .map_err(|err| {
            Error::failed(format!(
                "{}: cannot hand the scratch dir to the local user: {err}",
                scratch.path().display()
            ))
        })?;
    }
    Ok(scratch)
}

/// What the peer says its collect dir holds: name, size and (for sha256) hex digest of
/// every file that should arrive.
pub type Listed = HashMap<OsString, (u64, Option<Vec<u8>>)>;

/// What to check the arrivals against.
pub enum Listing {
    Files(Listed),
    /// The peer could not be listed; the reason goes into the report.
    Skipped(String),
}

/// Compares what arrived in `incoming` (names and sizes, as `settle` found them) with what
/// the peer lists. Returns how the check went, for the report; a mismatch is an error
/// naming the files.
pub fn verify(
    incoming: &Path,
    arrivals: Vec<(OsString, u64)>,
    listing: Option<Listing>,
    verify: Verify,
) -> Result<String> {
    let mut listed = match listing {
        None => return Ok("none".to_string()),
        Some(Listing::Skipped(why)) => return Ok(why),
        Some(Listing::Files(files)) => files,
    };
    let mut problems = Vec::new();
    for (name, staged) in arrivals {
        // Quoted and escaped: a name may hold a newline, and the error is one line.
        let shown = format!("{name:?}");
        let Some((size, digest)) = listed.remove(&name) else {
            problems.push(format!("{shown} (not on the peer)"));
            continue;
        };
        if staged != size {
            problems.push(format!(
                "{shown} ({size} bytes on the peer, {staged} staged)"
            ));
        } else if let (Verify::Sha256, Some(digest)) = (verify, digest) {
            let path = incoming.join(&name);
            let io = |err: std::io::Error| {
                Error::failed(format!("{}: {}", path.display(), io_cause(&err)))
            };
            let mut file = open_nofollow(&path).map_err(io)?;
            let ours = crate::fsutil::sha256(&mut file).map_err(io)?;
            let ours: String = ours.iter().map(|byte| format!("{byte:02x}")).collect();
            if ours.as_bytes() != digest.as_slice() {
                problems.push(format!("{shown} (SHA-256 differs)"));
            }
        }
    }
    let mut missing: Vec<_> = listed
        .into_keys()
        .map(|name| format!("{name:?} (did not arrive)"))
        .collect();
    missing.sort();
    problems.extend(missing);
    if problems.is_empty() {
        return Ok(verify.as_str().to_string());
    }
    let count = problems.len();
    problems.truncate(10);
    Err(Error::failed(format!(
        "verification failed for {count} file(s): {}{}; nothing staged",
        Escaped(problems.join(", ")),
        if count > 10 { ", ..." } else { "" }
    )))
}

/// A directory in the target under a staged file's name would make the final rename fail
/// half-way through a commit; it is refused before anything is committed.
pub(crate) fn check_not_dir(target: &Path) -> Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => Err(Error::failed(format!(
            "{}: a directory is in the way of a staged file of that name",
            target.display()
        ))),
        _ => Ok(()),
    }
}

/// Moves every file of a complete incoming dir to its final name in the target dir.
/// rename(2) replaces whatever is there (an older copy, a planted symlink) without following
/// it, and each final name only ever shows a whole file. One pass, streamed.
pub(crate) fn commit_incoming(incoming: &Path, target_dir: &Path) -> Result<()> {
    let fail = |path: &Path, err: std::io::Error| {
        Error::failed(format!(
            "{}: {}",
            path.display(),
            crate::error::io_cause(&err)
        ))
    };
    let from = crate::fsutil::DirFd::open_nofollow(incoming).map_err(|err| fail(incoming, err))?;
    let to = crate::fsutil::DirFd::open(target_dir).map_err(|err| fail(target_dir, err))?;
    from.entries().map_err(|err| fail(incoming, err))?.for_each(
        |err| fail(incoming, err),
        |name, _| {
            from.rename_to(name, &to)
                .map_err(|err| fail(&target_dir.join(name), err))
        },
    )
}
