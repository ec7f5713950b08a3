//! The steps of a remote peer as SFTP requests on the session of its shared connection: the
//! requests OpenSSH's scp itself sends, without an scp and a session of its own for each
//! step. The copy is left to scp (over the same connection) when the rcp command asks for
//! something only scp does, such as a bandwidth limit.

use std::path::Path;

use crate::config::Verify;
use crate::error::Error;
use crate::peer::interface::Presence;
use crate::peer::sftp::{self, Downloaded, Kind, Plan, Session, SftpError};
use crate::peer::staging::{Listed, Listing};

use super::commands::{copy_failure, copy_with_rcp, download_source};
use super::connection::copy_over_sftp;
use super::link::Link;
use super::transport::{Download, Pending, Step, StepError, Transport};
use crate::peer::resume::Kept;

pub struct SftpTransport {
    /// None once the session has ended: every step after that runs elsewhere.
    session: Option<Box<Session>>,
}

impl SftpTransport {
    pub fn new(session: Box<Session>) -> SftpTransport {
        SftpTransport {
            session: Some(session),
        }
    }

    /// Runs `step` on the session. A session that is lost (its ssh ended) makes the step
    /// `Lost`, to be done again with the commands; one that timed out or broke the protocol
    /// is ended too, and the step fails (a server that breaks the protocol gets no second
    /// try through scp).
    fn with_session<T>(
        &mut self,
        link: &Link,
        step: impl FnOnce(&mut Session) -> sftp::packet::Answer<T>,
    ) -> Step<sftp::packet::Answer<T>> {
        link.check_canceled()?;
        let Some(session) = self.session.as_mut() else {
            return Err(StepError::Lost);
        };
        let answer = step(session);
        if answer.is_err() {
            // The session's ssh was ended by the cancel: no falling back to scp.
            link.check_canceled()?;
        }
        match answer {
            Err(SftpError::Broken(why)) => {
                if let Some(session) = self.session.take() {
                    let said = session.end();
                    log::warn!(
                        "peer {}: SFTP session lost ({why}: {said}); running the rcp and rsh commands",
                        link.peer
                    );
                }
                Err(StepError::Lost)
            }
            Err(err @ (SftpError::TimedOut(_) | SftpError::Protocol(_))) => {
                if let Some(session) = self.session.take() {
                    session.end();
                }
                Ok(Err(err))
            }
            answer => Ok(answer),
        }
    }
}

/// The error an SFTP step stands for: the peer refused or sent nonsense (1), or the session
/// or the connection under it is gone or stalled (69).
fn sftp_error(what: &str, err: SftpError) -> Error {
    let message = format!("{what}: {err}");
    match err {
        SftpError::Status { .. } | SftpError::Protocol(_) => Error::failed(message),
        SftpError::Broken(_) | SftpError::TimedOut(_) => Error::unreachable(message),
    }
}

impl Transport for SftpTransport {
    fn probe(&mut self, link: &Link, name: &str) -> Step<Presence> {
        let path = link.remote_file(name);
        log::info!("peer {}: sftp: open {path} for reading", link.peer);
        let what = || format!("cannot check {}", link.remote_path(&path));
        let dir = link.collect_dir.clone();
        match self.with_session(link, |session| {
            session.probe(path.as_bytes(), dir.as_bytes())
        })? {
            Ok(Err(true)) => Ok(Presence::Absent),
            Ok(Err(false)) => Ok(Presence::NoCollectDir),
            Ok(Ok(attrs)) if matches!(attrs.kind(), Kind::File | Kind::Unknown) => {
                Ok(Presence::Present)
            }
            Ok(Ok(_)) => Err(Error::failed(format!("{}: not a regular file", what())).into()),
            Err(err) => Err(sftp_error(&what(), err).into()),
        }
    }

    fn download(&mut self, link: &Link, into: &Path, kept: Option<&Kept>) -> Step<Download> {
        let Some(preserve) = copy_over_sftp(&link.rcp) else {
            // scp does the copy over the shared connection; the listing is an SFTP request
            // while the files travel.
            let (download, finished) =
                copy_with_rcp(link, link.rcp(), into, |link| self.listing(link))?;
            let target_dir = into.parent().unwrap_or(into);
            return match copy_failure(link, into, target_dir, &finished) {
                None => Ok(download),
                Some(err) => Err(err.into()),
            };
        };
        // sha256 needs the peer to hash its files: a command, run while the files travel.
        let hashing = match link.options.verify {
            Verify::Sha256 => Some(link.start_listing(link.ssh())?),
            _ => None,
        };
        let dir = crate::fsutil::DirFd::open_nofollow(into).map_err(|err| {
            Error::failed(format!(
                "{}: {}",
                into.display(),
                crate::error::io_cause(&err)
            ))
        })?;
        let plan = Plan {
            dir: link.collect_dir.as_bytes(),
            into: &dir,
            max_entries: link.options.max_entries,
            preserve,
            owner: link.owner,
            meter: link.options.meter.as_deref(),
            pace: &link.options.pace,
            kept,
        };
        log::info!(
            "peer {}: sftp: copy {}/* into {}",
            link.peer,
            link.collect_dir,
            into.display()
        );
        let source = download_source(link);
        let downloaded = match self.with_session(link, |session| sftp::download(session, &plan))? {
            Ok(Ok(downloaded)) => downloaded,
            Ok(Err(failure)) => return Err(failure_error(link, into, &source, failure).into()),
            Err(err) => {
                return Err(
                    sftp_error(&format!("copy from {source} failed; nothing staged"), err).into(),
                )
            }
        };
        let Downloaded { files, skipped } = downloaded;
        if let Some(kept) = kept {
            // What an earlier attempt copied and the peer no longer lists is not staged.
            kept.prune(files.iter().map(|(name, _)| name.as_os_str()))
                .map_err(|err| {
                    Error::failed(format!(
                        "{}: {}",
                        into.display(),
                        crate::error::io_cause(&err)
                    ))
                })?;
        }
        let listing = match (link.options.verify, hashing) {
            (Verify::None, _) => None,
            (_, Some(running)) => Some(Pending::Running(Box::new(running))),
            _ => Some(Pending::Done(Listing::Files(
                files
                    .into_iter()
                    .map(|(name, size)| (name, (size, None)))
                    .collect(),
            ))),
        };
        Ok(Download {
            listing,
            skipped,
            none_arrived: format!("no regular file in collect dir {}", link.collect_dir),
        })
    }

