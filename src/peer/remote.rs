//! A peer on another host, pulled with an rcp-compatible command (scp) and driven with an
//! rsh-compatible one (ssh). When both are OpenSSH's and share one connection, the steps
//! scp would do (probe, copy, push) are SFTP requests on the connection's own session
//! instead (see `sftp`), unless the rcp command asks for something only scp can do.
//!
//! The rcp command's exit status is never trusted alone: some scp builds exit 0 after failing,
//! and modern scp exits 1 when the collect dir merely holds a subdirectory. What decides is the
//! set of files that really arrived, plus what scp said on stderr.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::config::PeerConfig;
use crate::error::{io_cause, Error, Result};
use crate::fsutil::{
    is_plain_file_name, open_nofollow, remove_debris, DirFd, ScratchDir, TEMP_PREFIX,
};
use crate::ownership::{Mode, Ownership, Perms, SET_ID_BITS};
use crate::process::{remote_command_line, Cmd, Finished, Running};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileExt, PermissionsExt};

use super::local::write_cause;
use super::mux::Mux;
use super::sftp::{Attrs, FileRead, Kind, Sftp, SftpError, FX_NO_SUCH_FILE};
use super::{
    check_indicator_name, check_not_dir, check_target_dir, commit_incoming, print_dry_run, Peer,
    PeerOptions, StageReport, Verify,
};

pub struct RemotePeer {
    config: PeerConfig,
    options: PeerOptions,
    rcp: Cmd,
    rsh: Cmd,
    /// The collect dir as the remote side sees it (a remote path is text, never raw bytes).
    collect_dir: String,
    /// The local account the rcp/rsh commands run as, resolved once.
    local_user: Option<Ownership>,
    protocol: OnceLock<ScpProtocol>,
    /// Whether the rcp and rsh commands are OpenSSH's and multiplexing is wanted.
    shares_connection: bool,
    /// The SFTP session (the master's own session) for every step it can do; before `mux`,
    /// so that it ends before the socket dir goes.
    sftp: Mutex<SftpState>,
    /// Whether `--dry-run` has shown the SFTP session's command line.
    sftp_shown: std::sync::Once,
    /// The shared connection, started by the first operation that needs the peer.
    mux: OnceLock<Result<Option<Mux>>>,
}

/// What the peer says its collect dir holds, to check the arrivals against.
enum Listed {
    /// Name, size and (for sha256) hex digest of every file scp's `*` would copy.
    Files(HashMap<OsString, (u64, Vec<u8>)>),
    /// The peer could not list it; the reason goes into the report.
    Skipped(String),
}

/// What a copy brought into the incoming dir, and what to check it against.
struct Copied {
    listing: Option<Listing>,
    /// Entries of the collect dir that were not copied, each with why.
    skipped: Vec<String>,
    /// Why no file arrived, should none have.
    none_arrived: String,
}

/// The collect dir as scp's `*` sees it, read over SFTP.
#[derive(Default)]
struct Entries {
    /// Regular files, and symlinks to them (with their target's attributes).
    files: Vec<(Vec<u8>, Attrs)>,
    /// Directories and other entries scp does not copy.
    skipped: Vec<String>,
    /// Symlinks to nothing: scp fails on them.
    dangling: Vec<Vec<u8>>,
    /// Whether the dir held anything at all.
    any: bool,
}

impl Entries {
    fn listed(&self) -> Listed {
        Listed::Files(
            self.files
                .iter()
                .map(|(name, attrs)| {
                    (
                        OsString::from_vec(name.clone()),
                        (attrs.size.unwrap_or(0), Vec::new()),
                    )
                })
                .collect(),
        )
    }
}

/// The peer's listing during a copy: already read over SFTP, or a command still running.
enum Listing {
    Done(Listed),
    Running(Box<(String, Running)>),
}

/// The peer's SFTP session. Without one (not started, the peer has no SFTP subsystem,
/// nothing is shared, or it was lost) each step runs its own rcp or rsh command.
enum SftpState {
    NotStarted,
    Open(Box<Sftp>),
    Lost,
}

/// Options added to OpenSSH commands so that a peer that hangs or stalls cannot hold the run:
/// no prompt, a bounded connect, and a dead link noticed within a minute. They come after
/// the configured options, and ssh keeps the first value it sees, so a config can override.
const OPENSSH_OPTIONS: [&str; 8] = [
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=30",
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "ServerAliveCountMax=4",
];

/// Where `--dry-run` says the control socket would be.
fn dry_run_socket() -> PathBuf {
    std::env::temp_dir()
        .join(format!("{TEMP_PREFIX}XXXXXX"))
        .join("ssh")
}

fn is_openssh(cmd: &Cmd, name: &str) -> bool {
    Path::new(cmd.program())
        .file_name()
        .is_some_and(|program| program == name)
}

/// How a remote path in an scp upload is read on the other side: by the remote shell (the
/// legacy scp/rcp protocol) or literally (the SFTP protocol, OpenSSH's default since 9.0).
/// Downloads are glob patterns in both, so backslash escapes work there either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScpProtocol {
    Legacy,
    Sftp,
}

impl RemotePeer {
    pub fn new(config: PeerConfig, options: PeerOptions) -> Result<RemotePeer> {
        let peer = config.name.clone();
        let in_peer = |err: Error| err.for_peer(&peer);
        let mut rcp = Cmd::parse(&config.rcp_command, "rcp command").map_err(in_peer)?;
        let mut rsh = Cmd::parse(&config.rsh_command, "rsh command").map_err(in_peer)?;
        let (scp, ssh) = (is_openssh(&rcp, "scp"), is_openssh(&rsh, "ssh"));
        if scp {
            rcp = rcp.args(OPENSSH_OPTIONS);
        }
        if ssh {
            rsh = rsh.args(OPENSSH_OPTIONS);
        }
        let collect_dir = match config.collect_dir.to_str() {
            Some(dir) if !dir.contains('\n') => dir.trim_end_matches('/').to_string(),
            _ => {
                return Err(Error::usage(format!(
                "peer {peer}: collect dir {}: a remote path must be valid UTF-8 without newlines",
                config.collect_dir.display()
            )))
            }
        };
        let local_user = match &config.local_user {
            Some(user) => Some(Ownership::parse(user).map_err(|err| {
                Error::usage(format!("peer {peer}: local user {user}: {}", err.message))
            })?),
            None => None,
        };
        Ok(RemotePeer {
            shares_connection: options.multiplex
                && scp
                && ssh
                && super::mux::same_connection(&rcp, &rsh),
            config,
            options,
            rcp,
            rsh,
            collect_dir,
            local_user,
            protocol: OnceLock::new(),
            sftp: Mutex::new(SftpState::NotStarted),
            sftp_shown: std::sync::Once::new(),
            mux: OnceLock::new(),
        })
    }

