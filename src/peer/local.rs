//! A peer on the master itself, staged with plain file-system copies.
//!
//! A local collect dir may be writable by an unprivileged user while root stages it, so the
//! files in it are untrusted: each is opened without following links and without blocking,
//! and what the open got (fstat) decides. Anything but a regular file is skipped with a
//! warning; a hard link to another owner's file is skipped too (the collect dir's owner may
//! have linked a file they cannot read, such as /etc/shadow, for root to copy out); a file
//! is copied up to the size it had when its copy began, never more, and a file that changes
//! size meanwhile fails the stage; no staged file keeps a set-uid, set-gid or sticky bit.
//! The copy runs in a thread of its own that a watchdog gives up on when it moves no byte
//! for the idle time or the peer's deadline passes: a read that hangs (a hung NFS or FUSE
//! mount under the collect dir) cannot hold the run. Under a bandwidth limit (a collect dir
//! on NFS crosses a link too) the copy goes in pieces paced to the limit.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::config::{PeerConfig, DEFAULT_COLLECT_INDICATOR};
use crate::error::{io_cause, write_cause, Error, Result};
use crate::fsutil::{
    born_with, copy_contents, remove_debris, sha256, write_file_atomically, DirFd, EntryKind,
    ScratchDir,
};
use crate::limits::Limits;
use crate::ownership::{Mode, Perms};
use crate::process::quote_os;
use crate::progress::Meter;
use crate::rate::Pace;

use super::checks::{check_indicator_name, check_target_dir, print_dry_run};
use super::interface::{Peer, PeerOptions, Presence, StageReport};
use super::staging::{check_not_dir, commit_incoming};
use crate::config::Verify;

pub struct LocalPeer {
    config: PeerConfig,
    options: PeerOptions,
}

impl LocalPeer {
    pub fn new(config: PeerConfig, options: PeerOptions) -> LocalPeer {
        LocalPeer { config, options }
    }

    fn error(&self, path: &Path, cause: impl std::fmt::Display) -> String {
        format!("{}: {cause}", path.display())
    }
}

/// Where a stage's copy stands, for the watchdog that may give up on it.
const WORKING: u8 = 0;
const ABANDONED: u8 = 1;
const COMMITTING: u8 = 2;

/// One stage of a local collect dir: everything it needs, owned, so that it can run in a
/// thread the watchdog can walk away from.
struct LocalStage {
    peer: String,
    collect_dir: PathBuf,
    target_dir: PathBuf,
    perms: Perms,
    verify: Verify,
    max_entries: u64,
    dry_run: bool,
    /// Files and bytes copied so far, for the progress line and the watchdog.
    meter: Arc<Meter>,
    /// Bytes read to be hashed: a slow verify is not a stall either.
    hashed: AtomicU64,
    state: AtomicU8,
    /// The bandwidth limits the copy is held to (a collect dir on NFS crosses a link too).
    pace: Pace,
}

impl LocalStage {
    fn error(&self, path: &Path, cause: impl std::fmt::Display) -> Error {
        Error::failed(format!("{}: {cause}", path.display()))
    }

    fn abandoned(&self) -> bool {
        self.state.load(Ordering::SeqCst) == ABANDONED
    }