    fn resumes(&self, link: &Link) -> bool {
        self.session.is_some() && copy_over_sftp(&link.rcp).is_some()
    }

    fn push_empty(&mut self, link: &Link, name: &str) -> Step<()> {
        let path = link.remote_file(name);
        log::info!("peer {}: sftp: create {path}", link.peer);
        // Written as an scp upload of an empty file would write it (open with create and
        // truncate, close), then looked at again.
        match self.with_session(link, |session| session.create_empty(path.as_bytes(), 0o644))? {
            Ok(attrs) if matches!(attrs.kind(), Kind::File | Kind::Unknown) => Ok(()),
            Ok(_) => Err(Error::failed(format!(
                "stage indicator {path} on the peer is not a regular file"
            ))
            .into()),
            Err(err) => {
                Err(sftp_error(&format!("cannot write stage indicator {path}"), err).into())
            }
        }
    }
}

impl SftpTransport {
    /// The listing to check an scp copy against: names and sizes over SFTP, digests through
    /// a command.
    fn listing(&mut self, link: &Link) -> Step<Option<Pending>> {
        match link.options.verify {
            Verify::None => Ok(None),
            Verify::Sha256 => Ok(Some(Pending::Running(Box::new(
                link.start_listing(link.ssh())?,
            )))),
            Verify::Size => {
                log::info!("peer {}: sftp: list {}", link.peer, link.collect_dir);
                let mut listed = Listed::new();
                let max = link.options.max_entries;
                let dir = link.collect_dir.clone();
                let answer = self.with_session(link, |session| {
                    let mut links = Vec::new();
                    session.read_dir(dir.as_bytes(), max, |name, attrs| {
                        if name.starts_with(b".") {
                            return Ok(());
                        }
                        let name =
                            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
                        match attrs.kind() {
                            Kind::File => {
                                listed.insert(name.to_os_string(), (attrs.size.unwrap_or(0), None));
                            }
                            Kind::Symlink | Kind::Unknown => links.push(name.to_os_string()),
                            _ => {}
                        }
                        Ok(())
                    })?;
                    for name in links {
                        let path = format!("{dir}/{}", name.to_string_lossy());
                        if let Ok(attrs) = session.stat(path.as_bytes()) {
                            if attrs.kind() == Kind::File {
                                listed.insert(name, (attrs.size.unwrap_or(0), None));
                            }
                        }
                    }
                    Ok(())
                })?;
                match answer {
                    Ok(()) => Ok(Some(Pending::Done(Listing::Files(listed)))),
                    Err(err) => Err(sftp_error(
                        &format!("cannot list collect dir {} to verify", link.collect_dir),
                        err,
                    )
                    .into()),
                }
            }
        }
    }
}

/// What stopped a download over SFTP, in words.
fn failure_error(link: &Link, into: &Path, source: &str, failure: sftp::Failure) -> Error {
    use sftp::Failure;
    let shown = |path: &[u8]| String::from_utf8_lossy(path).into_owned();
    match failure {
        Failure::MissingOrEmpty => Error::failed(format!(
            "collect dir {}: missing or empty (nothing to stage)",
            link.collect_dir
        )),
        Failure::NotPlain(name) => Error::failed(format!(
            "the peer listed {:?}, which is not a plain file name; nothing staged",
            String::from_utf8_lossy(&name)
        )),
        Failure::Dangling(path) => Error::failed(format!(
            "copy from {source} failed; nothing staged: {}: No such file or directory",
            shown(&path)
        )),
        Failure::Refused { path, error } => Error::failed(format!(
            "copy from {source} failed; nothing staged: {}: {error}",
            shown(&path)
        )),
        Failure::Write { name, error } => Error::failed(format!(
            "{}: {}; nothing staged",
            into.join(name).display(),
            crate::error::write_cause(&error)
        )),
        Failure::Changed { path, listed, now } => Error::failed(format!(
            "{}: changed while being copied ({listed} bytes listed, {}); nothing staged",
            shown(&path),
            match now {
                None => "more there now".to_string(),
                Some(now) => format!("{now} there now"),
            }
        )),
    }
}
