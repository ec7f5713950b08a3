//! A peer on another host. Staging it follows the rcp command, as Cedar Backup does (see
//! `connection`); each step goes through a `Transport`, chosen when the peer is first
//! reached: SFTP requests on one shared ssh connection when the rcp command is OpenSSH's
//! scp, the rcp command itself otherwise (with the legacy protocol for a peer without an
//! SFTP server), or a dry run. One pipeline (`staging`) takes what arrives. Managed
//! actions and `exec` run through the rsh command, quoted for the peer's login shell.

mod commands;
mod connection;
mod dry_run;
mod link;
mod mux;
mod sftp;
mod shell;
mod transport;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use crate::config::PeerConfig;
use crate::error::{io_cause, Error, Result};
use crate::ownership::Perms;
use crate::process::quote_os;

use super::checks::{check_indicator_name, check_target_dir, print_dry_run};
use super::interface::{Peer, PeerOptions, Presence, RemoteCommands, StageReport};
use super::staging::{self, Incoming};
use commands::CommandTransport;
use connection::{protocol_flag, ScpProtocol};
use link::Link;
use mux::{Mux, Started};
use shell::Family;
use transport::{Pending, Step, StepError, Transport};

pub struct RemotePeer {
    config: PeerConfig,
    link: Link,
    /// The way steps are carried out, chosen on first use; before `mux`, so that the SFTP
    /// session ends before its master.
    transport: Mutex<Option<Box<dyn Transport>>>,
    mux: Mutex<Option<Mux>>,
}

impl RemotePeer {
    pub fn new(config: PeerConfig, options: PeerOptions) -> Result<RemotePeer> {
        let link = Link::new(&config, options)?;
        Ok(RemotePeer {
            config,
            link,
            transport: Mutex::new(None),
            mux: Mutex::new(None),
        })
    }

