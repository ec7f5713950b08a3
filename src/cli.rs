//! The one definition of the command line. `--help`, the man page and the shell completions
//! are all generated from it (see `peerstage generate`), so they cannot disagree.
//!
//! clap types stop here: `commands` turns them into plain config and peer values.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueHint};

pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0   success (check: the indicator is present)
  1   failed (check: the indicator is absent; run: a peer failed and its failure was not ignored)
  2   usage or configuration error; nothing was changed
  69  a peer could not be reached
  75  a lock is held by another process";

#[derive(Debug, Parser)]
#[command(
    name = "peerstage",
    version,
    about = "Stage the collected backup files of a pool of peers onto this master host",
    long_about = "peerstage copies each ready peer's collected backup files into a staging \
directory on the master, locally with the file system or remotely over scp/ssh, applies \
ownership and permissions, and writes a stage indicator back to the peer. It reads Cedar Backup \
3's cback3.conf as it is, or its own TOML config.",
    after_help = EXIT_STATUS_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Say more (-v: each command run; -vv: debugging detail). RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Say only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Append timestamped log lines (info level, whatever -q says) to this file
    /// [default: the config's log_file, else none]
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    #[command(flatten)]
    pub reach: ReachArgs,

    #[command(flatten)]
    pub watch: WatchArgs,

    #[command(flatten)]
    pub copy: CopyArgs,

    #[command(flatten)]
    pub lock_dir: LockDirArg,

    #[command(subcommand)]
    pub command: Command,
}

/// The heading of the options several subcommands share. They may also be given before the
/// subcommand (`peerstage --dry-run run`); where they do not apply, they are ignored with a
/// warning.
pub const SHARED_HEADING: &str = "Shared options";

/// For every subcommand that reaches a peer.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = SHARED_HEADING)]
pub struct ReachArgs {
    /// Print every command line and file operation instead of carrying it out; change nothing
    #[arg(short = 'n', long, global = true)]
    pub dry_run: bool,

    /// Give up on a peer that takes longer than this (its commands are killed, nothing partial
    /// is kept; the peer counts as unreachable) [default: the config's timeout, else none]
    #[arg(long, global = true, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,

    /// Open a new ssh connection for each command instead of sharing one per remote peer, and
    /// run the rcp/rsh command for the indicator probe and push, the copy and the size
    /// listing instead of SFTP requests
    #[arg(long, global = true)]
    pub no_multiplex: bool,
}

/// For the subcommands whose steps move files or probe for them.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = SHARED_HEADING)]
pub struct WatchArgs {
    /// Give up on a peer (as unreachable) when a step of staging it moves no byte for this
    /// long; 0 turns the check off. Managed actions and exec are not watched [default: the
    /// config's idle_timeout, else 300]
    #[arg(long, global = true, value_name = "SECONDS")]
    pub idle_timeout: Option<u64>,
}

/// For the subcommands that stage.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = SHARED_HEADING)]
pub struct CopyArgs {
    /// The most entries a peer's collect dir may list; a peer that lists more fails, and
    /// nothing of it is staged [default: the config's max_entries, else 100000]
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_entries: Option<u64>,

    /// How staged files are checked against the peer's: none, size (names and sizes), or
    /// sha256 (contents too) [default: the config's verify, else size]
    #[arg(long, global = true, value_name = "MODE", value_parser = ["none", "size", "sha256"])]
    pub verify: Option<String>,

    /// Hold the copy to this rate, like 10MiB/s, 500KiB/s or 2MB/s: for `stage` the peer's
    /// copy, for `run` all peers together (shared by those staged in parallel); a peer's own
    /// bwlimit in the config holds too. peerstage paces copies over SFTP and local ones;
    /// through a literal scp rcp command the limit becomes scp's -l
    /// [default: the config's bwlimit, else none]
    #[arg(long, global = true, value_name = "RATE", value_parser = clap::value_parser!(crate::rate::Rate))]
    pub bwlimit: Option<crate::rate::Rate>,
}

/// For the subcommands that take or list locks.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = SHARED_HEADING)]
pub struct LockDirArg {
    /// Directory for lock files [default: the config's lock_dir, else /run/peerstage as root,
    /// else $XDG_RUNTIME_DIR/peerstage or /tmp/peerstage-UID]
    #[arg(long, global = true, value_name = "DIR", env = "PEERSTAGE_LOCK_DIR")]
    pub lock_dir: Option<PathBuf>,
}

/// The groups of shared options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Reach,
    Watch,
    Copy,
    LockDir,
}

impl Group {
    pub const ALL: [Group; 4] = [Group::Reach, Group::Watch, Group::Copy, Group::LockDir];

    /// The ids of the group's options.
    pub fn ids(self) -> Vec<String> {
        let group = clap::Command::new("group");
        let group = match self {
            Group::Reach => ReachArgs::augment_args(group),
            Group::Watch => WatchArgs::augment_args(group),
            Group::Copy => CopyArgs::augment_args(group),
            Group::LockDir => LockDirArg::augment_args(group),
        };
        group
            .get_arguments()
            .map(|arg| arg.get_id().to_string())
            .collect()
    }

