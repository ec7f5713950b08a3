//! One ssh connection per remote peer, shared by every probe, copy, push and remote command,
//! through OpenSSH connection multiplexing. Cedar Backup opens three connections per peer;
//! on a LAN each handshake costs more than copying a night's files.
//!
//! We start the control master ourselves, in the foreground of a child we own, rather than
//! with ControlPersist: a persisting master forks away holding the stderr pipe of whichever
//! scp started it, and would outlive the run. Its own session is the peer's SFTP session
//! where there is one (`ssh -M … -s host sftp`), else none (`ssh -M -N`). The socket lives
//! in a private scratch dir and goes away with the master at the end of the peer, or on
//! error.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fsutil::ScratchDir;
use crate::limits::Limits;
use crate::ownership::Ownership;
use crate::process::{last_line, Background, Cmd};

use crate::peer::sftp::{Session, SftpError};

/// How long a master may take to connect and authenticate when no peer deadline is nearer.
const CONNECT_WAIT: Duration = Duration::from_secs(45);

pub struct Mux {
    /// A master without a session of its own (`ssh -M -N`); None when the master's session is
    /// the peer's SFTP session, which its owner ends. Before the dir: it must die before its
    /// socket dir is removed.
    master: Option<Background>,
    socket: PathBuf,
    _dir: ScratchDir,
}

/// What starting the shared connection gave.
pub enum Started {
    /// The master, whose own session is the peer's SFTP session.
    Sftp(Mux, Box<Session>),
    /// A master without a session; `sftp_refused` when an SFTP session was asked for and
    /// the peer has no SFTP server (it connects, but the subsystem is refused).
    Plain { mux: Mux, sftp_refused: bool },
    /// No master could start for a reason a direct connection might not share: every
    /// command connects on its own.
    Unshared,
}

