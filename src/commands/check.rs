use crate::cli::CheckArgs;
use crate::error::{Result, EXIT_FAILED};
use crate::peer::Presence;

use super::{open_peer, Flags, Open};

pub fn run(flags: &Flags, args: CheckArgs) -> Result<i32> {
    let peer = open_peer(
        flags,
        &args.peer,
        Open {
            needs_collect_dir: true,
            ..Open::default()
        },
    )?;
    let presence = peer.indicator(&args.indicator)?;
    let present = presence == Presence::Present;
    if flags.dry_run {
        return Ok(0);
    }
    let collect_dir = peer.config().collect_dir.display().to_string();
    if !flags.quiet {
        match presence {
            Presence::NoCollectDir => println!(
                "peer {}: collect dir {collect_dir} does not exist (a mistyped path, or a disk not mounted?)",
                peer.name()
            ),
            _ => println!(
                "peer {}: {} in {collect_dir}: {}",
                peer.name(),
                args.indicator,
                presence.words()
            ),
        }
    }
    Ok(if present { 0 } else { EXIT_FAILED })
}
