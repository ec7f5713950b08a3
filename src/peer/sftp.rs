//! The SFTP requests a remote peer needs (probe the collect indicator, list the collect dir,
//! copy its files, write and re-read the stage indicator), sent on the session of the peer's
//! ssh control master (`ssh -M … -s host sftp`). OpenSSH's scp sends the same requests (SFTP
//! is its default protocol since 9.0), so an sftp-only account allows them; but where scp
//! and ssh are separate processes, with a session on the peer for every step, this is one
//! process and one session for the whole peer.
//!
//! SFTP version 3 (draft-ietf-secsh-filexfer-02), which every OpenSSH server speaks. Packets
//! are `uint32 length, byte type, payload`; every request carries an id that its answer
//! repeats. Most requests wait for their answer; a copy keeps many reads in flight and sends
//! the next file's open and this file's close along with them, and an answer that comes while
//! another is awaited is kept until asked for.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Instant;

use crate::limits::{Expired, Limits};
use crate::process::{Cmd, Piped};

const INIT: u8 = 1;
const VERSION: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const READ: u8 = 5;
const FSTAT: u8 = 8;
const OPENDIR: u8 = 11;
const READDIR: u8 = 12;
const STAT: u8 = 17;
const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const DATA: u8 = 103;
const NAME: u8 = 104;
const ATTRS: u8 = 105;

const FX_OK: u32 = 0;
const FX_EOF: u32 = 1;
pub(super) const FX_NO_SUCH_FILE: u32 = 2;

const FXF_READ: u32 = 0x01;
const FXF_WRITE: u32 = 0x02;
const FXF_CREAT: u32 = 0x08;
const FXF_TRUNC: u32 = 0x10;

const ATTR_SIZE: u32 = 0x01;
const ATTR_UIDGID: u32 = 0x02;
const ATTR_PERMISSIONS: u32 = 0x04;
const ATTR_ACMODTIME: u32 = 0x08;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// Reads kept in flight while copying a file, and the size of each: what OpenSSH's own
/// client asks for (64 requests of 32 KiB), which every server must answer.
const READ_CHUNK: u32 = 32 * 1024;
const READS_IN_FLIGHT: usize = 64;

/// Bigger answers than this are not something we asked for: OpenSSH's client and server
/// refuse packets over 256 KiB, and a READDIR answer of OpenSSH holds at most 100 names.
const MAX_PACKET: usize = 256 * 1024;

/// Answers kept while another is awaited (the closes and opens of a pipelined copy, a few
/// dozen bytes each) may add up to this much; a peer that sends more is not answering what
/// we asked.
const EARLY_LIMIT: usize = 4 << 20;

/// The longest file name a local file system takes (NAME_MAX): a longer name from a peer can
/// only be nonsense, and would cost memory in a listing.
pub(super) const NAME_MAX: usize = 255;

/// What a file is, from the mode bits of its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
    Symlink,
    Other,
    Unknown,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Attrs {
    pub size: Option<u64>,
    pub permissions: Option<u32>,
    /// Access and modification times, in seconds since the epoch.
    pub times: Option<(u32, u32)>,
}

impl Attrs {
    pub fn kind(&self) -> Kind {
        match self.permissions.map(|mode| mode & 0o170000) {
            Some(0o100000) => Kind::File,
            Some(0o040000) => Kind::Dir,
            Some(0o120000) => Kind::Symlink,
            Some(_) => Kind::Other,
            None => Kind::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SftpError {
    /// The peer answered the request with a failure status.
    Status { code: u32, message: String },
    /// The session ended: the connection, ssh or the server is gone.
    Broken(String),
    /// The peer sent what no request asked for, or more than we take (an answer never
    /// asked, a packet too big, a listing without end): a broken or hostile server. The
    /// session is ended and not replaced.
    Protocol(String),
    /// The peer's deadline passed, or nothing came for the idle time, while waiting.
    TimedOut(Expired),
}

impl std::fmt::Display for SftpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SftpError::Status { code, message } if message.is_empty() => {
                write!(f, "{}", status_words(*code))
            }
            SftpError::Status { message, .. } => f.write_str(message),
            SftpError::Broken(why) => write!(f, "SFTP session lost: {why}"),
            SftpError::Protocol(why) => write!(f, "SFTP protocol error: {why}"),
            SftpError::TimedOut(expired) => write!(f, "{expired}"),
        }
    }
}

fn status_words(code: u32) -> &'static str {
    match code {
        FX_EOF => "end of file",
        FX_NO_SUCH_FILE => "No such file or directory",
        3 => "Permission denied",
        8 => "Operation unsupported",
        _ => "Failure",
    }
}

type Answer<T> = std::result::Result<T, SftpError>;

