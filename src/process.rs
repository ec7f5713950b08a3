//! A child process as data: program, arguments and wrappers such as `su USER -c`.
//!
//! The same value is logged, printed by `--dry-run` and run, so what an administrator pastes
//! into a shell from the log is exactly what peerstage ran. Nothing here goes through a shell
//! except the `su -c` string, which is built from individually quoted words.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Instant;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
}

/// What a finished child left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// True when the child was killed because its deadline passed.
    pub timed_out: bool,
}

impl Finished {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.success()
    }
    /// The exit code, or 128+signal as a shell would show it.
    pub fn code(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        self.status
            .code()
            .or_else(|| self.status.signal().map(|sig| 128 + sig))
            .unwrap_or(-1)
    }
    /// The first non-empty line the child printed, stdout before stderr: what a peer that
    /// refused our command said instead.
    pub fn first_line(&self) -> Option<String> {
        let stdout = String::from_utf8_lossy(&self.stdout);
        stdout
            .lines()
            .chain(self.stderr.lines())
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(str::to_string)
    }

    /// The non-empty lines of stderr, trimmed.
    pub fn stderr_lines(&self) -> impl Iterator<Item = &str> {
        self.stderr
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
    }
}

impl Cmd {
    pub fn new(program: impl Into<OsString>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_os_string()));
        self
    }

    pub fn program(&self) -> &OsStr {
        &self.program
    }

    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    /// Builds a command from a configured command line such as `/usr/bin/scp -B -q -C`:
    /// split as a POSIX shell would (but never run through one), with the program resolved on
    /// `PATH` so that a typo is reported before anything runs. `what` names the setting in
    /// error messages.
    pub fn parse(line: &str, what: &str) -> Result<Cmd> {
        let words = shell_words::split(line)
            .map_err(|err| Error::usage(format!("{what} {line:?}: cannot split: {err}")))?;
        let Some((program, args)) = words.split_first() else {
            return Err(Error::usage(format!("{what} is empty")));
        };
        let resolved = resolve(program).ok_or_else(|| {
            Error::usage(format!("{what} {line:?}: {program}: command not found"))
        })?;
        Ok(Cmd::new(resolved).args(args))
    }

    /// Wraps this command to run as another local user: `su USER -c 'exec <quoted command>'`.
    /// The words are quoted one by one, so no file or host name can become shell syntax.
    pub fn as_user(self, user: &str) -> Result<Cmd> {
        let line = self.to_shell_line_strict().ok_or_else(|| {
            Error::usage(format!(
                "cannot run {} as user {user}: an argument is not valid UTF-8",
                self.program.to_string_lossy()
            ))
        })?;
        let su = resolve("su").unwrap_or_else(|| PathBuf::from("/bin/su"));
        // su runs the command in a session of its own, where no signal to our process group
        // reaches; it passes SIGTERM on to its child only. With `exec` that child is the
        // command itself, not a shell that would die and leave it running.
        Ok(Cmd::new(su).arg(user).arg("-c").arg(format!("exec {line}")))
    }

    /// The command line quoted for a POSIX shell, or None when a word is not UTF-8.
    fn to_shell_line_strict(&self) -> Option<String> {
        let mut words = Vec::with_capacity(self.args.len() + 1);
        for word in std::iter::once(&self.program).chain(&self.args) {
            words.push(quote(word.to_str()?));
        }
        Some(words.join(" "))
    }

    /// Runs the command with stdin closed and both outputs captured, killing it when the
    /// deadline passes. A spawn failure (program vanished, not executable) is an `io::Error`;
    /// a non-zero exit is not, the caller decides what it means.
    pub fn run(&self, deadline: Option<Instant>) -> io::Result<Finished> {
        self.start()?.finish(deadline)
    }

    /// Starts the command like `run` does, to be finished later, so that it can run while
    /// something else does. Dropped unfinished, it is killed.
    pub fn start(&self) -> io::Result<Running> {
        log::debug!("running: {self}");
        Running::start_expression(
            &self
                .expression()
                .stdin_null()
                .stdout_capture()
                .stderr_capture()
                .unchecked()
                .before_spawn(own_process_group),
        )
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
        crate::cancel::track(child.id());
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
        duct::cmd(&self.program, &self.args).env("LC_ALL", "C")
    }
}

/// A child started with `Cmd::start`, its output being captured.
pub struct Running {
    handle: Option<duct::Handle>,
}

