//! One small file per subcommand. Each turns its clap arguments into plain values, does its
//! work through the library, and returns the exit code.

mod action;
mod check;
mod exec;
mod mark;
mod stage;

use crate::cli::{Cli, Command, PeerArgs};
use crate::config::{Config, PeerConfig, PeerKind};
use crate::error::{Error, Result};
use crate::ownership::{Mode, Ownership, Perms};
use crate::peer::{self, Peer, PeerOptions};

/// What every subcommand needs besides its own arguments.
pub struct Context {
    pub dry_run: bool,
    pub quiet: bool,
}

pub fn dispatch(cli: Cli) -> Result<i32> {
    let context = Context { dry_run: cli.dry_run, quiet: cli.quiet };
    match cli.command {
        Command::Stage(args) => stage::run(&context, args),
        Command::Check(args) => check::run(&context, args),
        Command::Mark(args) => mark::run(&context, args),
        Command::Exec(args) => exec::run(&context, args),
        Command::Action(args) => action::run(&context, args),
    }
}

/// The peer named on the command line: from flags, or from `--config FILE --peer NAME`.
pub fn peer_config(args: &PeerArgs) -> Result<PeerConfig> {
    if let (Some(file), Some(name)) = (&args.config, &args.peer) {
        let config = Config::load(file)?;
        return config.peer(name).cloned().ok_or_else(|| {
            Error::usage(format!("config {}: no peer named {name:?}", file.display()))
        });
    }
    let Some(collect_dir) = args.collect_dir.clone() else {
        return Err(Error::usage("no peer given: use --collect-dir DIR [--host HOST] or --config FILE --peer NAME"));
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
    Ok(config)
}

pub fn build_peer(context: &Context, args: &PeerArgs) -> Result<Box<dyn Peer>> {
    let config = peer_config(args)?;
    peer::build(&config, PeerOptions { dry_run: context.dry_run, deadline: None })
}

/// `--owner` and `--mode`, checked before anything is touched.
pub fn perms(owner: Option<&str>, mode: Option<&str>) -> Result<Perms> {
    Ok(Perms {
        owner: owner.map(Ownership::parse).transpose()?,
        mode: mode.map(Mode::parse).transpose()?,
    })
}
