//! One small file per subcommand. Each turns its clap arguments into plain values, does its
//! work through the library, and returns the exit code.

mod action;
mod check;
mod config;
mod exec;
mod flags;
mod generate;
mod locks;
mod mark;
mod run;
mod stage;
mod status;

use std::path::PathBuf;

use crate::cli::{Cli, Command, PeerArgs};
use crate::config::{CommandLine, Config, PeerConfig, PeerKind};
use crate::error::{Error, Result};
use crate::lock::{self, Lock};
use crate::ownership::{Mode, Ownership, Perms};
use crate::peer::{self, Peer};
use crate::settings::{Flags, Settings};

pub fn dispatch(cli: Cli, matches: &clap::ArgMatches) -> Result<i32> {
    let flags = flags::resolve(&cli, matches);
    // A log file given on the command line serves every subcommand from the start; the one
    // of a config, once the config is read (run.rs).
    if let Some(file) = &flags.log_file {
        crate::logging::open_file(file)?;
    }
    match cli.command {
        Command::Stage(args) => stage::run(&flags, args),
        Command::Check(args) => check::run(&flags, args),
        Command::Mark(args) => mark::run(&flags, args),
        Command::Exec(args) => exec::run(&flags, args),
        Command::Action(args) => action::run(&flags, args),
        Command::Run(args) => run::run(&flags, args),
        Command::Status(args) => status::run(&flags, args),
        Command::Config(command) => config::run(&flags, command),
        Command::Locks(args) => locks::run(&flags, args),
        Command::Generate(args) => generate::run(&flags, args),
    }
}

/// The peer named on the command line: from flags, or from `--config FILE --peer NAME`.
/// Also returns the whole config, when the peer came from one.
pub fn peer_config(args: &PeerArgs, open: &Open) -> Result<(PeerConfig, Option<Config>)> {
    if let (Some(file), Some(name)) = (&args.config, &args.peer) {
        let config = Config::load(file)?;
        let peer = config.peer(name).cloned().ok_or_else(|| {
            Error::usage(format!("config {}: no peer named {name:?}", file.display()))
        })?;
        return Ok((peer, Some(config)));
    }
    let collect_dir =
        match (&args.collect_dir, &args.host) {
            (Some(dir), _) => dir.clone(),
            // A command run on a remote peer never looks at its collect dir.
            (None, Some(_)) if !open.needs_collect_dir => PathBuf::from("/"),
            (None, Some(_)) => {
                return Err(Error::usage(
                    "--collect-dir is missing: the peer's collect dir is where its files are",
                ))
            }
            (None, None) => return Err(Error::usage(
                "no peer given: use --collect-dir DIR [--host HOST] or --config FILE --peer NAME",
            )),
        };
    // Said in the words of the command line, not of a config key.
    for (flag, dir) in [
        ("--collect-dir", Some(&collect_dir)),
        ("--working-dir", args.working_dir.as_ref()),
    ] {
        if let Some(dir) = dir.filter(|dir| !dir.is_absolute()) {
            return Err(Error::usage(format!(
                "{flag} must be an absolute path, got {}",
                crate::process::quote_os(dir.as_os_str())
            )));
        }
    }
    let mut config = match &args.host {
        Some(host) => PeerConfig::new(host.clone(), PeerKind::Remote, collect_dir),
        None => {
            // Without --name, the whole collect dir names the peer (`/srv/a/collect` is
            // `srv-a-collect`), so that two collect dirs never share a peer lock.
            let name = args
                .name
                .clone()
                .unwrap_or_else(|| default_local_name(&collect_dir));
            PeerConfig::new(name, PeerKind::Local, collect_dir)
        }
    };
    config.remote_user = args.remote_user.clone();
    config.local_user = args.local_user.clone();
    config.working_dir = args.working_dir.clone();
    let command = |flag: &str, text: &str| {
        text.parse::<CommandLine>()
            .map_err(|problem| Error::usage(format!("{flag} {problem}")))
    };
    if let Some(rcp) = &args.rcp_command {
        config.rcp_command = command("--rcp-command", rcp)?;
    }
    if let Some(rsh) = &args.rsh_command {
        config.rsh_command = command("--rsh-command", rsh)?;
    }
    if let Some(cback) = &args.cback_command {
        config.cback_command = command("--cback-command", cback)?;
    }
    Ok((config, None))
}

/// A peer to work on, with its lock when the work changes something.
pub struct OpenPeer {
    pub peer: Box<dyn Peer>,
    /// The tightest bandwidth limit its copy is held to, if any.
    pub bwlimit: Option<crate::rate::Rate>,
    _lock: Option<Lock>,
}

impl std::ops::Deref for OpenPeer {
    type Target = dyn Peer;
    fn deref(&self) -> &Self::Target {
        self.peer.as_ref()
    }
}

/// Builds the peer named on the command line. With `locked`, takes the peer's lock, the same
/// one `run` takes, so a hand-run stage and the nightly run never work on one peer at once.
/// How a subcommand works on its peer.
#[derive(Default)]
pub struct Open {
    /// Take the peer's lock (waiting for it with `Some(true)`).
    pub lock: Option<bool>,
    /// The work reads or writes the collect dir: all but exec and action.
    pub needs_collect_dir: bool,
    /// Where the progress of a stage is counted.
    pub meter: Option<std::sync::Arc<crate::progress::Meter>>,
}

pub fn open_peer(flags: &Flags, args: &PeerArgs, open: Open) -> Result<OpenPeer> {
    let (config, pool) = peer_config(args, &open)?;
    let settings = Settings::resolve(flags, pool.as_ref());
    let options = crate::peer::PeerOptions {
        meter: open.meter,
        ..settings.peer_options(std::time::Instant::now(), &config)
    };
    let bwlimit = options.pace.rate();
    let peer = peer::build(&config, options)?;
    let lock = match open.lock {
        Some(wait) if !settings.dry_run => {
            lock::prepare_lock_dir(&settings.lock_dir)?;
            Some(Lock::peer(&settings.lock_dir, &config.name, wait)?)
        }
        _ => None,
    };
    Ok(OpenPeer {
        peer,
        bwlimit,
        _lock: lock,
    })
}

/// `--owner` and `--mode`, checked before anything is touched.
pub fn perms(owner: Option<&str>, mode: Option<&str>) -> Result<Perms> {
    Ok(Perms {
        owner: owner.map(Ownership::parse).transpose()?,
        mode: mode.map(Mode::parse).transpose()?,
    })
}

fn default_local_name(collect_dir: &std::path::Path) -> String {
    let text = collect_dir.to_string_lossy();
    let name: String = text
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c == '/' || c.is_whitespace() || c.is_control() {
                '-'
            } else {
                c
            }
        })
        .collect();
    let name = name.trim_start_matches('-').to_string();
    if crate::config::check_peer_name(&name, PeerKind::Local).is_ok() {
        name
    } else {
        "local".to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_local_names_come_from_the_whole_collect_dir() {
        use super::default_local_name as name;
        assert_eq!(name("/srv/a/collect".as_ref()), "srv-a-collect");
        assert_eq!(name("/srv/b/collect/".as_ref()), "srv-b-collect");
        assert_eq!(name("/coll dir".as_ref()), "coll-dir");
        assert_eq!(name("/".as_ref()), "local");
        assert_eq!(name("/..".as_ref()), "local");
    }
}
