use crate::cli::ActionArgs;
use crate::error::Result;

use super::{open_peer, Context};

pub fn run(context: &Context, args: ActionArgs) -> Result<i32> {
    let peer = open_peer(context, &args.peer, true)?;
    peer.execute_managed_action(&args.action, args.full)?;
    log::info!("peer {}: managed action {} done", peer.name(), args.action);
    Ok(0)
}
