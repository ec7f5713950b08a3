//! The steps a remote peer needs, behind one trait, so that one staging pipeline serves
//! every way of carrying them out: SFTP requests on the peer's shared connection
//! (`sftp`), the rcp and rsh commands as configured (`commands`), and a dry run that prints
//! what the others would do (`dry_run`).

use std::path::Path;

use crate::error::Error;
use crate::peer::interface::Presence;
use crate::peer::staging::Listing;
use crate::process::Running;

use super::link::Link;
use crate::peer::resume::Kept;

/// What a download brought into the incoming dir, and what to check it against.
pub struct Download {
    /// What the peer lists, to check the arrivals against (None: `--verify none`).
    pub listing: Option<Pending>,
    /// Entries of the collect dir that were not copied, each with why.
    pub skipped: Vec<String>,
    /// Why no file arrived, should none have.
    pub none_arrived: String,
}

/// A listing: read already, or a command still running (a digest listing runs while the
/// files travel).
pub enum Pending {
    Done(Listing),
    Running(Box<(String, Running)>),
}

/// Why a step did not get done.
pub enum StepError {
    /// The step failed; the peer fails with this error.
    Failed(Error),
    /// The shared SFTP session died under the step: it runs again with the rcp and rsh
    /// commands, on connections of their own.
    Lost,
}

impl From<Error> for StepError {
    fn from(err: Error) -> StepError {
        StepError::Failed(err)
    }
}

pub type Step<T> = std::result::Result<T, StepError>;

pub trait Transport: Send {
    /// Whether the file `name` of the collect dir is there and can be read, and if not,
    /// whether the collect dir is; a peer that cannot be reached is an error.
    fn probe(&mut self, link: &Link, name: &str) -> Step<Presence>;

    /// Copies every regular file of the collect dir (what scp's `dir/*` copies) into the
    /// private dir `into`, which is empty unless `resumes` (then `kept` says what of it an
    /// earlier attempt left there).
    fn download(&mut self, link: &Link, into: &Path, kept: Option<&Kept>) -> Step<Download>;

    /// Whether `download` resumes from what an earlier attempt kept; a transport that copies
    /// every file whole gets an empty dir.
    fn resumes(&self, _link: &Link) -> bool {
        false
    }

    /// Writes the empty file `name` into the collect dir, and makes sure it is there.
    fn push_empty(&mut self, link: &Link, name: &str) -> Step<()>;
}
