//! The hand-written parts of the man page, in roff: what the generated option lists cannot say.

pub const DESCRIPTION: &str = r#".SH DESCRIPTION
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
\fBCompression.\fR Cedar Backup's default rcp command has \fB\-C\fR, and it stays the default:
over a slow link it pays for text and uncompressed dumps. Backup archives are usually
compressed already, and then \fB\-C\fR costs CPU for nothing and slows a fast link down several
times: 512 MiB of random data over loopback took 18 to 20 s with the default, 4 to 7 s without
\fB\-C\fR (plain \fBscp\fR: 3.5 to 5.5 s). Drop it per peer or for the pool with
\fBrcp_command = "/usr/bin/scp \-B \-q"\fR (native TOML) or \fB<rcp_command>\fR (cback3.conf).
.PP
\fBBandwidth limit.\fR \fB\-\-bwlimit\fR \fIRATE\fR, or \fBbwlimit\fR in the native TOML, holds
the copies to a rate in bytes per second: \fB10MiB/s\fR, \fB500KiB/s\fR, \fB2MB/s\fR (\fBkB\fR,
\fBMB\fR, \fBGB\fR are powers of 1000; \fBKiB\fR, \fBMiB\fR, \fBGiB\fR, and a bare \fBK\fR, \fBM\fR,
\fBG\fR as rsync reads them, powers of 1024; the \fB/s\fR may be left out). The top\-level
\fBbwlimit\fR, or the flag, which replaces it, is the whole invocation's: for \fBrun\fR one budget
shared by the peers staged at once (four parallel peers under 10MiB/s go at about 2.5 MiB/s
each, a peer alone at 10 MiB/s). A peer's own \fBbwlimit\fR, in its \fB[[peer]]\fR table, holds that
peer besides, with \fBrun\fR and with \fBstage \-\-config\fR \fIFILE\fR \fB\-\-peer\fR \fINAME\fR alike.
Over SFTP peerstage paces its reads, and a local peer's copy is paced the same way (a collect
dir on NFS crosses a link too); a pause earns at most 50 ms of credit, so a copy of a few
seconds holds within a few percent. Through a literal rcp command (\fB\-\-no\-multiplex\fR, a peer
without an SFTP server, an rcp command with options only scp handles, a lost connection) that
is OpenSSH's scp, the tightest limit becomes scp's \fB\-l\fR, in Kbit/s; scp processes cannot
share a budget, so there a run's limit holds each peer's scp on its own. An rcp command with a
\fB\-l\fR of its own keeps it (said at info level) and the other limits do not reach its copy;
one that is not OpenSSH's scp cannot be limited, which is said once per peer as a warning.
Reading files back for \fB\-\-verify sha256\fR is not limited. The progress line, the run's table
and JSON report, and \fBstage\fR's summary show the rate the copies went at beside the limit.
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

