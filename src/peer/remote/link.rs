//! How a remote peer is reached: its commands as configured and what they connect with,
//! the local user they run as, the peer's limits, and what their failures mean. Shared by
//! the transports and the remote commands.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::config::PeerConfig;
use crate::error::{io_cause, Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::ownership::Ownership;
use crate::peer::interface::PeerOptions;
use crate::peer::staging::Listing;
use crate::process::{Cmd, Finished, Running};

use super::connection::{
    is_program, rcp_limit, same_connection, ssh_for_scp, RcpLimit, OPENSSH_OPTIONS,
};
use super::mux::is_connection_message;
use super::shell::{self, Family, Unreadable};

pub struct Link {
    pub peer: String,
    pub options: PeerOptions,
    /// The collect dir as the peer sees it (a remote path is text, never raw bytes).
    pub collect_dir: String,
    /// `[user@]host`, as ssh takes it.
    pub destination: String,
    host: String,
    user: Option<String>,
    pub working_dir: PathBuf,
    /// The rcp command as configured (with our OpenSSH options when it is scp).
    pub rcp: Cmd,
    /// The rsh command as configured (likewise), for managed actions and `exec`.
    pub rsh: Cmd,
    /// The ssh the rcp command would start, when it is OpenSSH's scp: what the shared
    /// connection and the listing use.
    pub ssh: Option<Cmd>,
    /// The rsh command connects as `ssh` does, so it may use the shared connection.
    pub rsh_shares: bool,
    local_user: Option<String>,
    /// The local user, resolved once.
    pub owner: Option<Ownership>,
    /// The options that route a command through the shared connection, once it is up.
    shared: Mutex<Vec<OsString>>,
    /// What the bandwidth limit does to a copy through the rcp command.
    limit: RcpLimit,
    /// Whether that was said (once per peer).
    limit_said: AtomicBool,
}

impl Link {
    pub fn new(config: &PeerConfig, options: PeerOptions) -> Result<Link> {
        let peer = config.name.clone();
        let in_peer = |err: Error| err.for_peer(&peer);
        let command = |line: &crate::config::CommandLine, what| {
            Cmd::from_words(line.words(), line.as_str(), what).map_err(in_peer)
        };
        let mut rcp = command(&config.rcp_command, "rcp command")?;
        let mut rsh = command(&config.rsh_command, "rsh command")?;
        let limit = rcp_limit(&rcp, options.pace.rate());
        let ssh = ssh_for_scp(&rcp);
        let rsh_shares = ssh.as_ref().is_some_and(|ssh| same_connection(ssh, &rsh));
        if is_program(&rcp, "scp") {
            rcp = rcp.args(OPENSSH_OPTIONS);
        }
        if is_program(&rsh, "ssh") {
            rsh = rsh.args(OPENSSH_OPTIONS);
        }
        let collect_dir = match config.collect_dir.to_str() {
            Some(dir) if !dir.contains('\n') => dir.trim_end_matches('/').to_string(),
            _ => {
                return Err(Error::usage(format!(
                    "collect dir {}: a remote path must be valid UTF-8 without newlines",
                    config.collect_dir.display()
                )))
            }
        };
        let owner = match &config.local_user {
            Some(user) => Some(
                Ownership::parse(user)
                    .map_err(|err| Error::usage(format!("local user {user}: {}", err.cause)))?,
            ),
            None => None,
        };
        Ok(Link {
            destination: match &config.remote_user {
                Some(user) => format!("{user}@{}", config.name),
                None => config.name.clone(),
            },
            host: config.name.clone(),
            user: config.remote_user.clone(),
            peer,
            options,
            collect_dir,
            working_dir: config
                .working_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
            rcp,
            rsh,
            ssh: ssh.map(|ssh| ssh.args(OPENSSH_OPTIONS)),
            rsh_shares,
            local_user: config.local_user.clone(),
            owner,
            shared: Mutex::new(Vec::new()),
            limit,
            limit_said: AtomicBool::new(false),
        })
    }

    /// `rcp` for the copy itself, with the copy's bandwidth limit as scp's `-l` when the rcp
    /// command is OpenSSH's scp. It is the tightest limit of the copy: a run's limit cannot
    /// be shared between scp processes, so each peer's scp is held to it on its own. An rcp
    /// command with a `-l` of its own keeps it; any other rcp command cannot be limited.
    pub fn limited(&self, rcp: Cmd) -> Cmd {
        let first = !self.limit_said.swap(true, Ordering::Relaxed);
        let rate = self.options.pace.rate().map(|rate| rate.to_string());
        let rate = rate.as_deref().unwrap_or_default();
        let program = self.rcp.program().to_string_lossy();
        match self.limit {
            RcpLimit::None => rcp,
            RcpLimit::Pass(kbits) => {
                if first {
                    log::info!(
                        "peer {}: the copy through {program} is held to {rate} (-l {kbits}, in Kbit/s)",
                        self.peer
                    );
                }
                rcp.arg("-l").arg(kbits.to_string())
            }
            RcpLimit::Own => {
                if first {
                    log::info!(
                        "peer {}: the rcp command's own -l is kept: the limit of {rate} does not apply to its copy",
                        self.peer
                    );
                }
                rcp
            }
            RcpLimit::Foreign => {
                if first {
                    log::warn!(
                        "peer {}: the bandwidth limit of {rate} cannot be applied to rcp command {program}, which is not OpenSSH's scp: its copy is not limited",
                        self.peer
                    );
                }
                rcp
            }
        }
    }

    /// From now on, commands that can go through the shared connection do.
    pub fn share(&self, control_options: Vec<OsString>) {
        if let Ok(mut shared) = self.shared.lock() {
            *shared = control_options;
        }
    }

    fn shared(&self) -> Vec<OsString> {
        self.shared
            .lock()
            .map(|shared| shared.clone())
            .unwrap_or_default()
    }

    /// The rcp command, through the shared connection when there is one.
    pub fn rcp(&self) -> Cmd {
        match &self.ssh {
            Some(_) => self.rcp.clone().args(self.shared()),
            None => self.rcp.clone(),
        }
    }

    /// The ssh that reaches the peer as the rcp command does (through the shared connection
    /// when there is one); the rsh command when the rcp command is not OpenSSH's scp.
    pub fn ssh(&self) -> Cmd {
        match &self.ssh {
            Some(ssh) => ssh.clone().args(self.shared()),
            None => self.rsh.clone(),
        }
    }

    /// The rsh command, through the shared connection when it connects the same way.
    pub fn rsh(&self) -> Cmd {
        if self.rsh_shares {
            self.rsh.clone().args(self.shared())
        } else {
            self.rsh.clone()
        }
    }

    /// `[user@]host:path`, as scp takes it (an IPv6 address in brackets).
    pub fn remote_path(&self, path: &str) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match &self.user {
            Some(user) => format!("{user}@{host}:{path}"),
            None => format!("{host}:{path}"),
        }
    }

    /// `dir/name` on the peer.
    pub fn remote_file(&self, name: &str) -> String {
        format!("{}/{name}", self.collect_dir)
    }

    /// The command as it runs: as the local user through `su` when one is configured.
    /// `su` to the user we already are would only add a PAM session to every command (a
    /// cback3.conf run by root with backup_user root asks for exactly that).
    pub fn wrap(&self, cmd: Cmd) -> Result<Cmd> {
        match (&self.local_user, self.owner) {
            (_, Some(owner)) if owner.uid == nix::unistd::Uid::effective().as_raw() => Ok(cmd),
            (Some(user), _) => cmd.as_user(user).map_err(|err| err.for_peer(&self.peer)),
            (None, _) => Ok(cmd),
        }
    }

    pub fn check_canceled(&self) -> Result<()> {
        crate::cancel::check().map_err(|err| err.for_peer(&self.peer))
    }

    /// Starts `cmd`; with a `stdout_limit`, its stdout is kept up to that many bytes
    /// (0: the default, for commands that print a line or two).
    pub fn start(&self, cmd: &Cmd, stdout_limit: usize) -> Result<(String, Running)> {
        self.check_canceled()?;
        log::info!("peer {}: {cmd}", self.peer);
        let program = cmd.program().to_string_lossy().into_owned();
        let started = match stdout_limit {
            0 => cmd.start(),
            limit => cmd.start_capped(limit),
        };
        let running = started
            .map_err(|err| Error::failed(format!("cannot run {program}: {}", io_cause(&err))))?;
        Ok((program, running))
    }

    pub fn run(&self, cmd: &Cmd) -> Result<Finished> {
        self.finish(self.start(cmd, 0)?)
    }

    /// Waits for a started command; past the peer's deadline, or when it moves nothing for
    /// the idle time, it is killed and the peer counts as unreachable.
    pub fn finish(&self, running: (String, Running)) -> Result<Finished> {
        self.finish_within(running, self.options.limits())
    }

    pub fn finish_within(
        &self,
        (program, running): (String, Running),
        limits: Limits,
    ) -> Result<Finished> {
        let finished = running
            .finish(limits)
            .map_err(|err| Error::failed(format!("{program}: {}", io_cause(&err))))?;
        if let Some(expired) = finished.expired {
            return Err(Error::unreachable(format!("{expired}; killed {program}")));
        }
        // Whatever the child said, it was killed by the cancel.
        self.check_canceled()?;
        Ok(finished)
    }

    /// Starts the listing of the collect dir through `ssh` (see `shell::listing_words`),
    /// keeping no more of its output than `max_entries` records can take.
    pub fn start_listing(&self, ssh: Cmd) -> Result<(String, Running)> {
        let cmd = self.listing_command(ssh)?;
        let record = crate::peer::sftp::packet::NAME_MAX as u64 + 100;
        let limit = self.options.max_entries.saturating_mul(record);
        self.start(&cmd, usize::try_from(limit).unwrap_or(usize::MAX).max(1))
    }

    /// The listing command, through `ssh`.
    pub fn listing_command(&self, ssh: Cmd) -> Result<Cmd> {
        let sha256 = self.options.verify == crate::config::Verify::Sha256;
        let words = shell::listing_words(&self.collect_dir, sha256);
        // Its words hold no newline, so every login shell takes them.
        let line = shell::command_line(&words, Family::Other).unwrap_or_default();
        self.wrap(ssh.arg(&self.destination).arg(line))
    }

    /// What a finished listing says.
    pub fn listing(&self, finished: Finished) -> Result<Listing> {
        if finished.stdout_cut {
            return Err(self.too_many());
        }
        match shell::parse_listing(&finished.stdout, self.options.max_entries) {
            Ok(_) if !finished.success() => Err(self.failure(
                &format!("cannot list collect dir {} to verify", self.collect_dir),
                &finished,
            )),
            Ok(listed) => Ok(Listing::Files(listed)),
            Err(Unreadable::TooMany) => Err(self.too_many()),
            Err(Unreadable::Garbled) => Err(Error::failed(format!(
                "unreadable listing of {}",
                self.collect_dir
            ))),
            Err(Unreadable::NotRun)
                if finished.code() == 255 && is_connection_failure(&finished) =>
            {
                Err(self.failure("cannot list the collect dir to verify", &finished))
            }
            Err(Unreadable::NotRun) => {
                let said = finished.first_line().unwrap_or_default();
                log::warn!(
                    "peer {}: verification skipped: the peer does not run remote commands ({said})",
                    self.peer
                );
                Ok(Listing::Skipped(
                    "skipped: the peer does not run remote commands".to_string(),
                ))
            }
        }
    }

    fn too_many(&self) -> Error {
        Error::failed(format!(
            "collect dir {} lists more than {} entries (max_entries); nothing staged",
            self.collect_dir, self.options.max_entries
        ))
    }

    /// Turns a failed rcp/ssh run into the error it stands for: the peer could not be
    /// reached (69), or it answered with a failure (1).
    pub fn failure(&self, what: &str, finished: &Finished) -> Error {
        // ssh's own line says why ("connect to host ... Connection refused"); scp's
        // "Connection closed" after it does not.
        let detail = finished
            .stderr_lines()
            .find(|line| line.starts_with("ssh: "))
            .or_else(|| {
                finished
                    .stderr_lines()
                    .filter(|line| !is_skip_line(line))
                    .last()
            })
            .map(|line| strip_program(line).to_string())
            .unwrap_or_else(|| {
                match std::os::unix::process::ExitStatusExt::signal(&finished.status) {
                    Some(signal) => format!("killed by signal {signal}"),
                    None => format!(
                        "no connection? exited with status {} and said nothing",
                        finished.code()
                    ),
                }
            });
        let host = &self.peer;
        let err = if is_connection_failure(finished) {
            Error::unreachable(if detail.starts_with("ssh: ") {
                format!("{what}: {detail}")
            } else {
                // scp -q silences ssh's own diagnosis; say plainly what "Connection closed" means.
                format!("{what}: could not connect to {host} ({detail})")
            })
        } else {
            Error::new(ErrorKind::Failed, format!("{what}: {detail}"))
        };
        err.with_process(finished.failure())
    }
}

