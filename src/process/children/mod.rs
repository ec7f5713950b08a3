//! Running a child: its output kept within bounds, its limits watched (`--timeout`, the idle
//! timeout), and it ended with its whole process group, however peerstage ends.

use std::io;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::limits::{Expired, Limits};

use super::{Cmd, Finished};

impl Cmd {
    /// Runs the command with stdin closed and both outputs captured, killing it when a limit
    /// passes. A spawn failure (program vanished, not executable) is an `io::Error`; a
    /// non-zero exit is not, the caller decides what it means.
    pub fn run(&self, limits: Limits) -> io::Result<Finished> {
        self.start()?.finish(limits)
    }

    /// Starts the command like `run` does, to be finished later, so that it can run while
    /// something else does. Dropped unfinished, it is killed. Its stdout is kept up to
    /// `STDOUT_LIMIT` bytes.
    pub fn start(&self) -> io::Result<Running> {
        self.start_capped(STDOUT_LIMIT)
    }

    /// `start`, keeping at most `stdout_limit` bytes of stdout (what a peer prints is not
    /// ours to hold without bound); `Finished::stdout_cut` says when there was more.
    pub fn start_capped(&self, stdout_limit: usize) -> io::Result<Running> {
        log::debug!("running: {self}");
        let (stdout_read, stdout_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        let expression = self
            .expression()
            .stdin_null()
            .stdout_file(stdout_write)
            .stderr_file(stderr_write)
            .unchecked()
            .before_spawn(own_process_group);
        let mut running = Running::start_expression(&expression, self.to_string())?;
        // Our copies of the write ends go with the expression, so the readers see the end
        // of the output when the child and what it started are gone.
        drop(expression);
        running.stdout = Some(Capture::start(stdout_read, stdout_limit, 0, &running.moved));
        running.stderr = Some(Capture::start(
            stderr_read,
            STDERR_HEAD,
            STDERR_TAIL,
            &running.moved,
        ));
        Ok(running)
    }

    /// Starts the command with its output going to our stderr, as it comes (a hook: what it
    /// prints is for the log, and stdout stays free for `--json`), in a group of its own
    /// like every child, so that a deadline or a cancel ends what it started too.
    pub fn start_into_stderr(&self) -> io::Result<Running> {
        log::debug!("running: {self}");
        let expression = self
            .expression()
            .stdin_null()
            .stdout_to_stderr()
            .unchecked()
            .before_spawn(own_process_group);
        Running::start_expression(&expression, self.to_string())
    }

    /// Starts the command in the background, in a process group of its own, with stdin and
    /// stdout closed and stderr into `stderr_file`. The whole group is killed when the
    /// returned value is dropped.
    pub fn spawn(&self, stderr_file: &Path) -> io::Result<Background> {
        log::debug!("starting: {self}");
        let handle = self
            .expression()
            .stdin_null()
            .stdout_null()
            .stderr_path(stderr_file)
            .unchecked()
            .before_spawn(own_process_group)
            .start()?;
        track(&handle);
        Ok(Background { handle })
    }

    /// Starts the command with pipes to its stdin and stdout and its stderr into
    /// `stderr_file` (a pipe nobody reads during a long conversation could fill and stop
    /// it), in a process group of its own like every other child, for a conversation (an
    /// SFTP session). The group is killed when the returned value is dropped and the child
    /// has not exited by then.
    pub fn spawn_piped(&self, stderr_file: &Path) -> io::Result<Piped> {
        log::debug!("starting: {self}");
        let mut command = std::process::Command::new(&self.program);
        command
            .args(&self.args)
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(stderr_file)?);
        own_process_group(&mut command)?;
        let child = command.spawn()?;
        track_group(child.id());
        Ok(Piped {
            child,
            stderr_file: stderr_file.to_path_buf(),
        })
    }

    /// Runs the command with our stdin, stdout and stderr, so a remote command's output passes
    /// through untouched.
    pub fn run_inherited(&self) -> io::Result<ExitStatus> {
        log::debug!("running: {self}");
        Ok(self
            .expression()
            .unchecked()
            .before_spawn(with_signals_unblocked)
            .run()?
            .status)
    }

    fn expression(&self) -> duct::Expression {
        // The messages we match on (scp's "No such file or directory") must not be translated.
        let mut expression = duct::cmd(&self.program, &self.args).env("LC_ALL", "C");
        for (name, value) in &self.env {
            expression = expression.env(name, value);
        }
        expression
    }
}

