use crate::cli::ActionArgs;
use crate::error::Result;

use super::{build_peer, Context};

pub fn run(context: &Context, args: ActionArgs) -> Result<i32> {
    let peer = build_peer(context, &args.peer)?;
    peer.execute_managed_action(&args.action, args.full)?;
    log::info!("peer {}: managed action {} done", peer.name(), args.action);
    Ok(0)
}
