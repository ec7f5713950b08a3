//! A peer on the master itself, staged with plain file-system copies.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::config::PeerConfig;
use crate::error::{io_cause, Error, Result};
use crate::fsutil::{
    born_with, copy_contents, remove_debris, sha256, write_file_atomically, DirFd, EntryKind,
    ScratchDir,
};
use crate::ownership::{Mode, Perms};
use crate::process::quote_os;

use super::{
    check_indicator_name, check_not_dir, check_target_dir, commit_incoming, print_dry_run, Peer,
    PeerOptions, StageReport, Verify,
};

pub struct LocalPeer {
    config: PeerConfig,
    options: PeerOptions,
}

impl LocalPeer {
    pub fn new(config: PeerConfig, options: PeerOptions) -> LocalPeer {
        LocalPeer { config, options }
    }

    fn error(&self, path: &Path, cause: impl std::fmt::Display) -> String {
        format!("peer {}: {}: {cause}", self.config.name, path.display())
    }

    /// Copies one file into the incoming dir: contents in-kernel (copy_file_range), then
    /// owner and mode on the open file. The incoming dir is private, so the file is never
    /// visible with a wrong owner or mode, and it reaches its final name only when the whole
    /// collect dir has been copied. Files are opened relative to the open dirs, and a file
    /// created with its final mode needs no chmod: a small file costs 7 system calls.
    fn copy_one(
        &self,
        collect: &DirFd,
        name: &OsStr,
        incoming: &DirFd,
        target_dir: &Path,
        perms: &Perms,
    ) -> Result<u64> {
        let source = || self.config.collect_dir.join(name);
        // Errors name the file as it will be called in the target, not its private temp name.
        let shown = || target_dir.join(name);
        let mut input = collect
            .open_file(name)
            .map_err(|err| Error::failed(self.error(&source(), io_cause(&err))))?;
        let meta = input
            .metadata()
            .map_err(|err| Error::failed(self.error(&source(), io_cause(&err))))?;
        if !meta.is_file() {
            // Swapped for something else since the directory was read.
            return Err(Error::failed(
                self.error(&source(), "no longer a regular file"),
            ));
        }
        let wanted = perms
            .mode
            .unwrap_or(Mode(meta.permissions().mode() & 0o7777));
        let born_with = born_with(wanted.0);
        let mut output = incoming
            .create_file(name, born_with.unwrap_or(0o600))
            .map_err(|err| Error::failed(self.error(&shown(), write_cause(&err))))?;
        let bytes = copy_contents(&mut input, &mut output, meta.len())
            .map_err(|err| Error::failed(self.error(&shown(), write_cause(&err))))?;
        if bytes != meta.len() {
            return Err(Error::failed(self.error(
                &source(),
                format!(
                    "size mismatch: {} bytes on the peer, {bytes} staged (did it change while copying?)",
                    meta.len()
                ),
            )));
        }
        if self.options.verify == Verify::Sha256 {
            let copied = incoming
                .open_file(name)
                .and_then(|mut copied| sha256(&mut copied))
                .map_err(|err| Error::failed(self.error(&shown(), io_cause(&err))))?;
            let original = input
                .seek(SeekFrom::Start(0))
                .and_then(|_| sha256(&mut input))
                .map_err(|err| Error::failed(self.error(&source(), io_cause(&err))))?;
            if copied != original {
                return Err(Error::failed(
                    self.error(&source(), "SHA-256 of the staged copy differs"),
                ));
            }
        }
        // chown never adds set-id bits, and a file born with its mode has none to lose.
        let rest = Perms {
            owner: perms.owner,
            mode: born_with.is_none().then_some(wanted),
        };
        rest.apply(&output, None)
            .map_err(|cause| Error::failed(self.error(&shown(), cause)))?;
        Ok(bytes)
    }
}

/// Says "disk full" in words an administrator reads at 3 a.m.
pub(crate) fn write_cause(err: &io::Error) -> String {
    if err.raw_os_error() == Some(nix::libc::ENOSPC) {
        "no space left on device (disk full)".to_string()
    } else {
        io_cause(err)
    }
}

impl Peer for LocalPeer {
    fn config(&self) -> &PeerConfig {
        &self.config
    }

