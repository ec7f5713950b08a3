//! The end of a run: the master stage indicator, the run-end hooks, the job report of this
//! run (a file of its own, kept beside those of the day's other runs) and the metrics file.
//! A dry run says each of these instead of doing it.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::DEFAULT_STAGE_INDICATOR;
use crate::date::timestamp;
use crate::error::EXIT_FAILED;
use crate::fsutil::write_file_atomically;
use crate::hooks::{self, Event};
use crate::ownership::{Mode, Perms};
use crate::peer::print_dry_run;
use crate::process::quote_os;
use crate::report::JobReport;

use super::Run;

/// The job report of a run that started at `started`: one per run, named for its start
/// (`peerstage-report-2026-12-02T02-30-00Z.json`), so a day's runs all stay. A second run
/// that started in the same second into the same daily dir (another config) gets `-2`.
pub fn report_path(daily_dir: &Path, started: SystemTime) -> PathBuf {
    let stem = format!("peerstage-report-{}", timestamp(started).replace(':', "-"));
    let mut path = daily_dir.join(format!("{stem}.json"));
    let mut number = 2;
    while path.symlink_metadata().is_ok() {
        path = daily_dir.join(format!("{stem}-{number}.json"));
        number += 1;
    }
    path
}

impl Run<'_> {
    pub(super) fn finish(&self, report: &mut JobReport, started: SystemTime, canceled: bool) {
        let dry_run = self.settings.dry_run;
        let perms = Perms {
            owner: self.owner,
            mode: None,
        };
        let indicator = self.daily_dir.join(DEFAULT_STAGE_INDICATOR);
        let report_path = report_path(&self.daily_dir, started);
        // Cedar writes the master indicator whatever became of the peers: the failures are in
        // the log and the exit status, and the store action reads the rest. A canceled run
        // has not finished, so it does not.
        if !canceled {
            if dry_run {
                print_dry_run(format_args!("touch -- {}", quote_os(indicator.as_os_str())));
            } else if let Err(cause) = write_file_atomically(
                &self.daily_dir,
                DEFAULT_STAGE_INDICATOR,
                b"",
                &perms,
                Mode(0o644),
            ) {
                log::error!("cannot write the master stage indicator: {cause}");
                report.exit_code = EXIT_FAILED;
            }
        }
        let mut end_vars = self.base_vars.clone();
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
            ("REPORT", report_path.display().to_string()),
            ("EXIT_CODE", report.exit_code.to_string()),
        ]);
        if let Err(cause) = hooks::run(
            &self.config.hooks.run_end,
            Event::RunEnd,
            &end_vars,
            dry_run,
            None,
        ) {
            log::error!("{cause}");
            report.exit_code = EXIT_FAILED;
        }
        if dry_run {
            print_dry_run(format_args!(
                "# write the job report to {}",
                report_path.display()
            ));
        } else {
            let json = report.to_json() + "\n";
            let name = report_path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("peerstage-report.json");
            if let Err(cause) =
                write_file_atomically(&self.daily_dir, name, json.as_bytes(), &perms, Mode(0o644))
            {
                log::error!("cannot write the job report: {cause}");
            }
        }
        if let Some(path) = &self.options.metrics_file {
            if dry_run {
                print_dry_run(format_args!("# write the metrics to {}", path.display()));
            } else {
                let seconds = |time: SystemTime| {
                    time.duration_since(UNIX_EPOCH)
                        .map(|since| since.as_secs_f64())
                        .unwrap_or(0.0)
                };
                let ended = seconds(SystemTime::now());
                // Alerts rest on this file: not writing it fails the run, like the master
                // indicator.
                if let Err(err) = crate::metrics::write(path, report, seconds(started), ended) {
                    log::error!("{err}");
                    report.exit_code = EXIT_FAILED;
                }
            }
        }
    }
}