    /// The options that route a command through the shared connection, starting it (and
    /// with it the SFTP session) on first use. A dry run shows where the socket would be
    /// instead of connecting.
    fn shared(&self) -> Result<Vec<std::ffi::OsString>> {
        if !self.shares_connection {
            return Ok(Vec::new());
        }
        if self.options.dry_run {
            return Ok(super::mux::control_options(&dry_run_socket(), "no"));
        }
        let mux = self.mux.get_or_init(|| {
            self.check_canceled()?;
            let started = Mux::start(
                &super::mux::master_command(&self.rcp, &self.rsh),
                &self.destination(),
                |cmd| self.wrap(cmd),
                self.local_user,
                self.options.limits(),
                self.wants_sftp(),
            )
            .map_err(|err| err.for_peer(&self.config.name))?;
            let Some((mux, session)) = started else {
                return Ok(None);
            };
            if let Some(session) = session {
                *self.sftp_state() = SftpState::Open(Box::new(session));
            }
            Ok(Some(mux))
        });
        match mux {
            Ok(Some(mux)) => Ok(mux.client_options()),
            Ok(None) => Ok(Vec::new()),
            Err(err) => Err(err.clone()),
        }
    }

    fn sftp_state(&self) -> std::sync::MutexGuard<'_, SftpState> {
        self.sftp
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the probe, the listing and the stage indicator (and, see `copy_preserves`,
    /// the copy) go through the SFTP session on the shared connection instead of an scp or
    /// ssh run each. Only when the connection
    /// is shared (so both commands are OpenSSH's) and the rcp command does not ask for the
    /// legacy scp protocol (a peer without an SFTP subsystem).
    fn wants_sftp(&self) -> bool {
        self.shares_connection && protocol_flag(&self.rcp) != Some(ScpProtocol::Legacy)
    }

    /// Runs `step` on the peer's SFTP session (the shared connection's own session, started
    /// with it). `Ok(None)` when there is no session to use, or it was lost (the shared
    /// connection died): the caller then runs its rcp or rsh command, which connects on its
    /// own if it must.
    fn with_sftp<T>(
        &self,
        step: impl FnOnce(&mut Sftp) -> std::result::Result<T, SftpError>,
    ) -> Result<Option<std::result::Result<T, SftpError>>> {
        if !self.wants_sftp() || self.options.dry_run {
            return Ok(None);
        }
        self.shared()?;
        self.check_canceled()?;
        let mut state = self.sftp_state();
        let SftpState::Open(sftp) = &mut *state else {
            return Ok(None);
        };
        let answer = step(sftp);
        if answer.is_err() {
            // The session's ssh was ended by the cancel: no falling back to scp.
            self.check_canceled()?;
        }
        match answer {
            Err(SftpError::Broken(why)) => {
                if let SftpState::Open(sftp) = std::mem::replace(&mut *state, SftpState::Lost) {
                    let said = sftp.end();
                    log::warn!(
                        "peer {}: SFTP session lost ({why}: {said}); running the rcp and rsh commands",
                        self.config.name
                    );
                }
                Ok(None)
            }
            Err(err @ (SftpError::TimedOut(_) | SftpError::Protocol(_))) => {
                // Answers may still be on their way, or the server does not follow the
                // protocol: the session cannot be trusted again, and a server that breaks
                // it is not given another chance through scp.
                if let SftpState::Open(sftp) = std::mem::replace(&mut *state, SftpState::Lost) {
                    sftp.end();
                }
                Ok(Some(Err(err)))
            }
            answer => Ok(Some(answer)),
        }
    }

    /// The error an SFTP step stands for: the peer refused or sent nonsense (1), or the
    /// session or the connection under it is gone or stalled (69).
    fn sftp_error(&self, what: &str, err: SftpError) -> Error {
        let message = format!("peer {}: {what}: {err}", self.config.name);
        match err {
            SftpError::Status { .. } | SftpError::Protocol(_) => Error::failed(message),
            SftpError::Broken(_) | SftpError::TimedOut(_) => Error::unreachable(message),
        }
    }

    /// `dir/name` as an SFTP path (literal: no globbing, no shell).
    fn sftp_path(&self, name: &[u8]) -> Vec<u8> {
        let mut path = self.collect_dir.as_bytes().to_vec();
        path.push(b'/');
        path.extend_from_slice(name);
        path
    }

    /// Reads the collect dir over SFTP the way scp's `*` sees it: every non-hidden entry,
    /// symlinks followed.
    fn sftp_entries(&self, sftp: &mut Sftp) -> std::result::Result<Entries, SftpError> {
        let mut entries = Entries::default();
        let mut links = Vec::new();
        sftp.read_dir(
            self.collect_dir.as_bytes(),
            self.options.max_entries,
            |name, attrs| {
                if name.starts_with(b".") {
                    return Ok(());
                }
                entries.any = true;
                match attrs.kind() {
                    // The size is where the copy stops: a file listed without one is not copied.
                    Kind::File if attrs.size.is_none() => {
                        return Err(self.sizeless(name));
                    }
                    Kind::File => entries.files.push((name.to_vec(), attrs)),
                    Kind::Symlink | Kind::Unknown => links.push(name.to_vec()),
                    Kind::Dir | Kind::Other => entries.skipped.push(self.not_regular(name)),
                }
                Ok(())
            },
        )?;
        for name in links {
            match sftp.stat(&self.sftp_path(&name)) {
                Ok(attrs) if attrs.kind() == Kind::File && attrs.size.is_none() => {
                    return Err(self.sizeless(&name));
                }
                Ok(attrs) if attrs.kind() == Kind::File => entries.files.push((name, attrs)),
                Ok(_) => entries.skipped.push(self.not_regular(&name)),
                Err(SftpError::Status {
                    code: FX_NO_SUCH_FILE,
                    ..
                }) => entries.dangling.push(name),
                Err(err) => return Err(err),
            }
        }
        Ok(entries)
    }

    fn sizeless(&self, name: &[u8]) -> SftpError {
        SftpError::Protocol(format!(
            "the peer lists {}/{} without a size",
            self.collect_dir,
            String::from_utf8_lossy(name)
        ))
    }

    /// A skipped entry as the report shows it, in scp's words.
    fn not_regular(&self, name: &[u8]) -> String {
        format!(
            "{}/{}: not a regular file",
            self.collect_dir,
            String::from_utf8_lossy(name)
        )
    }

    /// Lists the collect dir over SFTP the way scp's `*` sees it: every non-hidden entry
    /// that is (or links to) a regular file, with its size.
    fn sftp_listing(&self, sftp: &mut Sftp) -> std::result::Result<Listed, SftpError> {
        Ok(self.sftp_entries(sftp)?.listed())
    }

    /// Whether the copy itself goes over the SFTP session, and if so whether it keeps the
    /// files' times and modes (`scp -p`). Only when the rcp command is OpenSSH's scp in its
    /// SFTP mode with no option but those that say how to connect (the master's already),
    /// -B, -q, -C, -p, -s or -T: then the session does what scp would do, without an scp and
    /// a session of its own. Anything else (a bandwidth limit, -r, -v, -S, -3...) is left to
    /// scp itself.
    fn copy_preserves(&self) -> Option<bool> {
        if !self.wants_sftp() {
            return None;
        }
        let flags = super::mux::scp_flags(&self.rcp)?;
        flags
            .iter()
            .all(|&flag| "BqCpsT46FioJPc".contains(flag))
            .then(|| flags.contains(&'p'))
    }

    /// Copies the collect dir into `incoming` over the SFTP session. `Ok(None)` when the
    /// session is not used or was lost: then scp does the copy.
    fn copy_over_sftp(&self, incoming: &Path, source: &str) -> Result<Option<Copied>> {
        let Some(preserve) = self.copy_preserves() else {
            return Ok(None);
        };
        // sha256 needs the peer to hash its files: a command, run while the files travel.
        let hashing = match self.options.verify {
            Verify::Sha256 => Some(self.start_listing()?),
            _ => None,
        };
        let copied = self.with_sftp(|sftp| {
            log::info!(
                "peer {}: sftp: copy {}/* into {}",
                self.config.name,
                self.collect_dir,
                incoming.display()
            );
            self.sftp_copy(sftp, incoming, source, preserve)
        })?;
        let mut copied = match copied {
            None => return Ok(None),
            Some(Ok(copied)) => copied?,
            Some(Err(SftpError::Status {
                code: FX_NO_SUCH_FILE,
                ..
            })) => {
                return Err(Error::failed(format!(
                    "peer {}: collect dir {}: missing or empty (nothing to stage)",
                    self.config.name, self.collect_dir
                )))
            }
            Some(Err(err)) => {
                return Err(
                    self.sftp_error(&format!("copy from {source} failed; nothing staged"), err)
                )
            }
        };
        match (self.options.verify, hashing) {
            (Verify::None, _) => copied.listing = None,
            (_, Some(running)) => copied.listing = Some(Listing::Running(Box::new(running))),
            _ => {}
        }
        Ok(Some(copied))
    }

    /// The copy over SFTP: what scp does in its SFTP mode (list, then for each regular file:
    /// open, read, close), each file created with its source's mode less the umask, as scp
    /// creates it. The outer error is the session's; the inner one stops the stage.
    fn sftp_copy(
        &self,
        sftp: &mut Sftp,
        incoming: &Path,
        source: &str,
        preserve: bool,
    ) -> std::result::Result<Result<Copied>, SftpError> {
        let entries = self.sftp_entries(sftp)?;
        if !entries.any {
            return Ok(Err(Error::failed(format!(
                "peer {}: collect dir {}: missing or empty (nothing to stage)",
                self.config.name, self.collect_dir
            ))));
        }
        if let Some(name) = entries.dangling.first() {
            return Ok(Err(Error::failed(format!(
                "peer {}: copy from {source} failed; nothing staged: {}: No such file or directory",
                self.config.name,
                String::from_utf8_lossy(&self.sftp_path(name))
            ))));
        }
        let into = match DirFd::open_nofollow(incoming) {
            Ok(dir) => dir,
            Err(err) => return Ok(Err(self.io_error(incoming, &err))),
        };
        // Each file's open goes out with the previous file's reads, and its close with the
        // next file's: about one round trip a file, where scp waits for each request.
        let refused = |path: &[u8], code, message| {
            Error::failed(format!(
                "peer {}: copy from {source} failed; nothing staged: {}: {}",
                self.config.name,
                String::from_utf8_lossy(path),
                SftpError::Status { code, message }
            ))
        };
        let mut opening = entries
            .files
            .first()
            .map(|(name, _)| sftp.queue_open_read(&self.sftp_path(name)));
        let mut closing = std::collections::VecDeque::new();
        for (index, (name, attrs)) in entries.files.iter().enumerate() {
            let local_name = std::ffi::OsStr::from_bytes(name);
            let local = incoming.join(local_name);
            if !is_plain_file_name(local_name) {
                return Ok(Err(Error::failed(format!(
                    "peer {}: the peer listed {:?}, which is not a plain file name; nothing staged",
                    self.config.name, local_name
                ))));
            }
            let mode = attrs.permissions.map_or(0o666, |mode| mode & 0o777);
            let file = match into.create_file(local_name, mode) {
                Ok(file) => file,
                Err(err) => return Ok(Err(self.write_error(&local, &err))),
            };
            if let Some(owner) = self.local_user {
                // As if the local user's scp had written it.
                if let Err(err) = owner.apply(&file) {
                    return Ok(Err(self.io_error(&local, &err)));
                }
            }
            let path = self.sftp_path(name);
            let Some(opened) = opening.take() else {
                return Err(SftpError::Broken("a file was not opened".to_string()));
            };
            let handle = match sftp.opened(opened) {
                Ok(handle) => handle,
                Err(SftpError::Status { code, message }) => {
                    return Ok(Err(refused(&path, code, message)))
                }
                Err(err) => return Err(err),
            };
            opening = entries
                .files
                .get(index + 1)
                .map(|(next, _)| sftp.queue_open_read(&self.sftp_path(next)));
            let size = attrs.size.unwrap_or(0);
            let read = sftp.read_file(&handle, size, |offset, data| {
                file.write_all_at(data, offset)
            });
            closing.push_back(sftp.queue_close(&handle));
            let changed = |now: &str| {
                Error::failed(format!(
                    "peer {}: {}: changed while being copied ({size} bytes listed, {now}); nothing staged",
                    self.config.name,
                    String::from_utf8_lossy(&path)
                ))
            };
            match read {
                Ok(FileRead::Whole) => {}
                Ok(FileRead::WriteFailed(err)) => return Ok(Err(self.write_error(&local, &err))),
                Ok(FileRead::Grew) => return Ok(Err(changed("more there now"))),
                Ok(FileRead::Shrank(end)) => return Ok(Err(changed(&format!("{end} there now")))),
                Err(SftpError::Status { code, message }) => {
                    return Ok(Err(refused(&path, code, message)))
                }
                Err(err) => return Err(err),
            }
            // The closes already answered, so that no answer waits for long.
            while let Some(&id) = closing.front() {
                if !sftp.has_answer(id) {
                    break;
                }
                closing.pop_front();
                sftp.closed(id)?;
            }
            if preserve {
                let kept = file
                    .set_permissions(fs::Permissions::from_mode(mode))
                    .and_then(|()| match attrs.times {
                        Some((atime, mtime)) => filetime::set_file_handle_times(
                            &file,
                            Some(filetime::FileTime::from_unix_time(atime.into(), 0)),
                            Some(filetime::FileTime::from_unix_time(mtime.into(), 0)),
                        ),
                        None => Ok(()),
                    });
                if let Err(err) = kept {
                    return Ok(Err(self.io_error(&local, &err)));
                }
            }
        }
        for id in closing {
            sftp.closed(id)?;
        }
        let none_arrived = format!("no regular file in collect dir {}", self.collect_dir);
        let skipped = entries.skipped.clone();
        Ok(Ok(Copied {
            listing: Some(Listing::Done(entries.listed())),
            skipped,
            none_arrived,
        }))
    }

    /// A failed write into the target dir's file system, said as the disk full it often is.
    fn write_error(&self, path: &Path, err: &std::io::Error) -> Error {
        Error::failed(format!(
            "peer {}: {}: {}; nothing staged",
            self.config.name,
            path.display(),
            write_cause(err)
        ))
    }

    /// `--dry-run`'s lines for a step that would go over the SFTP session.
    /// The session itself is shown once, as it is started once.
    fn print_sftp_dry_run(&self, steps: &str) -> Result<()> {
        let session = self.wrap(super::mux::session_command(
            &super::mux::master_command(&self.rcp, &self.rsh),
            &dry_run_socket(),
            &self.destination(),
        ))?;
        self.sftp_shown.call_once(|| print_dry_run(session));
        print_dry_run(format_args!("# over the SFTP session: {steps}"));
        Ok(())
    }

    /// The rcp command, sharing the peer's connection when it can.
    fn rcp(&self) -> Result<Cmd> {
        Ok(self.rcp.clone().args(self.shared()?))
    }

    /// The rsh command, sharing the peer's connection when it can.
    fn rsh(&self) -> Result<Cmd> {
        Ok(self.rsh.clone().args(self.shared()?))
    }

    /// `[user@]host`, as ssh takes it.
    fn destination(&self) -> String {
        match &self.config.remote_user {
            Some(user) => format!("{user}@{}", self.config.name),
            None => self.config.name.clone(),
        }
    }

    /// `[user@]host:path`, as scp takes it (an IPv6 address in brackets).
    fn remote_path(&self, path: &str) -> String {
        let host = if self.config.name.contains(':') {
            format!("[{}]", self.config.name)
        } else {
            self.config.name.clone()
        };
        match &self.config.remote_user {
            Some(user) => format!("{user}@{host}:{path}"),
            None => format!("{host}:{path}"),
        }
    }

    /// The command as it runs: as the local user through `su` when one is configured.
    /// `su` to the user we already are would only add a PAM session to every command (a
    /// cback3.conf run by root with backup_user root asks for exactly that).
    fn wrap(&self, cmd: Cmd) -> Result<Cmd> {
        match (&self.config.local_user, self.local_user) {
            (_, Some(owner)) if owner.uid == nix::unistd::Uid::effective().as_raw() => Ok(cmd),
            (Some(user), _) => cmd
                .as_user(user)
                .map_err(|err| err.for_peer(&self.config.name)),
            (None, _) => Ok(cmd),
        }
    }

    fn run(&self, cmd: &Cmd) -> Result<Finished> {
        self.finish(self.start(cmd)?)
    }

    /// `run` for work that may rightly be silent for long (a managed action): only the
    /// deadline ends it.
    fn run_unwatched(&self, cmd: &Cmd) -> Result<Finished> {
        self.finish_within(self.start(cmd)?, self.options.limits().deadline_only())
    }

    fn start(&self, cmd: &Cmd) -> Result<(String, Running)> {
        self.start_capped(cmd, 0)
    }

    /// Starts the listing command, keeping no more of its output than `max_entries` records
    /// can take (a record is a size, a digest and a name of at most NAME_MAX bytes).
    fn start_listing(&self) -> Result<(String, Running)> {
        let record = super::sftp::NAME_MAX as u64 + 100;
        let limit = self.options.max_entries.saturating_mul(record);
        self.start_capped(
            &self.listing_command()?,
            usize::try_from(limit).unwrap_or(usize::MAX),
        )
    }

    /// Starts `cmd`; with a `stdout_limit`, its stdout is kept up to that many bytes
    /// (0: the default, for commands that print a line or two).
    fn start_capped(&self, cmd: &Cmd, stdout_limit: usize) -> Result<(String, Running)> {
        self.check_canceled()?;
        log::info!("peer {}: {cmd}", self.config.name);
        let program = cmd.program().to_string_lossy().into_owned();
        let started = match stdout_limit {
            0 => cmd.start(),
            limit => cmd.start_capped(limit),
        };
        let running = started.map_err(|err| {
            Error::failed(format!(
                "peer {}: cannot run {program}: {}",
                self.config.name,
                io_cause(&err)
            ))
        })?;
        Ok((program, running))
    }

    /// Waits for a started command; past the peer's deadline, or when it moves nothing for
    /// the idle time, it is killed and the peer counts as unreachable.
    fn finish(&self, running: (String, Running)) -> Result<Finished> {
        self.finish_within(running, self.options.limits())
    }

    fn finish_within(
        &self,
        (program, running): (String, Running),
        limits: crate::limits::Limits,
    ) -> Result<Finished> {
        let finished = running.finish(limits).map_err(|err| {
            Error::failed(format!(
                "peer {}: {program}: {}",
                self.config.name,
                io_cause(&err)
            ))
        })?;
        if let Some(expired) = finished.expired {
            return Err(Error::unreachable(format!(
                "peer {}: {expired}; killed {program}",
                self.config.name
            )));
        }
        // Whatever the child said, it was killed by the cancel.
        self.check_canceled()?;
        Ok(finished)
    }

    fn check_canceled(&self) -> Result<()> {
        crate::cancel::check().map_err(|err| err.for_peer(&self.config.name))
    }

    /// A private scratch dir under the working dir that the local user (if any) can write.
    fn scratch_dir(&self, parent: &Path) -> Result<ScratchDir> {
        let scratch = ScratchDir::create_in(parent).map_err(|err| {
            Error::failed(format!(
                "peer {}: {}: cannot create a scratch dir: {}",
                self.config.name,
                parent.display(),
                write_cause(&err)
            ))
        })?;
        if let Some(owner) = self.local_user {
            nix::unistd::chown(
                scratch.path(),
                Some(owner.uid.into()),
                Some(owner.gid.into()),
            )
            .map_err(|err| {
                Error::failed(format!(
                    "peer {}: {}: cannot hand the scratch dir to the local user: {err}",
                    self.config.name,
                    scratch.path().display()
                ))
            })?;
        }
        Ok(scratch)
    }

    fn working_dir(&self) -> PathBuf {
        self.config
            .working_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
    }

    /// The form of the collect dir for an upload destination (see `ScpProtocol`).
    fn upload_dir(&self) -> String {
        if self.collect_dir.chars().all(is_shell_safe) {
            return self.collect_dir.clone();
        }
        match *self.protocol.get_or_init(|| scp_protocol(&self.rcp)) {
            ScpProtocol::Legacy => escape_glob(&self.collect_dir),
            ScpProtocol::Sftp => self.collect_dir.clone(),
        }
    }

    fn io_error(&self, path: &Path, err: &std::io::Error) -> Error {
        Error::failed(format!(
            "peer {}: {}: {}",
            self.config.name,
            path.display(),
            io_cause(err)
        ))
    }

    /// Lists the collect dir through the rsh command the way scp's `*` sees it: every
    /// non-hidden entry that is (or links to) a regular file, with its size and, for sha256,
    /// its digest. NUL-separated, after a marker, so that any name survives and a peer that
    /// does not run our command (an sftp-only account) is told from one that failed.
    fn listing_command(&self) -> Result<Cmd> {
        // GNU find lists a directory in one process; elsewhere, and for sha256, a loop.
        const SCRIPT: &str = "cd -- \"$1\" || exit 3; \
            printf 'peerstage-verify-1\\000'; \
            if [ \"$2\" != sha256 ] && find . -maxdepth 0 -printf '' >/dev/null 2>&1; then \
            exec find -L . -mindepth 1 -maxdepth 1 ! -name '.*' -type f -printf '%s - %f\\000'; fi; \
            if [ \"$2\" = sha256 ]; then if command -v sha256sum >/dev/null 2>&1; then H=sha256sum; else H='shasum -a 256'; fi; fi; \
            for f in *; do if [ -f \"$f\" ]; then \
            s=$(wc -c < \"$f\") || exit 4; \
            if [ \"$2\" = sha256 ]; then h=$($H < \"$f\") || exit 5; h=${h%% *}; else h=-; fi; \
            printf '%s %s %s\\000' $s \"$h\" \"$f\"; fi; done";
        let words = [
            "sh",
            "-c",
            SCRIPT,
            "sh",
            &self.collect_dir,
            self.options.verify.as_str(),
        ];
        self.wrap(
            self.rsh()?
                .arg(self.destination())
                .arg(remote_command_line(&words)),
        )
    }

    /// Reads the output of `listing_command`.
    fn parse_listing(&self, finished: Finished) -> Result<Listed> {
        let mut records = finished.stdout.split(|&byte| byte == 0);
        if records.next() != Some(LISTING_MARKER) {
            if is_connection_failure(&finished) && finished.code() == 255 {
                return Err(self.failure("cannot list the collect dir to verify", &finished));
            }
            let said = finished.first_line().unwrap_or_default();
            log::warn!(
                "peer {}: verification skipped: the peer does not run remote commands ({said})",
                self.config.name
            );
            return Ok(Listed::Skipped(
                "skipped: the peer does not run remote commands".to_string(),
            ));
        }
        if !finished.success() {
            return Err(self.failure(
                &format!("cannot list collect dir {} to verify", self.collect_dir),
                &finished,
            ));
        }
        let too_many = || {
            Error::failed(format!(
                "peer {}: collect dir {} lists more than {} entries (max_entries); nothing staged",
                self.config.name, self.collect_dir, self.options.max_entries
            ))
        };
        if finished.stdout_cut {
            return Err(too_many());
        }
        let mut listed = std::collections::HashMap::new();
        for record in records.filter(|record| !record.is_empty()) {
            if listed.len() as u64 >= self.options.max_entries {
                return Err(too_many());
            }
            let mut fields = record.splitn(3, |&byte| byte == b' ');
            let (Some(size), Some(digest), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(Error::failed(format!(
                    "peer {}: unreadable listing of {}",
                    self.config.name, self.collect_dir
                )));
            };
            let size: u64 = std::str::from_utf8(size)
                .ok()
                .and_then(|size| size.parse().ok())
                .ok_or_else(|| {
                    Error::failed(format!(
                        "peer {}: unreadable size in the listing of {}",
                        self.config.name, self.collect_dir
                    ))
                })?;
            listed.insert(
                std::ffi::OsString::from_vec(name.to_vec()),
                (size, digest.to_vec()),
            );
        }
        Ok(Listed::Files(listed))
    }

    /// Compares what arrived in `incoming` (names and sizes, as the stage found them) with
    /// what the peer lists. Returns how the check went, for the report; a mismatch is an
    /// error naming the files.
    fn verify_arrivals(
        &self,
        incoming: &Path,
        arrivals: Vec<(OsString, u64)>,
        listed: Option<Listed>,
    ) -> Result<String> {
        let mut listed = match listed {
            None => return Ok("none".to_string()),
            Some(Listed::Skipped(why)) => return Ok(why),
            Some(Listed::Files(files)) => files,
        };
        let mut problems = Vec::new();
        for (name, staged) in arrivals {
            // Quoted and escaped: a name may hold a newline, and the error is one line.
            let shown = format!("{name:?}");
            let Some((size, digest)) = listed.remove(&name) else {
                problems.push(format!("{shown} (not on the peer)"));
                continue;
            };
            if staged != size {
                problems.push(format!(
                    "{shown} ({size} bytes on the peer, {staged} staged)"
                ));
            } else if self.options.verify == Verify::Sha256 {
                let path = incoming.join(&name);
                let mut file = open_nofollow(&path).map_err(|err| self.io_error(&path, &err))?;
                let ours =
                    crate::fsutil::sha256(&mut file).map_err(|err| self.io_error(&path, &err))?;
                let ours: String = ours.iter().map(|byte| format!("{byte:02x}")).collect();
                if ours.as_bytes() != digest.as_slice() {
                    problems.push(format!("{shown} (SHA-256 differs)"));
                }
            }
        }
        let mut missing: Vec<_> = listed
            .into_keys()
            .map(|name| format!("{name:?} (did not arrive)"))
            .collect();
        missing.sort();
        problems.extend(missing);
        if problems.is_empty() {
            return Ok(self.options.verify.as_str().to_string());
        }
        let count = problems.len();
        problems.truncate(10);
        Err(Error::failed(format!(
            "peer {}: verification failed for {count} file(s): {}{}; nothing staged",
            self.config.name,
            problems.join(", "),
            if count > 10 { ", ..." } else { "" }
        )))
    }

    /// Pulls `dir/*` with the rcp command into `incoming`. What scp said decides, with the
    /// files that arrived; its exit status alone is not trusted.
    fn copy_with_rcp(&self, incoming: &Path, target_dir: &Path, source: &str) -> Result<Copied> {
        let cmd = self.wrap(self.rcp()?.arg(source).arg(incoming))?;
        // The peer's listing is taken while the files travel: the collect dir is complete
        // (its indicator is there), so listing it before or during the copy is the same.
        let copying = self.start(&cmd)?;
        let listing = match self.options.verify {
            Verify::None => None,
            verify => {
                let over_sftp = match verify {
                    Verify::Size => self.with_sftp(|sftp| {
                        log::info!("peer {}: sftp: list {}", self.config.name, self.collect_dir);
                        self.sftp_listing(sftp)
                    })?,
                    _ => None,
                };
                Some(match over_sftp {
                    Some(listed) => Listing::Done(listed.map_err(|err| {
                        self.sftp_error(
                            &format!("cannot list collect dir {} to verify", self.collect_dir),
                            err,
                        )
                    })?),
                    None => Listing::Running(Box::new(self.start_listing()?)),
                })
            }
        };
        let finished = self.finish(copying)?;
        let skipped: Vec<String> = finished
            .stderr_lines()
            .filter(|line| is_skip_line(line))
            .map(|line| skip_entry(line).to_string())
            .collect();
        let errors = finished
            .stderr_lines()
            .filter(|line| !is_skip_line(line))
            .count();
        let copy_failed = errors > 0 || (!finished.success() && skipped.is_empty());
        if copy_failed {
            if finished
                .stderr_lines()
                .any(|line| line.contains("No space left on device"))
            {
                return Err(Error::failed(format!(
                    "peer {}: target dir {}: no space left on device (disk full); nothing staged",
                    self.config.name,
                    target_dir.display()
                )));
            }
            let arrived = fs::read_dir(incoming).map(|dir| dir.count()).unwrap_or(0);
            if arrived == 0 && finished.stderr_lines().any(is_missing_line) {
                return Err(Error::failed(format!(
                    "peer {}: collect dir {}: missing or empty (nothing to stage)",
                    self.config.name, self.collect_dir
                )));
            }
            return Err(self.failure(
                &format!("copy from {source} failed; nothing staged"),
                &finished,
            ));
        }
        Ok(Copied {
            listing,
            skipped,
            none_arrived: format!(
                "{} exited {} but no file arrived from {source}",
                self.rcp.program().to_string_lossy(),
                finished.code()
            ),
        })
    }

    /// Remote commands need an account that runs them: an sftp-only one (ForceCommand
    /// internal-sftp) answers every command with a refusal, which must not pass for success.
    fn require_remote_commands(&self) -> Result<()> {
        let probe = self.wrap(
            self.rsh()?
                .arg(self.destination())
                .arg(remote_command_line(&["printf", "peerstage-probe-ok"])),
        )?;
        let finished = self.run(&probe)?;
        if finished.stdout == b"peerstage-probe-ok" {
            return Ok(());
        }
        if finished.code() == 255 {
            return Err(self.failure("cannot run a remote command", &finished));
        }
        let said = finished
            .first_line()
            .unwrap_or_else(|| "no answer".to_string());
        Err(Error::failed(format!(
            "peer {}: does not allow remote commands (a restricted account, e.g. sftp only): {said}",
            self.config.name
        )))
    }

    /// Turns a failed rcp/rsh run into the error it stands for: the peer could not be reached
    /// (69), or it answered with a failure (1).
    fn failure(&self, what: &str, finished: &Finished) -> Error {
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
        if is_connection_failure(finished) {
            let host = &self.config.name;
            Error::unreachable(if detail.starts_with("ssh: ") {
                format!("peer {host}: {what}: {detail}")
            } else {
                // scp -q silences ssh's own diagnosis; say plainly what "Connection closed" means.
                format!("peer {host}: {what}: could not connect to {host} ({detail})")
            })
        } else {
            let message = format!("peer {}: {what}: {detail}", self.config.name);
            Error::failed(message)
        }
    }
}

impl Drop for RemotePeer {
    /// Ends the SFTP session the polite way (its stdin closed, so the server's side ends
    /// the session) before the master goes.
    fn drop(&mut self) {
        let state = self
            .sftp
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let SftpState::Open(sftp) = std::mem::replace(state, SftpState::Lost) {
            sftp.end();
        }
    }
}

impl Peer for RemotePeer {
    fn config(&self) -> &PeerConfig {
        &self.config
    }

