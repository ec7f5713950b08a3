//! Where log lines go: stderr for the person or the cron mail (`peerstage: warning: ...`, the
//! level moved by -v, -q and RUST_LOG), in the journal's own terms when stderr is the
//! systemd journal (`<4>warning: ...`, the priority prefixes of sd-daemon(3)), and a log
//! file that lasts (`log_file`, `--log-file`): timestamped lines of every run, at info level
//! whatever stderr shows, appended. Every message is escaped: one line, whatever a peer sent.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Mutex;

use crate::error::{io_cause, Error, Result};

struct Logger {
    /// What reaches stderr: env_logger's filter (its output is ours).
    stderr: env_logger::Logger,
    /// stderr is the systemd journal's stream.
    journal: bool,
    /// The log file, once one is given.
    file: Mutex<Option<File>>,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

/// Sets up logging for the run: stderr's level from -v and -q (RUST_LOG overrides).
pub fn init(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let default = format!("peerstage={level}");
    let filter =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
            .build();
    let logger = LOGGER.get_or_init(|| Logger {
        stderr: filter,
        journal: stderr_is_journal(),
        file: Mutex::new(None),
    });
    if log::set_logger(logger).is_ok() {
        // The log file takes info lines whatever stderr shows.
        log::set_max_level(logger.stderr.filter().max(log::LevelFilter::Info));
    }
}

/// From now on, lines also go to `path`, appended. Opened as root may open it: without
/// following a link, and only a regular file, so that a planted symlink or fifo never gets
/// written through or blocks the run.
pub fn open_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |cause: String| Error::usage(cause).at(format_args!("log file {}", path.display()));
    // Said plainly before the open, which would only say ELOOP or ENXIO; the open's own
    // flags and the fstat after it still hold if the path is swapped in between.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() {
            return Err(fail("a symbolic link; not followed".to_string()));
        }
        if !meta.is_file() {
            return Err(fail("not a regular file".to_string()));
        }
    }
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|err| fail(io_cause(&err)))?;
    let meta = file.metadata().map_err(|err| fail(io_cause(&err)))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".to_string()));
    }
    if let Some(logger) = LOGGER.get() {
        if let Ok(mut slot) = logger.file.lock() {
            *slot = Some(file);
        }
    }
    Ok(())
}

/// Whether stderr is the journal's stream: systemd says so in JOURNAL_STREAM (device and
/// inode of the stream), which a child of it keeps even when stderr went elsewhere since.
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr().as_fd()) else {
        return false;
    };
    stream == format!("{}:{}", stat.st_dev, stat.st_ino)
}

fn level_word(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warning",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

/// The priority prefix sd-daemon(3) defines for each level.
fn journal_priority(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "<3>",
        log::Level::Warn => "<4>",
        log::Level::Info => "<6>",
        log::Level::Debug | log::Level::Trace => "<7>",
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        log::Log::enabled(&self.stderr, metadata) || self.to_file(metadata)
    }

    fn log(&self, record: &log::Record) {
        let message = record.args().to_string();
        // Messages carry text from peers: one line each, whatever a peer sent.
        let message = crate::escape::escape(&message);
        let level = level_word(record.level());
        if self.stderr.matches(record) {
            let line = if self.journal {
                format!("{}{level}: {message}\n", journal_priority(record.level()))
            } else {
                format!("peerstage: {level}: {message}\n")
            };
            crate::progress::print_above(&line);
        }
        if self.to_file(record.metadata()) {
            if let Ok(mut slot) = self.file.lock() {
                if let Some(file) = slot.as_mut() {
                    let now = crate::date::timestamp(std::time::SystemTime::now());
                    let pid = std::process::id();
                    // One write per line, so that runs sharing the file never mix lines.
                    let _ = file.write_all(
                        format!("{now} peerstage[{pid}]: {level}: {message}\n").as_bytes(),
                    );
                }
            }
        }
    }

    fn flush(&self) {}
}

impl Logger {
    /// The file takes peerstage's own lines at info level and above.
    fn to_file(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
            && metadata.target().starts_with("peerstage")
            && self.file.lock().map(|slot| slot.is_some()).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_priorities_are_those_of_sd_daemon() {
        assert_eq!(journal_priority(log::Level::Error), "<3>");
        assert_eq!(journal_priority(log::Level::Warn), "<4>");
        assert_eq!(journal_priority(log::Level::Info), "<6>");
        assert_eq!(journal_priority(log::Level::Debug), "<7>");
    }
}
