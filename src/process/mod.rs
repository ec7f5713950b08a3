//! A child process as data: program, arguments and wrappers such as `su USER -c`. How it
//! runs (output kept within bounds, limits watched, its group ended) is in `children`.
//!
//! The same value is logged, printed by `--dry-run` and run, so what an administrator pastes
//! into a shell from the log is exactly what peerstage ran. Nothing here goes through a shell
//! except the `su -c` string, which is built from individually quoted words.

mod children;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use crate::error::{Error, Result};
use crate::limits::Expired;

pub use children::{end_all, Background, Piped, Running};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    /// Variables set for it (a hook's `PEERSTAGE_*`), besides our own environment.
    env: Vec<(OsString, OsString)>,
}

/// What a finished child left behind.
#[derive(Debug)]
pub struct Finished {
    /// The command line, as it ran.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// What it said on stderr: the beginning and the end when it said a lot.
    pub stderr: String,
    /// True when the child was killed because a limit passed (`expired` says which).
    pub timed_out: bool,
    pub expired: Option<Expired>,
    /// It printed more on stdout than was kept.
    pub stdout_cut: bool,
}

impl Finished {
    /// What an error about this child carries: the command, its status, its last words.
    pub fn failure(&self) -> crate::error::ProcessFailure {
        let lines: Vec<&str> = self.stderr_lines().collect();
        crate::error::ProcessFailure {
            command: self.command.clone(),
            status: self.code(),
            stderr_tail: lines[lines.len().saturating_sub(5)..].join("\n"),
        }
    }

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
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for the command.
    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((name.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
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
        Cmd::from_words(&words, line, what)
    }

    /// A command from a line split already (a config's `CommandLine`), its program resolved
    /// on `PATH`; `line` is what the administrator wrote, for error messages.
    pub fn from_words(words: &[String], line: &str, what: &str) -> Result<Cmd> {
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
}

/// The last non-empty line of what a child said, trimmed ("" when it said nothing): ssh's
/// reason comes last.
pub fn last_line(said: &str) -> &str {
    said.lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or("")
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

/// Like `quote`, for paths that may not be UTF-8 or may hold control characters (a name from
/// a peer): those are shown as `\xNN` inside `$'...'`, which bash, zsh and ksh read back as
/// the same bytes, so a printed line stays one line and never drives the terminal.
pub fn quote_os(word: &OsStr) -> String {
    if let Some(text) = word.to_str() {
        if !text.chars().any(crate::escape::needs_escape) {
            return quote(text);
        }
    }
    let mut out = String::from("$'");
    for chunk in word.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\'' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c if crate::escape::needs_escape(c) => {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out.push('\'');
    out
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
    fn displays_control_characters_escaped_on_one_line() {
        let cmd = Cmd::new("cp").args(["données\n\x1b[2J", "plain"]);
        assert_eq!(cmd.to_string(), r"cp $'données\x0a\x1b[2J' plain");
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
            err.message(),
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
}