    fn stage(&self, target_dir: &Path, perms: &Perms) -> Result<StageReport> {
        check_target_dir(&self.config.name, target_dir, self.options.dry_run)?;
        let source = self.remote_path(&format!("{}/*", escape_glob(&self.collect_dir)));
        if self.options.dry_run {
            let incoming = target_dir.join(format!("{TEMP_PREFIX}{}-XXXXXX", std::process::id()));
            if self.copy_preserves().is_some() {
                self.print_sftp_dry_run(&format!(
                    "list {} and copy every regular file in it into {}",
                    self.collect_dir,
                    incoming.display()
                ))?;
                if self.options.verify == Verify::Sha256 {
                    print_dry_run(self.listing_command()?);
                }
            } else {
                print_dry_run(self.wrap(self.rcp()?.arg(&source).arg(&incoming))?);
                if self.options.verify == Verify::Size && self.wants_sftp() {
                    self.print_sftp_dry_run(&format!(
                        "list {} (names and sizes) to verify",
                        self.collect_dir
                    ))?;
                } else if self.options.verify != Verify::None {
                    print_dry_run(self.listing_command()?);
                }
            }
            print_dry_run(format_args!(
                "# then each file that arrived in {} is given its owner and mode, checked, and renamed into {}",
                incoming.display(),
                target_dir.display()
            ));
            return Ok(StageReport::default());
        }
        // Only a target that already holds something can have a directory in a file's way.
        let crowded = remove_debris(target_dir);
        // Files land in a private dir inside the target dir first: on the same file system, so
        // that each one is renamed into place whole, and only if the copy as a whole worked.
        let mut incoming = self.scratch_dir(target_dir)?;
        let copied = match self.copy_over_sftp(incoming.path(), &source)? {
            Some(copied) => copied,
            None => {
                // No session, or it was lost mid-copy: scp starts again in a clean dir.
                incoming = self.scratch_dir(target_dir)?;
                self.copy_with_rcp(incoming.path(), target_dir, &source)?
            }
        };
        let mut report = StageReport::default();
        for entry in &copied.skipped {
            log::warn!("peer {}: skipped {entry}", self.config.name);
        }
        report.skipped = copied.skipped;
        // Every arrival gets its final owner and mode while still private.
        let mut arrivals = Vec::new();
        for entry in
            fs::read_dir(incoming.path()).map_err(|err| self.io_error(incoming.path(), &err))?
        {
            let entry = entry.map_err(|err| self.io_error(incoming.path(), &err))?;
            let name = entry.file_name();
            let arrived = entry.path();
            // scp writes only regular files here, each under one plain name.
            let meta =
                fs::symlink_metadata(&arrived).map_err(|err| self.io_error(&arrived, &err))?;
            if !meta.is_file() || !is_plain_file_name(&name) {
                return Err(Error::failed(format!(
                    "peer {}: {}: the rcp command left something that is not a regular file; nothing staged",
                    self.config.name,
                    arrived.display()
                )));
            }
            if crowded {
                check_not_dir(&self.config.name, &target_dir.join(&name))?;
            }
            // Nothing to set is the common case of a single stage: no open per file for it.
            // A set-id or sticky bit (`scp -p` keeps the peer's) is always taken away: owner
            // first, then the mode the file ends with.
            let set_id = meta.mode() & SET_ID_BITS != 0;
            if *perms != Perms::default() || set_id {
                let file = open_nofollow(&arrived).map_err(|err| self.io_error(&arrived, &err))?;
                let kept = Mode(meta.mode() & 0o777);
                perms.apply(&file, Some(kept)).map_err(|cause| {
                    Error::failed(format!(
                        "peer {}: {}: {cause}",
                        self.config.name,
                        arrived.display()
                    ))
                })?;
            }
            report.files += 1;
            report.bytes += meta.size();
            arrivals.push((name, meta.size()));
        }
        if report.files == 0 {
            return Err(Error::failed(format!(
                "peer {}: {}; nothing staged",
                self.config.name, copied.none_arrived
            )));
        }
        let listed = match copied.listing {
            Some(Listing::Done(listed)) => Some(listed),
            Some(Listing::Running(running)) => Some(self.parse_listing(self.finish(*running)?)?),
            None => None,
        };
        report.verified = self.verify_arrivals(incoming.path(), arrivals, listed)?;
        commit_incoming(&self.config.name, incoming.path(), target_dir)?;
        Ok(report)
    }