impl Running {
    /// Starts an expression the caller built (a hook, with its environment and outputs; it
    /// should be in a group of its own), counted for `cancel` like every child.
    pub(crate) fn start_expression(expression: &duct::Expression) -> io::Result<Running> {
        let handle = expression.start()?;
        track(&handle);
        Ok(Running {
            handle: Some(handle),
        })
    }

    /// Waits for the child (killing it with its group when the deadline passes) and returns
    /// what it left behind.
    pub fn finish(mut self, deadline: Option<Instant>) -> io::Result<Finished> {
        let Some(handle) = self.handle.take() else {
            return Err(io::Error::other("child already finished"));
        };
        let mut timed_out = false;
        if let Some(deadline) = deadline {
            if handle.wait_deadline(deadline)?.is_none() {
                timed_out = true;
                terminate(&handle);
            }
        }
        let pids = handle.pids();
        let output = handle.into_output();
        for pid in pids {
            crate::cancel::untrack(pid);
        }
        let output = output?;
        Ok(Finished {
            status: output.status,
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            timed_out,
        })
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

/// The last non-empty line of what a child said, trimmed ("" when it said nothing): ssh's
/// reason comes last.
pub fn last_line(said: &str) -> &str {
    said.lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or("")
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
        crate::cancel::untrack(self.child.id());
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

/// Counts the children of `handle` as running, for `cancel` to end them on Ctrl-C.
fn track(handle: &duct::Handle) {
    for pid in handle.pids() {
        crate::cancel::track(pid);
    }
}

fn untrack(handle: &duct::Handle) {
    for pid in handle.pids() {
        crate::cancel::untrack(pid);
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
pub(crate) fn terminate_groups(pids: &[u32], mut wait_until: impl FnMut(Instant) -> bool) {
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

/// Shell-quoted, so the line printed by `--dry-run` and the logs can be pasted into a shell.
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for word in std::iter::once(&self.program).chain(&self.args) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(&quote_os(word))?;
        }
        Ok(())
    }
}

/// Resolves a program name on `PATH`; a name with a `/` is taken as it is if it exists.
pub fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = Path::new(program);
        return path.is_file().then(|| path.to_path_buf());
    }
    which::which(program).ok()
}

/// Quotes a word for a POSIX shell: as it is when it holds only safe characters, otherwise in
/// single quotes (with `'` written as `'\''`).
pub fn quote(word: &str) -> String {
    shell_words::quote(word).into_owned()
}

/// Like `quote`, for paths that may not be UTF-8: bytes that are not are shown as `\xNN`
/// inside `$'...'`, which bash, zsh and ksh read back as the same bytes.
pub fn quote_os(word: &OsStr) -> String {
    match word.to_str() {
        Some(text) => quote(text),
        None => {
            let mut out = String::from("$'");
            for &byte in word.as_bytes() {
                match byte {
                    b'\'' | b'\\' => {
                        out.push('\\');
                        out.push(byte as char);
                    }
                    0x20..=0x7e => out.push(byte as char),
                    _ => out.push_str(&format!("\\x{byte:02x}")),
                }
            }
            out.push('\'');
            out
        }
    }
}

/// Joins words into one command string for a remote shell (the remote side of ssh), each
/// word quoted so that it arrives as one argument, whatever it holds.
pub fn remote_command_line<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|word| quote(word.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_exactly_what_runs_quoted() {
        let cmd = Cmd::new("/usr/bin/scp").args(["-B", "host:/a b/*", "it's", "$(x)"]);
        assert_eq!(
            cmd.to_string(),
            r#"/usr/bin/scp -B 'host:/a b/*' 'it'\''s' '$(x)'"#
        );
    }

    #[test]
    fn displays_non_utf8_words_in_ansi_c_quotes() {
        use std::os::unix::ffi::OsStringExt;
        let cmd = Cmd::new("cp").arg(OsString::from_vec(b"a\xffb'".to_vec()));
        assert_eq!(cmd.to_string(), r"cp $'a\xffb\''");
    }

    #[test]
    fn parse_splits_like_a_shell_and_resolves_the_program() {
        let cmd = Cmd::parse("sh -c 'echo  hi' x", "rsh command").unwrap();
        assert!(Path::new(cmd.program()).is_absolute());
        assert_eq!(cmd.get_args(), &["-c", "echo  hi", "x"].map(OsString::from));
    }

    #[test]
    fn parse_reports_missing_programs_and_bad_quoting() {
        let err = Cmd::parse("/nonexistent/scp -B", "rcp command").unwrap_err();
        assert_eq!(
            err.message,
            r#"rcp command "/nonexistent/scp -B": /nonexistent/scp: command not found"#
        );
        assert!(Cmd::parse("scp 'unclosed", "rcp command").is_err());
        assert!(Cmd::parse("  ", "rcp command").is_err());
    }

    #[test]
    fn su_wrapper_quotes_each_word_once() {
        let cmd = Cmd::new("/usr/bin/scp")
            .args(["h:/x/*", "/t/a b;c"])
            .as_user("backup")
            .unwrap();
        let args: Vec<_> = cmd.get_args().iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            ["backup", "-c", "exec /usr/bin/scp 'h:/x/*' '/t/a b;c'"]
        );
    }

