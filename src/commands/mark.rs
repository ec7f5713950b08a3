use crate::cli::MarkArgs;
use crate::error::Result;

use super::{open_peer, perms, Flags, Open};

pub fn run(flags: &Flags, args: MarkArgs) -> Result<i32> {
    let perms = perms(args.owner.as_deref(), args.mode.as_deref())?;
    let peer = open_peer(
        flags,
        &args.peer,
        Open {
            lock: Some(args.wait.wait),
            needs_collect_dir: true,
            ..Open::default()
        },
    )?;
    peer.write_stage_indicator(&args.indicator, &perms)?;
    if !flags.quiet && !flags.dry_run {
        println!(
            "peer {}: wrote {} in {}",
            peer.name(),
            args.indicator,
            peer.config().collect_dir.display()
        );
    }
    Ok(0)
}
