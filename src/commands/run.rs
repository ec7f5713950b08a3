use crate::cli::RunArgs;
use crate::config::Config;
use crate::date::Date;
use crate::error::Result;
use crate::pool::{self, progress_wanted, RunOptions};

use super::Context;

pub fn run(context: &Context, args: RunArgs) -> Result<i32> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => crate::demo::prepare()?,
    };
    let date = match &args.date {
        Some(text) => Date::parse(text)?,
        None => Date::today(),
    };
    let options = RunOptions {
        full: args.full,
        jobs: args.jobs.map(usize::from),
        date,
        only: args.only,
        dry_run: context.dry_run,
        wait: args.wait,
        progress: progress_wanted(args.json, context.quiet),
        timeout: context
            .timeout
            .or(config.timeout.map(std::time::Duration::from_secs)),
        idle: crate::limits::idle_timeout(context.idle_timeout, config.idle_timeout),
        max_entries: context
            .max_entries
            .or(config.max_entries)
            .unwrap_or(crate::config::DEFAULT_MAX_ENTRIES),
        lock_dir: context.lock_dir.clone(),
        multiplex: context.multiplex,
        verify: context.verify,
    };
    let report = pool::run(&config, &options)?;
    if args.json {
        println!("{}", report.to_json());
    } else if !context.quiet {
        // The table is the run's result, for a person or a cron mail: stdout.
        print!("{}", report.to_table());
    }
    if args.demo && !args.json && !context.quiet {
        println!(
            "demo pool: collect dirs under {}, staged into {}",
            config.staging_dir.with_file_name("peers").display(),
            report.daily_dir
        );
    }
    Ok(report.exit_code)
}