    fn check_collect_indicator(&self, indicator: &str) -> Result<bool> {
        check_indicator_name(&self.config.name, indicator)?;
        let source = self.remote_path(&format!(
            "{}/{}",
            escape_glob(&self.collect_dir),
            escape_glob(indicator)
        ));
        let working_dir = self.working_dir();
        let path = self.sftp_path(indicator.as_bytes());
        if self.options.dry_run {
            if self.wants_sftp() {
                self.print_sftp_dry_run(&format!(
                    "open {} for reading, then close it",
                    String::from_utf8_lossy(&path)
                ))?;
                return Ok(true);
            }
            print_dry_run(
                self.wrap(
                    self.rcp
                        .clone()
                        .arg(&source)
                        .arg(working_dir.join(format!("{TEMP_PREFIX}XXXXXX"))),
                )?,
            );
            return Ok(true);
        }
        // Probed over SFTP or with the rcp command, not ssh: a peer account may allow
        // scp/sftp only. Present only if it can be opened for reading, as a copy would.
        let probed = self.with_sftp(|sftp| {
            log::info!(
                "peer {}: sftp: open {} for reading",
                self.config.name,
                String::from_utf8_lossy(&path)
            );
            sftp.probe(&path)
        })?;
        if let Some(probed) = probed {
            return match probed {
                Ok(None) => Ok(false),
                Ok(Some(attrs)) if matches!(attrs.kind(), Kind::File | Kind::Unknown) => Ok(true),
                Ok(Some(_)) => Err(Error::failed(format!(
                    "peer {}: cannot check {source}: not a regular file",
                    self.config.name
                ))),
                Err(err) => Err(self.sftp_error(&format!("cannot check {source}"), err)),
            };
        }
        let scratch = self.scratch_dir(&working_dir)?;
        let cmd = self.wrap(self.rcp()?.arg(&source).arg(scratch.path()))?;
        let finished = self.run(&cmd)?;
        if scratch.path().join(indicator).is_file() {
            return Ok(true);
        }
        if !is_connection_failure(&finished) && finished.stderr_lines().any(is_missing_line) {
            return Ok(false);
        }
        if finished.success() {
            return Err(Error::failed(format!(
                "peer {}: {} exited 0 but {source} did not arrive",
                self.config.name,
                self.rcp.program().to_string_lossy()
            )));
        }
        Err(self.failure(&format!("cannot check {source}"), &finished))
    }

