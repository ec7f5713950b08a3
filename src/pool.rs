//! The pool run: every configured peer staged into `<staging_dir>/YYYY/MM/DD/<peer>/`, then the
//! master stage indicator, hooks at each job event, and a job report.
//!
//! One failing peer never stops the others; peers run in parallel on `jobs` workers.

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use crate::config::{
    Config, PeerConfig, PeerKind, DEFAULT_COLLECT_INDICATOR, DEFAULT_STAGE_INDICATOR,
};
use crate::date::{timestamp, Date};
use crate::error::{io_cause, Error, ErrorKind, Result, EXIT_FAILED};
use crate::fsutil::write_file_atomically;
use crate::hooks::{self, Event};
use crate::lock::{self, Lock};
use crate::ownership::{running_as_root, Mode, Ownership, Perms};
use crate::peer::{self, PeerOptions, Presence};
use crate::report::{JobReport, PeerResult, PeerStatus};
use crate::settings::Settings;

/// Name of the job report written into the daily dir.
pub const REPORT_FILE: &str = "peerstage-report.json";

/// What only a run is told (the settings every subcommand shares are `Settings`).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub full: bool,
    /// How many peers at once: --jobs, over the config's (up to 8 when neither says).
    pub jobs: Option<usize>,
    /// The day the run stages into, fixed once at start so a run across midnight stays in one day.
    pub date: Date,
    /// Stage only these peers (all when empty).
    pub only: Vec<String>,
    /// Wait for locks instead of failing with 75.
    pub wait: bool,
    /// Show progress on stderr (a terminal, and not --json).
    pub progress: bool,
}

/// What every worker shares.
struct Run<'a> {
    config: &'a Config,
    settings: &'a Settings,
    options: &'a RunOptions,
    daily_dir: PathBuf,
    owner: Option<Ownership>,
    lock_dir: PathBuf,
    weekly: bool,
    base_vars: Vec<(&'static str, String)>,
}