/// How a file's copy ended when the session itself is fine.
#[derive(Debug)]
pub(super) enum FileRead {
    /// Every listed byte arrived, and nothing past them.
    Whole,
    /// Writing it locally failed (the read was stopped).
    WriteFailed(std::io::Error),
    /// The file ended before its listed size: it shrank while being copied.
    Shrank(u64),
    /// There was more past its listed size: it grew while being copied.
    Grew,
}

pub(super) struct Sftp {
    child: Piped,
    next_id: u32,
    limits: Limits,
    /// When a byte last moved (or the current wait began), for the idle timeout.
    moved_at: Instant,
    /// Requests sent and not yet answered: an answer to anything else is refused.
    pending: HashSet<u32>,
    /// Requests not yet written: a batch of reads goes out in one write.
    outgoing: Vec<u8>,
    /// Answers read from ssh but not yet taken: one read(2) brings many packets.
    incoming: Vec<u8>,
    taken: usize,
    /// Answers that came while another one was awaited (requests are pipelined: the next
    /// file's open goes out with this file's reads), kept until asked for, and their size.
    early: HashMap<u32, (u8, Vec<u8>)>,
    early_bytes: usize,
}

impl Sftp {
    /// Starts `command` (an `ssh … -s destination sftp`), its stderr into `stderr_file`;
    /// `handshake` must follow. Every answer must come within `limits`.
    pub fn spawn(command: &Cmd, stderr_file: &Path, limits: Limits) -> Answer<Sftp> {
        let child = command.spawn_piped(stderr_file).map_err(|err| {
            SftpError::Broken(format!(
                "cannot run {}: {err}",
                command.program().to_string_lossy()
            ))
        })?;
        Ok(Sftp {
            child,
            next_id: 0,
            limits,
            moved_at: Instant::now(),
            pending: HashSet::new(),
            outgoing: Vec::new(),
            incoming: Vec::new(),
            taken: 0,
            early: HashMap::new(),
            early_bytes: 0,
        })
    }

    /// The version exchange. An error here means the session is not available: the peer has
    /// no SFTP subsystem, or ssh could not run or connect (what it said is in `end`).
    pub fn handshake(&mut self) -> Answer<()> {
        // INIT carries the version where other requests carry an id.
        self.push_packet(INIT, &3u32.to_be_bytes(), &[]);
        match self.receive()? {
            (VERSION, _) => Ok(()),
            (kind, _) => Err(SftpError::Protocol(format!(
                "answered INIT with packet type {kind}"
            ))),
        }
    }

    /// From now on every answer must come within `limits` (the peer's, after the connect
    /// wait).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Ends the session and returns what ssh said on stderr, trimmed to its last line.
    pub fn end(self) -> String {
        let until = Instant::now() + std::time::Duration::from_millis(500);
        let said = self.child.close(
            self.limits
                .deadline
                .map_or(until, |deadline| deadline.min(until)),
        );
        match crate::process::last_line(&said) {
            "" => "the session ended".to_string(),
            line => line.to_string(),
        }
    }

    /// Opens `path` for reading (following a symlink, as a copy would) and closes it again:
    /// the attributes of a file that could be copied, None if there is no such file.
    pub fn probe(&mut self, path: &[u8]) -> Answer<Option<Attrs>> {
        let handle = match self.open(path, FXF_READ, None) {
            Ok(handle) => handle,
            Err(SftpError::Status {
                code: FX_NO_SUCH_FILE,
                ..
            }) => return Ok(None),
            Err(err) => return Err(err),
        };
        let attrs = self
            .request(FSTAT, &bytes_body(&handle))
            .and_then(|(kind, body)| attrs_answer(kind, &body));
        let closed = self.close(&handle);
        let attrs = attrs?;
        closed?;
        Ok(Some(attrs))
    }

    /// The attributes of `path`, following a symlink.
    pub fn stat(&mut self, path: &[u8]) -> Answer<Attrs> {
        let (kind, answer) = self.request(STAT, &bytes_body(path))?;
        attrs_answer(kind, &answer)
    }

    /// Creates `path` empty (or truncates it) with `permissions` (less the peer's umask),
    /// as an scp upload of an empty file does.
    pub fn create_empty(&mut self, path: &[u8], permissions: u32) -> Answer<()> {
        let handle = self.open(path, FXF_WRITE | FXF_CREAT | FXF_TRUNC, Some(permissions))?;
        self.close(&handle)
    }

    /// Asks to open `path` for reading (following a symlink, as scp does) without waiting:
    /// the request goes out with the next ones. `opened` takes the answer.
    pub fn queue_open_read(&mut self, path: &[u8]) -> u32 {
        self.queue(OPEN, &open_body(path, FXF_READ, None))
    }

