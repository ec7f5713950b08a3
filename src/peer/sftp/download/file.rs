//! One file of the copy, from its OPEN to its CLOSE: created here or continued from what an
//! earlier attempt kept, written strictly in order (an answer that comes ahead of the part
//! before it waits in memory, counted in the window), so the file here is always a prefix of
//! the peer's, and closed once the read past its listed size says EOF.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use super::super::packet::{self, bytes_body, handle_answer, Answer, Attrs};
use super::super::SftpError;
use super::{Copy, Failure, Request};
use crate::peer::resume;

/// A regular file of the listing, on its way.
pub(super) struct Entry {
    pub(super) name: Vec<u8>,
    pub(super) attrs: Attrs,
    pub(super) size: u64,
    pub(super) handle: Option<Vec<u8>>,
    pub(super) local: Option<File>,
    /// The next offset to ask for.
    pub(super) next: u64,
    /// Where the file here ends: it is written in order, so it is always a prefix of the
    /// peer's (a cut copy resumes from its length).
    pub(super) written: u64,
    /// Answers that came before the part in front of them, held until it is written.
    pub(super) early: BTreeMap<u64, Vec<u8>>,
    pub(super) past_end_asked: bool,
    pub(super) past_end_answered: bool,
    pub(super) reads_out: u32,
    /// Parts that came back short, to ask for again.
    pub(super) gaps: Vec<(u64, u32)>,
    /// In the queue of files with reads to send.
    pub(super) queued: bool,
}

impl Copy<'_, '_> {
    /// A file an earlier attempt copied whole, and that has not changed since: kept.
    pub(super) fn kept_whole(&mut self, name: Vec<u8>, size: u64) {
        if let Some(meter) = self.plan.meter {
            meter.listed(size);
            meter.moved(size);
            meter.file_done();
        }
        log::debug!(
            "sftp: {}: kept whole from an earlier attempt",
            String::from_utf8_lossy(&name)
        );
        self.done
            .files
            .push((OsStr::from_bytes(&name).to_os_string(), size));
    }

    /// Here, the file the copy of entry `index` goes to: the earlier attempt's to write
    /// more of, else a new one (the source's mode less the umask, as scp creates it), begun
    /// in the record of what is kept.
    pub(super) fn local_file(&self, index: usize) -> std::io::Result<File> {
        let entry = &self.entries[index];
        let name = OsStr::from_bytes(&entry.name);
        if entry.written > 0 {
            return self.plan.into.open_to_continue(name);
        }
        if let Some(kept) = self.plan.kept {
            let listed = entry.attrs.times.map(|(_, mtime)| resume::Listed {
                size: entry.size,
                mtime,
            });
            kept.begin(name, listed)?;
            // What an earlier attempt left under this name is of no use.
            self.plan.into.remove_file(name)?;
        }
        let mode = entry.attrs.permissions.map_or(0o666, |mode| mode & 0o777);
        let file = self.plan.into.create_file(name, mode)?;
        if let Some(owner) = self.plan.owner {
            owner.apply(&file)?;
        }
        Ok(file)
    }

