//! One peer of a run, start to end: its lock, hooks, managed actions, the collect indicator,
//! the stage, the stage indicator; and the workers that take the peers in turn.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::{PeerConfig, DEFAULT_COLLECT_INDICATOR, DEFAULT_STAGE_INDICATOR};
use crate::error::{Error, ErrorKind};
use crate::hooks::{self, Event};
use crate::lock::Lock;
use crate::ownership::Perms;
use crate::peer::{self, PeerOptions, Presence};
use crate::progress::{self, Meter};
use crate::report::{PeerResult, PeerStatus};

use super::{kind_name, status_of, Run};

impl Run<'_> {
    pub(super) fn stage_all(&self, peers: &[&PeerConfig]) -> Vec<PeerResult> {
        let jobs = self.options.jobs.unwrap_or(peers.len().clamp(1, 8)).max(1);
        let next = AtomicUsize::new(0);
        let done = Arc::new(AtomicUsize::new(0));
        let meters: Vec<Arc<Meter>> = peers.iter().map(|_| Arc::default()).collect();
        let _display = self.options.progress.then(|| {
            let named = peers
                .iter()
                .zip(&meters)
                .map(|(peer, meter)| (peer.name.clone(), Arc::clone(meter)))
                .collect();
            let limit = self.settings.bwlimit.as_ref().map(|limiter| limiter.rate());
            progress::Display::start(named, Arc::clone(&done), limit)
        });
        let results: Mutex<Vec<Option<PeerResult>>> = Mutex::new(vec![None; peers.len()]);
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(peers.len()) {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(peer) = peers.get(index) else { break };
                    let meter = &meters[index];
                    let result = match crate::cancel::canceled_by() {
                        Some(signal) => {
                            self.canceled(peer, &format!("canceled by {signal} before it started"))
                        }
                        None => self.stage_peer(peer, meter),
                    };
                    // A copy that scp did is counted when it is over.
                    if meter.bytes_done.load(Ordering::Relaxed) == 0 {
                        meter.bytes_done.store(result.bytes, Ordering::Relaxed);
                    }
                    meter.files_done.store(result.files, Ordering::Relaxed);
                    meter.finished.store(true, Ordering::Relaxed);
                    done.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut results) = results.lock() {
                        results[index] = Some(result);
                    }
                });
            }
        });
        let results = results
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        results
            .into_iter()
            .zip(peers)
            .map(|(result, peer)| result.unwrap_or_else(|| self.canceled(peer, "worker died")))
            .collect()
    }

    pub(super) fn canceled(&self, peer: &PeerConfig, cause: &str) -> PeerResult {
        let mut result = PeerResult::new(
            &peer.name,
            kind_name(peer.kind),
            self.daily_dir.join(&peer.name).display().to_string(),
        );
        result.set_status(PeerStatus::Canceled);
        result.message = Some(cause.to_string());
        result
    }

    /// One peer, start to end. Every outcome becomes a `PeerResult`; nothing here stops the run.
    fn stage_peer(&self, config: &PeerConfig, meter: &Arc<Meter>) -> PeerResult {
        let clock = Instant::now();
        let target_dir = self.daily_dir.join(&config.name);
        let mut result = PeerResult::new(
            &config.name,
            kind_name(config.kind),
            target_dir.display().to_string(),
        );
        let mut vars = self.base_vars.clone();
        vars.extend([
            ("PEER", config.name.clone()),
            ("PEER_TYPE", kind_name(config.kind).to_string()),
            ("TARGET_DIR", target_dir.display().to_string()),
        ]);
        let deadline = self.settings.timeout.map(|timeout| clock + timeout);
        match self.stage_peer_steps(config, &target_dir, &vars, deadline, meter, &mut result) {
            // What a dry run would do was printed; nothing was probed or staged.
            Ok(()) if self.settings.dry_run => result.set_status(PeerStatus::DryRun),
            Ok(()) => log::info!(
                "peer {}: staged {} ({})",
                config.name,
                crate::units::count(result.files, "file"),
                crate::units::size(result.bytes)
            ),
            Err((status, err)) => {
                result.set_status(status);
                result.ignored = config.ignore_failure.ignores(self.weekly);
                let err = err.for_peer(&config.name);
                if let Some(detail) = err.process_detail() {
                    log::info!("peer {}: {detail}", config.name);
                }
                let message = err.to_string();
                if result.ignored {
                    log::info!(
                        "{message} (ignored: ignore_failures = {})",
                        config.ignore_failure.as_str()
                    );
                } else {
                    log::error!("{message}");
                }
                result.message = Some(message);
            }
        }
        result.set_seconds(clock.elapsed().as_secs_f64());
        if self.settings.dry_run {
            // Nothing moved.
            result.bytes_per_second = 0.0;
        }
        if result.outcome != PeerStatus::Skipped && result.outcome != PeerStatus::Canceled {
            vars.extend([
                ("STATUS", result.status.to_string()),
                ("STATUS_WORD", result.status_word.to_string()),
                ("FILES", result.files.to_string()),
                ("BYTES", result.bytes.to_string()),
                ("SECONDS", format!("{:.3}", result.seconds)),
                (
                    "IGNORED",
                    if result.ignored { "1" } else { "0" }.to_string(),
                ),
                // It may quote what the peer said: escaped like every line we print.
                (
                    "MESSAGE",
                    crate::escape::escape(result.message.as_deref().unwrap_or_default())
                        .into_owned(),
                ),
            ]);
            if let Err(cause) = hooks::run(
                &self.config.hooks.post_peer,
                Event::PostPeer,
                &vars,
                self.settings.dry_run,
                deadline,
            ) {
                log::error!("peer {}: {cause}", config.name);
                if result.outcome == PeerStatus::Completed {
                    result.set_status(PeerStatus::Error);
                    result.message = Some(format!("peer {}: {cause}", config.name));
                }
            }
        }
        result
    }

    fn stage_peer_steps(
        &self,
        config: &PeerConfig,
        target_dir: &Path,
        vars: &[(&str, String)],
        deadline: Option<Instant>,
        meter: &Arc<Meter>,
        result: &mut PeerResult,
    ) -> std::result::Result<(), (PeerStatus, Error)> {
        let fatal = |err: Error| (status_of(&err), err);
        let canceled = || crate::cancel::check().map_err(|err| (PeerStatus::Canceled, err));
        let _lock = if self.settings.dry_run {
            None
        } else {
            Some(
                Lock::peer(&self.lock_dir, &config.name, self.options.wait).map_err(|err| {
                    // Not had is E; a wait ended by Ctrl-C is A, like every canceled step.
                    let status = match err.kind {
                        ErrorKind::Canceled => PeerStatus::Canceled,
                        _ => PeerStatus::Error,
                    };
                    (status, err)
                })?,
            )
        };
        canceled()?;
        if let Err(cause) = hooks::run(
            &self.config.hooks.pre_peer,
            Event::PrePeer,
            vars,
            self.settings.dry_run,
            deadline,
        ) {
            canceled()?;
            return Err((
                PeerStatus::Skipped,
                Error::failed(format!("{cause}; peer skipped")),
            ));
        }
        let options = PeerOptions {
            deadline,
            meter: Some(Arc::clone(meter)),
            day: Some(self.options.date),
            ..self.settings.peer_options(Instant::now(), config)
        };
        result.bwlimit_bytes_per_second = options.pace.rate().map(|rate| rate.bytes_per_second());
        let peer = peer::build(config, options).map_err(fatal)?;
        if config.managed {
            match peer.remote() {
                None => log::warn!(
                    "peer {}: managed actions need a remote peer; none run",
                    config.name
                ),
                Some(remote) => {
                    for action in &config.managed_actions {
                        remote
                            .execute_managed_action(action, self.options.full)
                            .map_err(fatal)?;
                    }
                }
            }
        }
        let not_ready = |cause: String| Err((PeerStatus::NotReady, Error::failed(cause)));
        let presence = peer.indicator(DEFAULT_COLLECT_INDICATOR).map_err(fatal)?;
        if self.settings.dry_run && peer.remote().is_some() {
            // Nothing was probed: what follows is what a ready peer would get.
            crate::peer::print_dry_run(format_args!(
                "# if {DEFAULT_COLLECT_INDICATOR} is there (the peer is ready):"
            ));
        }
        match presence {
            Presence::Present => {}
            Presence::Absent => {
                return not_ready(format!(
                    "not ready to be staged: no {DEFAULT_COLLECT_INDICATOR} in {}",
                    config.collect_dir.display()
                ))
            }
            Presence::NoCollectDir => {
                return not_ready(format!(
                    "not ready to be staged: collect dir {} does not exist (a mistyped path, or a disk not mounted?)",
                    config.collect_dir.display()
                ))
            }
        }
        if !self.settings.dry_run {
            crate::peer::remove_earlier_kept(
                &self.config.staging_dir,
                &config.name,
                self.options.date,
            );
        }
        match self.make_dir(target_dir) {
            Ok(true) => {}
            // What a cut copy kept there is resumed, not in the way.
            Ok(false) if crate::peer::holds_only_kept(target_dir) => {}
            Ok(false) => log::warn!(
                "peer {}: staging dir {} already exists",
                config.name,
                target_dir.display()
            ),
            Err(cause) => return Err((PeerStatus::Error, Error::failed(cause))),
        }
        let perms = Perms {
            owner: self.owner,
            mode: None,
        };
        canceled()?;
        let staged = peer.stage(target_dir, &perms).map_err(fatal)?;
        result.files = staged.files;
        result.bytes = staged.bytes;
        result.skipped_entries = staged.skipped;
        result.verified = staged.verified;
        canceled()?;
        peer.write_stage_indicator(DEFAULT_STAGE_INDICATOR, &Perms::default())
            .map_err(fatal)?;
        Ok(())
    }
}