    /// The handle a `queue_open_read` request got.
    pub fn opened(&mut self, id: u32) -> Answer<Vec<u8>> {
        match self.answer_to(id)? {
            (HANDLE, answer) => Ok(Reader::new(&answer).bytes()?.to_vec()),
            (kind, _) => Err(unexpected(kind)),
        }
    }

    /// Asks to close a handle without waiting; `closed` takes the answer.
    pub fn queue_close(&mut self, handle: &[u8]) -> u32 {
        self.queue(CLOSE, &bytes_body(handle))
    }

    /// Whether the answer to request `id` has come already (asking for it will not wait).
    pub fn has_answer(&self, id: u32) -> bool {
        self.early.contains_key(&id)
    }

    /// The answer to a `queue_close` request.
    pub fn closed(&mut self, id: u32) -> Answer<()> {
        match self.answer_to(id)? {
            (STATUS, _) => Ok(()),
            (kind, _) => Err(unexpected(kind)),
        }
    }

    /// Reads the `size` bytes the listing gave for the file behind `handle`, handing each
    /// piece to `write(offset, data)`, and never more: a file that grows while it is copied
    /// (or a peer that sends without end) is found out by one read past its end, which must
    /// say EOF, so disk use stops at the listed size. Up to 64 reads are in flight, as in
    /// OpenSSH's own client, so a round trip is paid per 2 MiB, not per 32 KiB. A short read
    /// is asked for again from where it stopped. A failing `write` stops the reading (the
    /// answers already on their way are read and dropped, so the session stays usable).
    pub fn read_file(
        &mut self,
        handle: &[u8],
        size: u64,
        mut write: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
    ) -> Answer<FileRead> {
        let mut in_flight: std::collections::VecDeque<(u32, u64, u32)> = Default::default();
        // Parts that came back short, to ask for again.
        let mut gaps: Vec<(u64, u32)> = Vec::new();
        let mut next = 0u64;
        // The read one byte past the listed size is sent with the last ones.
        let mut past_end_sent = false;
        let mut eof: Option<u64> = None;
        let mut grew = false;
        let mut write_error: Option<std::io::Error> = None;
        let mut read_error: Option<SftpError> = None;
        loop {
            let stopping = write_error.is_some() || read_error.is_some() || grew;
            while !stopping && in_flight.len() < READS_IN_FLIGHT {
                let (offset, length) = match gaps.pop() {
                    Some((offset, _)) if eof.is_some_and(|end| offset >= end) => continue,
                    Some(gap) => gap,
                    None if eof.is_none() && next < size => {
                        let length = (size - next).min(u64::from(READ_CHUNK)) as u32;
                        next += u64::from(length);
                        (next - u64::from(length), length)
                    }
                    None if !past_end_sent => {
                        past_end_sent = true;
                        (size, 1)
                    }
                    None => break,
                };
                let mut body = bytes_body(handle);
                body.extend_from_slice(&offset.to_be_bytes());
                put_u32(&mut body, length);
                let id = self.queue(READ, &body);
                in_flight.push_back((id, offset, length));
            }
            if in_flight.is_empty() {
                break;
            }
            let (id, kind, answer) = self.answer()?;
            let Some((_, offset, length)) = in_flight
                .iter()
                .position(|&(asked, _, _)| asked == id)
                .and_then(|at| in_flight.remove(at))
            else {
                self.keep_early(id, kind, answer)?;
                continue;
            };
            match kind {
                DATA => {
                    let data = Reader::new(&answer).bytes()?;
                    if data.len() > length as usize {
                        return Err(SftpError::Protocol("more data than asked for".to_string()));
                    }
                    if data.is_empty() {
                        eof = Some(eof.map_or(offset, |end| end.min(offset)));
                        continue;
                    }
                    if offset >= size {
                        grew = true;
                        continue;
                    }
                    if write_error.is_none() {
                        if let Err(err) = write(offset, data) {
                            write_error = Some(err);
                        }
                    }
                    let end = offset + data.len() as u64;
                    if data.len() < length as usize {
                        gaps.push((end, length - data.len() as u32));
                    }
                }
                STATUS => match status(&answer) {
                    Err(SftpError::Status { code: FX_EOF, .. }) => {
                        eof = Some(eof.map_or(offset, |end| end.min(offset)));
                    }
                    Err(err) => read_error = read_error.or(Some(err)),
                    Ok(()) => return Err(unexpected(kind)),
                },
                _ => return Err(unexpected(kind)),
            }
        }
        if let Some(err) = read_error {
            return Err(err);
        }
        Ok(match (write_error, eof) {
            (Some(err), _) => FileRead::WriteFailed(err),
            _ if grew => FileRead::Grew,
            (None, Some(end)) if end < size => FileRead::Shrank(end),
            (None, _) => FileRead::Whole,
        })
    }

