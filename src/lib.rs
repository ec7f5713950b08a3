//! peerstage: the staging half of a pull-based backup pool.
//!
//! `run()` is the whole program; `main` only turns its result into the process exit code, so
//! that locks, scratch dirs and temp files are dropped (and cleaned) before the process ends.

mod cancel;
pub mod cli;
mod commands;
pub mod config;
pub mod date;
mod demo;
pub mod docs;
pub mod error;
pub mod escape;
pub mod fsutil;
pub mod hooks;
pub mod limits;
pub mod lock;
pub mod ownership;
pub mod peer;
pub mod pool;
pub mod process;
pub mod report;
pub mod settings;
pub mod units;

use std::io::Write;

use clap::Parser;

/// Parses the command line, runs the subcommand and returns the process exit code.
pub fn run() -> i32 {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                error::EXIT_USAGE
            } else {
                0
            };
        }
    };
    init_logging(cli.verbose, cli.quiet);
    raise_open_files_limit();
    cancel::install();
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            log::error!("{err}");
            if let Some(detail) = err.process_detail() {
                log::info!("{detail}");
            }
            err.exit_code()
        }
    }
}

/// Many files open at once make a copy over a slow link fast (see `peer::sftp`): the soft
/// limit on open files goes up to the hard one (at most 65536), as a server does.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let wanted = hard.min(65536);
        if soft < wanted {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, wanted, hard);
        }
    }
}

/// `peerstage: warning: ...` lines on stderr, control characters escaped; -v and -q move the level, RUST_LOG overrides.
fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let default = format!("peerstage={level}");
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format(|buf, record| {
            let level = match record.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug => "debug",
                log::Level::Trace => "trace",
            };
            // Messages carry text from peers: one line each, whatever a peer sent.
            let message = record.args().to_string();
            writeln!(buf, "peerstage: {level}: {}", escape::escape(&message))
        })
        .init();
}
