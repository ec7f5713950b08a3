//! The pool run: every configured peer staged into `<staging_dir>/YYYY/MM/DD/<peer>/`, then the
//! master stage indicator, hooks at each job event, and a job report.
//!
//! One failing peer never stops the others; peers run in parallel on `jobs` workers.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use crate::config::{Config, PeerKind};
use crate::date::{timestamp, Date};
use crate::error::{io_cause, Error, ErrorKind, Result, EXIT_FAILED};
use crate::hooks::{self, Event};
use crate::lock::{self, Lock};
use crate::ownership::{running_as_root, Ownership};
use crate::peer::{self, PeerOptions};
use crate::report::{JobReport, PeerResult, PeerStatus};

mod finish;
mod worker;

use crate::settings::Settings;

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
    /// Where the run's outcome goes as Prometheus metrics.
    pub metrics_file: Option<std::path::PathBuf>,
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
        let run_lock = Lock::run(&lock_dir, &config.staging_dir, options.wait)?;
        // Lock files of owners that were killed are swept, so the lock dir shows only locks
        // in use.
        lock::remove_free(&lock_dir);
        Some(run_lock)
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
    log::info!(
        "run of {} for {} started: {} into {}{}",
        config.source.display(),
        options.date,
        crate::units::count(peers.len() as u64, "peer"),
        run.daily_dir.display(),
        if settings.dry_run { " (dry run)" } else { "" }
    );

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
    run.finish(&mut report, started, canceled);
    log::info!(
        "run of {} for {} ended: {} ({}), {}, {}",
        config.source.display(),
        options.date,
        report.status,
        report.status_word,
        crate::units::count(report.files, "file"),
        crate::units::size(report.bytes)
    );
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
        } else if self.settings.dry_run {
            PeerStatus::DryRun
        } else if failed {
            PeerStatus::Error
        } else {
            PeerStatus::Completed
        };
        let bytes = peers.iter().map(|peer| peer.bytes).sum();
        let seconds = clock.elapsed().as_secs_f64();
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
            bytes,
            seconds,
            bytes_per_second: if self.settings.dry_run {
                0.0
            } else {
                crate::report::per_second(bytes, seconds)
            },
            bwlimit_bytes_per_second: self
                .settings
                .bwlimit
                .as_ref()
                .map(|limiter| limiter.rate().bytes_per_second()),
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
