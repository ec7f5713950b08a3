//! What a cut copy keeps for the next attempt at the same peer for the same backup day (a
//! run's date, or today for a stage): the files
//! that arrived, whole or in part, and a record of the size and modification time the peer
//! listed for each. A re-run keeps a whole file whose listing still matches, continues a
//! partial one from its length, and copies the rest again.
//!
//! The kept dir is `.peerstage-partial-<peer>-<day>` in the target dir: private (0700, ours
//! or the local user's the copy runs as, never followed through a link), with the files in
//! `files/` and the record in `listing`.
//! Staging stays all-or-nothing: the files move to their final names only when every one is
//! there and verified, and the kept dir goes with them. Another day's kept dir of the same
//! peer is stale and removed; so is one that is not what we made.
//!
//! A partial file is only ever a prefix of the peer's file: the SFTP copy writes each file
//! in order (see `download`), so its length is how much of it arrived.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::ownership::Ownership;

pub const KEPT_PREFIX: &str = ".peerstage-partial-";
/// The record is read back whole: a hostile or broken one is not followed past this.
const MAX_RECORD: u64 = 64 << 20;

/// What the peer listed for a file when its copy began: size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub size: u64,
    pub mtime: u32,
}

pub struct Kept {
    dir: PathBuf,
    files: PathBuf,
    /// What the earlier attempts recorded, the last record of a name counting.
    before: HashMap<OsString, Listed>,
    record: Mutex<File>,
}

/// Where a kept file stands against the peer's listing.
#[derive(Debug, PartialEq, Eq)]
pub enum State {
    /// Nothing usable: copy it from the start.
    Fresh,
    /// This many bytes of it are here: continue after them.
    From(u64),
    /// All of it is here.
    Whole,
}

impl Kept {
    /// Opens the kept dir of `peer` on `day` in `target_dir`, or makes it; the files dir is
    /// handed to `owner` (the local user the copy runs as). Another day's kept dir of the
    /// same peer is removed.
    pub fn open(
        target_dir: &Path,
        peer: &str,
        day: &str,
        owner: Option<Ownership>,
    ) -> io::Result<Kept> {
        let stem = format!("{KEPT_PREFIX}{}-", file_name_part(peer));
        remove_stale(target_dir, &stem, day);
        let dir = target_dir.join(format!("{stem}{day}"));
        let files = dir.join("files");
        if !is_ours(&dir, owner) || !is_ours(&files, owner) {
            remove_any(&dir)?;
        }
        if !dir.exists() {
            // Both handed to the local user, when there is one: its scp reaches `files/`
            // through the kept dir.
            for made in [&dir, &files] {
                fs::DirBuilder::new().mode(0o700).create(made)?;
                if let Some(owner) = owner {
                    nix::unistd::chown(made, Some(owner.uid.into()), Some(owner.gid.into()))?;
                }
            }
        }
        let record_path = dir.join("listing");
        let record = open_record(&record_path)?;
        let before = read_record(&record_path);
        Ok(Kept {
            dir,
            files,
            before,
            record: Mutex::new(record),
        })
    }

    /// The dir the files arrive in.
    pub fn files(&self) -> &Path {
        &self.files
    }

    /// Whether anything of an earlier attempt is here.
    pub fn resumes(&self) -> bool {
        !self.before.is_empty()
    }

    /// How much of `name` is here, given what the peer lists for it now (`mtime` None: the
    /// peer does not say, and nothing kept can be trusted).
    pub fn state(&self, name: &OsStr, size: u64, mtime: Option<u32>) -> State {
        let Some(mtime) = mtime else {
            return State::Fresh;
        };
        if self.before.get(name) != Some(&Listed { size, mtime }) {
            return State::Fresh;
        }
        match fs::symlink_metadata(self.files.join(name)) {
            Ok(meta) if meta.is_file() && meta.nlink() == 1 && meta.len() == size => State::Whole,
            Ok(meta) if meta.is_file() && meta.nlink() == 1 && meta.len() < size => {
                State::From(meta.len())
            }
            _ => State::Fresh,
        }
    }

    /// Records what the peer listed for `name` as its copy begins, before a byte of it is
    /// written here (None: the peer gave no time, and what arrives cannot be resumed).
    pub fn begin(&self, name: &OsStr, listed: Option<Listed>) -> io::Result<()> {
        let mut line = hex(name.as_bytes());
        match listed {
            Some(Listed { size, mtime }) => line.push_str(&format!(" {size} {mtime}\n")),
            None => line.push_str(" -\n"),
        }
        let mut record = self.record.lock().unwrap_or_else(|p| p.into_inner());
        record.write_all(line.as_bytes())
    }

