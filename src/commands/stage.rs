use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::cli::StageArgs;
use crate::config::DEFAULT_COLLECT_INDICATOR;
use crate::error::Result;
use crate::progress::{self, Meter};
use crate::report::{per_second, rate_text};
use crate::units;

use super::{open_peer, perms, Flags, Open};

pub fn run(flags: &Flags, args: StageArgs) -> Result<i32> {
    let started = std::time::Instant::now();
    let perms = perms(args.owner.as_deref(), args.mode.as_deref())?;
    let meter = progress::wanted(false, flags.quiet || flags.dry_run).then(Arc::<Meter>::default);
    let peer = open_peer(
        flags,
        &args.peer,
        Open {
            lock: Some(args.wait.wait),
            needs_collect_dir: true,
            meter: meter.clone(),
        },
    )?;
    let report = {
        let _display = meter.map(|meter| {
            let finished = Arc::new(AtomicUsize::new(0));
            progress::Display::start(
                vec![(peer.name().to_string(), meter)],
                finished,
                peer.bwlimit,
            )
        });
        peer.stage(&args.target, &perms)?
    };
    let seconds = started.elapsed().as_secs_f64();
    if !report.collect_indicator && !flags.dry_run {
        log::warn!(
            "peer {}: there was no {DEFAULT_COLLECT_INDICATOR} in {}: the peer may not have finished collecting",
            peer.name(),
            peer.config().collect_dir.display()
        );
    }
    if !flags.quiet && !flags.dry_run {
        // Under a limit, the rate it held (the line is otherwise as it always was).
        let rate = match peer.bwlimit {
            Some(limit) => format!(
                " at {}, limit {limit}",
                rate_text(per_second(report.bytes, seconds), None)
            ),
            None => String::new(),
        };
        println!(
            "staged {} ({}{rate}) from peer {} into {}",
            units::count(report.files, "file"),
            units::size(report.bytes),
            peer.name(),
            args.target.display()
        );
    }
    Ok(0)
}