    #[test]
    fn remote_command_line_keeps_every_argument_whole() {
        let line =
            remote_command_line(&["printf", "%s\\n", "a b", "'q'", "$(touch x)", "`y`", ";"]);
        let back = shell_words::split(&line).unwrap();
        assert_eq!(
            back,
            ["printf", "%s\\n", "a b", "'q'", "$(touch x)", "`y`", ";"]
        );
    }

    #[test]
    fn run_captures_output_and_status() {
        let done = Cmd::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .run(None)
            .unwrap();
        assert_eq!(done.code(), 3);
        assert_eq!(done.stdout, b"out\n");
        assert_eq!(done.stderr_lines().collect::<Vec<_>>(), ["err"]);
    }

    #[test]
    fn run_kills_a_child_and_its_children_past_the_deadline() {
        let start = Instant::now();
        let deadline = start + std::time::Duration::from_millis(300);
        // The grandchild holds stdout open: if only sh were killed, run would wait 30 s.
        let done = Cmd::new("sh")
            .args(["-c", "sleep 30; echo"])
            .run(Some(deadline))
            .unwrap();
        assert!(done.timed_out);
        assert!(!done.success());
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }

    /// peerstage blocks SIGINT, SIGTERM and SIGHUP in its threads; its children must not
    /// inherit that, or an ssh told to end with SIGTERM would not (seen: every plain control
    /// master waited out the two seconds before SIGKILL).
    #[test]
    fn children_start_with_no_signal_blocked() {
        use nix::sys::signal::{SigSet, Signal};
        let blocked = std::thread::spawn(|| {
            let mut set = SigSet::empty();
            set.add(Signal::SIGTERM);
            set.add(Signal::SIGINT);
            set.thread_block().unwrap();
            let mask = |finished: Finished| {
                String::from_utf8(finished.stdout)
                    .unwrap()
                    .trim()
                    .to_string()
            };
            // grep itself, not through a shell: dash clears its mask when it starts.
            let read_mask = Cmd::new("grep").args(["SigBlk", "/proc/self/status"]);
            let captured = mask(read_mask.run(None).unwrap());
            let dir = tempfile::tempdir().unwrap();
            let mut piped = read_mask.spawn_piped(&dir.path().join("err")).unwrap();
            let mut out = String::new();
            io::Read::read_to_string(piped.child.stdout.as_mut().unwrap(), &mut out).unwrap();
            (captured, out.trim().to_string())
        })
        .join()
        .unwrap();
        assert_eq!(blocked.0, "SigBlk:\t0000000000000000");
        assert_eq!(blocked.1, "SigBlk:\t0000000000000000");
    }

    #[test]
    fn a_child_that_misses_the_first_sigterm_gets_another_before_sigkill() {
        // Sleeps through the first SIGTERM, as an ssh master that takes it just before
        // poll(2) does, and ends cleanly on the second: only a repeated SIGTERM gives exit 7.
        let script = "n=0; trap 'n=$((n+1)); [ $n -ge 2 ] && exit 7' TERM; \
                      echo ready; while :; do sleep 0.05; done";
        let child = Cmd::new("sh").args(["-c", script]).start().unwrap();
        let done = child
            .finish(Some(Instant::now() + std::time::Duration::from_millis(200)))
            .unwrap();
        assert!(done.timed_out);
        assert_eq!(done.code(), 7, "ended by a signal: {:?}", done.status);
    }

    #[test]
    fn background_children_are_killed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let child = Cmd::new("sleep")
            .arg("30")
            .spawn(&dir.path().join("err"))
            .unwrap();
        assert!(!child.exited());
        let start = Instant::now();
        drop(child);
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }
}
