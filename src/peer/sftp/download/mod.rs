//! The copy of a whole collect dir over SFTP, as scp's `dir/*` would copy it (every
//! non-hidden regular file, symlinks followed), but pipelined across files: the listing is
//! streamed into the copy, many files are open and read at once within a bounded window of
//! bytes in flight, and each file's close goes out as soon as its last byte is in. A peer of
//! many small files costs a handful of round trips, not a few per file; a big file keeps
//! 128 reads of 32 KiB in flight (OpenSSH's own client keeps 64). Memory is bounded by the
//! window and the listing (`max_entries`), never by a file's size.
//!
//! Every file is read to the size the listing gave and no further: one read of a byte past
//! that must say EOF, so a file that grows (or a peer that sends without end) is found out
//! without a byte of it written, and one that ends early is found out too.
//!
//! A bandwidth limit paces the reads (`Plan::pace`); what an earlier, cut attempt kept is
//! resumed (`Plan::kept`): a file still as listed then is not read again, a partial one is
//! read from its length on. How each file is opened, written and closed is in `file`.

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

mod file;

use super::listing::Listing;
use super::packet::{self, bytes_body, handle_answer, open_body, read_body, Answer, Attrs, Kind};
use super::{Session, SftpError};
use crate::fsutil::{is_plain_file_name, DirFd};
use crate::ownership::Ownership;
use crate::peer::resume::{Kept, State};
use crate::progress::Meter;
use crate::rate::Pace;
use file::Entry;

/// The size of each read: what every server answers whole.
const READ_CHUNK: u32 = 32 * 1024;
/// Bytes asked for and not yet come, over all files.
const WINDOW: u64 = 128 * READ_CHUNK as u64;
/// Files open at once when the server does not tell its limit; at most this many when it
/// does (every open file is a descriptor, here and on the peer). Over a slow link each file
/// costs two round trips (open, then read), so the number open at once is what a peer of
/// many small files goes at: 1,024 is a thousand files every two round trips.
const OPEN_DEFAULT: usize = 64;
const OPEN_MAX: usize = 1024;
/// READDIRs in flight while the listing streams in.
const READDIRS_IN_FLIGHT: usize = 8;

/// What to copy, and where to.
pub struct Plan<'a> {
    /// The collect dir, on the peer.
    pub dir: &'a [u8],
    /// The private dir the files are created in.
    pub into: &'a DirFd,
    pub max_entries: u64,
    /// Keep the source's modes and times, as `scp -p` does.
    pub preserve: bool,
    /// Who the files belong to: the local user whose scp would have written them.
    pub owner: Option<Ownership>,
    /// Where what is listed and copied is counted, for the progress line.
    pub meter: Option<&'a Meter>,
    /// The bandwidth limits the reads are paced to.
    pub pace: &'a Pace,
    /// What an earlier attempt left in `into`, to resume from; what this one begins is
    /// recorded there.
    pub kept: Option<&'a Kept>,
}

/// What came.
#[derive(Debug, Default)]
pub struct Downloaded {
    /// The files that arrived, with the size the peer listed for each.
    pub files: Vec<(OsString, u64)>,
    /// Entries that are not copied, each with why, in scp's words.
    pub skipped: Vec<String>,
}

/// Why a download stopped while the session itself is fine; nothing of it may be staged.
#[derive(Debug)]
pub enum Failure {
    /// No collect dir there, or nothing in it.
    MissingOrEmpty,
    /// The peer listed a name that cannot be a local file name.
    NotPlain(Vec<u8>),
    /// A symlink to nothing (scp fails on it too).
    Dangling(Vec<u8>),
    /// The peer refused to open or read a file.
    Refused { path: Vec<u8>, error: SftpError },
    /// Writing a file here failed.
    Write {
        name: OsString,
        error: std::io::Error,
    },
    /// A file is not the size it was listed with: `now` is what came (None: more came).
    Changed {
        path: Vec<u8>,
        listed: u64,
        now: Option<u64>,
    },
}