    /// Calls `each` with the name and (not followed) attributes of every entry of `dir`. A
    /// peer that lists more than `max_entries` entries (or asks for more READDIR rounds than
    /// that, answering with empty lists) is refused: a listing is held in memory.
    pub fn read_dir(
        &mut self,
        dir: &[u8],
        max_entries: u64,
        mut each: impl FnMut(&[u8], Attrs) -> Answer<()>,
    ) -> Answer<()> {
        let opening = self.queue(OPENDIR, &bytes_body(dir));
        let handle = self.opened(opening)?;
        let mut entries = 0u64;
        let mut rounds = 0u64;
        let too_many = || {
            SftpError::Protocol(format!(
                "the peer lists more than {max_entries} entries (max_entries)"
            ))
        };
        let mut counted = |name: &[u8], attrs: Attrs| {
            entries += 1;
            if entries > max_entries {
                return Err(too_many());
            }
            each(name, attrs)
        };
        let listed = loop {
            rounds += 1;
            if rounds > max_entries.saturating_add(1) {
                break Err(too_many());
            }
            let (kind, answer) = match self.request(READDIR, &bytes_body(&handle)) {
                Ok(answer) => answer,
                Err(SftpError::Status { code: FX_EOF, .. }) => break Ok(()),
                Err(err) => break Err(err),
            };
            if kind != NAME {
                break Err(unexpected(kind));
            }
            if let Err(err) = each_name(&answer, &mut counted) {
                break Err(err);
            }
        };
        let closed = self.close(&handle);
        listed?;
        closed
    }

    fn open(&mut self, path: &[u8], flags: u32, permissions: Option<u32>) -> Answer<Vec<u8>> {
        let opening = self.queue(OPEN, &open_body(path, flags, permissions));
        self.opened(opening)
    }

    fn close(&mut self, handle: &[u8]) -> Answer<()> {
        let closing = self.queue_close(handle);
        self.closed(closing)
    }

    /// Sends a request and returns its answer's type and body, without the id. A failure
    /// status is an error; an OK status is returned as (STATUS, …).
    fn request(&mut self, kind: u8, body: &[u8]) -> Answer<(u8, Vec<u8>)> {
        let id = self.queue(kind, body);
        self.answer_to(id)
    }

    /// The answer to request `id`, type and body; answers to other requests that come
    /// first are kept for later. A failure status is an error; an OK status is returned as
    /// (STATUS, …).
    fn answer_to(&mut self, id: u32) -> Answer<(u8, Vec<u8>)> {
        let (kind, answer) = match self.early.remove(&id) {
            Some(early) => {
                self.early_bytes -= early.1.len();
                early
            }
            None => loop {
                let (answer_id, kind, answer) = self.answer()?;
                if answer_id == id {
                    break (kind, answer);
                }
                self.keep_early(answer_id, kind, answer)?;
            },
        };
        if kind == STATUS {
            status(&answer)?;
        }
        Ok((kind, answer))
    }

    /// Keeps an answer to a request that is not being waited for (`answer` has checked that
    /// it was asked). More than a pipelined copy leaves waiting is a server speaking nonsense.
    fn keep_early(&mut self, id: u32, kind: u8, answer: Vec<u8>) -> Answer<()> {
        self.early_bytes += answer.len();
        if self.early_bytes > EARLY_LIMIT {
            return Err(SftpError::Protocol(format!(
                "more than {} MiB of answers sent ahead of the ones awaited",
                EARLY_LIMIT >> 20
            )));
        }
        self.early.insert(id, (kind, answer));
        Ok(())
    }

