use crate::cli::StageArgs;
use crate::config::DEFAULT_COLLECT_INDICATOR;
use crate::error::Result;
use crate::units;

use super::{open_peer, perms, Flags};

pub fn run(flags: &Flags, args: StageArgs) -> Result<i32> {
    let perms = perms(args.owner.as_deref(), args.mode.as_deref())?;
    let peer = open_peer(flags, &args.peer, true)?;
    let report = peer.stage(&args.target, &perms)?;
    if !report.collect_indicator && !flags.dry_run {
        log::warn!(
            "peer {}: there was no {DEFAULT_COLLECT_INDICATOR} in {}: the peer may not have finished collecting",
            peer.name(),
            peer.config().collect_dir.display()
        );
    }
    if !flags.quiet && !flags.dry_run {
        println!(
            "staged {} ({}) from peer {} into {}",
            units::count(report.files, "file"),
            units::size(report.bytes),
            peer.name(),
            args.target.display()
        );
    }
    Ok(0)
}
