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

use super::sftp::{Sftp, SftpError};

/// How long a master may take to connect and authenticate when no peer deadline is nearer.
const CONNECT_WAIT: Duration = Duration::from_secs(45);

pub(super) struct Mux {
    /// A master without a session of its own (`ssh -M -N`); None when the master's session is
    /// the peer's SFTP session, which its owner ends. Before the dir: it must die before its
    /// socket dir is removed.
    master: Option<Background>,
    socket: PathBuf,
    _dir: ScratchDir,
}

impl Mux {
    /// Starts a master for `destination` with the peer's rsh command. With `sftp`, the
    /// master's own session is the peer's SFTP session (`ssh -M … -s destination sftp`),
    /// returned beside it: one process and one session on the peer fewer than a master plus
    /// a session over it, and the session's handshake tells when the connection is up. A
    /// peer without an SFTP subsystem gets a plain master instead. `Ok(None)` when no master
    /// could start for a reason that a direct connection might not share; the caller then
    /// runs its commands unshared.
    pub fn start(
        rsh: &Cmd,
        destination: &str,
        wrap: impl Fn(Cmd) -> Result<Cmd>,
        local_user: Option<Ownership>,
        limits: Limits,
        sftp: bool,
    ) -> Result<Option<(Mux, Option<Sftp>)>> {
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
        if sftp {
            let session_cmd = wrap(session_command(rsh, &socket, destination))?;
            log::info!("{session_cmd}");
            let connecting = Limits {
                deadline: Some(until),
                idle: None,
            };
            let mut session = match Sftp::spawn(&session_cmd, &log, connecting) {
                Ok(session) => session,
                Err(err) => {
                    log::debug!("cannot start an ssh control master: {err}");
                    return Ok(None);
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
                    return Ok(Some((mux, Some(session))));
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
                }
            }
        }
        // A session ended by Ctrl-C is not a peer without SFTP.
        crate::cancel::check()?;
        let master_cmd = wrap(
            rsh.clone()
                .args(control_options(&socket, "yes"))
                .args(["-o", "ControlPersist=no", "-N"])
                .arg(destination),
        )?;
        log::info!("{master_cmd}");
        let master = match master_cmd.spawn(&log) {
            Ok(master) => master,
            Err(err) => {
                log::debug!("cannot start an ssh control master: {err}");
                return Ok(None);
            }
        };
        loop {
            if socket.exists() {
                let mux = Mux {
                    master: Some(master),
                    socket,
                    _dir: dir,
                };
                return Ok(Some((mux, None)));
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
                return Ok(None);
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
pub(super) fn session_command(rsh: &Cmd, socket: &Path, destination: &str) -> Cmd {
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

pub(super) fn control_options(socket: &Path, master: &str) -> Vec<OsString> {
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
pub(super) fn is_connection_message(text: &str) -> bool {
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

/// The ssh command that starts the shared connection: the rsh command, compressed when the
/// rcp command asks for compression (Cedar's default `scp -C`), since over a shared
/// connection scp's own `-C` no longer has any effect.
pub(super) fn master_command(rcp: &Cmd, rsh: &Cmd) -> Cmd {
    let compress = |cmd: &Cmd, takes_value: &str| {
        connection_options(cmd, takes_value, |flag| (flag == 'C').then_some('C'))
            .is_some_and(|flags| !flags.is_empty())
    };
    if compress(rcp, SCP_VALUE_FLAGS) && !compress(rsh, SSH_VALUE_FLAGS) {
        rsh.clone().arg("-C")
    } else {
        rsh.clone()
    }
}

const SCP_VALUE_FLAGS: &str = "cDFiJlPoSX";
const SSH_VALUE_FLAGS: &str = "BbcDEeFIiJLlmOoPpQRSWw";

/// Whether scp and ssh, as configured, would connect the same way (same config file,
/// identity, port, options...). Only then may one connection serve both: over a shared
/// connection, scp's own connection options would be silently ignored.
pub(super) fn same_connection(rcp: &Cmd, rsh: &Cmd) -> bool {
    let scp = connection_options(rcp, SCP_VALUE_FLAGS, |flag| match flag {
        'P' => Some('p'),
        'F' | 'i' | 'o' | 'c' | 'J' | '4' | '6' => Some(flag),
        _ => None,
    });
    let ssh = connection_options(rsh, SSH_VALUE_FLAGS, |flag| match flag {
        'p' | 'F' | 'i' | 'o' | 'c' | 'J' | '4' | '6' | 'l' => Some(flag),
        _ => None,
    });
    match (scp, ssh) {
        (Some(scp), Some(ssh)) => scp == ssh,
        _ => false,
    }
}

/// Every flag of an scp command line in order (connection options included); None when its
/// words cannot be read as options.
pub(super) fn scp_flags(rcp: &Cmd) -> Option<Vec<char>> {
    Some(
        options(rcp, SCP_VALUE_FLAGS, Some)?
            .into_iter()
            .map(|(flag, _)| flag)
            .collect(),
    )
}

/// The options of a command line that decide where and how it connects, normalised and
/// sorted; None when the words cannot be read as options (then nothing is assumed).
fn connection_options(
    cmd: &Cmd,
    takes_value: &str,
    keep: impl Fn(char) -> Option<char>,
) -> Option<Vec<(char, String)>> {
    let mut kept = options(cmd, takes_value, keep)?;
    kept.sort();
    Some(kept)
}

/// The options of a command line, in order, each kept (under the name `keep` gives it) with
/// its value; None when the words cannot be read as options.
fn options(
    cmd: &Cmd,
    takes_value: &str,
    keep: impl Fn(char) -> Option<char>,
) -> Option<Vec<(char, String)>> {
    let mut kept = Vec::new();
    let mut words = cmd.get_args().iter();
    while let Some(word) = words.next() {
        let word = word.to_str()?;
        let flags = word.strip_prefix('-')?;
        for (i, flag) in flags.char_indices() {
            if takes_value.contains(flag) {
                let rest = &flags[i + flag.len_utf8()..];
                let value = if rest.is_empty() {
                    words.next()?.to_str()?.to_string()
                } else {
                    rest.to_string()
                };
                if let Some(key) = keep(flag) {
                    kept.push((key, value));
                }
                break;
            }
            if let Some(key) = keep(flag) {
                kept.push((key, String::new()));
            }
        }
    }
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(line: &str) -> Cmd {
        let words = shell_words::split(line).unwrap();
        Cmd::new(&words[0]).args(&words[1..])
    }

    #[test]
    fn same_connection_when_the_connection_options_agree() {
        assert!(same_connection(
            &cmd("/usr/bin/scp -B -q -C"),
            &cmd("/usr/bin/ssh")
        ));
        assert!(same_connection(
            &cmd("scp -F /c -B -q -C"),
            &cmd("ssh -F /c")
        ));
        assert!(same_connection(
            &cmd("scp -P 2222 -i /k -p"),
            &cmd("ssh -i/k -p2222")
        ));
        assert!(same_connection(
            &cmd("scp -o Port=2 -O"),
            &cmd("ssh -oPort=2")
        ));
    }

    #[test]
    fn the_master_compresses_when_scp_asks_for_it() {
        let rsh = cmd("/usr/bin/ssh -F /c");
        assert_eq!(
            master_command(&cmd("/usr/bin/scp -B -q -C"), &rsh).to_string(),
            "/usr/bin/ssh -F /c -C"
        );
        assert_eq!(
            master_command(&cmd("/usr/bin/scp -BqC"), &rsh).to_string(),
            "/usr/bin/ssh -F /c -C"
        );
        assert_eq!(
            master_command(&cmd("/usr/bin/scp -B -q"), &rsh).to_string(),
            "/usr/bin/ssh -F /c"
        );
        assert_eq!(
            master_command(&cmd("/usr/bin/scp -C"), &cmd("ssh -C")).to_string(),
            "ssh -C"
        );
    }

    #[test]
    fn separate_connections_when_they_differ() {
        assert!(!same_connection(&cmd("scp -F /c -B"), &cmd("ssh")));
        assert!(!same_connection(&cmd("scp -o Port=1"), &cmd("ssh")));
        assert!(!same_connection(&cmd("scp"), &cmd("ssh -l backup")));
        assert!(!same_connection(&cmd("scp -i /a"), &cmd("ssh -i /b")));
        assert!(!same_connection(&cmd("scp host:x"), &cmd("ssh")));
    }
}