    /// Queues a request (written out before the next answer is awaited); returns its id.
    fn queue(&mut self, kind: u8, body: &[u8]) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        self.pending.insert(id);
        self.push_packet(kind, &id.to_be_bytes(), body);
        id
    }

    /// `uint32 length, byte type, head, body` onto the outgoing requests.
    fn push_packet(&mut self, kind: u8, head: &[u8], body: &[u8]) {
        let length = head.len() + body.len() + 1;
        put_u32(
            &mut self.outgoing,
            u32::try_from(length).unwrap_or(u32::MAX),
        );
        self.outgoing.push(kind);
        self.outgoing.extend_from_slice(head);
        self.outgoing.extend_from_slice(body);
    }

    /// The next answer: its id, type and body. Each request gets one answer: an answer to a
    /// request never sent, or answered already, ends the session.
    fn answer(&mut self) -> Answer<(u32, u8, Vec<u8>)> {
        let (kind, mut packet) = self.receive()?;
        let id = Reader::new(&packet).u32()?;
        if !self.pending.remove(&id) {
            return Err(SftpError::Protocol(format!(
                "an answer (type {kind}) to request {id}, which is not waiting for one"
            )));
        }
        packet.drain(..4);
        Ok((id, kind, packet))
    }

    fn flush(&mut self) -> Answer<()> {
        if self.outgoing.is_empty() {
            return Ok(());
        }
        let stdin = self
            .child
            .child
            .stdin
            .as_mut()
            .ok_or_else(|| SftpError::Broken("stdin closed".to_string()))?;
        let written = stdin
            .write_all(&self.outgoing)
            .and_then(|()| stdin.flush())
            .map_err(|err| SftpError::Broken(err.to_string()));
        self.outgoing.clear();
        // A wait for the answers begins.
        self.moved_at = Instant::now();
        written
    }

    fn receive(&mut self) -> Answer<(u8, Vec<u8>)> {
        self.flush()?;
        let mut length = [0u8; 4];
        self.read_exact(&mut length)?;
        let length = u32::from_be_bytes(length) as usize;
        if length == 0 || length > MAX_PACKET {
            return Err(SftpError::Protocol(format!("bad packet length {length}")));
        }
        let mut kind = [0u8; 1];
        self.read_exact(&mut kind)?;
        let mut packet = vec![0u8; length - 1];
        self.read_exact(&mut packet)?;
        Ok((kind[0], packet))
    }

    /// Reads exactly `buf.len()` bytes, waiting no longer than the deadline.
    fn read_exact(&mut self, buf: &mut [u8]) -> Answer<()> {
        let mut filled = 0;
        while filled < buf.len() {
            if self.taken == self.incoming.len() {
                self.refill()?;
            }
            let ready = &self.incoming[self.taken..];
            let count = ready.len().min(buf.len() - filled);
            buf[filled..filled + count].copy_from_slice(&ready[..count]);
            filled += count;
            self.taken += count;
        }
        Ok(())
    }

    /// Reads what ssh has written so far (at least one byte), waiting no longer than the
    /// limits allow.
    fn refill(&mut self) -> Answer<()> {
        let stdout = self
            .child
            .child
            .stdout
            .as_mut()
            .ok_or_else(|| SftpError::Broken("stdout closed".to_string()))?;
        self.incoming.resize(64 * 1024, 0);
        self.taken = 0;
        loop {
            if let Some(until) = self.limits.until(self.moved_at) {
                let now = Instant::now();
                if let Some(expired) = self.limits.expired(self.moved_at, now) {
                    self.incoming.clear();
                    return Err(SftpError::TimedOut(expired));
                }
                let left = until.saturating_duration_since(now);
                // Rounded up, so that the wait does not end a hair before the limit.
                let millis = i32::try_from(left.as_millis() + 1).unwrap_or(i32::MAX);
                let mut fds = [nix::poll::PollFd::new(
                    stdout.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let timeout =
                    nix::poll::PollTimeout::try_from(millis).unwrap_or(nix::poll::PollTimeout::MAX);
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                    Ok(_) => {}
                    Err(err) => {
                        self.incoming.clear();
                        return Err(SftpError::Broken(err.to_string()));
                    }
                }
            }
            match stdout.read(&mut self.incoming) {
                Ok(0) => {
                    self.incoming.clear();
                    return Err(SftpError::Broken("ssh exited".to_string()));
                }
                Ok(count) => {
                    self.incoming.truncate(count);
                    self.moved_at = Instant::now();
                    return Ok(());
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.incoming.clear();
                    return Err(SftpError::Broken(err.to_string()));
                }
            }
        }
    }
}

/// A STATUS answer: OK, or the failure it reports.
fn status(answer: &[u8]) -> Answer<()> {
    let mut status = Reader::new(answer);
    let code = status.u32()?;
    let message = status
        .bytes()
        .map(|text| String::from_utf8_lossy(text).into_owned())
        .unwrap_or_default();
    if code != FX_OK {
        return Err(SftpError::Status { code, message });
    }
    Ok(())
}

/// Calls `each` for every entry of a NAME answer: name, `ls -l` line (unused), attributes.
fn each_name(answer: &[u8], each: &mut impl FnMut(&[u8], Attrs) -> Answer<()>) -> Answer<()> {
    let mut names = Reader::new(answer);
    for _ in 0..names.u32()? {
        let name = names.bytes()?;
        if name.len() > NAME_MAX {
            return Err(SftpError::Protocol(format!(
                "the peer lists a name of {} bytes (at most {NAME_MAX})",
                name.len()
            )));
        }
        names.bytes()?;
        let attrs = names.attrs()?;
        each(name, attrs)?;
    }
    Ok(())
}

/// An ATTRS answer's attributes.
fn attrs_answer(kind: u8, answer: &[u8]) -> Answer<Attrs> {
    match kind {
        ATTRS => Reader::new(answer).attrs(),
        _ => Err(unexpected(kind)),
    }
}