    /// A file is open on the peer: open it here and start reading.
    pub(super) fn opened(&mut self, index: usize, kind: u8, body: &[u8]) -> Answer<()> {
        let handle = match handle_answer(kind, body) {
            Ok(handle) => handle,
            Err(err @ SftpError::Status { .. }) => {
                self.open_files -= 1;
                let path = self.path(&self.entries[index].name);
                self.fail(Failure::Refused { path, error: err });
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        if self.failure.is_some() {
            self.close_file(index, handle);
            return Ok(());
        }
        let name = OsStr::from_bytes(&self.entries[index].name).to_os_string();
        match self.local_file(index) {
            Ok(file) => {
                let entry = &mut self.entries[index];
                entry.local = Some(file);
                entry.handle = Some(handle);
                entry.queued = true;
                self.to_read.push_back(index);
            }
            Err(error) => {
                self.fail(Failure::Write { name, error });
                self.close_file(index, handle);
            }
        }
        Ok(())
    }

    pub(super) fn close_file(&mut self, index: usize, handle: Vec<u8>) {
        self.open_files -= 1;
        self.entries[index].local = None;
        self.send(packet::CLOSE, &bytes_body(&handle), Request::Close);
    }

    pub(super) fn read(
        &mut self,
        index: usize,
        offset: u64,
        length: u32,
        kind: u8,
        body: &[u8],
    ) -> Answer<()> {
        self.entries[index].reads_out -= 1;
        let size = self.entries[index].size;
        let failure = match kind {
            packet::DATA => {
                let data = packet::Reader::new(body).bytes()?;
                if data.len() > length as usize {
                    return Err(SftpError::Protocol("more data than asked for".to_string()));
                }
                if offset >= size {
                    self.entries[index].past_end_answered = true;
                    (!data.is_empty()).then(|| self.changed(index, None))
                } else if data.is_empty() {
                    Some(self.changed(index, Some(offset)))
                } else {
                    self.write(index, offset, length, data)
                }
            }
            packet::STATUS => match packet::status(body) {
                Err(SftpError::Status {
                    code: packet::FX_EOF,
                    ..
                }) if offset >= size => {
                    self.entries[index].past_end_answered = true;
                    None
                }
                Err(SftpError::Status {
                    code: packet::FX_EOF,
                    ..
                }) => Some(self.changed(index, Some(offset))),
                Err(err @ SftpError::Status { .. }) => Some(Failure::Refused {
                    path: self.path(&self.entries[index].name),
                    error: err,
                }),
                Err(err) => return Err(err),
                Ok(()) => return Err(packet::unexpected(kind)),
            },
            _ => return Err(packet::unexpected(kind)),
        };
        if let Some(failure) = failure {
            self.fail(failure);
        }
        self.finish_if_whole(index);
        Ok(())
    }

    pub(super) fn changed(&self, index: usize, now: Option<u64>) -> Failure {
        let entry = &self.entries[index];
        Failure::Changed {
            path: self.path(&entry.name),
            listed: entry.size,
            now,
        }
    }

    /// Writes what came, in order: an answer ahead of a part still to come waits for it.
    /// A short answer leaves a gap to ask for again.
    pub(super) fn write(
        &mut self,
        index: usize,
        offset: u64,
        length: u32,
        data: &[u8],
    ) -> Option<Failure> {
        if self.failure.is_some() {
            return None;
        }
        if let Some(meter) = self.plan.meter {
            meter.moved(data.len() as u64);
        }
        let entry = &mut self.entries[index];
        if offset != entry.written {
            entry.early.insert(offset, data.to_vec());
            self.held += data.len() as u64;
        } else {
            let mut released = 0;
            let mut result = write_at(entry, data, offset);
            while result.is_ok() {
                let Some(next) = entry.early.remove(&entry.written) else {
                    break;
                };
                released += next.len() as u64;
                result = write_at(entry, &next, entry.written);
            }
            self.held -= released;
            if let Err(error) = result {
                let name = OsStr::from_bytes(&entry.name).to_os_string();
                return Some(Failure::Write { name, error });
            }
        }
        let entry = &mut self.entries[index];
        if data.len() < length as usize {
            let end = offset + data.len() as u64;
            entry.gaps.push((end, length - data.len() as u32));
            if !entry.queued {
                entry.queued = true;
                self.to_read.push_back(index);
            }
        }
        None
    }

    /// Closes a file whose every byte is in (or, once the download has failed, whose reads
    /// are all answered).
    pub(super) fn finish_if_whole(&mut self, index: usize) {
        let stopping = self.failure.is_some();
        let entry = &self.entries[index];
        let whole = entry.reads_out == 0
            && entry.gaps.is_empty()
            && entry.early.is_empty()
            && entry.next >= entry.size
            && entry.past_end_answered;
        if entry.handle.is_none() || !(whole || (stopping && entry.reads_out == 0)) {
            return;
        }
        if whole && !stopping {
            if let Err(error) = self.keep_times_and_mode(index) {
                let name = OsStr::from_bytes(&self.entries[index].name).to_os_string();
                self.fail(Failure::Write { name, error });
            } else {
                let entry = &self.entries[index];
                self.done
                    .files
                    .push((OsStr::from_bytes(&entry.name).to_os_string(), entry.size));
                if let Some(meter) = self.plan.meter {
                    meter.file_done();
                }
            }
        }
        if let Some(handle) = self.entries[index].handle.take() {
            self.close_file(index, handle);
        }
    }

    /// `scp -p`: the source's mode and times.
    pub(super) fn keep_times_and_mode(&self, index: usize) -> std::io::Result<()> {
        let entry = &self.entries[index];
        let (Some(file), true) = (&entry.local, self.plan.preserve) else {
            return Ok(());
        };
        let mode = entry.attrs.permissions.map_or(0o644, |mode| mode & 0o777);
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        if let Some((atime, mtime)) = entry.attrs.times {
            filetime::set_file_handle_times(
                file,
                Some(filetime::FileTime::from_unix_time(atime.into(), 0)),
                Some(filetime::FileTime::from_unix_time(mtime.into(), 0)),
            )?;
        }
        Ok(())
    }
}

/// Writes `data` at the end of what is written of `entry`'s file.
fn write_at(entry: &mut Entry, data: &[u8], offset: u64) -> std::io::Result<()> {
    if let Some(file) = &entry.local {
        file.write_all_at(data, offset)?;
    }
    entry.written = offset + data.len() as u64;
    Ok(())
}
