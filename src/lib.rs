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
pub mod logging;
pub mod metrics;
pub mod ownership;
pub mod peer;
pub mod pool;
pub mod process;
pub mod progress;
pub mod rate;
pub mod report;
pub mod settings;
pub mod units;

use clap::FromArgMatches;

/// Parses the command line, runs the subcommand and returns the process exit code.
pub fn run() -> i32 {
    // The matches are kept beside the parsed values: they say where a value came from.
    let parsed = cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((cli::Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                error::EXIT_USAGE
            } else {
                0
            };
        }
    };
    logging::init(cli.verbose, cli.quiet);
    raise_open_files_limit();
    cancel::install();
    match commands::dispatch(cli, &matches) {
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