    /// The transport, chosen (and the shared connection started) on first use.
    fn transport(&self) -> Result<MutexGuard<'_, Option<Box<dyn Transport>>>> {
        let mut guard = self
            .transport
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if guard.is_none() {
            *guard = Some(self.choose()?);
        }
        Ok(guard)
    }

    fn choose(&self) -> Result<Box<dyn Transport>> {
        let link = &self.link;
        let wants_sftp = protocol_flag(&link.rcp) != Some(ScpProtocol::Legacy);
        if link.options.dry_run {
            let shared = link.options.multiplex && link.ssh.is_some();
            return Ok(Box::new(dry_run::DryRun::new(link, shared && wants_sftp)));
        }
        let Some(ssh) = link.ssh.clone().filter(|_| link.options.multiplex) else {
            return Ok(Box::new(CommandTransport::new(false)));
        };
        link.check_canceled()?;
        let started = Mux::start(
            &ssh,
            &link.destination,
            |cmd| link.wrap(cmd),
            link.owner,
            link.options.limits(),
            wants_sftp,
        )
        .map_err(|err| err.for_peer(&link.peer))?;
        let (mux, transport): (Option<Mux>, Box<dyn Transport>) = match started {
            Started::Sftp(mux, session) => (Some(mux), Box::new(sftp::SftpTransport::new(session))),
            Started::Plain { mux, sftp_refused } => {
                if sftp_refused {
                    log::warn!(
                        "peer {}: no SFTP server; using the legacy scp protocol (as scp -O) for this peer",
                        link.peer
                    );
                }
                (Some(mux), Box::new(CommandTransport::new(sftp_refused)))
            }
            Started::Unshared => (None, Box::new(CommandTransport::new(false))),
        };
        if let Some(mux) = mux {
            link.share(mux.client_options());
            *self.mux.lock().unwrap_or_else(|p| p.into_inner()) = Some(mux);
        }
        Ok(transport)
    }

    /// Runs a step; when the shared SFTP session is lost under it, the step runs again
    /// (`again` is then true) with the rcp and rsh commands, and so do the later steps.
    fn step<T>(&self, mut attempt: impl FnMut(&mut dyn Transport, bool) -> Step<T>) -> Result<T> {
        let mut guard = self.transport()?;
        let mut again = false;
        loop {
            let Some(transport) = guard.as_mut() else {
                return Err(Error::failed("no way to reach it".to_string()));
            };
            match attempt(transport.as_mut(), again) {
                Ok(value) => return Ok(value),
                Err(StepError::Failed(err)) => return Err(err),
                Err(StepError::Lost) if again => {
                    return Err(Error::unreachable("the connection was lost".to_string()))
                }
                Err(StepError::Lost) => {
                    *guard = Some(Box::new(CommandTransport::new(false)));
                    again = true;
                }
            }
        }
    }

    /// The pipeline: the download into `incoming`, the arrivals given their owner and mode,
    /// checked against the peer's listing; committed by the caller.
    fn stage_into(&self, incoming: &mut Incoming, perms: &Perms) -> Result<StageReport> {
        let link = &self.link;
        let download = self.step(|transport, again| {
            let resumes = !again && transport.resumes(link);
            incoming.set_resumable(resumes);
            if !resumes {
                // A copy cut off mid-way, or one that copies every file whole, starts in a
                // clean dir.
                incoming.renew()?;
            } else if incoming.kept().resumes() {
                log::info!(
                    "peer {}: resuming from what an earlier attempt copied",
                    link.peer
                );
            }
            transport.download(
                link,
                incoming.path(),
                Some(incoming.kept()).filter(|_| resumes),
            )
        })?;
        for entry in &download.skipped {
            log::warn!("peer {}: skipped {entry}", link.peer);
        }
        let arrivals = incoming.settle(perms)?;
        if arrivals.is_empty() {
            return Err(Error::failed(format!(
                "{}; nothing staged",
                download.none_arrived
            )));
        }
        let listing = match download.listing {
            None => None,
            Some(Pending::Done(listing)) => Some(listing),
            Some(Pending::Running(running)) => Some(link.listing(link.finish(*running)?)?),
        };
        let report = StageReport {
            files: arrivals.len() as u64,
            bytes: arrivals.iter().map(|(_, size)| size).sum(),
            skipped: download.skipped,
            verified: String::new(),
            collect_indicator: arrivals
                .iter()
                .any(|(name, _)| name == crate::config::DEFAULT_COLLECT_INDICATOR),
        };
        let verified = staging::verify(incoming.path(), arrivals, listing, link.options.verify)?;
        Ok(StageReport { verified, ..report })
    }

    /// `--dry-run`'s stage: the transport's lines, between those of the pipeline.
    fn dry_stage(&self, target_dir: &Path) -> Result<StageReport> {
        let incoming = target_dir.join(format!(
            "{}{}-XXXXXX",
            crate::fsutil::TEMP_PREFIX,
            std::process::id()
        ));
        print_dry_run(format_args!(
            "mkdir -m 0700 -- {}",
            quote_os(incoming.as_os_str())
        ));
        self.step(|transport, _| transport.download(&self.link, &incoming, None))?;
        print_dry_run(format_args!(
            "# then each file that arrived in {} is given its owner and mode, checked, and renamed into {}",
            incoming.display(),
            target_dir.display()
        ));
        Ok(StageReport::default())
    }

    /// Remote commands need an account that runs them: an sftp-only one (ForceCommand
    /// internal-sftp) answers every command with a refusal, which must not pass for success.
    /// The answer also says which login shell will read our command lines.
    fn login_shell(&self) -> Result<Family> {
        let link = &self.link;
        let probe = link.wrap(link.rsh().arg(&link.destination).arg(shell::PROBE))?;
        let finished = link.run(&probe)?;
        if let Some(family) = shell::probe_answer(&finished.stdout) {
            return Ok(family);
        }
        if finished.code() == 255 {
            return Err(link.failure("cannot run a remote command", &finished));
        }
        let said = finished
            .first_line()
            .unwrap_or_else(|| "no answer".to_string());
        Err(Error::failed(format!(
            "does not allow remote commands (a restricted account, e.g. sftp only): {said}"
        )))
    }

    /// The rsh command running `words` on the peer, each word arriving as one argument.
    fn remote_command(&self, words: &[String]) -> Result<crate::process::Cmd> {
        let link = &self.link;
        if link.options.multiplex && link.rsh_shares && !link.options.dry_run {
            // The shared connection serves the rsh command too when it connects the same way.
            drop(self.transport()?);
        }
        let family = if link.options.dry_run {
            Family::Other
        } else {
            self.login_shell()?
        };
        let line = shell::command_line(words, family).map_err(|word| {
            Error::usage(format!(
                "its login shell is a csh, which cannot carry a newline inside an argument ({:?})",
                word
            ))
        })?;
        link.wrap(link.rsh().arg(&link.destination).arg(line))
    }
}