    fn stage(&self, target_dir: &Path, perms: &Perms) -> Result<StageReport> {
        check_target_dir(&self.config.name, target_dir, self.options.dry_run)?;
        let collect_dir = &self.config.collect_dir;
        let mut incoming: Option<(DirFd, ScratchDir)> = None;
        // Only a target that already holds something can have a directory in a file's way;
        // a fresh one (the usual case) spares a stat per file.
        let crowded = self.options.dry_run || remove_debris(target_dir);
        // Streamed: only a few entries are held at a time, whatever the size of the collect dir.
        let collect = DirFd::open(collect_dir)
            .map_err(|err| Error::failed(self.error(collect_dir, io_cause(&err))))?;
        let mut entries = collect
            .entries()
            .map_err(|err| Error::failed(self.error(collect_dir, io_cause(&err))))?;
        let mut report = StageReport::default();
        let read_error = |err: io::Error| Error::failed(self.error(collect_dir, io_cause(&err)));
        entries.for_each(read_error, |name, kind| {
            crate::cancel::check().map_err(|err| err.for_peer(&self.config.name))?;
            let kind = match kind {
                Some(kind) => kind,
                None => collect.entry_kind(name).map_err(|err| {
                    Error::failed(self.error(&collect_dir.join(name), io_cause(&err)))
                })?,
            };
            if kind != EntryKind::File {
                let what = match kind {
                    EntryKind::Symlink => "symbolic link",
                    EntryKind::Dir => "directory",
                    _ => "not a regular file",
                };
                let source = collect_dir.join(name);
                log::warn!(
                    "peer {}: skipped {}: {what}",
                    self.config.name,
                    source.display()
                );
                report
                    .skipped
                    .push(format!("{} ({what})", source.display()));
                return Ok(());
            }
            if self.options.dry_run {
                let source = collect_dir.join(name);
                let target = target_dir.join(name);
                print_dry_run(format_args!(
                    "cp -- {} {}",
                    quote_os(source.as_os_str()),
                    quote_os(target.as_os_str())
                ));
                print_perms(perms, &target);
                report.files += 1;
                report.bytes += fs::symlink_metadata(&source)
                    .map(|meta| meta.len())
                    .unwrap_or(0);
                return Ok(());
            }
            if crowded {
                check_not_dir(&self.config.name, &target_dir.join(name))?;
            }
            if incoming.is_none() {
                let scratch = ScratchDir::create_in(target_dir)
                    .and_then(|scratch| Ok((DirFd::open_nofollow(scratch.path())?, scratch)))
                    .map_err(|err| Error::failed(self.error(target_dir, write_cause(&err))))?;
                incoming = Some(scratch);
            }
            if let Some((incoming_dir, _)) = &incoming {
                report.bytes += self.copy_one(&collect, name, incoming_dir, target_dir, perms)?;
                report.files += 1;
            }
            Ok(())
        })?;
        if report.files == 0 {
            return Err(Error::failed(self.error(
                collect_dir,
                "no files to stage (the collect dir is empty)",
            )));
        }
        if let Some((_, incoming)) = &incoming {
            commit_incoming(&self.config.name, incoming.path(), target_dir)?;
        }
        report.verified = self.options.verify.as_str().to_string();
        Ok(report)
    }

    fn check_collect_indicator(&self, indicator: &str) -> Result<bool> {
        check_indicator_name(&self.config.name, indicator)?;
        let path = self.config.collect_dir.join(indicator);
        if self.options.dry_run {
            print_dry_run(format_args!("test -e {}", quote_os(path.as_os_str())));
        }
        Ok(path.exists())
    }

    fn write_stage_indicator(&self, indicator: &str, perms: &Perms) -> Result<()> {
        check_indicator_name(&self.config.name, indicator)?;
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
            .map_err(|cause| Error::failed(format!("peer {}: {cause}", self.config.name)))
    }

    fn execute_remote_command(&self, _command: &[String]) -> Result<()> {
        Err(Error::usage(format!(
            "peer {}: is a local peer; remote commands need a remote peer (--host)",
            self.config.name
        )))
    }

    fn execute_managed_action(&self, action: &str, _full: bool) -> Result<()> {
        Err(Error::usage(format!(
            "peer {}: is a local peer; managed action {action} needs a remote peer (--host)",
            self.config.name
        )))
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
