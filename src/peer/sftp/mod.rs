//! An SFTP client for what a remote peer needs (probe the collect indicator, list the
//! collect dir, copy its files, write and re-read the stage indicator), on the session of the
//! peer's ssh control master (`ssh -M … -s host sftp`). OpenSSH's scp sends the same
//! requests (SFTP is its default protocol since 9.0), so an sftp-only account allows them;
//! but where scp and ssh are separate processes, with a session on the peer for every step,
//! this is one process and one session for the whole peer.
//!
//! Three layers: `packet` builds requests and reads answers; `Session` (here) sends them and
//! matches each answer to the request waiting for it, within the peer's limits; `download`
//! keeps many files open and read at once, the listing streamed into the copy.

mod download;
mod listing;
pub mod packet;

pub use download::{download, Downloaded, Failure, Plan};
pub use packet::{Attrs, Kind, FX_NO_SUCH_FILE};

use listing::Listing;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Instant;

use crate::limits::{Expired, Limits};
use crate::process::{Cmd, Piped};

use packet::{attrs_answer, bytes_body, handle_answer, open_body, status, Answer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SftpError {
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
                write!(f, "{}", packet::status_words(*code))
            }
            SftpError::Status { message, .. } => f.write_str(message),
            SftpError::Broken(why) => write!(f, "SFTP session lost: {why}"),
            SftpError::Protocol(why) => write!(f, "SFTP protocol error: {why}"),
            SftpError::TimedOut(expired) => write!(f, "{expired}"),
        }
    }
}

/// READDIR requests kept in flight: a listing of thousands of names costs a round trip or
/// two, not one per hundred names.
const READDIRS_IN_FLIGHT: usize = 8;

/// The pipe from ssh, as large as an unprivileged process may ask (pipe-max-size).
const PIPE_SIZE: i32 = 1 << 20;
/// What one read(2) from ssh may bring.
const INCOMING: usize = 256 * 1024;

pub struct Session {
    child: Piped,
    next_id: u32,
    limits: Limits,
    /// When a byte last moved (or the current wait began), for the idle timeout.
    moved_at: Instant,
    /// Requests sent and not yet answered: an answer to anything else is refused.
    pending: HashSet<u32>,
    /// Requests whose answers nobody waits for (a close): read when they come.
    deferred: HashSet<u32>,
    /// Requests not yet written: a batch goes out in one write.
    outgoing: Vec<u8>,
    /// Answers read from ssh, `incoming[taken..filled]` not yet taken: one read(2) brings
    /// many packets. Allocated once and never zeroed again.
    incoming: Box<[u8]>,
    taken: usize,
    filled: usize,
    /// The server tells its limits (`limits@openssh.com`).
    tells_limits: bool,
}