enum Request {
    ReadDir,
    Stat(Vec<u8>),
    Open(usize),
    Read {
        file: usize,
        offset: u64,
        length: u32,
    },
    Close,
}

struct Copy<'a, 'p> {
    session: &'a mut Session,
    plan: &'a Plan<'p>,
    requests: HashMap<u32, Request>,
    entries: Vec<Entry>,
    to_open: VecDeque<usize>,
    to_read: VecDeque<usize>,
    open_files: usize,
    max_open: usize,
    bytes_out: u64,
    /// Bytes held in `early` answers, counted in the window with those in flight.
    held: u64,
    readdirs_out: usize,
    listing: Listing,
    dir_handle: Vec<u8>,
    any: bool,
    done: Downloaded,
    failure: Option<Failure>,
    /// No read goes out before this (a bandwidth limit).
    paced_until: Option<Instant>,
}

/// Copies every regular file of `plan.dir` into `plan.into`. The outer error is the
/// session's (it cannot be used again); the inner one stops the stage.
pub fn download(session: &mut Session, plan: &Plan) -> Answer<Result<Downloaded, Failure>> {
    let limits = session.ask_limits();
    let opening = session.send(packet::OPENDIR, &bytes_body(plan.dir));
    let mut max_open = OPEN_DEFAULT.min(local_open_budget());
    if let Some(id) = limits {
        let (answer_id, kind, body) = session.recv()?;
        if answer_id != id {
            return Err(packet::unexpected(kind));
        }
        // A server that says nothing useful keeps the default.
        if let Ok(handles) = packet::open_handles_limit(kind, &body) {
            if handles > 16 {
                max_open = usize::try_from(handles - 8)
                    .unwrap_or(OPEN_MAX)
                    .min(OPEN_MAX)
                    .min(local_open_budget());
            }
        }
    }
    log::debug!("sftp: up to {max_open} files open at once");
    let (answer_id, kind, body) = session.recv()?;
    if answer_id != opening {
        return Err(packet::unexpected(kind));
    }
    let dir_handle = match handle_answer(kind, &body) {
        Ok(handle) => handle,
        Err(SftpError::Status {
            code: packet::FX_NO_SUCH_FILE,
            ..
        }) => return Ok(Err(Failure::MissingOrEmpty)),
        Err(err @ SftpError::Status { .. }) => {
            return Ok(Err(Failure::Refused {
                path: plan.dir.to_vec(),
                error: err,
            }))
        }
        Err(err) => return Err(err),
    };
    let mut copy = Copy {
        session,
        plan,
        requests: HashMap::new(),
        entries: Vec::new(),
        to_open: VecDeque::new(),
        to_read: VecDeque::new(),
        open_files: 0,
        max_open,
        bytes_out: 0,
        held: 0,
        readdirs_out: 0,
        listing: Listing::new(plan.max_entries),
        dir_handle,
        any: false,
        done: Downloaded::default(),
        failure: None,
        paced_until: None,
    };
    copy.run()?;
    if let Some(failure) = copy.failure {
        return Ok(Err(failure));
    }
    if !copy.any {
        return Ok(Err(Failure::MissingOrEmpty));
    }
    Ok(Ok(copy.done))
}

/// How many files one download may keep open here: a sixteenth of our descriptor limit, so
/// that peers staged in parallel, their pipes and sockets all fit.
fn local_open_budget() -> usize {
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap_or((1024, 1024));
    usize::try_from(soft / 16).unwrap_or(OPEN_MAX).max(8)
}

impl Copy<'_, '_> {
    fn path(&self, name: &[u8]) -> Vec<u8> {
        let mut path = self.plan.dir.to_vec();
        path.push(b'/');
        path.extend_from_slice(name);
        path
    }

    fn send(&mut self, kind: u8, body: &[u8], request: Request) {
        let id = self.session.send(kind, body);
        self.requests.insert(id, request);
    }

