use crate::cli::StageArgs;
use crate::error::Result;

use super::{open_peer, perms, Flags};

pub fn run(flags: &Flags, args: StageArgs) -> Result<i32> {
    let perms = perms(args.owner.as_deref(), args.mode.as_deref())?;
    let peer = open_peer(flags, &args.peer, true)?;
    let report = peer.stage(&args.target, &perms)?;
    if !flags.quiet && !flags.dry_run {
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
