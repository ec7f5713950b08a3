//! The demo pool behind `peerstage run --demo`: two local peers from fixtures/demo, embedded
//! in the binary, laid out in a fresh temp dir and staged there. It needs no server and no
//! config, and shows a new user the whole run: staged files, indicators, job report.

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

/// Lays the demo pool out under a new private dir in the temp dir and returns its config.
/// The dir is kept, so the user can look at what was staged.
pub fn prepare() -> Result<Config> {
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
    Ok(Config {
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
        multiplex: true,
        verify: None,
        hooks: HookConfig::default(),
        peers,
    })
}