    fn write_stage_indicator(&self, indicator: &str, perms: &Perms) -> Result<()> {
        check_indicator_name(&self.config.name, indicator)?;
        let destination = self.remote_path(&format!("{}/", self.upload_dir()));
        let working_dir = self.working_dir();
        let path = self.sftp_path(indicator.as_bytes());
        let shown = String::from_utf8_lossy(&path).into_owned();
        if self.options.dry_run && self.wants_sftp() {
            return self.print_sftp_dry_run(&format!(
                "create {shown} empty (mode 0644 less the peer's umask), close it, then stat it"
            ));
        }
        // Written as an scp upload of an empty file would write it (open with create and
        // truncate, close), then looked at again: a close that says OK is not proof either.
        let written = self.with_sftp(|sftp| {
            log::info!("peer {}: sftp: create {shown}", self.config.name);
            sftp.create_empty(&path, 0o644)
                .and_then(|()| sftp.stat(&path))
        })?;
        if let Some(written) = written {
            return match written {
                Ok(attrs) if matches!(attrs.kind(), Kind::File | Kind::Unknown) => Ok(()),
                Ok(_) => Err(Error::failed(format!(
                    "peer {}: stage indicator {shown} on the peer is not a regular file",
                    self.config.name
                ))),
                Err(err) => {
                    Err(self.sftp_error(&format!("cannot write stage indicator {shown}"), err))
                }
            };
        }
        if self.options.dry_run {
            let local = working_dir
                .join(format!("{TEMP_PREFIX}XXXXXX"))
                .join(indicator);
            print_dry_run(format_args!(
                "touch -- {}",
                crate::process::quote_os(local.as_os_str())
            ));
            print_dry_run(self.wrap(self.rcp()?.arg(&local).arg(&destination))?);
            return Ok(());
        }
        let scratch = self.scratch_dir(&working_dir)?;
        let local = scratch.path().join(indicator);
        let file = fs::File::create_new(&local).map_err(|err| {
            Error::failed(format!(
                "peer {}: {}: {}",
                self.config.name,
                local.display(),
                write_cause(&err)
            ))
        })?;
        if let Some(owner) = self.local_user {
            owner
                .apply(&file)
                .map_err(|err| self.io_error(&local, &err))?;
        }
        // Owner and mode on the peer are its own business; scp applies the peer's umask.
        let _ = perms;
        let cmd = self.wrap(self.rcp()?.arg(&local).arg(&destination))?;
        let finished = self.run(&cmd)?;
        if finished.success() && finished.stderr_lines().next().is_none() {
            // scp's exit status is not proof: fetch the indicator back (over the shared
            // connection this costs a round trip, not a login).
            if self.check_collect_indicator(indicator)? {
                return Ok(());
            }
            return Err(Error::failed(format!(
                "peer {}: {} exited 0 but stage indicator {indicator} is not in {} on the peer",
                self.config.name,
                self.rcp.program().to_string_lossy(),
                self.collect_dir
            )));
        }
        Err(self.failure(
            &format!("cannot write stage indicator {destination}{indicator}"),
            &finished,
        ))
    }

