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

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Instant;

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

/// Bigger answers than this are not something we asked for (a READDIR answer of OpenSSH
/// holds at most 100 names).
const MAX_PACKET: usize = 1 << 20;

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
    /// The session ended or spoke nonsense: the connection, ssh or the server is gone.
    Broken(String),
    /// The peer's deadline passed while waiting for an answer.
    TimedOut,
}

impl std::fmt::Display for SftpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SftpError::Status { code, message } if message.is_empty() => {
                write!(f, "{}", status_words(*code))
            }
            SftpError::Status { message, .. } => f.write_str(message),
            SftpError::Broken(why) => write!(f, "SFTP session lost: {why}"),
            SftpError::TimedOut => f.write_str("timed out"),
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

pub(super) struct Sftp {
    child: Piped,
    next_id: u32,
    deadline: Option<Instant>,
    /// Requests not yet written: a batch of reads goes out in one write.
    outgoing: Vec<u8>,
    /// Answers read from ssh but not yet taken: one read(2) brings many packets.
    incoming: Vec<u8>,
    taken: usize,
    /// Answers that came while another one was awaited (requests are pipelined: the next
    /// file's open goes out with this file's reads), kept until asked for.
    early: std::collections::HashMap<u32, (u8, Vec<u8>)>,
}

impl Sftp {
    /// Starts `command` (an `ssh … -s destination sftp`), its stderr into `stderr_file`;
    /// `handshake` must follow. Every answer must come by `deadline`.
    pub fn spawn(command: &Cmd, stderr_file: &Path, deadline: Option<Instant>) -> Answer<Sftp> {
        let child = command.spawn_piped(stderr_file).map_err(|err| {
            SftpError::Broken(format!(
                "cannot run {}: {err}",
                command.program().to_string_lossy()
            ))
        })?;
        Ok(Sftp {
            child,
            next_id: 0,
            deadline,
            outgoing: Vec::new(),
            incoming: Vec::new(),
            taken: 0,
            early: std::collections::HashMap::new(),
        })
    }

    /// The version exchange. An error here means the session is not available: the peer has
    /// no SFTP subsystem, or ssh could not run or connect (what it said is in `end`).
    pub fn handshake(&mut self) -> Answer<()> {
        // INIT carries the version where other requests carry an id.
        self.push_packet(INIT, &3u32.to_be_bytes(), &[]);
        match self.receive()? {
            (VERSION, _) => Ok(()),
            (kind, _) => Err(SftpError::Broken(format!(
                "answered INIT with packet type {kind}"
            ))),
        }
    }