pub fn is_skip_line(line: &str) -> bool {
    line.ends_with(": not a regular file")
}

/// `scp: download /dir/sub/: not a regular file` -> `/dir/sub/: not a regular file`.
pub fn skip_entry(line: &str) -> &str {
    let line = strip_program(line);
    line.strip_prefix("download ").unwrap_or(line)
}

/// Drops the `scp: ` or `/usr/bin/scp: ` that scp puts before its messages.
pub fn strip_program(line: &str) -> &str {
    match line.split_once(": ") {
        Some((program, rest)) if program.ends_with("scp") && !program.contains(' ') => rest,
        _ => line,
    }
}

pub fn is_missing_line(line: &str) -> bool {
    line.ends_with("No such file or directory")
}

/// Whether a failed scp/ssh never got to talk to the peer. ssh exits 255 on connection errors
/// (scp too in SFTP mode); legacy scp exits 1 and, with `-q`, may say nothing at all, so
/// silence with a failure status counts as a connection failure too.
pub fn is_connection_failure(finished: &Finished) -> bool {
    use std::os::unix::process::ExitStatusExt;
    if finished.timed_out || finished.code() == 255 {
        return true;
    }
    // Killed by a signal is not a refused connection; it is said below as such.
    if finished.status.signal().is_some() {
        return false;
    }
    let mut lines = finished.stderr_lines().peekable();
    if !finished.success() && lines.peek().is_none() {
        return true;
    }
    lines.any(is_connection_message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(user: Option<&str>, host: &str) -> Link {
        let mut config = PeerConfig::new(host, crate::config::PeerKind::Remote, "/c d");
        config.remote_user = user.map(str::to_string);
        config.rcp_command = "sh".parse().unwrap();
        config.rsh_command = "sh".parse().unwrap();
        Link::new(&config, PeerOptions::default()).unwrap()
    }

    #[test]
    fn remote_paths_and_destinations() {
        assert_eq!(
            link(Some("backup"), "db1").remote_path("/x"),
            "backup@db1:/x"
        );
        assert_eq!(link(None, "::1").remote_path("/x"), "[::1]:/x");
        assert_eq!(link(None, "db1").destination, "db1");
        assert_eq!(link(Some("b"), "db1").destination, "b@db1");
    }

    #[test]
    fn the_copy_through_scp_carries_the_tightest_limit_as_its_l() {
        use crate::rate::{Limiter, Pace};
        use std::sync::Arc;
        let limited = |rcp: &str| {
            let mut config = PeerConfig::new("h", crate::config::PeerKind::Remote, "/c");
            config.rcp_command = rcp.parse().unwrap();
            let options = PeerOptions {
                pace: Pace::new(
                    ["10MiB/s", "1MB/s"].map(|rate| Arc::new(Limiter::new(rate.parse().unwrap()))),
                ),
                ..PeerOptions::default()
            };
            let link = Link::new(&config, options).unwrap();
            link.limited(link.rcp()).to_string()
        };
        assert!(
            limited("/usr/bin/scp -B -q").ends_with(" -l 8000"),
            "{}",
            limited("/usr/bin/scp -B -q")
        );
        let own = limited("/usr/bin/scp -B -l 800");
        assert!(own.contains(" -l 800 ") && !own.contains("8000"), "{own}");
        assert!(!limited("/bin/sh -c true").contains("-l"));
        // Without a limit, scp is run as configured.
        let link = link(None, "db1");
        assert_eq!(link.limited(link.rcp()).to_string(), link.rcp().to_string());
    }

    #[test]
    fn skip_lines_of_both_scp_protocols() {
        assert!(is_skip_line("scp: download /c/sub/: not a regular file"));
        assert!(is_skip_line("scp: /c/sub: not a regular file"));
        assert_eq!(
            skip_entry("scp: download /c/sub/: not a regular file"),
            "/c/sub/: not a regular file"
        );
        assert_eq!(
            skip_entry("/usr/bin/scp: /c/f: not a regular file"),
            "/c/f: not a regular file"
        );
        assert!(!is_skip_line("scp: /c/x: Permission denied"));
    }
}
