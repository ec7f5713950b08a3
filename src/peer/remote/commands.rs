//! The steps of a remote peer with its rcp command as configured, as Cedar Backup does them:
//! the probe and the copy are downloads, the stage indicator an upload. The rcp command's
//! exit status is never trusted alone: some scp builds exit 0 after failing, and modern scp
//! exits 1 when the collect dir merely holds a subdirectory. What decides is the set of
//! files that really arrived, plus what scp said on stderr.
//!
//! A peer without an SFTP server (OpenSSH without the subsystem, Dropbear without
//! sftp-server) fails modern scp with a bare "Connection closed"; when ssh says the peer is
//! reachable, the step runs again with `-O`, and so does every later one.

use std::fs;
use std::path::Path;

use crate::error::{io_cause, write_cause, Error};
use crate::peer::interface::Presence;
use crate::peer::resume::Kept;
use crate::peer::staging::{scratch_dir, Listing};
use crate::process::{Cmd, Finished};

use super::connection::{
    is_program, protocol_flag, scp_protocol, with_legacy_protocol, ScpProtocol,
};
use super::link::{is_connection_failure, is_missing_line, is_skip_line, skip_entry, Link};
use super::transport::{Download, Pending, Step, Transport};

pub struct CommandTransport {
    /// The rcp command runs with `-O`: the peer has no SFTP server.
    legacy: bool,
}

impl CommandTransport {
    /// `legacy`: the peer is known to have no SFTP server.
    pub fn new(legacy: bool) -> CommandTransport {
        CommandTransport { legacy }
    }

    fn rcp(&self, link: &Link) -> Cmd {
        if self.legacy {
            with_legacy_protocol(&link.rcp())
        } else {
            link.rcp()
        }
    }

    /// After a failed rcp run: whether the peer merely lacks an SFTP server (modern scp's
    /// last word was "Connection closed", and ssh gets in), so that the step should run again
    /// with the legacy protocol. From then on every step does.
    fn switch_to_legacy(&mut self, link: &Link, finished: &Finished) -> Step<bool> {
        // What the peer's side said (Dropbear's shell failing to run sftp-server) may come
        // before; scp's own last word is all it knows.
        let bare_close = !finished.success()
            && finished
                .stderr_lines()
                .last()
                .is_some_and(|line| line.ends_with("Connection closed"))
            && !finished
                .stderr_lines()
                .any(|line| line.starts_with("ssh: "));
        if self.legacy
            || !bare_close
            || !is_program(&link.rcp, "scp")
            || protocol_flag(&link.rcp).is_some()
            || scp_protocol(&link.rcp) != ScpProtocol::Sftp
        {
            return Ok(false);
        }
        let check = link.wrap(link.ssh().arg("-T").arg(&link.destination).arg("exit 0"))?;
        let answer = link.run(&check)?;
        if answer.code() == 255 && is_connection_failure(&answer) {
            return Ok(false);
        }
        log::warn!(
            "peer {}: no SFTP server; using the legacy scp protocol (as scp -O) for this peer",
            link.peer
        );
        self.legacy = true;
        Ok(true)
    }

    /// The listing to check a copy against, through the ssh the rcp command would start
    /// (or the rsh command, when the rcp command is not OpenSSH's scp).
    fn listing(&self, link: &Link) -> Step<Option<Pending>> {
        if link.options.verify == crate::config::Verify::None {
            return Ok(None);
        }
        Ok(Some(Pending::Running(Box::new(
            link.start_listing(link.ssh())?,
        ))))
    }
}

/// `[user@]host:dir/*`, the copy's source (a glob: escaped, see `escape_glob`).
pub fn download_source(link: &Link) -> String {
    link.remote_path(&format!("{}/*", escape_glob(&link.collect_dir)))
}

