//! The shared options (see `cli::Group`), given before or after the subcommand. Those that do
//! not apply to the subcommand are ignored with a warning (`--lock-dir` quietly): scripts
//! that pass the same options to every subcommand keep working, and nobody believes an
//! option did something it did not.

use clap::parser::ValueSource;
use clap::ArgMatches;

use crate::cli::{Cli, Group};
use crate::settings::Flags;

pub fn resolve(cli: &Cli, matches: &ArgMatches) -> Flags {
    let name = cli.command.name();
    for group in Group::ALL {
        // Where the locks are changes nothing for a subcommand that takes none: scripts
        // give it to every subcommand, and a warning would only be noise.
        if group.applies_to(name) || group == Group::LockDir {
            continue;
        }
        for id in group.ids() {
            if given(matches, &id) {
                log::warn!(
                    "--{} does not apply to `peerstage {name}`; ignored",
                    id.replace('_', "-")
                );
            }
        }
    }
    let applies = |group: Group| group.applies_to(name);
    Flags {
        dry_run: applies(Group::Reach) && cli.reach.dry_run,
        quiet: cli.quiet,
        timeout: cli.reach.timeout.filter(|_| applies(Group::Reach)),
        idle_timeout: cli.watch.idle_timeout.filter(|_| applies(Group::Watch)),
        max_entries: cli.copy.max_entries.filter(|_| applies(Group::Copy)),
        bwlimit: cli.copy.bwlimit.filter(|_| applies(Group::Copy)),
        no_multiplex: applies(Group::Reach) && cli.reach.no_multiplex,
        // clap has checked it is one of the modes.
        verify: cli
            .copy
            .verify
            .as_deref()
            .filter(|_| applies(Group::Copy))
            .and_then(|mode| mode.parse().ok()),
        // From PEERSTAGE_LOCK_DIR too.
        lock_dir: cli.lock_dir.lock_dir.clone(),
        log_file: cli.log_file.clone(),
    }
}

/// Whether option `id` was given on the command line, before or after the subcommand (a
/// global option's value is in the matches of the subcommand it followed).
fn given(matches: &ArgMatches, id: &str) -> bool {
    let mut level = Some(matches);
    while let Some(matches) = level {
        if matches.value_source(id) == Some(ValueSource::CommandLine) {
            return true;
        }
        level = matches.subcommand().map(|(_, inner)| inner);
    }
    false
}
