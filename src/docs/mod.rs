//! The man page and shell completions, generated from the one clap definition in `cli`, with
//! the hand-written sections (configuration, exit status, files, examples) kept here beside it.
//! `peerstage generate DIR` writes them; a test fails when the checked-in copies are stale.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;

use crate::cli::SHARED_HEADING;

mod sections;
use sections::{DESCRIPTION, SECTIONS};

/// Every generated file, as (path relative to the repository root, contents).
pub fn generate() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = vec![(PathBuf::from("man/peerstage.1"), man_page().into_bytes())];
    for (shell, name) in [
        (Shell::Bash, "peerstage.bash"),
        (Shell::Zsh, "_peerstage"),
        (Shell::Fish, "peerstage.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut public_command(), "peerstage", &mut out);
        files.push((Path::new("completions").join(name), out));
    }
    files
}

/// The command line as completions should offer it: no hidden subcommand, and in each
/// subcommand only the options its help shows. clap_complete's bash generator lists hidden
/// options too, and the shared options are accepted (hidden) everywhere, so the command is
/// rebuilt from the built one with the hidden options left out and every option local:
/// global ones would otherwise be propagated into each subcommand again.
fn public_command() -> Command {
    let mut cli = crate::cli::command();
    cli.build();
    visible_only(&cli)
}

fn visible_only(cmd: &Command) -> Command {
    let mut public = Command::new(cmd.get_name().to_string())
        // The built command's help and version options are among the arguments copied.
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .version(env!("CARGO_PKG_VERSION"));
    if let Some(about) = cmd.get_about() {
        public = public.about(about.clone());
    }
    for arg in cmd.get_arguments().filter(|arg| !arg.is_hide_set()) {
        public = public.arg(arg.clone().global(false));
    }
    public.subcommands(
        cmd.get_subcommands()
            .filter(|sub| !sub.is_hide_set())
            .map(visible_only),
    )
}

pub fn write_all(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (relative, contents) in generate() {
        let path = root.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, contents)?;
        written.push(path);
    }
    Ok(written)
}