/// Pulls `dir/*` with `rcp` into `into`, the listing (from `listing`) taken while the files
/// travel: the collect dir is complete (its indicator is there), so listing it before or
/// during the copy is the same.
pub fn copy_with_rcp(
    link: &Link,
    rcp: Cmd,
    into: &Path,
    listing: impl FnOnce(&Link) -> Step<Option<Pending>>,
) -> Step<(Download, Finished)> {
    let source = download_source(link);
    let cmd = link.wrap(link.limited(rcp).arg(&source).arg(into))?;
    let copying = link.start(&cmd, 0)?;
    let listing = listing(link)?;
    let finished = link.finish(copying)?;
    let skipped: Vec<String> = finished
        .stderr_lines()
        .filter(|line| is_skip_line(line))
        .map(|line| skip_entry(line).to_string())
        .collect();
    let download = Download {
        listing,
        skipped,
        none_arrived: format!(
            "{} exited {} but no file arrived from {source}",
            link.rcp.program().to_string_lossy(),
            finished.code()
        ),
    };
    Ok((download, finished))
}

/// Whether an scp copy failed, and if so why, in words.
pub fn copy_failure(
    link: &Link,
    into: &Path,
    target_dir: &Path,
    finished: &Finished,
) -> Option<Error> {
    let errors = finished
        .stderr_lines()
        .filter(|line| !is_skip_line(line))
        .count();
    let skipped = finished.stderr_lines().any(is_skip_line);
    if errors == 0 && (finished.success() || skipped) {
        return None;
    }
    if finished
        .stderr_lines()
        .any(|line| line.contains("No space left on device"))
    {
        return Some(Error::failed(format!(
            "target dir {}: no space left on device (disk full); nothing staged",
            target_dir.display()
        )));
    }
    let arrived = fs::read_dir(into).map(|dir| dir.count()).unwrap_or(0);
    if arrived == 0 && finished.stderr_lines().any(is_missing_line) {
        return Some(Error::failed(format!(
            "collect dir {}: missing or empty (nothing to stage)",
            link.collect_dir
        )));
    }
    Some(link.failure(
        &format!("copy from {} failed; nothing staged", download_source(link)),
        finished,
    ))
}

impl Transport for CommandTransport {
    fn probe(&mut self, link: &Link, name: &str) -> Step<Presence> {
        let source = link.remote_path(&format!(
            "{}/{}",
            escape_glob(&link.collect_dir),
            escape_glob(name)
        ));
        loop {
            let scratch = scratch_dir(&link.working_dir, link.owner)?;
            let cmd = link.wrap(self.rcp(link).arg(&source).arg(scratch.path()))?;
            let finished = link.run(&cmd)?;
            if scratch.path().join(name).is_file() {
                return Ok(Presence::Present);
            }
            if !is_connection_failure(&finished) && finished.stderr_lines().any(is_missing_line) {
                return self.absent_or_no_collect_dir(link);
            }
            if finished.success() {
                return Err(Error::failed(format!(
                    "{} exited 0 but {source} did not arrive",
                    link.rcp.program().to_string_lossy()
                ))
                .into());
            }
            if !self.switch_to_legacy(link, &finished)? {
                return Err(link
                    .failure(&format!("cannot check {source}"), &finished)
                    .into());
            }
        }
    }

    fn download(&mut self, link: &Link, into: &Path, _kept: Option<&Kept>) -> Step<Download> {
        loop {
            let rcp = self.rcp(link);
            let (download, finished) = copy_with_rcp(link, rcp, into, |link| self.listing(link))?;
            let target_dir = into.parent().unwrap_or(into);
            match copy_failure(link, into, target_dir, &finished) {
                None => return Ok(self.checked_listing(link, download)),
                Some(err) => {
                    if !self.switch_to_legacy(link, &finished)? {
                        return Err(err.into());
                    }
                }
            }
        }
    }