impl Session {
    /// Starts `command` (an `ssh … -s destination sftp`), its stderr into `stderr_file`;
    /// `handshake` must follow. Every answer must come within `limits`.
    pub fn spawn(command: &Cmd, stderr_file: &Path, limits: Limits) -> Answer<Session> {
        let child = command.spawn_piped(stderr_file).map_err(|err| {
            SftpError::Broken(format!(
                "cannot run {}: {err}",
                command.program().to_string_lossy()
            ))
        })?;
        if let Some(stdout) = &child.child.stdout {
            // A pipe of 1 MiB rather than 64 KiB lets ssh hand over what it has in one go, so
            // its own channel buffer stays small: with many reads in flight it otherwise
            // grows and shrinks all the time, which costs ssh more than the copy itself.
            let _ = nix::fcntl::fcntl(stdout, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        }
        Ok(Session {
            child,
            next_id: 0,
            limits,
            moved_at: Instant::now(),
            pending: HashSet::new(),
            deferred: HashSet::new(),
            outgoing: Vec::new(),
            incoming: vec![0u8; INCOMING].into_boxed_slice(),
            taken: 0,
            filled: 0,
            tells_limits: false,
        })
    }

    /// The version exchange. An error here means the session is not available: the peer has
    /// no SFTP subsystem, or ssh could not run or connect (what it said is in `end`).
    pub fn handshake(&mut self) -> Answer<()> {
        // INIT carries the version where other requests carry an id.
        packet::push_packet(&mut self.outgoing, packet::INIT, &3u32.to_be_bytes(), &[]);
        match self.receive()? {
            (packet::VERSION, _version, extensions) => {
                self.tells_limits = packet::extensions(&extensions)?
                    .iter()
                    .any(|name| name == packet::LIMITS_EXTENSION);
                Ok(())
            }
            (kind, _, _) => Err(SftpError::Protocol(format!(
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

    /// Opens `path` in `dir` for reading (following a symlink, as a copy would) and closes it
    /// again: the attributes of a file that could be copied; None if there is no such file,
    /// and then whether `dir` is there. One round trip: the open and the stats go together,
    /// and the close is not waited for.
    pub fn probe(&mut self, path: &[u8], dir: &[u8]) -> Answer<Result<Attrs, bool>> {
        let opening = self.send(packet::OPEN, &open_body(path, packet::FXF_READ, None));
        let stat = self.send(packet::STAT, &bytes_body(path));
        let dir_stat = self.send(packet::STAT, &bytes_body(dir));
        let opened = self
            .answer_to(opening)
            .and_then(|(k, a)| handle_answer(k, &a));
        // Read whatever it says, so that the session stays in step.
        let attrs = self
            .raw_answer_to(stat)
            .and_then(|(kind, body)| match kind {
                packet::STATUS => status(&body).and(Err(packet::unexpected(kind))),
                _ => attrs_answer(kind, &body),
            });
        let dir_there = match self.raw_answer_to(dir_stat)? {
            (packet::ATTRS, _) => true,
            (packet::STATUS, body) => match status(&body) {
                Err(SftpError::Status {
                    code: FX_NO_SUCH_FILE,
                    ..
                }) => false,
                // Not allowed to look, say: it is there as far as we can tell.
                _ => true,
            },
            (kind, _) => return Err(packet::unexpected(kind)),
        };
        let handle = match opened {
            Ok(handle) => handle,
            Err(SftpError::Status {
                code: FX_NO_SUCH_FILE,
                ..
            }) => return Ok(Err(dir_there)),
            Err(err) => return Err(err),
        };
        self.send_deferred(packet::CLOSE, &bytes_body(&handle));
        attrs.map(Ok)
    }

    /// The attributes of `path`, following a symlink.
    pub fn stat(&mut self, path: &[u8]) -> Answer<Attrs> {
        let (kind, answer) = self.request(packet::STAT, &bytes_body(path))?;
        attrs_answer(kind, &answer)
    }

    /// Creates `path` empty (or truncates it) with `permissions` (less the peer's umask),
    /// as an scp upload of an empty file does, and looks at it again: a close that says OK
    /// is not proof. Two round trips: the open, then the close and the stat together.
    pub fn create_empty(&mut self, path: &[u8], permissions: u32) -> Answer<Attrs> {
        let flags = packet::FXF_WRITE | packet::FXF_CREAT | packet::FXF_TRUNC;
        let opening = self.send(packet::OPEN, &open_body(path, flags, Some(permissions)));
        let (kind, answer) = self.answer_to(opening)?;
        let handle = handle_answer(kind, &answer)?;
        let close = self.send(packet::CLOSE, &bytes_body(&handle));
        let stat = self.send(packet::STAT, &bytes_body(path));
        let closed = self.answer_to(close);
        let attrs = self
            .answer_to(stat)
            .and_then(|(kind, body)| attrs_answer(kind, &body));
        closed?;
        attrs
    }

    /// Calls `each` with the name and (not followed) attributes of every entry of `dir`, a
    /// few READDIR requests in flight at once. A peer that lists more than `max_entries`
    /// entries (or answers more READDIR rounds than that with empty lists) is refused: a
    /// listing is held in memory.
    pub fn read_dir(
        &mut self,
        dir: &[u8],
        max_entries: u64,
        mut each: impl FnMut(&[u8], Attrs) -> Answer<()>,
    ) -> Answer<()> {
        let opening = self.send(packet::OPENDIR, &bytes_body(dir));
        let (kind, answer) = self.answer_to(opening)?;
        let handle = handle_answer(kind, &answer)?;
        let mut listing = Listing::new(max_entries);
        let mut in_flight = std::collections::VecDeque::new();
        let mut result = Ok(());
        loop {
            while result.is_ok() && !listing.ended && in_flight.len() < READDIRS_IN_FLIGHT {
                in_flight.push_back(self.send(packet::READDIR, &bytes_body(&handle)));
                if let Err(err) = listing.asked() {
                    result = Err(err);
                }
            }
            let Some(id) = in_flight.pop_front() else {
                break;
            };
            // Answers come in order; every one is read, so the session stays usable.
            let answer = self.raw_answer_to(id);
            if result.is_ok() {
                result = answer.and_then(|(kind, body)| listing.answer(kind, &body, &mut each));
            }
        }
        let closed = self.close(&handle);
        result?;
        closed
    }

    /// Asks the server for its limits, if it tells them; the answer is an EXTENDED_REPLY
    /// (see `packet::open_handles_limit`).
    pub(super) fn ask_limits(&mut self) -> Option<u32> {
        self.tells_limits
            .then(|| self.send(packet::EXTENDED, &bytes_body(packet::LIMITS_EXTENSION)))
    }

    fn close(&mut self, handle: &[u8]) -> Answer<()> {
        self.request(packet::CLOSE, &bytes_body(handle)).map(|_| ())
    }

    /// Sends a request and waits for its answer, type and body. A failure status is an
    /// error; an OK status is returned as (STATUS, …).
    fn request(&mut self, kind: u8, body: &[u8]) -> Answer<(u8, Vec<u8>)> {
        let id = self.send(kind, body);
        self.answer_to(id)
    }

    /// The answer to request `id`, which must be the next to come (nothing else is in
    /// flight outside a download or a listing, which take all their answers).
    fn answer_to(&mut self, id: u32) -> Answer<(u8, Vec<u8>)> {
        let (kind, answer) = self.raw_answer_to(id)?;
        if kind == packet::STATUS {
            status(&answer)?;
        }
        Ok((kind, answer))
    }

    /// `answer_to`, a failure status left for the caller to read.
    fn raw_answer_to(&mut self, id: u32) -> Answer<(u8, Vec<u8>)> {
        let (answer_id, kind, answer) = self.recv()?;
        if answer_id != id {
            return Err(SftpError::Protocol(format!(
                "an answer to request {answer_id} while request {id} waits"
            )));
        }
        Ok((kind, answer))
    }

    /// Queues a request (written out before the next answer is awaited); returns its id.
    pub(super) fn send(&mut self, kind: u8, body: &[u8]) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        self.pending.insert(id);
        packet::push_packet(&mut self.outgoing, kind, &id.to_be_bytes(), body);
        id
    }

    /// Sends a request whose answer nobody waits for (a close that cannot change what was
    /// done): the answer is read when it comes, before the next one awaited.
    pub(super) fn send_deferred(&mut self, kind: u8, body: &[u8]) {
        let id = self.send(kind, body);
        self.deferred.insert(id);
    }

    /// The next answer: its id, type and body. Each request gets one answer: an answer to a
    /// request never sent, or answered already, ends the session. Answers to deferred
    /// requests are taken on the way (a failed close is only worth a line in the log).
    pub(super) fn recv(&mut self) -> Answer<(u32, u8, Vec<u8>)> {
        loop {
            let (kind, id, packet) = self.receive()?;
            if !self.pending.remove(&id) {
                return Err(SftpError::Protocol(format!(
                    "an answer (type {kind}) to request {id}, which is not waiting for one"
                )));
            }
            if self.deferred.remove(&id) {
                if let Err(err) = status(&packet) {
                    log::debug!("sftp: a close failed: {err}");
                }
                continue;
            }
            return Ok((id, kind, packet));
        }
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

    /// Holds off until `until` (a bandwidth limit's pace), the requests so far sent. A
    /// paced copy is not idle: the idle time starts again after the pause. The deadline
    /// and a cancel end the pause.
    pub(super) fn pause(&mut self, until: Instant) -> Answer<()> {
        self.flush()?;
        loop {
            let now = Instant::now();
            if now >= until {
                break;
            }
            if let Some(Expired::Deadline) = self.limits.deadline_only().expired(now, now) {
                return Err(SftpError::TimedOut(Expired::Deadline));
            }
            if crate::cancel::canceled_by().is_some() {
                return Err(SftpError::Broken("canceled".to_string()));
            }
            std::thread::sleep((until - now).min(std::time::Duration::from_millis(100)));
        }
        self.moved_at = Instant::now();
        Ok(())
    }

    /// The next packet: its type, the u32 every answer starts with (the request id; the
    /// version in VERSION), and the rest.
    fn receive(&mut self) -> Answer<(u8, u32, Vec<u8>)> {
        self.flush()?;
        let mut length = [0u8; 4];
        self.read_exact(&mut length)?;
        let length = u32::from_be_bytes(length) as usize;
        if !(5..=packet::MAX_PACKET).contains(&length) {
            return Err(SftpError::Protocol(format!("bad packet length {length}")));
        }
        let mut head = [0u8; 5];
        self.read_exact(&mut head)?;
        let [kind, i0, i1, i2, i3] = head;
        let mut packet = Vec::with_capacity(length - 5);
        while packet.len() < length - 5 {
            if self.taken == self.filled {
                self.refill()?;
            }
            let count = (self.filled - self.taken).min(length - 5 - packet.len());
            packet.extend_from_slice(&self.incoming[self.taken..self.taken + count]);
            self.taken += count;
        }
        Ok((kind, u32::from_be_bytes([i0, i1, i2, i3]), packet))
    }

    /// Reads exactly `buf.len()` bytes, waiting no longer than the limits allow.
    fn read_exact(&mut self, buf: &mut [u8]) -> Answer<()> {
        let mut filled = 0;
        while filled < buf.len() {
            if self.taken == self.filled {
                self.refill()?;
            }
            let count = (self.filled - self.taken).min(buf.len() - filled);
            buf[filled..filled + count]
                .copy_from_slice(&self.incoming[self.taken..self.taken + count]);
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
        self.taken = 0;
        self.filled = 0;
        loop {
            if let Some(until) = self.limits.until(self.moved_at) {
                let now = Instant::now();
                if let Some(expired) = self.limits.expired(self.moved_at, now) {
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
                    Err(err) => return Err(SftpError::Broken(err.to_string())),
                }
            }
            match stdout.read(&mut self.incoming) {
                Ok(0) => return Err(SftpError::Broken("ssh exited".to_string())),
                Ok(count) => {
                    self.filled = count;
                    self.moved_at = Instant::now();
                    return Ok(());
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(SftpError::Broken(err.to_string())),
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::packet::*;
    use super::*;

    pub fn answer(kind: u8, id: u32, body: &[u8]) -> Vec<u8> {
        let mut packet = Vec::new();
        put_u32(&mut packet, u32::try_from(body.len() + 5).unwrap());
        packet.push(kind);
        put_u32(&mut packet, id);
        packet.extend_from_slice(body);
        packet
    }

    pub fn data(bytes: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        put_bytes(&mut body, bytes);
        body
    }

    pub fn status_body(code: u32) -> Vec<u8> {
        let mut body = Vec::new();
        put_u32(&mut body, code);
        put_bytes(&mut body, b"");
        put_bytes(&mut body, b"");
        body
    }

    pub fn handle(name: &[u8]) -> Vec<u8> {
        data(name)
    }

    pub fn names(entries: &[(&[u8], u32, u32)]) -> Vec<u8> {
        let mut body = Vec::new();
        put_u32(&mut body, u32::try_from(entries.len()).unwrap());
        for (name, size, mode) in entries {
            put_bytes(&mut body, name);
            put_bytes(&mut body, b"");
            body.extend(packet::tests::file_attrs(*size, *mode));
        }
        body
    }

    /// A session whose server says `answers` whatever it is asked (the ids of our requests
    /// are 1, 2, 3...), and reads and drops the requests.
    pub fn scripted(dir: &Path, answers: &[Vec<u8>]) -> Session {
        let script = dir.join("answers");
        std::fs::write(&script, answers.concat()).unwrap();
        let cmd = Cmd::new("sh")
            .arg("-c")
            .arg("cat \"$0\"; exec cat >/dev/null")
            .arg(&script);
        Session::spawn(&cmd, &dir.join("err"), Limits::default()).unwrap()
    }

    #[test]
    fn an_answer_to_a_request_never_sent_is_a_protocol_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut sftp = scripted(dir.path(), &[answer(STATUS, 7, &status_body(FX_OK))]);
        assert!(matches!(sftp.close(b"h"), Err(SftpError::Protocol(_))));
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
        assert_eq!(sftp.close(b"h"), Ok(()));
        assert!(matches!(sftp.close(b"h"), Err(SftpError::Protocol(_))));
    }

    #[test]
    fn a_listing_past_max_entries_is_refused_and_its_answers_all_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut answers = vec![answer(HANDLE, 1, &handle(b"d"))];
        // 8 READDIRs (2..=9) in flight at once; the fourth answer passes 10 entries.
        for id in 2..=9 {
            let entry: (&[u8], u32, u32) = (b"a", 1, 0o100644);
            answers.push(answer(NAME, id, &names(&[entry; 3])));
        }
        answers.push(answer(STATUS, 10, &status_body(FX_OK)));
        let mut sftp = scripted(dir.path(), &answers);
        let mut seen = 0;
        let listed = sftp.read_dir(b"/c", 10, |_, _| {
            seen += 1;
            Ok(())
        });
        assert!(
            matches!(listed, Err(SftpError::Protocol(ref why)) if why.contains("more than 10")),
            "{listed:?}"
        );
        assert_eq!(seen, 10);
    }

    #[test]
    fn a_listing_ends_at_eof_with_its_readdirs_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let mut answers = vec![
            answer(HANDLE, 1, &handle(b"d")),
            answer(
                NAME,
                2,
                &names(&[(&b"a"[..], 1, 0o100644), (&b"b"[..], 2, 0o100644)]),
            ),
        ];
        // The first answer frees a place for a ninth READDIR (10); all say EOF.
        for id in 3..=10 {
            answers.push(answer(STATUS, id, &status_body(FX_EOF)));
        }
        answers.push(answer(STATUS, 11, &status_body(FX_OK)));
        let mut sftp = scripted(dir.path(), &answers);
        let mut seen = Vec::new();
        sftp.read_dir(b"/c", 100, |name, attrs| {
            seen.push((name.to_vec(), attrs.size));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [(b"a".to_vec(), Some(1)), (b"b".to_vec(), Some(2))]);
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
        let mut sftp = Session::spawn(&cmd, &dir.path().join("err"), limits).unwrap();
        let started = Instant::now();
        assert_eq!(
            sftp.close(b"h"),
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
        assert!(matches!(sftp.close(b"h"), Err(SftpError::Protocol(_))));
    }
}
