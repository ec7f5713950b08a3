//! The man page and shell completions, generated from the one clap definition in `cli`, with
//! the hand-written sections (configuration, exit status, files, examples) kept here beside it.
//! `peerstage generate DIR` writes them; a test fails when the checked-in copies are stale.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;

/// Every generated file, as (path relative to the repository root, contents).
pub fn generate() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = vec![(PathBuf::from("man/peerstage.1"), man_page().into_bytes())];
    for (shell, name) in [
        (Shell::Bash, "peerstage.bash"),
        (Shell::Zsh, "_peerstage"),
        (Shell::Fish, "peerstage.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut crate::cli::command(), "peerstage", &mut out);
        files.push((Path::new("completions").join(name), out));
    }
    files
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

/// Which options of a subcommand to list: its own, or the shared peer options.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Own,
    Peer,
    Global,
}

fn is_peer_option(arg: &clap::Arg) -> bool {
    arg.get_help_heading() == Some(PEER_HEADING)
}

const PEER_HEADING: &str = "Peer";

/// One `.TP` entry per option of a command, from its clap definition.
fn options(out: &mut String, cmd: &Command, which: Which) {
    for arg in cmd.get_arguments() {
        let wanted = match which {
            Which::Own => !arg.is_global_set() && !is_peer_option(arg),
            Which::Peer => is_peer_option(arg),
            Which::Global => true,
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
        let _ = writeln!(out, ".TP\n{head}\n{text}");
    }
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
            usage.push_str(" PEER");
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
        }
    }
    out.push_str(".SH PEER OPTIONS\nThe single\\-peer commands name their peer with these.\n");
    if let Some(stage) = subcommands.iter().find(|sub| takes_peer(sub)) {
        options(&mut out, stage, Which::Peer);
    }
    out.push_str(".SH GLOBAL OPTIONS\nThese go before or after the subcommand.\n");
    options(&mut out, &cli, Which::Global);
    out.push_str(SECTIONS);
    out
}