    /// Records why the download stops (the first reason counts), and closes the files that
    /// wait for nothing; the others close as their reads are answered.
    fn fail(&mut self, failure: Failure) {
        if self.failure.is_some() {
            return;
        }
        self.failure = Some(failure);
        for index in 0..self.entries.len() {
            if self.entries[index].reads_out == 0 {
                if let Some(handle) = self.entries[index].handle.take() {
                    self.close_file(index, handle);
                }
            }
        }
    }

    fn run(&mut self) -> Answer<()> {
        loop {
            if self.failure.is_none() {
                self.send_more()?;
            }
            if self.requests.is_empty() {
                // Only a bandwidth limit holds reads back with nothing in flight.
                match self.paced_until.take() {
                    Some(until) if self.failure.is_none() && !self.to_read.is_empty() => {
                        self.session.pause(until)?;
                        continue;
                    }
                    _ => break,
                }
            }
            let (id, kind, body) = self.session.recv()?;
            let Some(request) = self.requests.remove(&id) else {
                return Err(packet::unexpected(kind));
            };
            self.take(request, kind, &body)?;
        }
        // Every file handle is closed by now (or was never opened); the dir's goes last, and
        // its answer is read with the next step's.
        self.session
            .send_deferred(packet::CLOSE, &bytes_body(&self.dir_handle));
        Ok(())
    }

    /// Sends what the window and the limits allow: READDIRs until the listing ends, OPENs
    /// for listed files, READs for open ones.
    fn send_more(&mut self) -> Answer<()> {
        while !self.listing.ended && self.readdirs_out < READDIRS_IN_FLIGHT {
            self.listing.asked()?;
            let body = bytes_body(&self.dir_handle);
            self.send(packet::READDIR, &body, Request::ReadDir);
            self.readdirs_out += 1;
        }
        while self.open_files < self.max_open {
            let Some(index) = self.to_open.pop_front() else {
                break;
            };
            let body = open_body(
                &self.path(&self.entries[index].name),
                packet::FXF_READ,
                None,
            );
            self.send(packet::OPEN, &body, Request::Open(index));
            self.open_files += 1;
        }
        while self.bytes_out + self.held < WINDOW {
            if self.paced() {
                break;
            }
            let Some(&index) = self.to_read.front() else {
                break;
            };
            let entry = &mut self.entries[index];
            let next = if entry.handle.is_none() {
                None
            } else if let Some(gap) = entry.gaps.pop() {
                Some(gap)
            } else if entry.next < entry.size {
                let length = (entry.size - entry.next).min(u64::from(READ_CHUNK)) as u32;
                entry.next += u64::from(length);
                Some((entry.next - u64::from(length), length))
            } else if !entry.past_end_asked {
                entry.past_end_asked = true;
                Some((entry.size, 1))
            } else {
                None
            };
            let (Some((offset, length)), Some(handle)) = (next, &entry.handle) else {
                entry.queued = false;
                self.to_read.pop_front();
                continue;
            };
            entry.reads_out += 1;
            let body = read_body(handle, offset, length);
            self.send(
                packet::READ,
                &body,
                Request::Read {
                    file: index,
                    offset,
                    length,
                },
            );
            self.bytes_out += u64::from(length);
            if self.plan.pace.is_limited() {
                let wait = self.plan.pace.reserve(u64::from(length));
                if !wait.is_zero() {
                    self.paced_until = Some(Instant::now() + wait);
                }
            }
        }
        Ok(())
    }

    /// Whether a bandwidth limit holds the next read back.
    fn paced(&mut self) -> bool {
        match self.paced_until {
            Some(until) if Instant::now() < until => true,
            _ => {
                self.paced_until = None;
                false
            }
        }
    }