impl Mux {
    /// Starts a master for `destination` with `ssh` (the ssh the rcp command would start).
    /// With `sftp`, the master's own session is the peer's SFTP session (`ssh -M … -s
    /// destination sftp`), returned beside it: one process and one session on the peer fewer
    /// than a master plus a session over it, and the session's handshake tells when the
    /// connection is up. A peer without an SFTP server gets a plain master instead.
    pub fn start(
        ssh: &Cmd,
        destination: &str,
        wrap: impl Fn(Cmd) -> Result<Cmd>,
        local_user: Option<Ownership>,
        limits: Limits,
        sftp: bool,
    ) -> Result<Started> {
        // Unix socket paths are short (108 bytes): a dir in the temp dir, not the working dir.
        // The socket dirs of runs that were killed (their masters died with them).
        crate::fsutil::remove_debris(&std::env::temp_dir());
        let dir = ScratchDir::create_in(&std::env::temp_dir()).map_err(|err| {
            Error::failed(format!(
                "cannot create a dir for the ssh control socket: {err}"
            ))
        })?;
        if let Some(owner) = local_user {
            nix::unistd::chown(dir.path(), Some(owner.uid.into()), Some(owner.gid.into()))
                .map_err(|err| {
                    Error::failed(format!(
                        "{}: cannot hand to the local user: {err}",
                        dir.path().display()
                    ))
                })?;
        }
        let socket = dir.path().join("ssh");
        let log = dir.path().join("master.log");
        let started = Instant::now();
        let until = limits
            .deadline
            .unwrap_or(started + CONNECT_WAIT)
            .min(started + CONNECT_WAIT);
        let mut sftp_refused = false;
        if sftp {
            let session_cmd = wrap(session_command(ssh, &socket, destination))?;
            log::info!("{session_cmd}");
            let connecting = Limits {
                deadline: Some(until),
                idle: None,
            };
            let mut session = match Session::spawn(&session_cmd, &log, connecting) {
                Ok(session) => session,
                Err(err) => {
                    log::debug!("cannot start an ssh control master: {err}");
                    return Ok(Started::Unshared);
                }
            };
            match session.handshake() {
                Ok(()) => {
                    session.set_limits(limits);
                    let mux = Mux {
                        master: None,
                        socket,
                        _dir: dir,
                    };
                    return Ok(Started::Sftp(mux, Box::new(session)));
                }
                // The master listens once logged in; the session never answered.
                Err(SftpError::TimedOut(_)) if socket.exists() => {
                    return Err(Error::unreachable(
                        "timed out starting an SFTP session".to_string(),
                    ));
                }
                Err(SftpError::TimedOut(_)) => return Err(no_answer(destination, started)),
                Err(err) => {
                    let said = session.end();
                    if is_connection_message(&said) {
                        return Err(Error::unreachable(format!(
                            "cannot connect to {destination}: {said}"
                        )));
                    }
                    log::debug!(
                        "no SFTP session with {destination} ({err}: {said}); starting a plain master"
                    );
                    sftp_refused = true;
                }
            }
        }
        // A session ended by Ctrl-C is not a peer without SFTP.
        crate::cancel::check()?;
        let master_cmd = wrap(
            ssh.clone()
                .args(control_options(&socket, "yes"))
                .args(["-o", "ControlPersist=no", "-N"])
                .arg(destination),
        )?;
        log::info!("{master_cmd}");
        let master = match master_cmd.spawn(&log) {
            Ok(master) => master,
            Err(err) => {
                log::debug!("cannot start an ssh control master: {err}");
                return Ok(Started::Unshared);
            }
        };
        loop {
            if socket.exists() {
                let mux = Mux {
                    master: Some(master),
                    socket,
                    _dir: dir,
                };
                return Ok(Started::Plain { mux, sftp_refused });
            }
            if master.exited() {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                let last = last_line(&said);
                if is_connection_message(&said) {
                    return Err(Error::unreachable(format!(
                        "cannot connect to {destination}: {last}"
                    )));
                }
                log::debug!(
                    "ssh control master for {destination} exited ({last}); running unshared"
                );
                return Ok(Started::Unshared);
            }
            if Instant::now() >= until {
                return Err(no_answer(destination, started));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The options that make an ssh or scp use the shared connection. With
    /// `ControlMaster=no`, an ssh whose master has died connects on its own instead.
    pub fn client_options(&self) -> Vec<OsString> {
        control_options(&self.socket, "no")
    }
}

/// The master whose own session is the SFTP session: `ssh -M … -s destination sftp`.
pub fn session_command(rsh: &Cmd, socket: &Path, destination: &str) -> Cmd {
    rsh.clone()
        .args(control_options(socket, "yes"))
        .args(["-o", "ControlPersist=no", "-s"])
        .arg(destination)
        .arg("sftp")
}

fn no_answer(destination: &str, started: Instant) -> Error {
    Error::unreachable(format!(
        "cannot connect to {destination}: no answer within {} s",
        started.elapsed().as_secs()
    ))
}

pub fn control_options(socket: &Path, master: &str) -> Vec<OsString> {
    let mut path = OsString::from("ControlPath=");
    path.push(socket);
    vec![
        "-o".into(),
        path,
        "-o".into(),
        format!("ControlMaster={master}").into(),
    ]
}

/// ssh's words for "never got to talk to the peer".
pub fn is_connection_message(text: &str) -> bool {
    const SIGNS: [&str; 12] = [
        "Connection closed",
        "Connection refused",
        "Connection timed out",
        "Connection reset",
        "connection lost",
        "lost connection",
        "Could not resolve hostname",
        "No route to host",
        "Network is unreachable",
        "Permission denied (",
        "Host key verification failed",
        "kex_exchange_identification",
    ];
    SIGNS.iter().any(|sign| text.contains(sign))
}

impl Drop for Mux {
    fn drop(&mut self) {
        // SIGTERM to the master's group ends it at once (su passes it on); no `ssh -O exit`
        // round trip at the end of every peer.
        drop(self.master.take());
    }
}