    fn execute_remote_command(&self, command: &[String]) -> Result<()> {
        if !self.options.dry_run {
            self.require_remote_commands()?;
        }
        let cmd = self.wrap(
            self.rsh()?
                .arg(self.destination())
                .arg(remote_command_line(command)),
        )?;
        if self.options.dry_run {
            print_dry_run(cmd);
            return Ok(());
        }
        log::info!("peer {}: {cmd}", self.config.name);
        let status = cmd.run_inherited().map_err(|err| {
            Error::failed(format!(
                "peer {}: cannot run {}: {}",
                self.config.name,
                cmd.program().to_string_lossy(),
                io_cause(&err)
            ))
        })?;
        match status.code() {
            Some(0) => Ok(()),
            Some(255) => Err(Error::unreachable(format!(
                "peer {}: {} exited 255 (connection failed)",
                self.config.name,
                self.rsh.program().to_string_lossy()
            ))),
            Some(code) => Err(Error::failed(format!(
                "peer {}: remote command exited with status {code}",
                self.config.name
            ))),
            None => Err(Error::failed(format!(
                "peer {}: remote command killed by a signal",
                self.config.name
            ))),
        }
    }

    fn execute_managed_action(&self, action: &str, full: bool) -> Result<()> {
        crate::config::check_action(action).map_err(|problem| {
            Error::usage(format!("peer {}: action {problem}", self.config.name))
        })?;
        let mut words = shell_words::split(&self.config.cback_command).map_err(|err| {
            Error::usage(format!(
                "peer {}: cback command {:?}: cannot split: {err}",
                self.config.name, self.config.cback_command
            ))
        })?;
        if words.is_empty() {
            return Err(Error::usage(format!(
                "peer {}: cback command is empty",
                self.config.name
            )));
        }
        if full {
            words.push("--full".to_string());
        }
        words.push(action.to_string());
        if !self.options.dry_run {
            self.require_remote_commands()?;
        }
        let cmd = self.wrap(
            self.rsh()?
                .arg(self.destination())
                .arg(remote_command_line(&words)),
        )?;
        if self.options.dry_run {
            print_dry_run(cmd);
            return Ok(());
        }
        let finished = self.run_unwatched(&cmd)?;
        for line in String::from_utf8_lossy(&finished.stdout)
            .lines()
            .chain(finished.stderr.lines())
        {
            log::info!("peer {}: {action}: {line}", self.config.name);
        }
        if finished.success() {
            return Ok(());
        }
        let mut err = self.failure(
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

const LISTING_MARKER: &[u8] = b"peerstage-verify-1";

/// Characters that mean nothing to a shell or to glob(3).
fn is_shell_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c) || !c.is_ascii()
}

/// Backslash-escapes every character a shell or glob(3) would read specially. Both the remote
/// shell (legacy scp) and scp's SFTP-mode glob take `\x` as a literal `x`, so one form works
/// for both protocols. Newlines are refused earlier: for a shell, backslash-newline vanishes.
pub(crate) fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_shell_safe(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn is_skip_line(line: &str) -> bool {
    line.ends_with(": not a regular file")
}

/// `scp: download /dir/sub/: not a regular file` -> `/dir/sub/: not a regular file`.
fn skip_entry(line: &str) -> &str {
    let line = strip_program(line);
    line.strip_prefix("download ").unwrap_or(line)
}

/// Drops the `scp: ` or `/usr/bin/scp: ` that scp puts before its messages.
fn strip_program(line: &str) -> &str {
    match line.split_once(": ") {
        Some((program, rest)) if program.ends_with("scp") && !program.contains(' ') => rest,
        _ => line,
    }
}

fn is_missing_line(line: &str) -> bool {
    line.ends_with("No such file or directory")
}

/// Whether a failed scp/ssh never got to talk to the peer. ssh exits 255 on connection errors
/// (scp too in SFTP mode); legacy scp exits 1 and, with `-q`, may say nothing at all, so
/// silence with a failure status counts as a connection failure too.
fn is_connection_failure(finished: &Finished) -> bool {
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
    lines.any(super::mux::is_connection_message)
}

/// Which protocol an OpenSSH scp uses: `-O` forces legacy, `-s` SFTP; otherwise the scp
/// binary's default, which its usage text tells (scp 9.0+ lists `-O` and defaults to SFTP).
/// Anything that is not OpenSSH scp is taken as a classic rcp, read by a remote shell.
fn scp_protocol(rcp: &Cmd) -> ScpProtocol {
    if let Some(protocol) = protocol_flag(rcp) {
        return protocol;
    }
    let is_scp = Path::new(rcp.program())
        .file_name()
        .is_some_and(|name| name == "scp");
    if !is_scp {
        return ScpProtocol::Legacy;
    }
    let usage = crate::limits::Limits {
        deadline: Some(std::time::Instant::now() + std::time::Duration::from_secs(10)),
        idle: None,
    };
    match Cmd::new(rcp.program()).run(usage) {
        Ok(usage) if usage.stderr.contains("usage: scp [") && usage.stderr.contains('O') => {
            ScpProtocol::Sftp
        }
        _ => ScpProtocol::Legacy,
    }
}

/// The protocol the rcp command's flags ask for (scp's -O or -s), if any.
fn protocol_flag(rcp: &Cmd) -> Option<ScpProtocol> {
    super::mux::scp_flags(rcp)?
        .into_iter()
        .find_map(|flag| match flag {
            'O' => Some(ScpProtocol::Legacy),
            's' => Some(ScpProtocol::Sftp),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_glob_keeps_plain_paths_and_escapes_the_rest() {
        assert_eq!(escape_glob("/var/backup/collect"), "/var/backup/collect");
        assert_eq!(
            escape_glob("/a b/$(x);`y`*'\""),
            r#"/a\ b/\$\(x\)\;\`y\`\*\'\""#
        );
        assert_eq!(escape_glob("/données"), "/données");
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

    #[test]
    fn protocol_from_flags() {
        let legacy = Cmd::new("/usr/bin/scp").args(["-B", "-O", "-q"]);
        assert_eq!(scp_protocol(&legacy), ScpProtocol::Legacy);
        let sftp = Cmd::new("/usr/bin/scp").args(["-F", "/x/O", "-s"]);
        assert_eq!(scp_protocol(&sftp), ScpProtocol::Sftp);
        let other = Cmd::new("/usr/bin/rcp").args(["-p"]);
        assert_eq!(scp_protocol(&other), ScpProtocol::Legacy);
    }

    fn peer(user: Option<&str>, host: &str) -> RemotePeer {
        let mut config = PeerConfig::new(host, crate::config::PeerKind::Remote, "/c d");
        config.remote_user = user.map(str::to_string);
        config.rcp_command = "sh".into();
        config.rsh_command = "sh".into();
        RemotePeer::new(config, PeerOptions::default()).unwrap()
    }

    #[test]
    fn remote_paths_and_destinations() {
        assert_eq!(
            peer(Some("backup"), "db1").remote_path("/x"),
            "backup@db1:/x"
        );
        assert_eq!(peer(None, "::1").remote_path("/x"), "[::1]:/x");
        assert_eq!(peer(None, "db1").destination(), "db1");
        assert_eq!(peer(Some("b"), "db1").destination(), "b@db1");
    }
}