    fn run(&self) -> Result<StageReport> {
        let collect_dir = &self.collect_dir;
        let target_dir = &self.target_dir;
        let mut incoming: Option<(DirFd, ScratchDir)> = None;
        // Only a target that already holds something can have a directory in a file's way;
        // a fresh one (the usual case) spares a stat per file.
        let crowded = self.dry_run || remove_debris(target_dir);
        // Streamed: only a few entries are held at a time, whatever the size of the collect dir.
        let collect = DirFd::open(collect_dir).map_err(|err| {
            if err.kind() == io::ErrorKind::NotFound {
                // Nothing to stage and nothing changed: a wrong path, like a missing target.
                Error::usage(
                    "collect dir does not exist (a mistyped path, or a disk not mounted?); nothing staged",
                )
                .at(collect_dir.display())
            } else {
                self.error(collect_dir, io_cause(&err))
            }
        })?;
        let collect_owner = collect
            .owner()
            .map_err(|err| self.error(collect_dir, io_cause(&err)))?;
        let mut entries = collect
            .entries()
            .map_err(|err| self.error(collect_dir, io_cause(&err)))?;
        let mut report = StageReport::default();
        let mut seen = 0u64;
        let read_error = |err: io::Error| self.error(collect_dir, io_cause(&err));
        entries.for_each(read_error, |name, kind| {
            crate::cancel::check().map_err(|err| err.for_peer(&self.peer))?;
            if self.abandoned() {
                return Err(Error::failed("abandoned"));
            }
            seen += 1;
            if seen > self.max_entries {
                return Err(self.error(
                    collect_dir,
                    format!(
                        "holds more than {} entries (max_entries); nothing staged",
                        self.max_entries
                    ),
                ));
            }
            let kind = match kind {
                Some(kind) => kind,
                None => collect
                    .entry_kind(name)
                    .map_err(|err| self.error(&collect_dir.join(name), io_cause(&err)))?,
            };
            if kind != EntryKind::File {
                self.skip(&mut report, name, kind_words(kind));
                return Ok(());
            }
            if self.dry_run {
                let source = collect_dir.join(name);
                let target = target_dir.join(name);
                print_dry_run(format_args!(
                    "cp -- {} {}",
                    quote_os(source.as_os_str()),
                    quote_os(target.as_os_str())
                ));
                print_perms(&self.perms, &target);
                report.files += 1;
                report.bytes += fs::symlink_metadata(&source)
                    .map(|meta| meta.len())
                    .unwrap_or(0);
                return Ok(());
            }
            if crowded {
                check_not_dir(&target_dir.join(name))?;
            }
            if incoming.is_none() {
                let scratch = ScratchDir::create_in(target_dir)
                    .and_then(|scratch| Ok((DirFd::open_nofollow(scratch.path())?, scratch)))
                    .map_err(|err| self.error(target_dir, write_cause(&err)))?;
                incoming = Some(scratch);
            }
            if let Some((incoming_dir, _)) = &incoming {
                match self.copy_one(&collect, collect_owner, name, incoming_dir)? {
                    Copied::Bytes(bytes) => {
                        report.bytes += bytes;
                        report.files += 1;
                        report.collect_indicator |= name == DEFAULT_COLLECT_INDICATOR;
                    }
                    Copied::Skipped(why) => self.skip(&mut report, name, &why),
                }
            }
            Ok(())
        })?;
        if report.files == 0 {
            return Err(self.error(collect_dir, "no files to stage (the collect dir is empty)"));
        }
        if let Some((_, incoming)) = &incoming {
            if self
                .state
                .compare_exchange(WORKING, COMMITTING, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                return Err(Error::failed("abandoned"));
            }
            commit_incoming(incoming.path(), target_dir)?;
        }
        report.verified = self.verify.as_str().to_string();
        Ok(report)
    }

    fn skip(&self, report: &mut StageReport, name: &OsStr, why: &str) {
        let source = self.collect_dir.join(name);
        log::warn!("peer {}: skipped {}: {why}", self.peer, source.display());
        report.skipped.push(format!("{} ({why})", source.display()));
    }