    /// Removes what arrived in an earlier attempt and is not among `wanted` (the peer no
    /// longer lists it), so that only the peer's files are verified and staged.
    pub fn prune<'a>(&self, wanted: impl Iterator<Item = &'a OsStr>) -> io::Result<()> {
        let wanted: std::collections::HashSet<&OsStr> = wanted.collect();
        for entry in fs::read_dir(&self.files)? {
            let entry = entry?;
            if !wanted.contains(entry.file_name().as_os_str()) {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Empties the kept dir for a copy that starts from nothing (a copy through the rcp
    /// command, which copies every file whole).
    pub fn clear(&mut self) -> io::Result<()> {
        for entry in fs::read_dir(&self.files)? {
            fs::remove_file(entry?.path())?;
        }
        let record = self.record.get_mut().unwrap_or_else(|p| p.into_inner());
        record.set_len(0)?;
        self.before.clear();
        Ok(())
    }

    /// Removes the kept dir (its files were staged, or cannot be trusted).
    pub fn discard(self) {
        if let Err(err) = fs::remove_dir_all(&self.dir) {
            if err.kind() != io::ErrorKind::NotFound {
                log::warn!("cannot remove {}: {err}", self.dir.display());
            }
        }
    }
}

/// Removes the kept dirs `peer` left in its target dirs of the week before `date` below
/// `staging_dir` (a run's daily dirs): a copy cut on one day is not resumed on another.
pub fn remove_earlier(staging_dir: &Path, peer: &str, date: crate::date::Date) {
    let stem = format!("{KEPT_PREFIX}{}-", file_name_part(peer));
    for back in 1..=7 {
        let day = crate::date::Date::from_days(date.to_days() - back);
        let target_dir = staging_dir.join(day.daily_path()).join(peer);
        if target_dir.is_dir() {
            remove_stale(&target_dir, &stem, &date.to_string());
        }
    }
}

/// Whether `dir` holds nothing but what peerstage keeps there between attempts.
pub fn holds_only_kept(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().all(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(KEPT_PREFIX))
        })
    })
}

/// A peer name as part of a file name: what is not a letter, digit, `.`, `_` or `-` is
/// written as `%XX`, so two names never share a kept dir.
fn file_name_part(peer: &str) -> String {
    let mut part = String::new();
    for byte in peer.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
            part.push(byte as char);
        } else {
            part.push_str(&format!("%{byte:02X}"));
        }
    }
    part
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

/// The record, to append to. In a dir the local user owns, only a file of ours that is
/// nowhere else (no link planted in its place) is written.
fn open_record(path: &Path) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)
    };
    let ours = |meta: &fs::Metadata| {
        meta.is_file() && meta.nlink() == 1 && meta.uid() == nix::unistd::geteuid().as_raw()
    };
    if fs::symlink_metadata(path).is_ok_and(|meta| !ours(&meta)) {
        remove_any(path)?;
    }
    let record = open()?;
    if !ours(&record.metadata()?) {
        return Err(io::Error::other(format!(
            "{}: not a file of ours",
            path.display()
        )));
    }
    Ok(record)
}

/// The record of earlier attempts; a line cut short by a kill, or anything else that is
/// not a record, counts for nothing.
fn read_record(path: &Path) -> HashMap<OsString, Listed> {
    let mut before = HashMap::new();
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
    else {
        return before;
    };
    for line in io::BufReader::new(io::Read::take(file, MAX_RECORD))
        .split(b'\n')
        .map_while(Result::ok)
    {
        let Ok(line) = String::from_utf8(line) else {
            continue;
        };
        let mut words = line.split(' ');
        let Some(name) = words.next().and_then(unhex) else {
            continue;
        };
        let name = OsString::from_vec(name);
        let size = words.next().and_then(|word| word.parse().ok());
        let mtime = words.next().and_then(|word| word.parse().ok());
        match (size, mtime, words.next()) {
            (Some(size), Some(mtime), None) => {
                before.insert(name, Listed { size, mtime });
            }
            _ => {
                before.remove(&name);
            }
        }
    }
    before
}

/// Whether `path` is a real dir (not a link), private, and owned by us (or by `owner`).
fn is_ours(path: &Path, owner: Option<Ownership>) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    let uid = owner.map_or_else(|| nix::unistd::geteuid().as_raw(), |owner| owner.uid);
    meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0
}

