use crate::cli::RunArgs;
use crate::config::Config;
use crate::date::Date;
use crate::error::Result;
use crate::pool::{self, progress_wanted, RunOptions};
use crate::settings::Settings;

use super::Flags;

pub fn run(flags: &Flags, args: RunArgs) -> Result<i32> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => crate::demo::prepare()?,
    };
    let date = match &args.date {
        Some(text) => Date::parse(text)?,
        None => Date::today(),
    };
    let settings = Settings::resolve(flags, Some(&config));
    let options = RunOptions {
        full: args.full,
        jobs: args.jobs.map(usize::from).or(config.jobs),
        date,
        only: args.only,
        wait: args.wait,
        progress: progress_wanted(args.json, flags.quiet),
    };
    let report = pool::run(&config, &settings, &options)?;
    if args.json {
        println!("{}", report.to_json());
    } else if !flags.quiet {
        // The table is the run's result, for a person or a cron mail: stdout.
        print!("{}", report.to_table());
    }
    if args.demo && !args.json && !flags.quiet {
        println!(
            "demo pool: collect dirs under {}, staged into {}",
            config.staging_dir.with_file_name("peers").display(),
            report.daily_dir
        );
    }
    Ok(report.exit_code)
}
