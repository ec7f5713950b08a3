use crate::cli::RunArgs;
use crate::config::Config;
use crate::date::Date;
use crate::error::Result;
use crate::pool::{self, progress_wanted, RunOptions};

use super::Context;

pub fn run(context: &Context, args: RunArgs) -> Result<i32> {
    let config = Config::load(&args.config)?;
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
        timeout: config.timeout.map(std::time::Duration::from_secs),
    };
    let report = pool::run(&config, &options)?;
    if args.json {
        println!("{}", report.to_json());
    } else if !context.quiet {
        // The table is the run's result, for a person or a cron mail: stdout.
        print!("{}", report.to_table());
    }
    Ok(report.exit_code)
}
