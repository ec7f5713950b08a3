//! `--dry-run` for a remote peer: a transport that prints what the real one would do (the
//! exact command lines, or the SFTP requests) and does nothing, so a dry run walks the same
//! pipeline as a real one.

use std::path::{Path, PathBuf};

use crate::config::Verify;
use crate::fsutil::TEMP_PREFIX;
use crate::peer::checks::print_dry_run;
use crate::peer::interface::Presence;
use crate::process::quote_os;

use super::commands::{download_source, escape_glob};
use super::connection::copy_over_sftp;
use super::link::Link;
use super::mux::{control_options, session_command};
use super::transport::{Download, Step, Transport};
use crate::peer::resume::Kept;

pub struct DryRun {
    /// The steps would be SFTP requests on the shared connection's session.
    sftp: bool,
    /// The session's command line, shown before its first request.
    session_line: Option<String>,
}

/// Where a dry run says the control socket would be.
pub fn dry_socket() -> PathBuf {
    std::env::temp_dir()
        .join(format!("{TEMP_PREFIX}XXXXXX"))
        .join("ssh")
}

impl DryRun {
    /// `sftp`: the real run would use the SFTP session (its `ssh` is the shared connection's).
    pub fn new(link: &Link, sftp: bool) -> DryRun {
        let session_line = link.ssh.as_ref().filter(|_| sftp).and_then(|ssh| {
            let cmd = session_command(ssh, &dry_socket(), &link.destination);
            link.wrap(cmd).ok().map(|cmd| cmd.to_string())
        });
        if link.options.multiplex && link.ssh.is_some() {
            link.share(control_options(&dry_socket(), "no"));
        }
        DryRun {
            sftp: sftp && session_line.is_some(),
            session_line,
        }
    }

    fn over_session(&mut self, steps: &str) {
        if let Some(line) = self.session_line.take() {
            print_dry_run(line);
        }
        print_dry_run(format_args!("# over the SFTP session: {steps}"));
    }

    fn listing(&mut self, link: &Link) -> Step<()> {
        print_dry_run(link.listing_command(link.ssh())?);
        Ok(())
    }

    fn scratch(link: &Link) -> PathBuf {
        link.working_dir.join(format!("{TEMP_PREFIX}XXXXXX"))
    }
}

impl Transport for DryRun {
    fn probe(&mut self, link: &Link, name: &str) -> Step<Presence> {
        if self.sftp {
            let path = link.remote_file(name);
            self.over_session(&format!("open {path} for reading, then close it"));
        } else {
            let source = link.remote_path(&format!(
                "{}/{}",
                escape_glob(&link.collect_dir),
                escape_glob(name)
            ));
            print_dry_run(link.wrap(link.rcp().arg(source).arg(Self::scratch(link)))?);
        }
        // Nothing is known without asking: the pipeline goes on as if it were there.
        Ok(Presence::Present)
    }

    fn download(&mut self, link: &Link, into: &Path, _kept: Option<&Kept>) -> Step<Download> {
        let copy_over_session = self.sftp && copy_over_sftp(&link.rcp).is_some();
        if copy_over_session {
            let paced = match link.options.pace.rate() {
                Some(rate) => format!(", at most {rate}"),
                None => String::new(),
            };
            self.over_session(&format!(
                "list {} and copy every regular file in it into {}{paced}",
                link.collect_dir,
                into.display()
            ));
        } else {
            let rcp = link.limited(link.rcp());
            print_dry_run(link.wrap(rcp.arg(download_source(link)).arg(into))?);
        }
        match link.options.verify {
            Verify::None => {}
            Verify::Size if copy_over_session => {}
            Verify::Size if self.sftp => self.over_session(&format!(
                "list {} (names and sizes) to verify",
                link.collect_dir
            )),
            _ => self.listing(link)?,
        }
        Ok(Download {
            listing: None,
            skipped: Vec::new(),
            none_arrived: String::new(),
        })
    }

    fn push_empty(&mut self, link: &Link, name: &str) -> Step<()> {
        if self.sftp {
            let path = link.remote_file(name);
            self.over_session(&format!(
                "create {path} empty (mode 0644 less the peer's umask), close it, then stat it"
            ));
            return Ok(());
        }
        let local = Self::scratch(link).join(name);
        print_dry_run(format_args!("touch -- {}", quote_os(local.as_os_str())));
        let destination = link.remote_path(&format!("{}/", link.collect_dir));
        print_dry_run(link.wrap(link.rcp().arg(&local).arg(destination))?);
        Ok(())
    }
}
