//! The error type every subcommand returns, and the exit code each kind maps to.
//!
//! The exit codes are part of the interface: shell scripts branch on them, so each kind of
//! failure has exactly one code, the same for every subcommand (see EXIT STATUS in the man page).

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

/// One clear line for the user: it names the peer (when there is one), the path and the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Usage, message)
    }
    pub fn failed(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Failed, message)
    }
    pub fn unreachable(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unreachable, message)
    }
    pub fn locked(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Locked, message)
    }
    pub fn canceled(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Canceled, message)
    }
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
    /// Prefixes the message with the peer it concerns, so that a line in a pool run's log
    /// can be told apart from the others.
    pub fn for_peer(self, peer: &str) -> Error {
        if self.message.starts_with("peer ") {
            return self;
        }
        Error {
            kind: self.kind,
            message: format!("peer {peer}: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats an I/O error with the path it concerns, without Rust's `(os error N)` noise.
pub fn io_cause(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(pos) => text[..pos].to_string(),
        None => text,
    }
}
