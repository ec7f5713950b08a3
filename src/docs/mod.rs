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

/// The command line without its hidden subcommands, which completions would offer otherwise.
fn public_command() -> Command {
    let cli = crate::cli::command();
    let mut public = Command::new("peerstage")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true);
    for arg in cli.get_arguments() {
        public = public.arg(arg.clone());
    }
    public.subcommands(
        cli.get_subcommands()
            .filter(|sub| !sub.is_hide_set())
            .cloned(),
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
