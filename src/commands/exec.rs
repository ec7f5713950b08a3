use crate::cli::ExecArgs;
use crate::error::Result;

use super::{open_peer, Flags, Open};

/// The remote command's output passes through untouched; peerstage adds nothing to it at the
/// default verbosity, so `exec` can sit in a pipeline.
pub fn run(flags: &Flags, args: ExecArgs) -> Result<i32> {
    let peer = open_peer(flags, &args.peer, Open::default())?;
    let remote = peer
        .remote()
        .ok_or_else(|| crate::peer::not_remote("remote commands need").for_peer(peer.name()))?;
    remote.execute_remote_command(&args.command)?;
    Ok(0)
}
