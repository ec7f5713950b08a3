//! The demo pool behind `peerstage run --demo`: two local peers from fixtures/demo, embedded
//! in the binary, laid out in a fresh temp dir and staged there. It needs no server and no
//! config, and shows a new user the whole run: staged files, indicators, job report. The temp
//! dir goes when the demo ends; what was staged is listed first.

use std::fs;
use std::path::{Path, PathBuf};

use crate::config::{Config, HookConfig, PeerConfig, PeerKind, Weekday};
use crate::error::{io_cause, Error, Result};

/// (peer, file name, contents) of the demo collect dirs.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "alpha",
        "alpha-etc-20261121.tar",
        include_bytes!("../fixtures/demo/peers/alpha/alpha-etc-20261121.tar"),
    ),
    (
        "alpha",
        "alpha-home-20261121.tar",
        include_bytes!("../fixtures/demo/peers/alpha/alpha-home-20261121.tar"),
    ),
    (
        "alpha",
        "alpha-mysql-20261121.sql",
        include_bytes!("../fixtures/demo/peers/alpha/alpha-mysql-20261121.sql"),
    ),
    (
        "alpha",
        "cback.collect",
        include_bytes!("../fixtures/demo/peers/alpha/cback.collect"),
    ),
    (
        "beta",
        "beta-etc-20261121.tar",
        include_bytes!("../fixtures/demo/peers/beta/beta-etc-20261121.tar"),
    ),
    (
        "beta",
        "beta-www-20261121.tar",
        include_bytes!("../fixtures/demo/peers/beta/beta-www-20261121.tar"),
    ),
    (
        "beta",
        "cback.collect",
        include_bytes!("../fixtures/demo/peers/beta/cback.collect"),
    ),
];

/// The demo pool, laid out in its temp dir; the dir is removed when this is dropped.
pub struct Demo {
    pub config: Config,
    root: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_dir_all(&self.root) {
            log::warn!(
                "cannot remove the demo dir {}: {}",
                self.root.display(),
                io_cause(&err)
            );
        }
    }
}

/// What the demo staged into `daily_dir`, one line per file, for the user to see before the
/// demo dir goes.
pub fn describe(daily_dir: &Path) -> String {
    let mut out = String::new();
    let mut entries: Vec<_> = fs::read_dir(daily_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            let mut files: Vec<_> = fs::read_dir(&path)
                .into_iter()
                .flatten()
                .flatten()
                .collect();
            files.sort_by_key(|entry| entry.file_name());
            for file in files {
                let size = file.metadata().map(|meta| meta.len()).unwrap_or(0);
                out.push_str(&format!(
                    "  {name}/{}  {}\n",
                    file.file_name().to_string_lossy(),
                    crate::units::size(size)
                ));
            }
        } else {
            out.push_str(&format!("  {name}\n"));
        }
    }
    out
}

/// Lays the demo pool out under a new private dir in the temp dir.
pub fn prepare() -> Result<Demo> {
    let template = std::env::temp_dir().join("peerstage-demo-XXXXXX");
    let root = nix::unistd::mkdtemp(&template).map_err(|err| {
        Error::failed(format!(
            "{}: cannot create the demo dir: {err}",
            template.display()
        ))
    })?;
    let write = |path: &Path, contents: &[u8]| {
        fs::write(path, contents)
            .map_err(|err| Error::failed(format!("{}: {}", path.display(), io_cause(&err))))
    };
    let mkdir = |path: &Path| {
        fs::create_dir_all(path)
            .map_err(|err| Error::failed(format!("{}: {}", path.display(), io_cause(&err))))
    };
    let mut peers: Vec<PeerConfig> = Vec::new();
    for (peer, name, contents) in FILES {
        let collect_dir = root.join("peers").join(peer);
        if !peers.iter().any(|p| p.name == *peer) {
            mkdir(&collect_dir)?;
            peers.push(PeerConfig::new(*peer, PeerKind::Local, collect_dir.clone()));
        }
        write(&collect_dir.join(name), contents)?;
    }
    let staging_dir: PathBuf = root.join("staging");
    mkdir(&staging_dir)?;
    let config = Config {
        bwlimit: None,
        source: root.join("(demo)"),
        staging_dir,
        working_dir: None,
        backup_user: None,
        backup_group: None,
        starting_day: Weekday::Monday,
        lock_dir: Some(root.join("locks")),
        jobs: None,
        timeout: None,
        idle_timeout: None,
        max_entries: None,
        log_file: None,
        metrics_file: None,
        multiplex: true,
        verify: None,
        hooks: HookConfig::default(),
        peers,
    };
    Ok(Demo { config, root })
}