pub const SECTIONS: &str = r#".SH CONFIGURATION
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
bwlimit = "10MiB/s"                   # the whole run's rate, shared by its peers
log_file = "/var/log/peerstage.log"   # appended, as \-\-log\-file
metrics_file = "/var/lib/prometheus/node\-exporter/peerstage.prom"

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
bwlimit = "2MiB/s"                    # this peer's own rate (the run's holds too)

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
ignored. It has no bandwidth limit of its own: \fB\-\-bwlimit\fR holds the run, or convert it with
\fBconfig show\fR and add \fBbwlimit\fR.
.SH STATUS LETTERS
Each peer of a run ends with one status, shown as a letter and a word in the table, the JSON
report, the metrics and \fBPEERSTAGE_STATUS\fR (the letters are Bacula's job status letters):
.TP
.B T \fRcompleted
Staged, checked as \fBverify\fR says, and the stage indicator written on the peer.
.TP
.B E \fRterminated with errors
Reached, but a step failed: the copy, the check, the stage indicator, a managed action, a
post\-peer hook, or its lock was held. Nothing of a failed copy is staged.
.TP
.B f \fRfatal error
Not reached (ssh failed, \fB\-\-timeout\fR or \fB\-\-idle\-timeout\fR ran out), or its settings
could not be used (an unknown local user, a command that cannot be found).
.TP
.B N \fRnot ready
Reached, but there is no collect indicator in its collect dir, or no collect dir at all (said
apart: a mistyped path or a disk not mounted is not a peer still collecting). Nothing is copied.
.TP
.B S \fRskipped
Its pre\-peer hook failed; nothing was tried.
.TP
.B A \fRcanceled
The run was canceled (a signal, or a failing run\-start hook) before or while the peer was staged.
.TP
.B C \fRnot run (dry run)
\fB\-\-dry\-run\fR printed what staging it would do; nothing was probed.
.PP
Every status but T and C fails the run (exit status 1) unless the peer's \fBignore_failures\fR
covers it (\fBall\fR, or \fBdaily\fR/\fBweekly\fR on such a run); an ignored failure is still
reported, with \fBignored: true\fR.
.SH OUTPUT, LOGS AND METRICS
\fBProgress.\fR On a terminal, \fBstage\fR and \fBrun\fR keep one line on stderr up to date four
times a second while files are copying: peers done, files and bytes done of what the peers
listed, the rate (as measured, smoothed over a few seconds; under a run's bandwidth limit,
followed by the limit) and the time left, and the peers at work with how far each has got. The total
and the time left show once every busy peer has listed its collect dir (a local collect dir is
read as it is copied, so its line shows what is done and the rate). Bytes count as they arrive
over SFTP and from a local copy; through a literal rcp command, a peer's files count when its
copy ends. The line is cleared before any message and redrawn after it. There is no progress
line when stderr is not a terminal (cron, a pipe, systemd), with \fB\-q\fR, or with \fB\-\-json\fR.
.PP
\fBLog file.\fR With \fBlog_file\fR in the config or \fB\-\-log\-file\fR \fIFILE\fR, every
message at info level and above (whatever \fB\-v\fR or \fB\-q\fR say for stderr) is appended
to \fIFILE\fR, one line each with the time, the pid and the level: the run's start and end,
each peer's outcome, each error. The file is opened for appending without following a
symbolic link and must be a regular file; it is created with mode 0640. A log file that
cannot be opened is a usage error (2).
.PP
\fBThe journal.\fR Under systemd (when \fBJOURNAL_STREAM\fR names stderr), each line on stderr
starts with its syslog priority as \fBsd\-daemon\fR(3) describes (\fB<3>\fR error,
\fB<4>\fR warning, \fB<6>\fR info, \fB<7>\fR debug), so that \fBjournalctl \-p warning \-u
peerstage\fR finds the problems.
.PP
\fBJob reports.\fR Each run writes its report into its daily dir as
\fIpeerstage\-report\-<start>.json\fR (the start in UTC, \fB:\fR written as \fB\-\fR), so every run of
a day is kept; it holds the config's absolute path, each peer's status, files, bytes and seconds,
and for each peer and the whole run \fBbytes_per_second\fR (bytes over the whole time, connecting
and checking included) and \fBbwlimit_bytes_per_second\fR (the tightest limit in force, or null).
.PP
\fBMetrics.\fR With \fBmetrics_file\fR in the config or \fBrun \-\-metrics\-file\fR \fIFILE\fR,
each run writes the Prometheus text format to \fIFILE\fR whole (a temporary file renamed into
place, mode 0644), for node_exporter's textfile collector (on Debian, the directory
\fI/var/lib/prometheus/node\-exporter\fR):
\fBpeerstage_run_start_timestamp_seconds\fR, \fBpeerstage_run_end_timestamp_seconds\fR,
\fBpeerstage_run_success\fR (1 or 0), and per peer \fBpeerstage_peer_success\fR,
\fBpeerstage_peer_status\fR (the letter and word as labels), \fBpeerstage_peer_files\fR,
\fBpeerstage_peer_bytes\fR and \fBpeerstage_peer_seconds\fR, all labelled with the config.
A metrics file that cannot be written fails the run (1). Alert on
\fBpeerstage_run_success == 0\fR, and on \fBtime() \- peerstage_run_end_timestamp_seconds >
93600\fR for a run that did not happen.
.SH SYSTEMD
The repository's \fIsystemd/\fR directory has \fBpeerstage.service\fR, a oneshot that runs
\fBpeerstage run \-\-config /etc/peerstage/pool.toml\fR with the hardening a root backup job can
live with (no writes to \fI/usr\fR, \fI/boot\fR or \fI/etc\fR, private \fI/tmp\fR and devices,
no set\-id files, no new namespaces), and \fBpeerstage.timer\fR, which starts it every night at
02:00 (and at boot when that was missed). Install them in \fI/etc/systemd/system\fR and run
\fBsystemctl enable \-\-now peerstage.timer\fR. A run that fails (exit 1, 2, 69 or 75) leaves the
service failed, for \fBsystemctl \-\-failed\fR and \fBOnFailure=\fR. \fBsystemctl stop\fR sends
SIGTERM, which cancels the run cleanly (see SIGNALS).
.SH RESUMING A CUT COPY
A remote peer's files arrive over SFTP in a private directory inside the target directory,
\fI.peerstage\-partial\-PEER\-DAY/\fR (mode 0700, owned by root or by \fB\-\-local\-user\fR;
the files in \fIfiles/\fR, and a record in \fIlisting\fR of the size and modification
time the peer listed for each file as its copy began). When a copy is cut on the way (the link
lost or stalled, \fB\-\-timeout\fR, Ctrl\-C, or peerstage killed, even with SIGKILL), that
directory stays. DAY is the backup day: a run's date (\fB\-\-date\fR included, so a re\-run
of yesterday's run resumes what it kept), or for \fBstage\fR the day it runs. The next
\fBstage\fR or \fBrun\fR of the same peer for the same day keeps each
file that arrived whole and whose size and modification time on the peer are unchanged,
continues a file cut in the middle from its length (the copy writes every file in order, so
what is there is always the start of the peer's file), and copies the rest; \fB\-v\fR says
when it resumes. Staging stays all or nothing: files get their final names only when every
file is there and verified, and the directory goes with them. \fB\-\-verify sha256\fR hashes
resumed files whole.
.PP
What is kept is removed, and the next attempt starts from nothing, when the copy failed for
another reason (a full disk, verification), when the copy goes through the rcp command
(\fB\-\-no\-multiplex\fR, an rcp command that is not OpenSSH's scp or with options only scp
handles, or a peer without an SFTP server: scp copies every file whole), on another day (a
run removes the kept directories of the week before from the peer's earlier daily
directories), and when it is not a private directory of ours. A file changed on the peer
with the same size and modification time (touched back) is not detected by the size check;
\fB\-\-verify sha256\fR detects it. Local peers are copied whole every time. Until the peer is
staged, a failed peer's daily directory holds this hidden directory: a store of that day
made before the re\-run would include it.
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
.TP
.B JOURNAL_STREAM
Set by systemd: when it names stderr, lines carry journal priorities (see OUTPUT, LOGS AND
METRICS).
.PP
Hooks are run with these variables set:
\fBPEERSTAGE_EVENT\fR (run\-start, pre\-peer, post\-peer, run\-end),
\fBPEERSTAGE_DATE\fR, \fBPEERSTAGE_FULL\fR (0 or 1), \fBPEERSTAGE_CONFIG\fR,
\fBPEERSTAGE_STAGING_DIR\fR, \fBPEERSTAGE_DAILY_DIR\fR, \fBPEERSTAGE_PEERS\fR (names);
for a peer, \fBPEERSTAGE_PEER\fR, \fBPEERSTAGE_PEER_TYPE\fR, \fBPEERSTAGE_TARGET_DIR\fR;
after a peer and at run end, \fBPEERSTAGE_STATUS\fR (see STATUS LETTERS),
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
.I <target_dir>/.peerstage\-partial\-PEER\-DAY/
What a cut copy of a remote peer brought, kept for the next attempt that day (see RESUMING A
CUT COPY).
.TP
.I <staging_dir>/YYYY/MM/DD/peerstage\-report\-<start>.json
Job report of each run of that day: per peer its status letter and word, files, bytes and
seconds.
.TP
.I /etc/systemd/system/peerstage.service, peerstage.timer
The systemd units, from the repository's \fIsystemd/\fR (see SYSTEMD).
.TP
.I /run/peerstage/*.lock
Lock files (as root; otherwise \fI$XDG_RUNTIME_DIR/peerstage\fR or \fI/tmp/peerstage\-UID\fR):
\fBrun\-*.lock\fR per staging dir, \fBpeer\-NAME.lock\fR per peer. Each holds its owner's pid;
a lock is released when its owner exits, even when killed.
.SH EXAMPLES
Stage the pool every night with systemd (see SYSTEMD):
.PP
.nf
systemctl enable \-\-now peerstage.timer
.fi
.PP
Or from root's crontab at 02:30, with a log file and metrics for node_exporter (errors still
reach the cron mail):
.PP
.nf
30 2 * * *  /usr/local/bin/peerstage \-q run \-\-config /etc/cback3.conf \-\-log\-file /var/log/peerstage.log \-\-metrics\-file /var/lib/prometheus/node\-exporter/peerstage.prom
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
.PP
Run a command on a remote peer (its options before \fB\-\-\fR):
.PP
.nf
peerstage exec \-\-host db1 \-\-remote\-user backup \-\- df \-h /var/backup
.fi
.PP
See which peers are ready, and which locks the pool holds:
.PP
.nf
peerstage status \-\-config /etc/cback3.conf
peerstage locks \-\-config /etc/cback3.conf
.fi
.SH SEE ALSO
.BR scp (1),
.BR ssh (1),
.BR su (1),
.BR cback3 (1)
"#;