    /// One answer, to the request it answers.
    fn take(&mut self, request: Request, kind: u8, body: &[u8]) -> Answer<()> {
        match request {
            Request::ReadDir => {
                self.readdirs_out -= 1;
                if self.failure.is_some() {
                    return Ok(());
                }
                let mut names = Vec::new();
                let answered = self.listing.answer(kind, body, |name, attrs| {
                    names.push((name.to_vec(), attrs));
                    Ok(())
                });
                match answered {
                    Ok(()) => {}
                    Err(err @ SftpError::Status { .. }) => {
                        let path = self.plan.dir.to_vec();
                        self.fail(Failure::Refused { path, error: err });
                        return Ok(());
                    }
                    Err(err) => return Err(err),
                }
                for (name, attrs) in names {
                    self.listed(name, attrs);
                }
                if let (true, Some(meter)) = (self.listing.ended, self.plan.meter) {
                    // Symlinks still being looked at may add a little.
                    meter.listing_complete();
                }
                Ok(())
            }
            Request::Stat(name) => {
                if self.failure.is_some() {
                    return Ok(());
                }
                let answer = if kind == packet::STATUS {
                    packet::status(body).and(Err(packet::unexpected(kind)))
                } else {
                    packet::attrs_answer(kind, body)
                };
                match answer {
                    Ok(attrs) if attrs.kind() == Kind::File => self.add_file(name, attrs),
                    Ok(_) => self.skip(&name),
                    Err(SftpError::Status {
                        code: packet::FX_NO_SUCH_FILE,
                        ..
                    }) => self.fail(Failure::Dangling(self.path(&name))),
                    Err(err @ SftpError::Status { .. }) => self.fail(Failure::Refused {
                        path: self.path(&name),
                        error: err,
                    }),
                    Err(err) => return Err(err),
                }
                Ok(())
            }
            Request::Open(index) => self.opened(index, kind, body),
            Request::Read {
                file,
                offset,
                length,
            } => {
                self.bytes_out -= u64::from(length);
                self.read(file, offset, length, kind, body)
            }
            Request::Close => {
                if kind == packet::STATUS {
                    packet::status(body)?;
                }
                Ok(())
            }
        }
    }

    /// An entry of the listing: what scp's `*` would do with it.
    fn listed(&mut self, name: Vec<u8>, attrs: Attrs) {
        if name.starts_with(b".") || self.failure.is_some() {
            return;
        }
        self.any = true;
        if !is_plain_file_name(OsStr::from_bytes(&name)) {
            return self.fail(Failure::NotPlain(name));
        }
        match attrs.kind() {
            Kind::File => self.add_file(name, attrs),
            Kind::Symlink | Kind::Unknown => {
                let body = bytes_body(&self.path(&name));
                self.send(packet::STAT, &body, Request::Stat(name));
            }
            Kind::Dir | Kind::Other => self.skip(&name),
        }
    }

    fn skip(&mut self, name: &[u8]) {
        let dir = String::from_utf8_lossy(self.plan.dir).into_owned();
        self.done.skipped.push(format!(
            "{dir}/{}: not a regular file",
            String::from_utf8_lossy(name)
        ));
    }

    fn add_file(&mut self, name: Vec<u8>, attrs: Attrs) {
        // The size is where the copy stops: a file listed without one is not copied.
        let Some(size) = attrs.size else {
            let path = self.path(&name);
            return self.fail(Failure::Refused {
                path,
                error: SftpError::Protocol("listed without a size".to_string()),
            });
        };
        let state = self.plan.kept.map_or(State::Fresh, |kept| {
            let mtime = attrs.times.map(|(_, mtime)| mtime);
            kept.state(OsStr::from_bytes(&name), size, mtime)
        });
        let from = match state {
            State::Whole => return self.kept_whole(name, size),
            State::From(length) => length,
            State::Fresh => 0,
        };
        if let (Some(meter), true) = (self.plan.meter, from > 0) {
            meter.moved(from);
        }
        self.entries.push(Entry {
            name,
            attrs,
            size,
            handle: None,
            local: None,
            next: from,
            written: from,
            early: Default::default(),
            past_end_asked: false,
            past_end_answered: false,
            reads_out: 0,
            gaps: Vec::new(),
            queued: false,
        });
        if let Some(meter) = self.plan.meter {
            meter.listed(size);
        }
        self.to_open.push_back(self.entries.len() - 1);
    }
}