fn unexpected(kind: u8) -> SftpError {
    SftpError::Protocol(format!("unexpected answer of type {kind}"))
}

fn put_u32(buf: &mut Vec<u8>, value: u32) {
    buf.extend_from_slice(&value.to_be_bytes());
}

/// A request body that is one string: a path or a handle.
fn bytes_body(bytes: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(bytes.len() + 4);
    put_bytes(&mut body, bytes);
    body
}

/// OPEN's body: path, flags, and the permissions of a file it creates.
fn open_body(path: &[u8], flags: u32, permissions: Option<u32>) -> Vec<u8> {
    let mut body = bytes_body(path);
    put_u32(&mut body, flags);
    match permissions {
        Some(mode) => {
            put_u32(&mut body, ATTR_PERMISSIONS);
            put_u32(&mut body, mode);
        }
        None => put_u32(&mut body, 0),
    }
    body
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(buf, u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    buf.extend_from_slice(bytes);
}

/// Reads the fields of an answer; running off its end is a broken session.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }

    fn take(&mut self, count: usize) -> Answer<&'a [u8]> {
        if self.data.len() < count {
            return Err(SftpError::Protocol("answer cut short".to_string()));
        }
        let (head, rest) = self.data.split_at(count);
        self.data = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Answer<u32> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self) -> Answer<u64> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }

    fn bytes(&mut self) -> Answer<&'a [u8]> {
        let length = self.u32()? as usize;
        self.take(length)
    }

    #[cfg(test)]
    fn rest(&self) -> &'a [u8] {
        self.data
    }

    fn attrs(&mut self) -> Answer<Attrs> {
        let flags = self.u32()?;
        let mut attrs = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            attrs.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            self.take(8)?;
        }
        if flags & ATTR_PERMISSIONS != 0 {
            attrs.permissions = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            attrs.times = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            for _ in 0..self.u32()? {
                self.bytes()?;
                self.bytes()?;
            }
        }
        Ok(attrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs_bytes(flags: u32, fields: &[u32]) -> Vec<u8> {
        let mut buf = Vec::new();
        put_u32(&mut buf, flags);
        for &field in fields {
            put_u32(&mut buf, field);
        }
        buf
    }

    #[test]
    fn reads_attributes_skipping_what_it_does_not_need() {
        // size (2 words), uid+gid, permissions, atime+mtime, one extension pair.
        let mut data = attrs_bytes(
            ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME | ATTR_EXTENDED,
            &[1, 2, 1000, 1000, 0o100644, 7, 8, 1],
        );
        put_bytes(&mut data, b"name@example.com");
        put_bytes(&mut data, b"value");
        data.extend_from_slice(b"after");
        let mut reader = Reader::new(&data);
        let attrs = reader.attrs().unwrap();
        assert_eq!(attrs.size, Some((1 << 32) | 2));
        assert_eq!(attrs.permissions, Some(0o100644));
        assert_eq!(attrs.kind(), Kind::File);
        assert_eq!(reader.rest(), b"after");
    }

    #[test]
    fn kinds_from_mode_bits() {
        let kind = |mode| {
            Attrs {
                permissions: Some(mode),
                ..Attrs::default()
            }
            .kind()
        };
        assert_eq!(kind(0o040755), Kind::Dir);
        assert_eq!(kind(0o120777), Kind::Symlink);
        assert_eq!(kind(0o010644), Kind::Other);
        assert_eq!(Attrs::default().kind(), Kind::Unknown);
    }

    #[test]
    fn a_cut_answer_is_a_broken_session_not_a_panic() {
        let data = attrs_bytes(ATTR_SIZE, &[0]);
        assert!(matches!(
            Reader::new(&data).attrs(),
            Err(SftpError::Protocol(_))
        ));
        let mut name = Vec::new();
        put_u32(&mut name, 10);
        name.extend_from_slice(b"abc");
        assert!(matches!(
            Reader::new(&name).bytes(),
            Err(SftpError::Protocol(_))
        ));
    }

    fn answer(kind: u8, id: u32, body: &[u8]) -> Vec<u8> {
        let mut packet = Vec::new();
        put_u32(&mut packet, u32::try_from(body.len() + 5).unwrap());
        packet.push(kind);
        put_u32(&mut packet, id);
        packet.extend_from_slice(body);
        packet
    }

    fn data(bytes: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        put_bytes(&mut body, bytes);
        body
    }

    fn status_body(code: u32) -> Vec<u8> {
        let mut body = Vec::new();
        put_u32(&mut body, code);
        put_bytes(&mut body, b"");
        put_bytes(&mut body, b"");
        body
    }

    /// A session whose server says `answers` whatever it is asked (the ids of our requests
    /// are 1, 2, 3...), and reads and drops the requests.
    fn scripted(dir: &Path, answers: &[Vec<u8>]) -> Sftp {
        let script = dir.join("answers");
        std::fs::write(&script, answers.concat()).unwrap();
        let cmd = Cmd::new("sh")
            .arg("-c")
            .arg("cat \"$0\"; exec cat >/dev/null")
            .arg(&script);
        Sftp::spawn(&cmd, &dir.join("err"), Limits::default()).unwrap()
    }

    #[test]
    fn a_short_read_is_asked_for_again_from_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        // 100 bytes listed: the read of 100 (1) brings 60, the read past the end (2) says
        // EOF, the read of the rest (3) brings 40.
        let mut sftp = scripted(
            dir.path(),
            &[
                answer(DATA, 1, &data(&[b'a'; 60])),
                answer(STATUS, 2, &status_body(FX_EOF)),
                answer(DATA, 3, &data(&[b'b'; 40])),
            ],
        );
        let mut file = [0u8; 100];
        let read = sftp
            .read_file(b"h", 100, |offset, bytes| {
                let offset = usize::try_from(offset).unwrap();
                file[offset..offset + bytes.len()].copy_from_slice(bytes);
                Ok(())
            })
            .unwrap();
        assert!(matches!(read, FileRead::Whole), "{read:?}");
        assert_eq!(&file[..60], &[b'a'; 60]);
        assert_eq!(&file[60..], &[b'b'; 40]);
    }

    #[test]
    fn a_failed_write_stops_the_read_and_leaves_the_session_usable() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = vec![b'x'; READ_CHUNK as usize];
        // 64 KiB listed: three reads at once (two of data, one at the end for EOF), then
        // the close that follows.
        let mut sftp = scripted(
            dir.path(),
            &[
                answer(DATA, 1, &data(&chunk)),
                answer(DATA, 2, &data(&chunk)),
                answer(STATUS, 3, &status_body(FX_EOF)),
                answer(STATUS, 4, &status_body(FX_OK)),
            ],
        );
        let mut writes = 0;
        let read = sftp
            .read_file(b"h", 2 * u64::from(READ_CHUNK), |_, _| {
                writes += 1;
                Err(std::io::Error::from_raw_os_error(nix::libc::ENOSPC))
            })
            .unwrap();
        let FileRead::WriteFailed(err) = read else {
            panic!("{read:?}")
        };
        assert_eq!(err.raw_os_error(), Some(nix::libc::ENOSPC));
        assert_eq!(writes, 1, "no write after the first failed");
        let close = sftp.queue_close(b"h");
        assert_eq!(sftp.closed(close), Ok(()));
    }

    /// An answer that comes before the one awaited (the next file's open, while this file's
    /// reads are answered) is kept for when it is asked for.
    #[test]
    fn answers_out_of_order_are_kept_for_their_requests() {
        let dir = tempfile::tempdir().unwrap();
        let mut handle = Vec::new();
        put_bytes(&mut handle, b"h2");
        let mut sftp = scripted(
            dir.path(),
            &[
                // 1: open (queued), 2: the read of another handle, 3: EOF read.
                answer(DATA, 2, &data(b"abc")),
                answer(HANDLE, 1, &handle),
                answer(STATUS, 3, &status_body(FX_EOF)),
            ],
        );
        let opening = sftp.queue_open_read(b"/c/next");
        let mut got = Vec::new();
        let read = sftp
            .read_file(b"h1", 3, |_, bytes| {
                got.extend_from_slice(bytes);
                Ok(())
            })
            .unwrap();
        assert!(matches!(read, FileRead::Whole), "{read:?}");
        assert_eq!(got, b"abc");
        assert!(sftp.has_answer(opening));
        assert_eq!(sftp.opened(opening).unwrap(), b"h2");
    }

    #[test]
    fn an_answer_to_a_request_never_sent_is_a_protocol_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut sftp = scripted(dir.path(), &[answer(STATUS, 7, &status_body(FX_OK))]);
        let close = sftp.queue_close(b"h");
        assert!(matches!(sftp.closed(close), Err(SftpError::Protocol(_))));
    }

    /// Answers to requests answered already were kept without bound (1 GiB per peer).
    #[test]
    fn a_second_answer_to_one_request_is_a_protocol_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut sftp = scripted(
            dir.path(),
            &[
                answer(STATUS, 1, &status_body(FX_OK)),
                answer(STATUS, 1, &status_body(FX_OK)),
            ],
        );
        let close = sftp.queue_close(b"h");
        assert_eq!(sftp.closed(close), Ok(()));
        let again = sftp.queue_close(b"h");
        assert!(matches!(sftp.closed(again), Err(SftpError::Protocol(_))));
    }

    #[test]
    fn more_data_than_asked_for_is_a_protocol_error() {
        let dir = tempfile::tempdir().unwrap();
        let too_much = vec![0u8; 11];
        let mut sftp = scripted(dir.path(), &[answer(DATA, 1, &data(&too_much))]);
        assert!(matches!(
            sftp.read_file(b"h", 10, |_, _| Ok(())),
            Err(SftpError::Protocol(_))
        ));
    }

    #[test]
    fn a_file_that_grows_or_shrinks_while_read_is_said_so_and_no_byte_past_its_size_is_written() {
        let dir = tempfile::tempdir().unwrap();
        // 5 bytes listed, and the peer has more: the read past the end brings data.
        let mut sftp = scripted(
            dir.path(),
            &[
                answer(DATA, 1, &data(b"12345")),
                answer(DATA, 2, &data(b"6")),
            ],
        );
        let mut written = 0;
        let read = sftp
            .read_file(b"h", 5, |offset, bytes| {
                written = written.max(offset + bytes.len() as u64);
                Ok(())
            })
            .unwrap();
        assert!(matches!(read, FileRead::Grew), "{read:?}");
        assert_eq!(written, 5);
        // 5 bytes listed, 3 there.
        let mut sftp = scripted(
            dir.path(),
            &[
                answer(DATA, 1, &data(b"123")),
                answer(STATUS, 2, &status_body(FX_EOF)),
                answer(STATUS, 3, &status_body(FX_EOF)),
            ],
        );
        let read = sftp.read_file(b"h", 5, |_, _| Ok(())).unwrap();
        assert!(matches!(read, FileRead::Shrank(3)), "{read:?}");
    }

    fn name_answer(id: u32, names: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        put_u32(&mut body, u32::try_from(names.len()).unwrap());
        for name in names {
            put_bytes(&mut body, name);
            put_bytes(&mut body, b"");
            body.extend(attrs_bytes(ATTR_SIZE | ATTR_PERMISSIONS, &[0, 1, 0o100644]));
        }
        answer(NAME, id, &body)
    }

    #[test]
    fn a_listing_past_max_entries_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut handle = Vec::new();
        put_bytes(&mut handle, b"d");
        let mut answers = vec![answer(HANDLE, 1, &handle)];
        for id in 2..6 {
            answers.push(name_answer(id, &[b"a", b"b", b"c"]));
        }
        answers.push(answer(STATUS, 6, &status_body(FX_OK)));
        let mut sftp = scripted(dir.path(), &answers);
        let mut seen = 0;
        let listed = sftp.read_dir(b"/c", 10, |_, _| {
            seen += 1;
            Ok(())
        });
        assert!(
            matches!(listed, Err(SftpError::Protocol(ref why)) if why.contains("more than 10"))
        );
        assert_eq!(seen, 10);
    }

    #[test]
    fn a_name_longer_than_a_file_name_can_be_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut handle = Vec::new();
        put_bytes(&mut handle, b"d");
        let long = vec![b'x'; NAME_MAX + 1];
        let mut sftp = scripted(
            dir.path(),
            &[
                answer(HANDLE, 1, &handle),
                name_answer(2, &[&long]),
                answer(STATUS, 3, &status_body(FX_OK)),
            ],
        );
        let listed = sftp.read_dir(b"/c", 10, |_, _| Ok(()));
        assert!(matches!(listed, Err(SftpError::Protocol(_))), "{listed:?}");
    }

    #[test]
    fn a_server_that_says_nothing_is_given_up_at_the_idle_timeout() {
        let dir = tempfile::tempdir().unwrap();
        // Reads every request and answers none, its stdout open.
        let cmd = Cmd::new("sh").args(["-c", "cat >/dev/null"]);
        let idle = std::time::Duration::from_millis(300);
        let limits = Limits {
            deadline: None,
            idle: Some(idle),
        };
        let mut sftp = Sftp::spawn(&cmd, &dir.path().join("err"), limits).unwrap();
        let started = Instant::now();
        let close = sftp.queue_close(b"h");
        assert_eq!(
            sftp.closed(close),
            Err(SftpError::TimedOut(Expired::Idle(idle)))
        );
        assert!(started.elapsed() >= idle);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_packet_bigger_than_any_answer_is_a_protocol_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut huge = Vec::new();
        put_u32(&mut huge, u32::MAX);
        let mut sftp = scripted(dir.path(), &[huge]);
        let close = sftp.queue_close(b"h");
        assert!(matches!(sftp.closed(close), Err(SftpError::Protocol(_))));
    }

    #[test]
    fn packets_are_length_type_and_payload() {
        let mut body = Vec::new();
        put_bytes(&mut body, b"/c/cback.collect");
        assert_eq!(&body[..4], &[0, 0, 0, 16]);
        assert_eq!(&body[4..], b"/c/cback.collect");
    }
}