pub fn run(config: &Config, settings: &Settings, options: &RunOptions) -> Result<JobReport> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let peers = config.select(&options.only)?;
    // Every peer is checked before anything changes: a config mistake is exit 2, not a
    // half-done run.
    for peer in &peers {
        peer::build(peer, PeerOptions::default())?;
    }
    let owner = match (&config.backup_user, running_as_root()) {
        (Some(user), true) => Some(
            Ownership::from_names(user, config.backup_group.as_deref()).map_err(|err| {
                Error::usage(format!("backup user/group: {}", err.cause))
                    .at(format_args!("config {}", config.source.display()))
            })?,
        ),
        _ => None,
    };
    if !config.staging_dir.is_dir() {
        return Err(Error::usage(format!(
            "config {}: staging dir {}: not an existing directory (is the backup disk mounted?)",
            config.source.display(),
            config.staging_dir.display()
        )));
    }
    let lock_dir = settings.lock_dir.clone();
    let _run_lock = if settings.dry_run {
        None
    } else {
        lock::prepare_lock_dir(&lock_dir)?;
        Some(Lock::run(&lock_dir, &config.staging_dir, options.wait)?)
    };
    let daily_dir = config.staging_dir.join(options.date.daily_path());
    let weekly = options.full || options.date.weekday() == config.starting_day;
    let base_vars = vec![
        ("DATE", options.date.to_string()),
        ("FULL", if options.full { "1" } else { "0" }.to_string()),
        ("STAGING_DIR", config.staging_dir.display().to_string()),
        ("DAILY_DIR", daily_dir.display().to_string()),
        ("CONFIG", config.source.display().to_string()),
        (
            "PEERS",
            peers
                .iter()
                .map(|peer| peer.name.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ),
    ];
    let run = Run {
        config,
        options,
        daily_dir,
        owner,
        lock_dir,
        settings,
        weekly,
        base_vars,
    };
    run.make_daily_dir()?;

    let start_failure = hooks::run(
        &config.hooks.run_start,
        Event::RunStart,
        &run.base_vars,
        settings.dry_run,
        None,
    )
    .err();
    let results = match &start_failure {
        Some(cause) => {
            log::error!("{cause}; no peer staged");
            peers.iter().map(|peer| run.canceled(peer, cause)).collect()
        }
        None => run.stage_all(&peers),
    };

    let canceled = start_failure.is_some() || crate::cancel::canceled_by().is_some();
    let mut report = run.report(started, clock, results, canceled);
    if !canceled && !settings.dry_run {
        // Cedar writes the master indicator whatever became of the peers: the failures are
        // in the log and the exit status, and the store action reads the rest. A canceled
        // run has not finished, so it does not.
        let perms = Perms { owner, mode: None };
        if let Err(cause) = write_file_atomically(
            &run.daily_dir,
            DEFAULT_STAGE_INDICATOR,
            b"",
            &perms,
            Mode(0o644),
        ) {
            log::error!("cannot write the master stage indicator: {cause}");
            report.exit_code = EXIT_FAILED;
        }
    }
    let mut end_vars = run.base_vars.clone();
    end_vars.extend([
        ("STATUS", report.status.to_string()),
        ("STATUS_WORD", report.status_word.to_string()),
        ("FILES", report.files.to_string()),
        ("BYTES", report.bytes.to_string()),
        (
            "FAILED",
            report
                .peers
                .iter()
                .filter(|peer| peer.fails_run())
                .count()
                .to_string(),
        ),
        (
            "REPORT",
            run.daily_dir.join(REPORT_FILE).display().to_string(),
        ),
        ("EXIT_CODE", report.exit_code.to_string()),
    ]);
    if let Err(cause) = hooks::run(
        &config.hooks.run_end,
        Event::RunEnd,
        &end_vars,
        settings.dry_run,
        None,
    ) {
        log::error!("{cause}");
        report.exit_code = EXIT_FAILED;
    }
    if !settings.dry_run {
        let perms = Perms { owner, mode: None };
        let json = report.to_json() + "\n";
        if let Err(cause) = write_file_atomically(
            &run.daily_dir,
            REPORT_FILE,
            json.as_bytes(),
            &perms,
            Mode(0o644),
        ) {
            log::error!("cannot write the job report: {cause}");
        }
    }
    Ok(report)
}

