use crate::cli::RunArgs;
use crate::config::Config;
use crate::date::Date;
use crate::error::Result;
use crate::pool::{self, RunOptions};
use crate::settings::Settings;

use super::Flags;

pub fn run(flags: &Flags, args: RunArgs) -> Result<i32> {
    if args.json {
        crate::peer::dry_run_lines_to_stderr();
    }
    // The demo's temp dir lives until the end of this function.
    let (config, demo) = match &args.config {
        Some(path) => (Config::load(path)?, None),
        None => {
            let demo = crate::demo::prepare()?;
            (demo.config.clone(), Some(demo))
        }
    };
    let date = match &args.date {
        Some(text) => Date::parse(text)?,
        None => Date::today(),
    };
    let settings = Settings::resolve(flags, Some(&config));
    // The config's log file, unless the command line gave one (opened already).
    if let (None, Some(file)) = (&flags.log_file, &settings.log_file) {
        crate::logging::open_file(file)?;
    }
    let options = RunOptions {
        full: args.full,
        jobs: args.jobs.map(usize::from).or(config.jobs),
        date,
        only: args.only,
        wait: args.wait,
        progress: crate::progress::wanted(args.json, flags.quiet),
        metrics_file: args.metrics_file.clone().or(config.metrics_file.clone()),
    };
    let report = pool::run(&config, &settings, &options)?;
    if args.json {
        println!("{}", report.to_json());
    } else if !flags.quiet {
        // The table is the run's result, for a person or a cron mail: stdout.
        print!("{}", report.to_table());
    }
    if let (Some(_), false, false) = (&demo, args.json, flags.quiet) {
        println!(
            "demo pool: collect dirs under {}, staged into {}:\n{}(the demo dir is removed now)",
            config.staging_dir.with_file_name("peers").display(),
            report.daily_dir,
            crate::demo::describe(std::path::Path::new(&report.daily_dir))
        );
    }
    drop(demo);
    Ok(report.exit_code)
}