/// Escapes text for roff: backslashes, and a leading `.` or `'` that would read as a request.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    escaped
        .lines()
        .map(|line| {
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn bold(text: &str) -> String {
    format!("\\fB{}\\fR", roff(text))
}

/// Which options of a command to list: its own, the peer options, those several
/// subcommands share, or those of every subcommand.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Own,
    Peer,
    Shared,
    Global,
}

fn is_peer_option(arg: &clap::Arg) -> bool {
    arg.get_help_heading() == Some(PEER_HEADING)
}

fn is_shared_option(arg: &clap::Arg) -> bool {
    arg.get_help_heading() == Some(SHARED_HEADING)
}

const PEER_HEADING: &str = "Peer";

/// One `.TP` entry per option of a command, from its clap definition.
fn options(out: &mut String, cmd: &Command, which: Which) {
    for arg in cmd.get_arguments() {
        let wanted = match which {
            Which::Own => !arg.is_global_set() && !is_peer_option(arg) && !is_shared_option(arg),
            Which::Peer => is_peer_option(arg),
            Which::Shared => is_shared_option(arg),
            Which::Global => arg.is_global_set() && !is_shared_option(arg),
        };
        if arg.is_hide_set() || !wanted {
            continue;
        }
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let mut names = Vec::new();
        if let Some(short) = arg.get_short() {
            names.push(bold(&format!("-{short}")));
        }
        if let Some(long) = arg.get_long() {
            names.push(bold(&format!("--{long}")));
        }
        let value = arg
            .get_value_names()
            .map(|values| {
                values
                    .iter()
                    .map(|v| format!("\\fI{}\\fR", roff(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|_| arg.get_action().takes_values());
        let mut head = names.join(", ");
        if let Some(value) = value {
            if head.is_empty() {
                head = value;
            } else {
                head = format!("{head} {value}");
            }
        }
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        // A flag's "default: false" says nothing.
        let defaults: Vec<_> = if arg.get_action().takes_values() {
            arg.get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect()
        } else {
            Vec::new()
        };
        let mut text = roff(&help);
        if !defaults.is_empty() {
            let _ = write!(text, " [default: {}]", roff(&defaults.join(", ")));
        }
        if which == Which::Shared {
            let _ = write!(text, "\n.br\nFor: {}.", takers(id).join(", "));
        }
        let _ = writeln!(out, ".TP\n{head}\n{text}");
    }
}

/// The subcommands that take the option `id`.
fn takers(id: &str) -> Vec<String> {
    crate::cli::command()
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .filter(|sub| {
            sub.get_arguments()
                .any(|arg| arg.get_id() == id && !arg.is_hide_set())
        })
        .map(|sub| bold(sub.get_name()))
        .collect()
}

/// The shared options a subcommand takes, as `--dry-run, --timeout`.
fn shared_names(cmd: &Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|arg| is_shared_option(arg) && !arg.is_hide_set())
        .filter_map(|arg| arg.get_long())
        .map(|long| bold(&format!("--{long}")))
        .collect()
}

fn takes_peer(cmd: &Command) -> bool {
    cmd.get_arguments().any(is_peer_option)
}

fn man_page() -> String {
    let mut cli = crate::cli::command();
    cli.build();
    let version = cli.get_version().unwrap_or_default().to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        ".TH PEERSTAGE 1 \"\" \"peerstage {version}\" \"User Commands\""
    );
    let _ = writeln!(out, ".SH NAME\npeerstage \\- stage the collected backup files of a pool of peers onto a master host");
    out.push_str(".SH SYNOPSIS\n");
    let subcommands: Vec<&Command> = cli
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
        .collect();
    for sub in &subcommands {
        let usage = (*sub).clone().render_usage().to_string();
        let mut usage = usage
            .trim_start_matches("Usage: ")
            .replace("peerstage-", "peerstage ");
        if takes_peer(sub) {
            // The peer's options go before a `-- COMMAND...` that ends the line.
            match usage.find(" -- ") {
                Some(at) => usage.insert_str(at, " PEER"),
                None => usage.push_str(" PEER"),
            }
        }
        let _ = writeln!(out, ".br\n{}", roff(&usage));
    }
    out.push_str(
        ".PP\nwhere \\fIPEER\\fR is \\fB\\-\\-collect\\-dir\\fR \\fIDIR\\fR for a local peer, \
         \\fB\\-\\-host\\fR \\fIHOST\\fR \\fB\\-\\-collect\\-dir\\fR \\fIDIR\\fR for a remote one, \
         or \\fB\\-\\-config\\fR \\fIFILE\\fR \\fB\\-\\-peer\\fR \\fINAME\\fR (see PEER OPTIONS).\n",
    );
    out.push_str(DESCRIPTION);
    out.push_str(".SH COMMANDS\n");
    for sub in &subcommands {
        let _ = writeln!(out, ".SS \"peerstage {}\"", sub.get_name());
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            let _ = writeln!(out, "{}", roff(&about.to_string()));
        }
        if sub.has_subcommands() {
            for inner in sub.get_subcommands() {
                let _ = writeln!(
                    out,
                    ".TP\n{}\n{}",
                    bold(&format!(
                        "peerstage {} {}",
                        sub.get_name(),
                        inner.get_name()
                    )),
                    roff(&inner.get_about().map(|a| a.to_string()).unwrap_or_default())
                );
                options(&mut out, inner, Which::Own);
            }
        } else {
            options(&mut out, sub, Which::Own);
            if takes_peer(sub) {
                out.push_str(".TP\n\\fIPEER\\fR\nThe peer, as in PEER OPTIONS.\n");
            }
            let shared = shared_names(sub);
            if !shared.is_empty() {
                let _ = writeln!(
                    out,
                    ".PP\nAlso takes {} (see SHARED OPTIONS).",
                    shared.join(", ")
                );
            }
        }
    }
    out.push_str(".SH PEER OPTIONS\nThe single\\-peer commands name their peer with these.\n");
    if let Some(stage) = subcommands.iter().find(|sub| takes_peer(sub)) {
        options(&mut out, stage, Which::Peer);
    }
    out.push_str(
        ".SH SHARED OPTIONS\nEach is taken by the subcommands listed with it, after the \
         subcommand or before it (\\fBpeerstage \\-\\-dry\\-run run\\fR); before a subcommand \
         it does not apply to, it is ignored with a warning (\\fB\\-\\-lock\\-dir\\fR \
         quietly).\n",
    );
    options(&mut out, &cli, Which::Shared);
    out.push_str(".SH GLOBAL OPTIONS\nEvery subcommand takes these, before or after it.\n");
    options(&mut out, &cli, Which::Global);
    out.push_str(SECTIONS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The long options bash completion offers right after `peerstage PATH...`.
    fn bash_offers(script: &str, path: &[&str]) -> Vec<String> {
        let label = std::iter::once("peerstage")
            .chain(path.iter().copied())
            .collect::<Vec<_>>()
            .join("__subcmd__");
        let case = script
            .split(&format!("\n        {label})\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no case for {label} in the bash completion"));
        let opts = case
            .lines()
            .find_map(|line| line.trim().strip_prefix("opts=\""))
            .expect("an opts line");
        opts.trim_end_matches('"')
            .split(' ')
            .filter(|word| word.starts_with("--"))
            .map(|word| word.trim_start_matches("--").to_string())
            .collect()
    }

    #[test]
    fn completions_offer_what_each_subcommand_help_shows_and_no_more() {
        let mut bash = Vec::new();
        clap_complete::generate(Shell::Bash, &mut public_command(), "peerstage", &mut bash);
        let bash = String::from_utf8(bash).expect("UTF-8");
        let mut cli = crate::cli::command();
        cli.build();
        let mut checked = 0;
        let mut walk = vec![(Vec::<String>::new(), &cli)];
        while let Some((path, cmd)) = walk.pop() {
            for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
                if sub.get_name() == "help" {
                    continue;
                }
                let mut here = path.clone();
                here.push(sub.get_name().to_string());
                let words: Vec<&str> = here.iter().map(String::as_str).collect();
                let offered = bash_offers(&bash, &words);
                for arg in sub.get_arguments() {
                    let Some(long) = arg.get_long() else { continue };
                    let is_offered = offered.iter().any(|o| o == long);
                    assert_eq!(
                        is_offered,
                        !arg.is_hide_set(),
                        "`peerstage {} --{long}`: offered {is_offered}, hidden {}",
                        here.join(" "),
                        arg.is_hide_set()
                    );
                    checked += 1;
                }
                walk.push((here, sub));
            }
        }
        assert!(checked > 100, "only {checked} options checked");
        assert!(!bash.contains("generate"), "the hidden generate is offered");
    }
}
