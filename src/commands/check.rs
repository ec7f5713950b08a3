use crate::cli::CheckArgs;
use crate::error::{Result, EXIT_FAILED};

use super::{open_peer, Flags};

pub fn run(flags: &Flags, args: CheckArgs) -> Result<i32> {
    let peer = open_peer(flags, &args.peer, false)?;
    let present = peer.has_indicator(&args.indicator)?;
    if flags.dry_run {
        return Ok(0);
    }
    let collect_dir = peer.config().collect_dir.display().to_string();
    if !flags.quiet {
        let state = if present { "present" } else { "absent" };
        println!(
            "peer {}: {} in {collect_dir}: {state}",
            peer.name(),
            args.indicator
        );
    }
    Ok(if present { 0 } else { EXIT_FAILED })
}