    /// Copies one file into the incoming dir: contents in-kernel (copy_file_range), then
    /// owner and mode on the open file. The incoming dir is private, so the file is never
    /// visible with a wrong owner or mode, and it reaches its final name only when the whole
    /// collect dir has been copied. Files are opened relative to the open dirs, and a file
    /// created with its final mode needs no chmod: a small file costs 7 system calls.
    fn copy_one(
        &self,
        collect: &DirFd,
        collect_owner: u32,
        name: &OsStr,
        incoming: &DirFd,
    ) -> Result<Copied> {
        let source = || self.collect_dir.join(name);
        // Errors name the file as it will be called in the target, not its private temp name.
        let shown = || self.target_dir.join(name);
        let mut input = collect
            .open_file(name)
            .map_err(|err| self.error(&source(), io_cause(&err)))?;
        let meta = input
            .metadata()
            .map_err(|err| self.error(&source(), io_cause(&err)))?;
        if !meta.is_file() {
            // Swapped for something else since the directory was read.
            return Ok(Copied::Skipped(format!(
                "{} (swapped in since the collect dir was read)",
                kind_words(kind_of(&meta))
            )));
        }
        if meta.nlink() > 1 && meta.uid() != collect_owner {
            return Ok(Copied::Skipped(format!(
                "a hard link to a file of uid {} in a collect dir of uid {collect_owner}: \
                 not staged (it may be a link to a file its owner cannot read)",
                meta.uid()
            )));
        }
        let wanted = self
            .perms
            .mode
            .unwrap_or(Mode(meta.permissions().mode() & 0o777));
        let born_with = born_with(wanted.0);
        let mut output = incoming
            .create_file(name, born_with.unwrap_or(0o600))
            .map_err(|err| self.error(&shown(), write_cause(&err)))?;
        let listed = meta.len();
        let bytes = self
            .copy_paced(&mut input, &mut output, listed)
            .map_err(|err| match crate::cancel::check() {
                Err(canceled) => canceled.for_peer(&self.peer),
                Ok(()) => self.error(&shown(), write_cause(&err)),
            })?;
        // The copy stopped at the size the file had when it began; a file that grew or
        // shrank meanwhile is not what its owner meant to stage.
        let now = input
            .metadata()
            .map_err(|err| self.error(&source(), io_cause(&err)))?
            .len();
        if bytes != listed || now != listed {
            return Err(self.error(
                &source(),
                format!(
                    "changed while being copied ({listed} bytes when the copy began, {now} now); nothing staged"
                ),
            ));
        }
        if self.verify == Verify::Sha256 {
            let copied = incoming
                .open_file(name)
                .and_then(|copied| sha256(&mut Counting(copied, &self.hashed)))
                .map_err(|err| self.error(&shown(), io_cause(&err)))?;
            let original = input
                .seek(SeekFrom::Start(0))
                .and_then(|_| sha256(&mut Counting(&mut input, &self.hashed).take(listed)))
                .map_err(|err| self.error(&source(), io_cause(&err)))?;
            if copied != original {
                return Err(self.error(&source(), "SHA-256 of the staged copy differs"));
            }
        }
        // Owner first, then the mode the file ends with (a file born with its mode has no
        // set-id bit for a chown to touch, and needs no chmod).
        let rest = Perms {
            owner: self.perms.owner,
            mode: born_with.is_none().then_some(wanted),
        };
        rest.apply(&output, None)
            .map_err(|cause| self.error(&shown(), cause))?;
        self.meter.file_done();
        Ok(Copied::Bytes(bytes))
    }
}

impl LocalStage {
    /// Copies `len` bytes as `copy_contents` does; under a bandwidth limit, in pieces of a
    /// tenth of a second at the tightest rate (at most 1 MiB), each booked against every
    /// limit before it is copied, the next held back until the booking ends.
    fn copy_paced(&self, input: &mut fs::File, output: &mut fs::File, len: u64) -> io::Result<u64> {
        let moved = &self.meter.bytes_done;
        let Some(rate) = self.pace.rate() else {
            return copy_contents(input, output, len, moved);
        };
        let piece = (rate.bytes_per_second() / 10).clamp(1, 1 << 20);
        let mut copied = 0;
        while copied < len {
            let want = (len - copied).min(piece);
            let until = Instant::now() + self.pace.reserve(want);
            let count = copy_contents(input, output, want, moved)?;
            copied += count;
            if count < want {
                break;
            }
            self.hold_until(until)?;
        }
        Ok(copied)
    }

    /// Sleeps until `until`, in short naps that notice a cancel or a watchdog that gave up.
    fn hold_until(&self, until: Instant) -> io::Result<()> {
        loop {
            if self.abandoned() || crate::cancel::check().is_err() {
                return Err(io::Error::other("the copy was stopped"));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
}

enum Copied {
    Bytes(u64),
    Skipped(String),
}

/// A reader that counts what it reads into a progress counter.
struct Counting<'a, R>(R, &'a AtomicU64);

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = self.0.read(buf)?;
        self.1.fetch_add(count as u64, Ordering::Relaxed);
        Ok(count)
    }
}

fn kind_words(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Symlink => "symbolic link",
        EntryKind::Dir => "directory",
        _ => "not a regular file",
    }
}