/// A child started with `Cmd::start`, its output being captured.
pub struct Running {
    handle: Option<duct::Handle>,
    /// The command line, for a failure to name.
    command: String,
    stdout: Option<Capture>,
    stderr: Option<Capture>,
    /// Bytes of output read so far: progress, for the idle timeout.
    moved: Arc<AtomicU64>,
}

impl Running {
    /// Starts an expression (in a group of its own), counted for `cancel` like every child.
    fn start_expression(expression: &duct::Expression, command: String) -> io::Result<Running> {
        let handle = expression.start()?;
        track(&handle);
        Ok(Running {
            handle: Some(handle),
            command,
            stdout: None,
            stderr: None,
            moved: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Waits for the child and returns what it left behind. Past the deadline, or when
    /// neither it nor what it started has read, written or printed a byte for the idle
    /// time (see `tree_io`), it is killed with its group.
    pub fn finish(mut self, limits: Limits) -> io::Result<Finished> {
        let Some(handle) = self.handle.take() else {
            return Err(io::Error::other("child already finished"));
        };
        let expired = self.watch(&handle, limits)?;
        if expired.is_some() {
            terminate(&handle);
        }
        let pids = handle.pids();
        let status = handle.wait().map(|output| output.status);
        for pid in pids {
            untrack_group(pid);
        }
        let status = status?;
        // What is still in the pipes comes at once; a process that outlives the child and
        // holds them (an ssh control master holds the stderr of every client whose session
        // is still open on the peer) is not waited for.
        let until = Instant::now() + OUTPUT_GRACE;
        let (stdout, stdout_cut) = self
            .stdout
            .take()
            .map(|capture| capture.join(until))
            .unwrap_or_default();
        let (stderr, _) = self
            .stderr
            .take()
            .map(|capture| capture.join(until))
            .unwrap_or_default();
        Ok(Finished {
            command: std::mem::take(&mut self.command),
            status,
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            timed_out: expired.is_some(),
            expired,
            stdout_cut,
        })
    }

    /// Waits until the child exits or a limit passes (which one, then).
    fn watch(&self, handle: &duct::Handle, limits: Limits) -> io::Result<Option<Expired>> {
        if limits == Limits::default() {
            handle.wait()?;
            return Ok(None);
        }
        let mut moved_at = Instant::now();
        let mut last = None;
        loop {
            let tick = Instant::now() + WATCH_TICK;
            let until = limits.until(moved_at).map_or(tick, |until| until.min(tick));
            if handle.wait_deadline(until)?.is_some() {
                return Ok(None);
            }
            let now = Instant::now();
            if limits.idle.is_some() {
                let io = tree_io(&handle.pids()) + self.moved.load(Ordering::Relaxed);
                if last != Some(io) {
                    last = Some(io);
                    moved_at = now;
                }
            }
            if let Some(expired) = limits.expired(moved_at, now) {
                return Ok(Some(expired));
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            if matches!(handle.try_wait(), Ok(None)) {
                terminate(&handle);
            }
            let _ = handle.wait();
            untrack(&handle);
        }
    }
}

/// How often a watched child's progress is looked at.
const WATCH_TICK: Duration = Duration::from_millis(250);

/// How long the output of a child that has exited is still read.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Stdout kept of a command by default: far more than any command we run prints, except a
/// listing, which asks for its own limit.
const STDOUT_LIMIT: usize = 1 << 20;
/// Stderr kept: its beginning (scp's lines about skipped entries) and its end (ssh's reason
/// for failing comes last).
const STDERR_HEAD: usize = 256 * 1024;
const STDERR_TAIL: usize = 16 * 1024;

/// A pipe whose ends are closed in every child but the one they are given to.
fn pipe() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// A thread reading one output of a child to its end, keeping the first `head` bytes and the
/// last `tail`; the rest is counted and dropped, so the child never blocks on a full pipe
/// and memory stays bounded whatever it prints.
struct Capture {
    kept: Arc<std::sync::Mutex<Kept>>,
    ended: std::sync::mpsc::Receiver<()>,
}

#[derive(Default)]
struct Kept {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    cut: bool,
}

impl Capture {
    fn start(
        fd: std::os::fd::OwnedFd,
        head: usize,
        tail: usize,
        moved: &Arc<AtomicU64>,
    ) -> Capture {
        let moved = Arc::clone(moved);
        let kept = Arc::new(std::sync::Mutex::new(Kept::default()));
        let (send, ended) = std::sync::mpsc::channel();
        let shared = Arc::clone(&kept);
        std::thread::spawn(move || {
            let mut input = std::fs::File::from(fd);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let count = match io::Read::read(&mut input, &mut buf) {
                    Ok(0) => break,
                    Ok(count) => count,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                moved.fetch_add(count as u64, Ordering::Relaxed);
                let Ok(mut kept) = shared.lock() else { break };
                let data = &buf[..count];
                let room = head.saturating_sub(kept.head.len()).min(data.len());
                kept.head.extend_from_slice(&data[..room]);
                let rest = &data[room..];
                if rest.is_empty() {
                    continue;
                }
                kept.tail.extend(rest);
                if kept.tail.len() > tail {
                    kept.cut = true;
                    let extra = kept.tail.len() - tail;
                    kept.tail.drain(..extra);
                }
            }
            let _ = send.send(());
        });
        Capture { kept, ended }
    }

    /// What was kept, and whether anything was dropped. The output is read until it ends or
    /// `until`, whichever comes first (the thread reads on, and drops what it reads, until
    /// the output ends).
    fn join(self, until: Instant) -> (Vec<u8>, bool) {
        let _ = self
            .ended
            .recv_timeout(until.saturating_duration_since(Instant::now()));
        let Ok(mut kept) = self.kept.lock() else {
            return (Vec::new(), true);
        };
        let mut out = std::mem::take(&mut kept.head);
        if kept.cut && !kept.tail.is_empty() {
            out.extend_from_slice(b"\n[...]\n");
        }
        out.extend(kept.tail.drain(..));
        (out, kept.cut)
    }
}

/// Bytes read and written so far (`rchar` + `wchar` of /proc/PID/io) by the processes of
/// `roots` and their descendants, leaving out ssh clients: their transport stays busy with
/// keepalives on a link where nothing else moves, so they would hide a stall. An scp reads
/// from its ssh only what the peer really sent. Processes that cannot be read count nothing.
pub fn tree_io(roots: &[u32]) -> u64 {
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut children: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    for entry in proc_dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut total = 0u64;
    let mut todo: Vec<u32> = roots.to_vec();
    let mut seen = std::collections::HashSet::new();
    while let Some(pid) = todo.pop() {
        if !seen.insert(pid) {
            continue;
        }
        todo.extend(children.get(&pid).into_iter().flatten());
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if matches!(comm.trim_end(), "ssh" | "dbclient") {
            continue;
        }
        let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) else {
            continue;
        };
        for line in io.lines() {
            if let Some(value) = line
                .strip_prefix("rchar: ")
                .or_else(|| line.strip_prefix("wchar: "))
            {
                total = total.wrapping_add(value.trim().parse::<u64>().unwrap_or(0));
            }
        }
    }
    total
}

/// A child started with `Cmd::spawn`.
pub struct Background {
    handle: duct::Handle,
}

impl Background {
    /// Whether the child has exited.
    pub fn exited(&self) -> bool {
        !matches!(self.handle.try_wait(), Ok(None))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if !self.exited() {
            terminate(&self.handle);
        }
        let _ = self.handle.wait();
        untrack(&self.handle);
    }
}

/// A child started with `Cmd::spawn_piped`.
pub struct Piped {
    pub child: std::process::Child,
    stderr_file: std::path::PathBuf,
}

impl Piped {
    /// Closes the child's stdin (the end of the conversation) and gives it until `deadline`
    /// to exit by itself; then it is terminated. Returns what it said on stderr.
    pub fn close(mut self, deadline: Instant) -> String {
        drop(self.child.stdin.take());
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.stop();
        self.said()
    }

    /// What the child has said on stderr so far.
    fn said(&self) -> String {
        std::fs::read(&self.stderr_file)
            .map(|said| String::from_utf8_lossy(&said).into_owned())
            .unwrap_or_default()
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let child = &mut self.child;
            let pids = vec![child.id()];
            terminate_groups(&pids, |until| loop {
                if !matches!(child.try_wait(), Ok(None)) {
                    return true;
                }
                if Instant::now() >= until {
                    return false;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            });
        }
        let _ = self.child.wait();
        untrack_group(self.child.id());
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Puts a child in a process group of its own, so that a deadline kills it together with
/// what it started (scp's ssh, su's shell): a grandchild left alive would hold our pipes open.
/// A group of its own no longer gets the terminal's Ctrl-C, so the child is also told to end
/// when peerstage does, however it ends (Ctrl-C, SIGTERM, kill -9): an ssh control master
/// must never outlive the run.
pub(crate) fn own_process_group(command: &mut std::process::Command) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = nix::unistd::getpid();
        // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid, _exit).
        unsafe {
            command.pre_exec(move || {
                unblock_signals()?;
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(io::Error::from)?;
                if nix::unistd::getppid() != parent {
                    // peerstage ended before the death signal was armed.
                    nix::libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    Ok(())
}

/// Children start with no signal blocked: peerstage blocks Ctrl-C and SIGTERM in all its
/// threads (see `cancel`), and a child inherits the mask; an ssh that cannot get SIGTERM
/// would not end when told to. Async-signal-safe, for `pre_exec`.
fn unblock_signals() -> io::Result<()> {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(io::Error::from)
}

/// For children that stay in our process group (remote commands with our terminal): only
/// the signal mask is reset, so that Ctrl-C reaches them as it reaches us.
pub(crate) fn with_signals_unblocked(command: &mut std::process::Command) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls (pthread_sigmask).
    unsafe {
        command.pre_exec(unblock_signals);
    }
    Ok(())
}

/// The process groups of the children running now, to be ended on a cancel.
static GROUPS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Counts a child (the leader of its own process group) as running.
fn track_group(pid: u32) {
    if let Ok(mut groups) = GROUPS.lock() {
        groups.push(pid);
    }
}

/// A child that has been waited for.
fn untrack_group(pid: u32) {
    if let Ok(mut groups) = GROUPS.lock() {
        groups.retain(|&group| group != pid);
    }
}

/// Ends every running child's group the way a deadline does (`terminate_groups`: SIGTERM
/// every 20 ms, SIGKILL after 2 s), until their owners have waited for them all. For a
/// cancel (Ctrl-C, SIGTERM, SIGHUP).
pub fn end_all() {
    let running = || {
        GROUPS
            .lock()
            .map(|groups| groups.clone())
            .unwrap_or_default()
    };
    terminate_groups(&running(), |until| {
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
        running().is_empty()
    });
}

/// Counts the children of `handle` as running, for `cancel` to end them on Ctrl-C.
fn track(handle: &duct::Handle) {
    for pid in handle.pids() {
        track_group(pid);
    }
}

fn untrack(handle: &duct::Handle) {
    for pid in handle.pids() {
        untrack_group(pid);
    }
}

/// SIGTERM first, so that `su` passes it on to a command it runs in a session of its own
/// (which no signal to our group would reach); then, once the child is gone or after two
/// seconds, SIGKILL for whatever is left of its group. SIGTERM is sent again every 20 ms:
/// a program that checks for signals between polls can take one just before it polls and
/// then sleep on until its next timer (OpenSSH 9.2's client loop does: an ssh control master
/// sometimes stayed up for the whole two seconds), and the next signal wakes it.
fn terminate(handle: &duct::Handle) {
    terminate_groups(&handle.pids(), |until| {
        !matches!(handle.wait_deadline(until), Ok(None))
    });
}

/// `terminate` for the process groups led by `pids`; `wait_until` waits for the child until
/// the instant given and says whether it has exited.
fn terminate_groups(pids: &[u32], mut wait_until: impl FnMut(Instant) -> bool) {
    use nix::sys::signal::{killpg, Signal};
    use std::time::Duration;
    let groups: Vec<_> = pids
        .iter()
        .filter_map(|&pid| i32::try_from(pid).ok())
        .map(nix::unistd::Pid::from_raw)
        .collect();
    let give_up = Instant::now() + Duration::from_secs(2);
    loop {
        for &group in &groups {
            let _ = killpg(group, Signal::SIGTERM);
        }
        let next = (Instant::now() + Duration::from_millis(20)).min(give_up);
        if wait_until(next) || Instant::now() >= give_up {
            break;
        }
    }
    for &group in &groups {
        let _ = killpg(group, Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests;
