use crate::cli::StageArgs;
use crate::error::Result;

use super::{open_peer, perms, Context};

pub fn run(context: &Context, args: StageArgs) -> Result<i32> {
    let perms = perms(args.owner.as_deref(), args.mode.as_deref())?;
    let peer = open_peer(context, &args.peer, true)?;
    let report = peer.stage(&args.target, &perms)?;
    if !context.quiet && !context.dry_run {
        println!(
            "staged {} files ({} bytes) from peer {} into {}",
            report.files,
            report.bytes,
            peer.name(),
            args.target.display()
        );
    }
    Ok(0)
}