fn kind_of(meta: &fs::Metadata) -> EntryKind {
    let kind = meta.file_type();
    if kind.is_dir() {
        EntryKind::Dir
    } else if kind.is_symlink() {
        EntryKind::Symlink
    } else if kind.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

/// How often the watchdog looks at a local copy's progress.
const WATCH_TICK: Duration = Duration::from_millis(250);

/// Runs `stage` in a thread of its own and waits for it within `limits`. When a limit passes
/// (or Ctrl-C comes), the thread is told to stop and left behind: it may be stuck in a read
/// that never returns, which nothing can interrupt. It checks before each file and before
/// renaming anything into place, so it stages nothing once given up on; its private incoming
/// dir goes when it ends, or as debris of a dead pid with the next stage.
fn watched(stage: LocalStage, limits: Limits) -> Result<StageReport> {
    let stage = Arc::new(stage);
    let worker = Arc::clone(&stage);
    let (done, result) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("stage {}", stage.peer))
        .spawn(move || {
            let _ = done.send(worker.run());
        })
        .map_err(|err| Error::failed(format!("cannot start a copy: {err}")))?;
    let mut moved_at = Instant::now();
    let mut last = 0;
    loop {
        let now = Instant::now();
        let until = limits
            .until(moved_at)
            .map_or(now + WATCH_TICK, |until| until.min(now + WATCH_TICK));
        match result.recv_timeout(until.saturating_duration_since(now)) {
            Ok(report) => return report,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::failed("the copy ended without a result".to_string()))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        let moved =
            stage.meter.bytes_done.load(Ordering::Relaxed) + stage.hashed.load(Ordering::Relaxed);
        if moved != last {
            last = moved;
            moved_at = now;
        }
        let stop = match crate::cancel::check() {
            Err(err) => Some(err.for_peer(&stage.peer)),
            Ok(()) => limits.expired(moved_at, now).map(|expired| {
                Error::unreachable(format!(
                    "{}: {expired}; the copy was given up",
                    stage.collect_dir.display()
                ))
            }),
        };
        if let Some(mut err) = stop {
            if stage.state.swap(ABANDONED, Ordering::SeqCst) == COMMITTING {
                err.cause
                    .push_str(" while renaming staged files into place: some may be staged");
            } else {
                err.cause.push_str("; nothing staged");
            }
            return Err(err);
        }
    }
}

impl Peer for LocalPeer {
    fn config(&self) -> &PeerConfig {
        &self.config
    }

    fn stage(&self, target_dir: &Path, perms: &Perms) -> Result<StageReport> {
        check_target_dir(target_dir, self.options.dry_run)?;
        let stage = LocalStage {
            peer: self.config.name.clone(),
            collect_dir: self.config.collect_dir.clone(),
            target_dir: target_dir.to_path_buf(),
            perms: *perms,
            verify: self.options.verify,
            max_entries: self.options.max_entries,
            dry_run: self.options.dry_run,
            meter: self.options.meter.clone().unwrap_or_default(),
            hashed: AtomicU64::new(0),
            state: AtomicU8::new(WORKING),
            pace: self.options.pace.clone(),
        };
        let limits = self.options.limits();
        if self.options.dry_run || limits == Limits::default() {
            return stage.run();
        }
        watched(stage, limits)
    }

    fn indicator(&self, indicator: &str) -> Result<Presence> {
        check_indicator_name(indicator)?;
        let path = self.config.collect_dir.join(indicator);
        if self.options.dry_run {
            print_dry_run(format_args!("test -e {}", quote_os(path.as_os_str())));
        }
        Ok(if path.exists() {
            Presence::Present
        } else if self.config.collect_dir.is_dir() {
            Presence::Absent
        } else {
            Presence::NoCollectDir
        })
    }

    fn write_stage_indicator(&self, indicator: &str, perms: &Perms) -> Result<()> {
        check_indicator_name(indicator)?;
        let collect_dir = &self.config.collect_dir;
        if !collect_dir.is_dir() {
            return Err(Error::failed(
                self.error(collect_dir, "collect dir does not exist"),
            ));
        }
        let path = collect_dir.join(indicator);
        if self.options.dry_run {
            print_dry_run(format_args!("touch -- {}", quote_os(path.as_os_str())));
            print_perms(perms, &path);
            return Ok(());
        }
        // An indicator without a mode asked for gets the usual 0644 of an empty file.
        write_file_atomically(collect_dir, indicator, b"", perms, Mode(0o644))
            .map_err(|cause| Error::failed(cause.to_string()))
    }
}

fn print_perms(perms: &Perms, path: &Path) {
    let path = quote_os(path.as_os_str());
    if let Some(owner) = perms.owner {
        print_dry_run(format_args!("chown {owner} -- {path}"));
    }
    if let Some(mode) = perms.mode {
        print_dry_run(format_args!("chmod {mode} -- {path}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fifo swapped in for a listed file must not hold the open (it blocked root forever).
    #[test]
    fn opening_a_fifo_does_not_block_and_it_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&dir.path().join("swapped"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let collect = DirFd::open(dir.path()).unwrap();
        let (done, result) = mpsc::channel();
        let path = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let collect = DirFd::open(&path).unwrap();
            let _ = done.send(
                collect
                    .open_file(OsStr::new("swapped"))
                    .map(|file| file.metadata()),
            );
        });
        let opened = result
            .recv_timeout(Duration::from_secs(5))
            .expect("open of a fifo blocked");
        assert!(!opened.unwrap().unwrap().is_file());
        drop(collect);
    }
}