impl Run<'_> {
    fn make_daily_dir(&self) -> Result<()> {
        let mut dir = self.config.staging_dir.clone();
        for part in self.options.date.daily_path().split('/') {
            dir.push(part);
            self.make_dir(&dir).map_err(Error::failed)?;
        }
        Ok(())
    }

    /// Creates one directory (owned by the backup user when running as root); one that is
    /// already there is fine.
    fn make_dir(&self, dir: &Path) -> std::result::Result<bool, String> {
        if self.settings.dry_run {
            if !dir.is_dir() {
                crate::peer::print_dry_run(format_args!(
                    "mkdir -- {}",
                    crate::process::quote_os(dir.as_os_str())
                ));
                if let Some(owner) = self.owner {
                    crate::peer::print_dry_run(format_args!(
                        "chown {owner} -- {}",
                        crate::process::quote_os(dir.as_os_str())
                    ));
                }
            }
            return Ok(true);
        }
        match fs::create_dir(dir) {
            Ok(()) => {
                if let Some(owner) = self.owner {
                    nix::unistd::chown(dir, Some(owner.uid.into()), Some(owner.gid.into()))
                        .map_err(|err| {
                            format!("{}: cannot chown to {owner}: {err}", dir.display())
                        })?;
                }
                Ok(true)
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                let meta = fs::symlink_metadata(dir)
                    .map_err(|err| format!("{}: {}", dir.display(), io_cause(&err)))?;
                if meta.is_dir() {
                    Ok(false)
                } else {
                    Err(format!("{}: exists and is not a directory", dir.display()))
                }
            }
            Err(err) => Err(format!(
                "{}: cannot create: {}",
                dir.display(),
                crate::error::write_cause(&err)
            )),
        }
    }

    fn stage_all(&self, peers: &[&PeerConfig]) -> Vec<PeerResult> {
        let jobs = self.options.jobs.unwrap_or(peers.len().clamp(1, 8)).max(1);
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let files = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let results: Mutex<Vec<Option<PeerResult>>> = Mutex::new(vec![None; peers.len()]);
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(peers.len()) {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(peer) = peers.get(index) else { break };
                    let result = match crate::cancel::canceled_by() {
                        Some(signal) => {
                            self.canceled(peer, &format!("canceled by {signal} before it started"))
                        }
                        None => self.stage_peer(peer),
                    };
                    files.fetch_add(result.files, Ordering::Relaxed);
                    bytes.fetch_add(result.bytes, Ordering::Relaxed);
                    let finished = done.fetch_add(1, Ordering::SeqCst) + 1;
                    if self.options.progress {
                        let mut err = std::io::stderr().lock();
                        let _ = write!(
                            err,
                            "\r\x1b[K[{finished}/{} peers] {} files, {}",
                            peers.len(),
                            files.load(Ordering::Relaxed),
                            crate::units::size(bytes.load(Ordering::Relaxed))
                        );
                        if finished == peers.len() {
                            let _ = writeln!(err);
                        }
                    }
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

    fn canceled(&self, peer: &PeerConfig, cause: &str) -> PeerResult {
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
    fn stage_peer(&self, config: &PeerConfig) -> PeerResult {
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
        match self.stage_peer_steps(config, &target_dir, &vars, deadline, &mut result) {
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
        result.seconds = clock.elapsed().as_secs_f64();
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
        let peer = peer::build(
            config,
            PeerOptions {
                deadline,
                ..self.settings.peer_options(Instant::now())
            },
        )
        .map_err(fatal)?;
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
        match peer.indicator(DEFAULT_COLLECT_INDICATOR).map_err(fatal)? {
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
        match self.make_dir(target_dir) {
            Ok(true) => {}
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

    fn report(
        &self,
        started: SystemTime,
        clock: Instant,
        peers: Vec<PeerResult>,
        canceled: bool,
    ) -> JobReport {
        let failed = peers.iter().any(PeerResult::fails_run);
        let status = if canceled {
            PeerStatus::Canceled
        } else if failed {
            PeerStatus::Error
        } else {
            PeerStatus::Completed
        };
        JobReport {
            started: timestamp(started),
            finished: timestamp(SystemTime::now()),
            date: self.options.date.to_string(),
            full: self.options.full,
            config: self.config.source.display().to_string(),
            staging_dir: self.config.staging_dir.display().to_string(),
            daily_dir: self.daily_dir.display().to_string(),
            dry_run: self.settings.dry_run,
            status: status.letter(),
            status_word: status.word(),
            exit_code: if failed || canceled { EXIT_FAILED } else { 0 },
            files: peers.iter().map(|peer| peer.files).sum(),
            bytes: peers.iter().map(|peer| peer.bytes).sum(),
            seconds: clock.elapsed().as_secs_f64(),
            peers,
        }
    }
}

/// Fatal (f) when the peer could not be reached or set up, terminated with errors (E) otherwise.
fn status_of(err: &Error) -> PeerStatus {
    match err.kind {
        ErrorKind::Unreachable | ErrorKind::Usage => PeerStatus::Fatal,
        ErrorKind::Failed | ErrorKind::Locked => PeerStatus::Error,
        ErrorKind::Canceled => PeerStatus::Canceled,
    }
}

fn kind_name(kind: PeerKind) -> &'static str {
    match kind {
        PeerKind::Local => "local",
        PeerKind::Remote => "remote",
    }
}

/// Whether progress may be drawn: only for a person at a terminal.
pub fn progress_wanted(json: bool, quiet: bool) -> bool {
    !json && !quiet && std::io::stderr().is_terminal()
}