    /// Whether the group's options do anything for `subcommand`. They are accepted by every
    /// subcommand (scripts pass the same options to each), shown in the help of those they
    /// apply to, and ignored with a warning by the others.
    pub fn applies_to(self, subcommand: &str) -> bool {
        match self {
            Group::Reach => matches!(
                subcommand,
                "stage" | "check" | "mark" | "exec" | "action" | "run" | "status"
            ),
            Group::Watch => matches!(subcommand, "stage" | "check" | "mark" | "run" | "status"),
            Group::Copy => matches!(subcommand, "stage" | "run"),
            Group::LockDir => matches!(subcommand, "stage" | "mark" | "action" | "run" | "locks"),
        }
    }
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Stage(_) => "stage",
            Command::Check(_) => "check",
            Command::Mark(_) => "mark",
            Command::Exec(_) => "exec",
            Command::Action(_) => "action",
            Command::Run(_) => "run",
            Command::Status(_) => "status",
            Command::Config(_) => "config",
            Command::Locks(_) => "locks",
            Command::Generate(_) => "generate",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy every regular file of a peer's collect dir into a target dir
    #[command(after_help = EXIT_STATUS_HELP)]
    Stage(StageArgs),
    /// Test whether a peer's collect indicator is there (exit 0 present, 1 absent, 69 unreachable)
    #[command(after_help = EXIT_STATUS_HELP)]
    Check(CheckArgs),
    /// Write the stage indicator into a peer's collect dir
    #[command(after_help = EXIT_STATUS_HELP)]
    Mark(MarkArgs),
    /// Run a command on a remote peer through the rsh command
    #[command(after_help = EXIT_STATUS_HELP)]
    Exec(ExecArgs),
    /// Run a Cedar Backup managed action (cback3 [--full] ACTION) on a remote peer
    #[command(after_help = EXIT_STATUS_HELP)]
    Action(ActionArgs),
    /// Stage every peer of a pool into <staging_dir>/YYYY/MM/DD/<peer>/ and write a job report
    #[command(after_help = EXIT_STATUS_HELP)]
    Run(RunArgs),
    /// Show, per peer, whether its collect and stage indicators are there (changes nothing)
    #[command(after_help = EXIT_STATUS_HELP)]
    Status(StatusArgs),
    /// Check a config file, or print it as native TOML
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List lock files with their owner pid and whether the owner is alive
    Locks(LocksArgs),
    /// Write the man page and shell completions generated from this command line
    #[command(hide = true)]
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config file: native TOML, or Cedar Backup's cback3.conf
    #[arg(short, long, value_name = "FILE", required_unless_present = "demo")]
    pub config: Option<PathBuf>,

    /// Stage a built-in demo pool of two local peers in a new temp dir (no config, no server)
    #[arg(long, conflicts_with = "config")]
    pub demo: bool,

    /// A full (weekly) run: passed to managed actions, and decides daily/weekly ignore modes
    #[arg(long)]
    pub full: bool,

    /// How many peers to stage at once [default: config's jobs, else up to 8]
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,

    /// Stage into this day's directory instead of today's
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<String>,

    /// Stage only this peer (repeatable)
    #[arg(long, value_name = "PEER", value_hint = ValueHint::Other)]
    pub only: Vec<String>,

    /// Wait for locks held by another process instead of failing with exit status 75
    #[arg(long)]
    pub wait: bool,

    /// Print the job report as one JSON document on stdout
    #[arg(long)]
    pub json: bool,

    /// Write the run's outcome as Prometheus metrics to this file, for node_exporter's
    /// textfile collector [default: the config's metrics_file, else none]
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Config file: native TOML, or Cedar Backup's cback3.conf
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,

