//! Ctrl-C, SIGTERM and SIGHUP cancel the work instead of killing peerstage outright: the
//! children of the peers being staged are ended (so each peer fails, its private incoming dir
//! is removed and its lock released), no further peer or step starts, and a run still writes
//! its job report, with status A (canceled), and runs its run-end hooks. A second signal ends
//! peerstage at once, as the first one used to.
//!
//! The signals are blocked in every thread and taken by one thread of their own with
//! sigwait(2), so no code runs in a signal handler. Children would inherit that mask (std
//! does not reset it); `process` clears it in each child before exec, so they still die of
//! the signals sent to them. Which children are running is `process`'s business: a cancel
//! asks it to end them all.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{SigSet, Signal};

use crate::error::Error;

/// The signal that canceled the work, as its number; 0 while nothing has.
static CANCELED_BY: AtomicI32 = AtomicI32::new(0);

/// Blocks the cancelling signals in this thread, and so in every thread it starts later, and
/// starts the thread that waits for them. To be called once, before any other thread starts.
pub fn install() {
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(signal);
    }
    if signals.thread_block().is_err() {
        return;
    }
    let waiter = std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            let Ok(first) = signals.wait() else { return };
            CANCELED_BY.store(first as i32, Ordering::SeqCst);
            log::warn!("{first}: canceling (a second signal ends peerstage at once)");
            crate::process::end_all();
            if let Ok(second) = signals.wait() {
                std::process::exit(128 + second as i32);
            }
        });
    if waiter.is_err() {
        // No thread to take the signals: let them kill us as they would have.
        let _ = signals.thread_unblock();
    }
}

/// The signal that canceled the work, if one has.
pub fn canceled_by() -> Option<Signal> {
    match CANCELED_BY.load(Ordering::SeqCst) {
        0 => None,
        number => Signal::try_from(number).ok(),
    }
}

/// An error saying the work was canceled, if it was: checked before each step of a peer.
pub fn check() -> Result<(), Error> {
    match canceled_by() {
        Some(signal) => Err(Error::canceled(format!("canceled by {signal}"))),
        None => Ok(()),
    }
}
