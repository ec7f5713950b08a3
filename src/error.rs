//! The error type every subcommand returns, and the exit code each kind maps to.
//!
//! The exit codes are part of the interface: shell scripts branch on them, so each kind of
//! failure has exactly one code, the same for every subcommand (see EXIT STATUS in the man page).
//! An error is one line for the user: the peer it concerns, the path, the cause.

use std::fmt;

/// Exit code: the operation failed (for `check`: the indicator is absent).
pub const EXIT_FAILED: i32 = 1;
/// Exit code: usage or configuration error; nothing was changed.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the peer could not be reached (BSD `EX_UNAVAILABLE`).
pub const EXIT_UNREACHABLE: i32 = 69;
/// Exit code: a lock is held by another process (BSD `EX_TEMPFAIL`).
pub const EXIT_LOCKED: i32 = 75;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad input: a relative path, a bad mode, an unknown user, a malformed config.
    Usage,
    /// The operation was tried and failed.
    Failed,
    /// The peer could not be reached at all.
    Unreachable,
    /// Another process holds a lock we need.
    Locked,
    /// Ctrl-C, SIGTERM or SIGHUP stopped the work.
    Canceled,
}

impl ErrorKind {
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Usage => EXIT_USAGE,
            ErrorKind::Failed => EXIT_FAILED,
            ErrorKind::Unreachable => EXIT_UNREACHABLE,
            ErrorKind::Locked => EXIT_LOCKED,
            ErrorKind::Canceled => EXIT_FAILED,
        }
    }
}

/// A child process that failed: what ran, how it ended, and what it said last (as
/// cargo-util's ProcessError keeps them), for the log of a run gone wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessFailure {
    /// The command line, shell-quoted as it ran.
    pub command: String,
    /// Its exit status, or 128 + the signal that ended it.
    pub status: i32,
    /// The last lines it printed on stderr.
    pub stderr_tail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// The peer the error is about, attached once where the peer's work begins.
    pub peer: Option<String>,
    /// The file, directory or remote path it concerns.
    pub path: Option<String>,
    /// What went wrong.
    pub cause: String,
    pub process: Option<Box<ProcessFailure>>,
}

impl Error {
    pub fn new(kind: ErrorKind, cause: impl Into<String>) -> Error {
        Error {
            kind,
            peer: None,
            path: None,
            cause: cause.into(),
            process: None,
        }
    }
    pub fn usage(cause: impl Into<String>) -> Error {
        Error::new(ErrorKind::Usage, cause)
    }
    pub fn failed(cause: impl Into<String>) -> Error {
        Error::new(ErrorKind::Failed, cause)
    }
    pub fn unreachable(cause: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unreachable, cause)
    }
    pub fn locked(cause: impl Into<String>) -> Error {
        Error::new(ErrorKind::Locked, cause)
    }
    pub fn canceled(cause: impl Into<String>) -> Error {
        Error::new(ErrorKind::Canceled, cause)
    }

    /// The error concerns `path` (a local path, a remote path, a config file).
    pub fn at(mut self, path: impl fmt::Display) -> Error {
        self.path = Some(path.to_string());
        self
    }

    /// The error is about `peer`; an error that names its peer already keeps it.
    pub fn for_peer(mut self, peer: &str) -> Error {
        if self.peer.is_none() {
            self.peer = Some(peer.to_string());
        }
        self
    }

    /// The child process whose failure this is.
    pub fn with_process(mut self, process: ProcessFailure) -> Error {
        self.process = Some(Box::new(process));
        self
    }

    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }

    /// The whole line, as the user sees it.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// What the failed child process was, for `-v`: the command as it ran, its status and
    /// its last words on stderr.
    pub fn process_detail(&self) -> Option<String> {
        self.process.as_ref().map(|process| {
            format!(
                "the command was: {} (exit status {}){}",
                process.command,
                process.status,
                match process.stderr_tail.as_str() {
                    "" => String::new(),
                    tail => format!("; it said: {tail}"),
                }
            )
        })
    }
}

/// `peer PEER: PATH: cause`, each part only when there is one.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(peer) = &self.peer {
            write!(f, "peer {peer}: ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.cause)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats an I/O error without Rust's `(os error N)` noise.
pub fn io_cause(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(pos) => text[..pos].to_string(),
        None => text,
    }
}

/// Says "disk full" in words an administrator reads at 3 a.m.
pub fn write_cause(err: &std::io::Error) -> String {
    if err.raw_os_error() == Some(nix::libc::ENOSPC) {
        "no space left on device (disk full)".to_string()
    } else {
        io_cause(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_names_the_peer_once_then_the_path_then_the_cause() {
        let err = Error::failed("no such file")
            .at("/c/x")
            .for_peer("db1")
            .for_peer("other");
        assert_eq!(err.to_string(), "peer db1: /c/x: no such file");
        assert_eq!(Error::usage("bad").to_string(), "bad");
        assert_eq!(Error::locked("held").exit_code(), EXIT_LOCKED);
    }
}