const DESCRIPTION: &str = r#".SH DESCRIPTION
A backup pool has peers and a master. Each peer collects its backup files into a
\fIcollect directory\fR and, when done, writes an empty \fIcollect indicator\fR file there
(\fBcback.collect\fR). The master then \fIstages\fR every ready peer: it copies the regular files
at the top of each collect directory into a \fIstaging directory\fR of its own, then writes a
\fIstage indicator\fR (\fBcback.stage\fR) back into the peer's collect directory so that the peer
knows it was picked up.
.PP
\fILocal\fR peers (on the master itself) are copied with the file system; symbolic links,
directories and other entries that are not regular files are skipped with a warning, never
followed. \fIRemote\fR peers are pulled with an rcp\-compatible copy command (default
\fB/usr/bin/scp \-B \-q \-C\fR) and driven with an rsh\-compatible shell (default \fB/usr/bin/ssh\fR),
optionally as another local user through \fBsu\fR when running as root. The rcp command's exit
status is never trusted alone: the files that really arrived decide.
.PP
As in Cedar Backup, a remote peer is reached for staging through its rcp command: probing,
copying, verifying and the stage indicator need only what the rcp command reaches, and the
connection options written in it (\fB\-P\fR, \fB\-i\fR, \fB\-F\fR, \fB\-o\fR, \fB\-J\fR,
\fB\-c\fR, \fB\-4\fR/\fB\-6\fR, \fB\-C\fR, and \fB\-S\fR for the ssh program) apply to every one
of those steps. The rsh command is used only for managed actions and \fBexec\fR.
.PP
When the rcp command is OpenSSH's \fBscp\fR, each remote peer gets one ssh connection: the ssh
that scp would start, run by peerstage as an OpenSSH control master (\fBssh \-M\fR ...
\fB\-s\fR \fIpeer\fR \fBsftp\fR) and stopped with the peer. The master's own session is an SFTP
session, and the collect indicator probe, the copy, the size listing and the stage indicator
(written, then looked at again) are SFTP requests on it: the requests scp itself sends in its
default SFTP mode, so an sftp\-only account works, and files arrive with the modes (and with
\fBscp \-p\fR the times) scp would give them. The copy is pipelined across files: the listing
streams into it, up to 256 files are open at once (as many as the server's
\fBlimits@openssh.com\fR allow) with 4 MiB of reads in flight, so a peer of many small files
costs a handful of round trips over a slow link, not one per file. The copy is left to scp
itself (over the same connection) when the rcp command has an option other than \fB\-B\fR,
\fB\-q\fR, \fB\-C\fR, \fB\-p\fR, \fB\-s\fR, \fB\-T\fR, \fB\-A\fR and those that say how to connect
(a bandwidth limit \fB\-l\fR, say). The rsh command shares the connection when its own
connection options are the same. With \fB\-\-no\-multiplex\fR, or an rcp command that is not
OpenSSH's scp (a wrapper script, say), every step runs the rcp command instead, as Cedar Backup
does; the size listing then runs through the ssh that scp would start (or, for a wrapper, the
rsh command, and is skipped with a warning when that cannot reach the peer).
.PP
A peer without an SFTP server (OpenSSH without the sftp subsystem, Dropbear without
sftp\-server) is found out when it lets ssh in but refuses the session, and gets the legacy scp
protocol (\fBscp \-O\fR) from then on, said once as a warning; put \fB\-O\fR in its rcp command
to skip the attempt.
.PP
Remote commands (managed actions, \fBexec\fR) are read by the login shell of the peer's account.
Every argument is quoted so that sh, dash, bash, zsh, fish and the csh family read it as
written (single quotes, with \fB\(aq\fR, \fB\e\fR and \fB!\fR backslashed outside them), and arrives
as one argument. A csh cannot carry a newline inside an argument: such a command is refused
with exit status 2 when the peer's login shell is csh or tcsh. Before running a command,
peerstage checks that the account runs commands at all (an sftp\-only account does not) with a
probe whose answer it finds after any login banner.
.PP
A staged file appears under its final name only when it is complete, with its owner and mode
already set: it is written to a private temporary file or directory inside the target directory
and renamed into place. A copy that fails leaves nothing under a final name.
.PP
\fBpeerstage run\fR stages a whole pool from a config file into
\fI<staging_dir>/YYYY/MM/DD/<peer>/\fR, in parallel, with a lock per peer and per staging
directory, hooks at each job event, and a job report. It reads Cedar Backup 3's \fBcback3.conf\fR
as it is. The single\-peer commands (\fBstage\fR, \fBcheck\fR, \fBmark\fR, \fBexec\fR, \fBaction\fR)
do one step for one peer, named with flags or with \fB\-\-config\fR \fIFILE\fR \fB\-\-peer\fR \fINAME\fR.
"#;

const SECTIONS: &str = r#".SH CONFIGURATION
\fBpeerstage run\fR, \fBstatus\fR, \fBconfig\fR and \fB\-\-config\fR read either format: a file that
starts with \fB<\fR is Cedar Backup XML, anything else native TOML. Unknown TOML keys are errors.
\fBpeerstage config show\fR prints any config as the equivalent native TOML.
.SS "Native TOML"
.nf
staging_dir = "/var/backup/staging"   # required; daily dirs go below it
working_dir = "/var/tmp/peerstage"    # scratch dir for remote peers
backup_user = "backup"                # owner of staged files when root
backup_group = "backup"
starting_day = "monday"               # first day of the weekly cycle
lock_dir = "/run/peerstage"           # default: /run/peerstage as root
jobs = 4                              # peers staged at once
timeout = 3600                        # seconds one peer may take
idle_timeout = 300                    # seconds without a byte moved; 0: off
max_entries = 100000                  # most entries a collect dir may list
multiplex = true                      # one ssh connection per peer
verify = "size"                       # none, size or sha256

[defaults]                            # for every peer that does not say
rcp_command = "/usr/bin/scp \-B \-q \-C"
rsh_command = "/usr/bin/ssh"
cback_command = "/usr/bin/cback3"
remote_user = "backup"

[hooks]                               # commands, run without a shell
run_start = ["/usr/local/bin/mount\-backup\-disk"]
pre_peer = []
post_peer = ["/usr/local/bin/notify"]
run_end = []

[[peer]]
name = "db1.example.com"
type = "remote"
collect_dir = "/var/backup/collect"
ignore_failures = "weekly"            # none, all, daily or weekly
managed = true
managed_actions = ["collect"]

[[peer]]
name = "master"
type = "local"
collect_dir = "/var/backup/collect"
.fi
.SS "Cedar Backup cback3.conf"
Read as it is. From \fB<options>\fR: \fBworking_dir\fR, \fBbackup_user\fR, \fBbackup_group\fR,
\fBrcp_command\fR, \fBrsh_command\fR, \fBcback_command\fR, \fBstarting_day\fR, \fBmanaged_actions\fR,
and \fBpre_action_hook\fR/\fBpost_action_hook\fR whose action is \fBstage\fR (run as the run\-start
and run\-end hooks). From \fB<stage>\fR: \fBstaging_dir\fR and its \fB<peer>\fR elements
(\fBname\fR, \fBtype\fR, \fBcollect_dir\fR, \fBignore_failures\fR, \fBbackup_user\fR as the remote
user, \fBrcp_command\fR, \fBrsh_command\fR, \fBcback_command\fR, \fBmanaged\fR, \fBmanaged_actions\fR);
the top\-level \fB<peers>\fR section is the fallback peer list. As in Cedar Backup, when running as
root the commands for remote peers run as \fBbackup_user\fR through \fBsu\fR. Other sections are
ignored.
.SH SECURITY
peerstage usually runs as root, and a peer may be compromised, or a local collect directory
writable by an unprivileged user. Everything a peer sends (file names, sizes, file contents,
SFTP packets, status messages, what its commands print) is untrusted. What such a peer or
user can and cannot do, each held by a test in \fItests/hostile.rs\fR:
.IP \(bu 2
\fBNo set\-id files.\fR No staged file carries a set\-uid, set\-gid or sticky bit, whatever its
source had, the protocol, or the rcp options (\fBscp \-p\fR keeps the peer's modes, less those
bits). Owner is applied first, then the mode the file ends with. A \fB\-\-mode\fR that asks for
such bits is a usage error (2).
.IP \(bu 2
\fBLocal collect dirs.\fR Each file is opened without following links and without blocking,
and what the open got decides: a symbolic link, directory, fifo or device (also one swapped in
after the directory was read) is skipped with a warning. A file that is a hard link (more than
one link) and belongs to someone other than the collect directory's owner is skipped with a
warning: its owner did not put it there, and the collect directory's owner may have linked a
file they cannot read (\fB/etc/shadow\fR) for root to copy out. A file of another owner with a
single link was created there by that owner, and is staged.
.IP \(bu 2
\fBDisk.\fR Every copy stops at the size listed when it began: a file that grows or shrinks
while it is copied (or a peer that sends data without end) fails the peer, and nothing of it
is staged. Through a literal rcp command the size is the one in scp's own records.
.IP \(bu 2
\fBMemory.\fR A collect directory may list at most \fBmax_entries\fR entries
(\fB\-\-max\-entries\fR, default 100000; about 200 bytes each while a remote listing is
held); a peer that lists more fails. An SFTP answer to a request that is not waiting for one,
a packet over 256 KiB, a name longer than 255 bytes, or more than 4 MiB of answers sent ahead
of the ones awaited ends the session as a protocol error, and the peer fails without a second
try through scp. What a command prints is kept up to a bound.
.IP \(bu 2
\fBTime.\fR Besides the total \fB\-\-timeout\fR, a step of staging that moves no byte for
\fBidle_timeout\fR seconds (\fB\-\-idle\-timeout\fR, default 300, 0 turns it off) is given up:
an SFTP request, an rcp or listing command (the bytes its processes read and write count,
not the ssh transport's keepalives), a local copy (which runs in a thread of its own, so a hung
NFS or FUSE mount cannot hold the run). The peer fails as unreachable (69, status f) and the
others go on. Managed actions and \fBexec\fR, which may rightly be silent for long, are
bounded by \fB\-\-timeout\fR only. A peer that trickles a byte now and then is bounded by
\fB\-\-timeout\fR only.
.IP \(bu 2
\fBText.\fR Text from a peer is escaped before it reaches a terminal, a log line, the report
table or the \fBPEERSTAGE_MESSAGE\fR hook variable: control characters are shown as \fB\en\fR,
\fB\er\fR, \fB\ex1b\fR and so on, so every message is one line and no peer can forge a line
of its own or drive the terminal. \fB\-\-dry\-run\fR writes such names as \fB$'\ex1b'\fR
quoting. The JSON report holds the text as it came, JSON\-escaped.
.IP \(bu 2
\fBNames and links.\fR Names from a peer are checked before they become local paths (no
\fB/\fR, not \fB.\fR or \fB..\fR, no NUL); files are created exclusively, without following
links, in private directories, and renamed into place.
.SH EXIT STATUS
The same for every subcommand.
.TP
.B 0
Success. For \fBcheck\fR: the indicator is present.
.TP
.B 1
Failed. For \fBcheck\fR: the indicator is absent. For \fBrun\fR: a peer failed and its failure
was not ignored. Also after a cancel (see SIGNALS).
.TP
.B 2
Usage or configuration error (a relative path, a bad mode, an unknown user, a malformed config);
nothing was changed.
.TP
.B 69
A peer could not be reached.
.TP
.B 75
A lock is held by another process (see \fB\-\-wait\fR).
.SH SIGNALS
\fBSIGINT\fR (Ctrl\-C), \fBSIGTERM\fR and \fBSIGHUP\fR cancel the work rather than kill
peerstage: the commands under way (copies, ssh sessions, hooks) are ended with what they
started (partial copies removed, nothing left under a final name), no further peer or step
starts, and \fBrun\fR still writes its job
report, with those peers and the run canceled (status A), and runs its run\-end hooks; it does
not write the daily stage indicator. The exit status is 1 and the error names the signal. A
second signal ends peerstage at once (status 128 + the signal's number). Waiting for a lock
with \fB\-\-wait\fR ends too.
.SH ENVIRONMENT
.TP
.B RUST_LOG
Log filter, overriding \fB\-v\fR and \fB\-q\fR (e.g. \fBpeerstage=debug\fR).
.TP
.B PEERSTAGE_LOCK_DIR
Directory for lock files, as \fB\-\-lock\-dir\fR.
.TP
.B TMPDIR
Default scratch dir for remote peers without a working dir.
.TP
.B XDG_RUNTIME_DIR
Default lock dir parent when not running as root.
.PP
Hooks are run with these variables set:
\fBPEERSTAGE_EVENT\fR (run\-start, pre\-peer, post\-peer, run\-end),
\fBPEERSTAGE_DATE\fR, \fBPEERSTAGE_FULL\fR (0 or 1), \fBPEERSTAGE_CONFIG\fR,
\fBPEERSTAGE_STAGING_DIR\fR, \fBPEERSTAGE_DAILY_DIR\fR, \fBPEERSTAGE_PEERS\fR (names);
for a peer, \fBPEERSTAGE_PEER\fR, \fBPEERSTAGE_PEER_TYPE\fR, \fBPEERSTAGE_TARGET_DIR\fR;
after a peer and at run end, \fBPEERSTAGE_STATUS\fR (T, E, f, A, N or S),
\fBPEERSTAGE_STATUS_WORD\fR, \fBPEERSTAGE_FILES\fR, \fBPEERSTAGE_BYTES\fR;
after a peer, \fBPEERSTAGE_SECONDS\fR, \fBPEERSTAGE_IGNORED\fR, \fBPEERSTAGE_MESSAGE\fR;
at run end, \fBPEERSTAGE_FAILED\fR, \fBPEERSTAGE_REPORT\fR and \fBPEERSTAGE_EXIT_CODE\fR.
A failing run\-start hook cancels the run; a failing pre\-peer hook skips that peer.
.SH FILES
.TP
.I <collect_dir>/cback.collect
Collect indicator, written by the peer when its files are ready.
.TP
.I <collect_dir>/cback.stage
Stage indicator, written by peerstage when the peer's files are staged.
.TP
.I <staging_dir>/YYYY/MM/DD/cback.stage
Master stage indicator, written at the end of a run.
.TP
.I <staging_dir>/YYYY/MM/DD/peerstage\-report.json
Job report of the latest run of that day: per peer its status letter and word, files, bytes
and seconds.
.TP
.I /run/peerstage/*.lock
Lock files (as root; otherwise \fI$XDG_RUNTIME_DIR/peerstage\fR or \fI/tmp/peerstage\-UID\fR):
\fBrun\-*.lock\fR per staging dir, \fBpeer\-NAME.lock\fR per peer. Each holds its owner's pid;
a lock is released when its owner exits, even when killed.
.SH EXAMPLES
Stage the pool every night at 02:30 (crontab of root):
.PP
.nf
30 2 * * *  /usr/local/bin/peerstage \-q run \-\-config /etc/cback3.conf
.fi
.PP
Stage one remote peer from a script, only when it is ready:
.PP
.nf
peerstage check \-\-host db1 \-\-collect\-dir /var/backup/collect &&
  peerstage stage \-\-target /srv/staging/db1 \-\-owner backup:backup \-\-mode 0640 \e
      \-\-host db1 \-\-collect\-dir /var/backup/collect &&
  peerstage mark \-\-host db1 \-\-collect\-dir /var/backup/collect
.fi
.PP
See what a run would do, without changing anything:
.PP
.nf
peerstage \-\-dry\-run run \-\-config /etc/peerstage.toml
.fi
.SH SEE ALSO
.BR scp (1),
.BR ssh (1),
.BR su (1),
.BR cback3 (1)
"#;