    /// Only this peer (repeatable)
    #[arg(long, value_name = "PEER", value_hint = ValueHint::Other)]
    pub only: Vec<String>,

    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate a config file (exit 0 when valid, 2 otherwise)
    Check {
        /// Config file: native TOML, or Cedar Backup's cback3.conf
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print the effective config as native TOML that `run` accepts
    Show {
        /// Config file: native TOML, or Cedar Backup's cback3.conf
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct LocksArgs {
    /// List the locks of this config's pool and peers, in its lock dir [default: every lock
    /// of the lock dir]
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// With --config: list every lock of its lock dir, whatever config it belongs to
    #[arg(long, requires = "config")]
    pub all: bool,

    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write man/ and completions/ into
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

/// Which peer a single-peer subcommand works on: a local one, a remote one, or one from a config.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Peer")]
pub struct PeerArgs {
    /// Absolute path of the peer's collect dir (exec and action do without)
    #[arg(long, value_name = "DIR")]
    pub collect_dir: Option<PathBuf>,

    /// Name of a local peer [default: the collect dir's path, its slashes as dashes:
    /// /srv/db/collect is srv-db-collect]
    #[arg(long, value_name = "NAME", conflicts_with = "host", value_hint = ValueHint::Other)]
    pub name: Option<String>,

    /// Host name of a remote peer; makes the peer remote
    #[arg(long, value_name = "HOST", value_hint = ValueHint::Hostname)]
    pub host: Option<String>,

    /// User to log in as on the remote peer
    #[arg(long, value_name = "USER", requires = "host")]
    pub remote_user: Option<String>,

    /// Local user to run the rcp/rsh commands as, through su (only when running as root)
    #[arg(long, value_name = "USER", requires = "host")]
    pub local_user: Option<String>,

    /// Local scratch dir for a remote peer [default: $TMPDIR or /tmp]
    #[arg(long, value_name = "DIR", requires = "host")]
    pub working_dir: Option<PathBuf>,

    /// rcp-compatible copy command [default: /usr/bin/scp -B -q -C]
    #[arg(long, value_name = "CMD", requires = "host")]
    pub rcp_command: Option<String>,

    /// rsh-compatible shell command [default: /usr/bin/ssh]
    #[arg(long, value_name = "CMD", requires = "host")]
    pub rsh_command: Option<String>,

    /// Cedar Backup command on the peer, for managed actions [default: /usr/bin/cback3]
    #[arg(long, value_name = "CMD", requires = "host")]
    pub cback_command: Option<String>,

    /// Take the peer from this config file (TOML or cback3.conf), with --peer
    #[arg(long, value_name = "FILE", requires = "peer", conflicts_with_all = ["collect_dir", "name", "host"])]
    pub config: Option<PathBuf>,

    /// Name of the peer in --config
    #[arg(long, value_name = "NAME", requires = "config", value_hint = ValueHint::Other)]
    pub peer: Option<String>,
}

/// For the single-peer subcommands that take the peer's lock.
#[derive(Debug, Args, Clone, Default)]
pub struct WaitArg {
    /// Wait for the peer's lock if another process holds it, instead of failing with 75
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct StageArgs {
    /// Existing absolute directory to copy the files into
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,

    /// Owner of the staged files: UID:GID or USER[:GROUP]
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,

    /// Permissions of the staged files, in octal (e.g. 0640)
    #[arg(long, value_name = "OCTAL")]
    pub mode: Option<String>,

    #[command(flatten)]
    pub wait: WaitArg,

    #[command(flatten)]
    pub peer: PeerArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Name of the collect indicator file
    #[arg(long, value_name = "NAME", default_value = crate::config::DEFAULT_COLLECT_INDICATOR)]
    pub indicator: String,

    #[command(flatten)]
    pub peer: PeerArgs,
}

#[derive(Debug, Args)]
pub struct MarkArgs {
    /// Name of the stage indicator file
    #[arg(long, value_name = "NAME", default_value = crate::config::DEFAULT_STAGE_INDICATOR)]
    pub indicator: String,

    /// Owner of the indicator (local peers): UID:GID or USER[:GROUP]
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,

    /// Permissions of the indicator (local peers), in octal (e.g. 0640)
    #[arg(long, value_name = "OCTAL")]
    pub mode: Option<String>,

    #[command(flatten)]
    pub wait: WaitArg,

    #[command(flatten)]
    pub peer: PeerArgs,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub peer: PeerArgs,

    /// The command and its arguments, after `--`; each arrives on the peer as one argument
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    /// Run the action as part of a full backup (passes --full)
    #[arg(long)]
    pub full: bool,

    #[command(flatten)]
    pub wait: WaitArg,

    #[command(flatten)]
    pub peer: PeerArgs,

    /// The Cedar Backup action to run, e.g. collect
    #[arg(value_name = "ACTION")]
    pub action: String,
}

/// The clap command, for parsing, the man page and completions: each subcommand's help
/// shows the shared options that apply to it.
pub fn command() -> clap::Command {
    let mut cli = <Cli as clap::CommandFactory>::command();
    let shared: Vec<(Group, clap::Arg)> = Group::ALL
        .into_iter()
        .flat_map(|group| {
            let ids = group.ids();
            cli.get_arguments()
                .filter(move |arg| ids.iter().any(|id| arg.get_id() == id.as_str()))
                .map(move |arg| (group, arg.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let names: Vec<String> = cli
        .get_subcommands()
        .map(|sub| sub.get_name().to_string())
        .collect();
    for name in names {
        cli = cli.mut_subcommand(&name, |sub| hide_what_does_not_apply(sub, &name, &shared));
    }
    cli
}

/// Gives `sub` a hidden copy of each shared option that does not apply to the subcommand
/// `name`: clap propagates a global option only into subcommands that lack one of that id,
/// so the copy is what `sub` (and its own subcommands, as `config check`) accepts and hides.
fn hide_what_does_not_apply(
    mut sub: clap::Command,
    name: &str,
    shared: &[(Group, clap::Arg)],
) -> clap::Command {
    for (group, arg) in shared {
        if !group.applies_to(name) {
            sub = sub.arg(arg.clone().hide(true));
        }
    }
    sub
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        super::command().debug_assert();
    }
}