    fn push_empty(&mut self, link: &Link, name: &str) -> Step<()> {
        let scratch = scratch_dir(&link.working_dir, link.owner)?;
        let local = scratch.path().join(name);
        let file = fs::File::create_new(&local)
            .map_err(|err| Error::failed(format!("{}: {}", local.display(), write_cause(&err))))?;
        if let Some(owner) = link.owner {
            owner
                .apply(&file)
                .map_err(|err| Error::failed(format!("{}: {}", local.display(), io_cause(&err))))?;
        }
        let mut last = None;
        for dir in self.upload_forms(link) {
            let destination = link.remote_path(&format!("{dir}/"));
            let cmd = link.wrap(self.rcp(link).arg(&local).arg(&destination))?;
            let finished = link.run(&cmd)?;
            if finished.success() && finished.stderr_lines().next().is_none() {
                // scp's exit status is not proof: fetch the indicator back.
                if self.probe(link, name)? == Presence::Present {
                    return Ok(());
                }
                last = Some(Error::failed(format!(
                    "{} exited 0 but stage indicator {name} is not in {} on the peer",
                    link.rcp.program().to_string_lossy(),
                    link.collect_dir
                )));
                continue;
            }
            if is_connection_failure(&finished) && self.switch_to_legacy(link, &finished)? {
                return self.push_empty(link, name);
            }
            let err = link.failure(
                &format!("cannot write stage indicator {destination}{name}"),
                &finished,
            );
            if is_connection_failure(&finished) {
                return Err(err.into());
            }
            last = Some(err);
        }
        Err(last
            .unwrap_or_else(|| Error::failed("cannot write stage indicator".to_string()))
            .into())
    }
}

impl CommandTransport {
    /// After a probe found nothing: whether the collect dir itself is there. Copying the dir
    /// without -r says so in scp's words ("not a regular file", or "No such file").
    fn absent_or_no_collect_dir(&self, link: &Link) -> Step<Presence> {
        let scratch = scratch_dir(&link.working_dir, link.owner)?;
        let source = link.remote_path(&escape_glob(&link.collect_dir));
        let cmd = link.wrap(self.rcp(link).arg(&source).arg(scratch.path()))?;
        let finished = link.run(&cmd)?;
        let missing = !is_connection_failure(&finished)
            && finished.stderr_lines().any(is_missing_line)
            && !finished.stderr_lines().any(is_skip_line);
        Ok(if missing {
            Presence::NoCollectDir
        } else {
            Presence::Absent
        })
    }

    /// The forms of the collect dir an upload destination may take: literal where the rcp
    /// reads it literally (SFTP), shell-escaped where a remote shell reads it (legacy), and
    /// for an rcp command whose protocol cannot be told (a wrapper script), Cedar's literal
    /// form first, then the escaped one.
    fn upload_forms(&self, link: &Link) -> Vec<String> {
        let literal = link.collect_dir.clone();
        let escaped = escape_glob(&literal);
        if escaped == literal {
            return vec![literal];
        }
        if self.legacy {
            return vec![escaped];
        }
        if is_program(&link.rcp, "scp") {
            return match scp_protocol(&link.rcp) {
                ScpProtocol::Legacy => vec![escaped],
                ScpProtocol::Sftp => vec![literal],
            };
        }
        vec![literal, escaped]
    }

    /// A listing through the rsh command that cannot connect, where the copy went through a
    /// wrapper rcp command: the rsh command is not how this peer is reached (Cedar needs it
    /// for managed peers only), so the copy is not checked rather than failed.
    fn checked_listing(&self, link: &Link, mut download: Download) -> Download {
        if link.ssh.is_none() {
            if let Some(Pending::Running(running)) = download.listing.take() {
                download.listing =
                    Some(match link.finish(*running).and_then(|f| link.listing(f)) {
                        Ok(listing) => Pending::Done(listing),
                        Err(err) => {
                            log::warn!("{err}; verification skipped");
                            Pending::Done(Listing::Skipped(
                                "skipped: the rsh command cannot list the peer".to_string(),
                            ))
                        }
                    });
            }
        }
        download
    }
}

/// Characters that mean nothing to a shell or to glob(3).
fn is_shell_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c) || !c.is_ascii()
}

/// Backslash-escapes every character a shell or glob(3) would read specially. Both the remote
/// shell (legacy scp) and scp's SFTP-mode glob take `\x` as a literal `x`, so one form works
/// for both protocols. Newlines are refused earlier: for a shell, backslash-newline vanishes.
pub fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_shell_safe(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
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
}