/// Removes whatever is at `path` (a link itself, not what it names).
fn remove_any(path: &Path) -> io::Result<()> {
    let removed = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(err) => Err(err),
    };
    match removed {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Removes the kept dirs of this peer (`stem`) of days other than `day`.
fn remove_stale(target_dir: &Path, stem: &str, day: &str) {
    let Ok(entries) = fs::read_dir(target_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(other_day) = name.to_str().and_then(|name| name.strip_prefix(stem)) else {
            continue;
        };
        // The day is the last part: a longer peer name with this one as its start does not
        // match a date.
        if other_day == day || !is_day(other_day) {
            continue;
        }
        match remove_any(&entry.path()) {
            Ok(()) => log::info!(
                "removed {}, kept from a copy of another day",
                entry.path().display()
            ),
            Err(err) => log::warn!("cannot remove {}: {err}", entry.path().display()),
        }
    }
}

fn is_day(text: &str) -> bool {
    text.len() == 10
        && text
            .bytes()
            .enumerate()
            .all(|(at, byte)| matches!(at, 4 | 7) && byte == b'-' || byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_file_is_whole_partial_or_fresh_by_its_record_and_length() {
        let target = tempfile::tempdir().unwrap();
        let kept = Kept::open(target.path(), "db 1", "2026-12-02", None).unwrap();
        assert!(kept
            .files()
            .ends_with(".peerstage-partial-db%201-2026-12-02/files"));
        assert!(!kept.resumes());
        let listed = |size| Some(Listed { size, mtime: 7 });
        kept.begin(OsStr::new("a"), listed(4)).unwrap();
        kept.begin(OsStr::new("b"), listed(10)).unwrap();
        kept.begin(OsStr::new("c"), listed(3)).unwrap();
        kept.begin(OsStr::new("c"), None).unwrap();
        fs::write(kept.files().join("a"), "aaaa").unwrap();
        fs::write(kept.files().join("b"), "bbb").unwrap();
        fs::write(kept.files().join("c"), "ccc").unwrap();
        drop(kept);
        // A cut record line counts for nothing.
        let record = target
            .path()
            .join(".peerstage-partial-db%201-2026-12-02/listing");
        fs::OpenOptions::new()
            .append(true)
            .open(&record)
            .unwrap()
            .write_all(b"64 9")
            .unwrap();

        let kept = Kept::open(target.path(), "db 1", "2026-12-02", None).unwrap();
        assert!(kept.resumes());
        assert_eq!(kept.state(OsStr::new("a"), 4, Some(7)), State::Whole);
        assert_eq!(kept.state(OsStr::new("b"), 10, Some(7)), State::From(3));
        // Changed on the peer since: copied again.
        assert_eq!(kept.state(OsStr::new("b"), 10, Some(8)), State::Fresh);
        assert_eq!(kept.state(OsStr::new("b"), 11, Some(7)), State::Fresh);
        assert_eq!(kept.state(OsStr::new("a"), 4, None), State::Fresh);
        // Its last record said the time was not known.
        assert_eq!(kept.state(OsStr::new("c"), 3, Some(7)), State::Fresh);
        assert_eq!(kept.state(OsStr::new("d"), 1, Some(7)), State::Fresh);
        kept.prune([OsStr::new("a"), OsStr::new("b")].into_iter())
            .unwrap();
        assert!(!kept.files().join("c").exists());
        kept.discard();
        assert_eq!(fs::read_dir(target.path()).unwrap().count(), 0);
    }

    #[test]
    fn another_days_kept_dir_and_one_not_ours_are_removed() {
        let target = tempfile::tempdir().unwrap();
        let old = Kept::open(target.path(), "db", "2026-12-01", None).unwrap();
        old.begin(OsStr::new("a"), Some(Listed { size: 1, mtime: 1 }))
            .unwrap();
        drop(old);
        // Another peer whose name starts the same is left alone.
        let other = Kept::open(target.path(), "db-2", "2026-12-01", None).unwrap();
        drop(other);
        let kept = Kept::open(target.path(), "db", "2026-12-02", None).unwrap();
        assert!(!kept.resumes());
        let mut names: Vec<_> = fs::read_dir(target.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".peerstage-partial-db-2-2026-12-01",
                ".peerstage-partial-db-2026-12-02"
            ]
        );
        drop(kept);
        // Made readable by others: not trusted, started again.
        let dir = target.path().join(".peerstage-partial-db-2026-12-02");
        let kept = Kept::open(target.path(), "db", "2026-12-02", None).unwrap();
        kept.begin(OsStr::new("a"), Some(Listed { size: 1, mtime: 1 }))
            .unwrap();
        drop(kept);
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let kept = Kept::open(target.path(), "db", "2026-12-02", None).unwrap();
        assert!(!kept.resumes());
        // A link in its place is not followed.
        drop(kept);
        let elsewhere = tempfile::tempdir().unwrap();
        fs::remove_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &dir).unwrap();
        let kept = Kept::open(target.path(), "db", "2026-12-02", None).unwrap();
        assert!(fs::symlink_metadata(&dir).unwrap().is_dir());
        assert!(elsewhere.path().exists());
        kept.discard();
    }

    #[test]
    fn a_run_removes_what_a_peer_kept_on_the_days_before() {
        let staging = tempfile::tempdir().unwrap();
        let yesterday = staging.path().join("2026/12/01/db");
        fs::create_dir_all(&yesterday).unwrap();
        Kept::open(&yesterday, "db", "2026-12-01", None).unwrap();
        fs::write(yesterday.join("staged.tar"), "x").unwrap();
        assert!(!holds_only_kept(&yesterday));
        let today = crate::date::Date::parse("2026-12-02").unwrap();
        remove_earlier(staging.path(), "db", today);
        let left: Vec<_> = fs::read_dir(&yesterday)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(left, ["staged.tar"]);
        fs::remove_file(yesterday.join("staged.tar")).unwrap();
        Kept::open(&yesterday, "db", "2026-12-01", None).unwrap();
        assert!(holds_only_kept(&yesterday));
    }
}
