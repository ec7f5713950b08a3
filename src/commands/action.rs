use crate::cli::ActionArgs;
use crate::error::Result;

use super::{open_peer, Flags, Open};

pub fn run(flags: &Flags, args: ActionArgs) -> Result<i32> {
    let peer = open_peer(
        flags,
        &args.peer,
        Open {
            lock: Some(args.wait.wait),
            ..Open::default()
        },
    )?;
    let remote = peer.remote().ok_or_else(|| {
        crate::peer::not_remote(&format!("managed action {} needs", args.action))
            .for_peer(peer.name())
    })?;
    remote.execute_managed_action(&args.action, args.full)?;
    log::info!("peer {}: managed action {} done", peer.name(), args.action);
    Ok(0)
}