impl Peer for RemotePeer {
    fn config(&self) -> &PeerConfig {
        &self.config
    }

    fn stage(&self, target_dir: &Path, perms: &Perms) -> Result<StageReport> {
        let link = &self.link;
        check_target_dir(target_dir, link.options.dry_run)?;
        if link.options.dry_run {
            return self.dry_stage(target_dir);
        }
        // Files land in a private dir inside the target dir first: on the same file system, so
        // that each one is renamed into place whole, and only if the copy as a whole worked.
        // What a copy cut on the way brought is kept for the next attempt of the day (see
        // `resume`); what failed otherwise is not worth keeping.
        let day = link
            .options
            .day
            .unwrap_or_else(crate::date::Date::today)
            .to_string();
        let mut incoming = Incoming::create(target_dir, link.owner, &link.peer, &day)?;
        match self.stage_into(&mut incoming, perms) {
            Ok(report) => {
                incoming.commit()?;
                Ok(report)
            }
            Err(err) => {
                if incoming.worth_keeping(&err) {
                    log::info!(
                        "peer {}: what arrived is kept in {} for the next attempt",
                        link.peer,
                        incoming.path().display()
                    );
                } else {
                    incoming.discard();
                }
                Err(err)
            }
        }
    }

    fn indicator(&self, indicator: &str) -> Result<Presence> {
        check_indicator_name(indicator)?;
        self.step(|transport, _| transport.probe(&self.link, indicator))
    }

    fn write_stage_indicator(&self, indicator: &str, _perms: &Perms) -> Result<()> {
        // Owner and mode on the peer are its own business (its umask applies).
        check_indicator_name(indicator)?;
        self.step(|transport, _| transport.push_empty(&self.link, indicator))
    }

    fn remote(&self) -> Option<&dyn RemoteCommands> {
        Some(self)
    }
}

impl RemoteCommands for RemotePeer {
    fn execute_remote_command(&self, command: &[String]) -> Result<()> {
        let link = &self.link;
        let cmd = self.remote_command(command)?;
        if link.options.dry_run {
            print_dry_run(cmd);
            return Ok(());
        }
        log::info!("peer {}: {cmd}", link.peer);
        let status = cmd.run_inherited().map_err(|err| {
            Error::failed(format!(
                "cannot run {}: {}",
                cmd.program().to_string_lossy(),
                io_cause(&err)
            ))
        })?;
        match status.code() {
            Some(0) => Ok(()),
            Some(255) => Err(Error::unreachable(format!(
                "{} exited 255 (connection failed)",
                link.rsh.program().to_string_lossy()
            ))),
            Some(code) => Err(Error::failed(format!(
                "remote command exited with status {code}"
            ))),
            None => Err(Error::failed(
                "remote command killed by a signal".to_string(),
            )),
        }
    }

    fn execute_managed_action(&self, action: &str, full: bool) -> Result<()> {
        let link = &self.link;
        crate::config::check_action(action)
            .map_err(|problem| Error::usage(format!("action {problem}")))?;
        let mut words = self.config.cback_command.words().to_vec();
        if full {
            words.push("--full".to_string());
        }
        words.push(action.to_string());
        let cmd = self.remote_command(&words)?;
        if link.options.dry_run {
            print_dry_run(cmd);
            return Ok(());
        }
        // A managed action may rightly be silent for long: only the deadline ends it.
        let finished =
            link.finish_within(link.start(&cmd, 0)?, link.options.limits().deadline_only())?;
        for line in String::from_utf8_lossy(&finished.stdout)
            .lines()
            .chain(finished.stderr.lines())
        {
            log::info!("peer {}: {action}: {line}", link.peer);
        }
        if finished.success() {
            return Ok(());
        }
        let mut err = link.failure(
            &format!(
                "managed action {action} failed (status {})",
                finished.code()
            ),
            &finished,
        );
        if finished.code() != 255 {
            err.kind = crate::error::ErrorKind::Failed;
        }
        Err(err)
    }
}