    /// From now on every answer must come by `deadline` (the peer's, after the connect wait).
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Ends the session and returns what ssh said on stderr, trimmed to its last line.
    pub fn end(self) -> String {
        let until = Instant::now() + std::time::Duration::from_millis(500);
        let said = self
            .child
            .close(self.deadline.map_or(until, |deadline| deadline.min(until)));
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

    /// Reads the file behind `handle` to its end, `expected` bytes long as far as its
    /// listing says (it is read to its real end all the same), handing each piece to
    /// `write(offset, data)`; returns its length. Up to 64 reads are in flight, as in
    /// OpenSSH's own client, so a round trip is paid per 2 MiB, not per 32 KiB. A short
    /// read is asked for again from where it stopped. A failing `write` stops the reading
    /// (the answers already on their way are read and dropped, so the session stays usable)
    /// and its error is returned inside.
    pub fn read_file(
        &mut self,
        handle: &[u8],
        expected: u64,
        mut write: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
    ) -> Answer<std::io::Result<u64>> {
        let mut in_flight: std::collections::VecDeque<(u32, u64, u32)> = Default::default();
        // Parts that came back short, to ask for again.
        let mut gaps: Vec<(u64, u32)> = Vec::new();
        let mut next = 0u64;
        let mut known_end = expected;
        let mut eof: Option<u64> = None;
        let mut write_error: Option<std::io::Error> = None;
        let mut read_error: Option<SftpError> = None;
        loop {
            let stopping = write_error.is_some() || read_error.is_some();
            while !stopping && in_flight.len() < READS_IN_FLIGHT {
                let (offset, length) = match gaps.pop() {
                    Some((offset, _)) if eof.is_some_and(|end| offset >= end) => continue,
                    Some(gap) => gap,
                    // Up to the listed size and one read past it, which should say EOF.
                    None if eof.is_none() && (next <= known_end || in_flight.is_empty()) => {
                        next += u64::from(READ_CHUNK);
                        (next - u64::from(READ_CHUNK), READ_CHUNK)
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
                        return Err(SftpError::Broken("more data than asked for".to_string()));
                    }
                    if data.is_empty() {
                        eof = Some(eof.map_or(offset, |end| end.min(offset)));
                        continue;
                    }
                    if write_error.is_none() {
                        if let Err(err) = write(offset, data) {
                            write_error = Some(err);
                        }
                    }
                    let end = offset + data.len() as u64;
                    known_end = known_end.max(end);
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
        if let Some(err) = write_error {
            return Ok(Err(err));
        }
        Ok(Ok(eof.unwrap_or(known_end)))
    }

    /// Calls `each` with the name and (not followed) attributes of every entry of `dir`.
    pub fn read_dir(
        &mut self,
        dir: &[u8],
        mut each: impl FnMut(&[u8], Attrs) -> Answer<()>,
    ) -> Answer<()> {
        let opening = self.queue(OPENDIR, &bytes_body(dir));
        let handle = self.opened(opening)?;
        let listed = loop {
            let (kind, answer) = match self.request(READDIR, &bytes_body(&handle)) {
                Ok(answer) => answer,
                Err(SftpError::Status { code: FX_EOF, .. }) => break Ok(()),
                Err(err) => break Err(err),
            };
            if kind != NAME {
                break Err(unexpected(kind));
            }
            if let Err(err) = each_name(&answer, &mut each) {
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
            Some(early) => early,
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

    /// Keeps an answer for a request not being waited for. One to a request never sent, or
    /// more than a pipelined copy leaves waiting, is a server speaking nonsense.
    fn keep_early(&mut self, id: u32, kind: u8, answer: Vec<u8>) -> Answer<()> {
        let sent = id != 0 && id.wrapping_sub(1) < self.next_id;
        if !sent || self.early.len() >= 1024 || self.early.contains_key(&id) {
            return Err(SftpError::Broken(
                "answer to a request never sent".to_string(),
            ));
        }
        self.early.insert(id, (kind, answer));
        Ok(())
    }

    /// Queues a request (written out before the next answer is awaited); returns its id.
    fn queue(&mut self, kind: u8, body: &[u8]) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
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

    /// The next answer: its id, type and body.
    fn answer(&mut self) -> Answer<(u32, u8, Vec<u8>)> {
        let (kind, mut packet) = self.receive()?;
        let id = Reader::new(&packet).u32()?;
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
        written
    }

    fn receive(&mut self) -> Answer<(u8, Vec<u8>)> {
        self.flush()?;
        let mut length = [0u8; 4];
        self.read_exact(&mut length)?;
        let length = u32::from_be_bytes(length) as usize;
        if length == 0 || length > MAX_PACKET {
            return Err(SftpError::Broken(format!("bad packet length {length}")));
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
    /// deadline.
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
            if let Some(deadline) = self.deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                let millis = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
                let mut fds = [nix::poll::PollFd::new(
                    stdout.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let timeout =
                    nix::poll::PollTimeout::try_from(millis).unwrap_or(nix::poll::PollTimeout::MAX);
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(0) => {
                        self.incoming.clear();
                        return Err(SftpError::TimedOut);
                    }
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
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
    SftpError::Broken(format!("unexpected answer of type {kind}"))
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
            return Err(SftpError::Broken("answer cut short".to_string()));
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
            Err(SftpError::Broken(_))
        ));
        let mut name = Vec::new();
        put_u32(&mut name, 10);
        name.extend_from_slice(b"abc");
        assert!(matches!(
            Reader::new(&name).bytes(),
            Err(SftpError::Broken(_))
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
        Sftp::spawn(&cmd, &dir.join("err"), None).unwrap()
    }

    #[test]
    fn a_short_read_is_asked_for_again_from_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        // 100 bytes listed: one read of 32 KiB (the listed size is below the next one)
        // brings 60, the read of the rest brings 40, the read after them says EOF.
        let mut sftp = scripted(
            dir.path(),
            &[
                answer(DATA, 1, &data(&[b'a'; 60])),
                answer(DATA, 2, &data(&[b'b'; 40])),
                answer(STATUS, 3, &status_body(FX_EOF)),
            ],
        );
        let mut file = [0u8; 100];
        let length = sftp
            .read_file(b"h", 100, |offset, bytes| {
                let offset = usize::try_from(offset).unwrap();
                file[offset..offset + bytes.len()].copy_from_slice(bytes);
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(length, 100);
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
        assert_eq!(read.unwrap_err().raw_os_error(), Some(nix::libc::ENOSPC));
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
        let length = sftp
            .read_file(b"h1", 3, |_, bytes| {
                got.extend_from_slice(bytes);
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert_eq!((length, &got[..]), (3, &b"abc"[..]));
        assert!(sftp.has_answer(opening));
        assert_eq!(sftp.opened(opening).unwrap(), b"h2");
    }

    #[test]
    fn an_answer_to_a_request_never_sent_is_a_broken_session() {
        let dir = tempfile::tempdir().unwrap();
        let mut sftp = scripted(dir.path(), &[answer(STATUS, 7, &status_body(FX_OK))]);
        let close = sftp.queue_close(b"h");
        assert!(matches!(sftp.closed(close), Err(SftpError::Broken(_))));
    }

    #[test]
    fn more_data_than_asked_for_is_a_broken_session() {
        let dir = tempfile::tempdir().unwrap();
        let too_much = vec![0u8; READ_CHUNK as usize + 1];
        let mut sftp = scripted(dir.path(), &[answer(DATA, 1, &data(&too_much))]);
        assert!(matches!(
            sftp.read_file(b"h", 10, |_, _| Ok(())),
            Err(SftpError::Broken(_))
        ));
    }

    #[test]
    fn packets_are_length_type_and_payload() {
        let mut body = Vec::new();
        put_bytes(&mut body, b"/c/cback.collect");
        assert_eq!(&body[..4], &[0, 0, 0, 16]);
        assert_eq!(&body[4..], b"/c/cback.collect");
    }
}
