//! One small file per subcommand. Each turns its clap arguments into plain values, does its
//! work through the library, and returns the exit code.

mod action;
mod check;
mod config;
mod exec;
mod generate;
mod locks;
mod mark;
mod run;
mod stage;
mod status;

use std::path::PathBuf;

use crate::cli::{Cli, Command, PeerArgs};
use crate::config::{Config, PeerConfig, PeerKind};
use crate::error::{Error, Result};
use crate::lock::{self, Lock};
use crate::ownership::{Mode, Ownership, Perms};
use crate::peer::{self, Peer, PeerOptions};

/// What every subcommand needs besides its own arguments.
pub struct Context {
    pub dry_run: bool,
    pub quiet: bool,
}

pub fn dispatch(cli: Cli) -> Result<i32> {
    let context = Context {
        dry_run: cli.dry_run,
        quiet: cli.quiet,
    };
    match cli.command {
        Command::Stage(args) => stage::run(&context, args),
        Command::Check(args) => check::run(&context, args),
        Command::Mark(args) => mark::run(&context, args),
        Command::Exec(args) => exec::run(&context, args),
        Command::Action(args) => action::run(&context, args),
        Command::Run(args) => run::run(&context, args),
        Command::Status(args) => status::run(&context, args),
        Command::Config(command) => config::run(&context, command),
        Command::Locks(args) => locks::run(&context, args),
        Command::Generate(args) => generate::run(&context, args),
    }
}

/// The peer named on the command line: from flags, or from `--config FILE --peer NAME`.
/// Also returns the lock dir that peer's lock lives in: the config's, or the default.
pub fn peer_config(args: &PeerArgs) -> Result<(PeerConfig, PathBuf)> {
    if let (Some(file), Some(name)) = (&args.config, &args.peer) {
        let config = Config::load(file)?;
        let peer = config.peer(name).cloned().ok_or_else(|| {
            Error::usage(format!("config {}: no peer named {name:?}", file.display()))
        })?;
        return Ok((peer, config.lock_dir.unwrap_or_else(lock::default_lock_dir)));
    }
    let Some(collect_dir) = args.collect_dir.clone() else {
        return Err(Error::usage(
            "no peer given: use --collect-dir DIR [--host HOST] or --config FILE --peer NAME",
        ));
    };
    let mut config = match &args.host {
        Some(host) => PeerConfig::new(host.clone(), PeerKind::Remote, collect_dir),
        None => {
            // Without --name, the collect dir's last component names the peer when it can.
            let name = args.name.clone().unwrap_or_else(|| {
                collect_dir
                    .file_name()
                    .and_then(|name| name.to_str())
                    .filter(|name| peer::is_plain_name(name))
                    .unwrap_or("local")
                    .to_string()
            });
            PeerConfig::new(name, PeerKind::Local, collect_dir)
        }
    };
    config.remote_user = args.remote_user.clone();
    config.local_user = args.local_user.clone();
    config.working_dir = args.working_dir.clone();
    if let Some(rcp) = &args.rcp_command {
        config.rcp_command = rcp.clone();
    }
    if let Some(rsh) = &args.rsh_command {
        config.rsh_command = rsh.clone();
    }
    if let Some(cback) = &args.cback_command {
        config.cback_command = cback.clone();
    }
    Ok((config, lock::default_lock_dir()))
}

/// A peer to work on, with its lock when the work changes something.
pub struct OpenPeer {
    pub peer: Box<dyn Peer>,
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
pub fn open_peer(context: &Context, args: &PeerArgs, locked: bool) -> Result<OpenPeer> {
    let (config, lock_dir) = peer_config(args)?;
    let peer = peer::build(
        &config,
        PeerOptions {
            dry_run: context.dry_run,
            deadline: None,
        },
    )?;
    let lock = if locked && !context.dry_run {
        lock::prepare_lock_dir(&lock_dir)?;
        Some(Lock::peer(&lock_dir, &config.name, args.wait)?)
    } else {
        None
    };
    Ok(OpenPeer { peer, _lock: lock })
}

/// `--owner` and `--mode`, checked before anything is touched.
pub fn perms(owner: Option<&str>, mode: Option<&str>) -> Result<Perms> {
    Ok(Perms {
        owner: owner.map(Ownership::parse).transpose()?,
        mode: mode.map(Mode::parse).transpose()?,
    })
}
